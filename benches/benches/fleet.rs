//! `crawl-fleet` throughput: the shared fixture guests repeated to 50 machines (disk images,
//! memory dumps, and both), crawled and indexed with 1 and with 2 jobs. Prints machines/s.
//!
//!     cargo bench -p origami-benches --bench fleet            (ORIGAMI_FLEET_MACHINES=50)
//!
//! The per-kernel discovery cache is warmed once before timing (a fleet shares kernels);
//! each run indexes into a fresh tantivy index on disk and commits at the end.

use std::time::Instant;

use origami_examples::fleet::crawl_into_index;
use origami_index::TantivyIndex;
use origami_introspect::fleet::{Fleet, Machine};
use origami_introspect::{CrawlOptions, Target};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; there is nothing to list quickly.
    }
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let n: usize = std::env::var("ORIGAMI_FLEET_MACHINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let p = |rel: &str| fx.path(rel);
    let kinds: Vec<(&str, Vec<std::path::PathBuf>, Option<std::path::PathBuf>)> = vec![
        ("disk-qcow2", vec![p("debian/disk-gpt.qcow2")], None),
        ("disk-mbr", vec![p("debian/disk-mbr.raw")], None),
        ("mem", vec![], Some(p("memdump/memory.elf"))),
        (
            "mem-novmci",
            vec![],
            Some(p("memdump-novmcoreinfo/memory.elf")),
        ),
        ("mem-la57", vec![], Some(p("memdump-la57/memory.elf"))),
        (
            "disk+mem",
            vec![p("debian/disk-gpt.raw")],
            Some(p("memdump/memory.elf")),
        ),
    ];
    let machines: Vec<Machine> = (0..n)
        .map(|i| {
            let (kind, disks, memory) = &kinds[i % kinds.len()];
            let mut target = Target::default();
            for d in disks {
                target = target.with_disk(d);
            }
            if let Some(m) = memory {
                target = target.with_memory(m);
            }
            Machine::new(format!("{kind}-{i:03}"), target)
        })
        .collect();
    let scratch = std::env::temp_dir().join(format!("origami-bench-fleet-{}", std::process::id()));
    // Warm the discovery cache (one crawl of each memory kind).
    let idx = TantivyIndex::in_ram().expect("in-RAM index");
    let _ = crawl_into_index(
        &mut Fleet::builder().jobs(2).build(CrawlOptions::default()),
        &machines[..kinds.len().min(n)],
        &idx,
        None::<&mut origami_frame::FrameWriter<Vec<u8>>>,
        |_, _| {},
    );

    println!("crawl-fleet over {n} fixture machines ({} kinds: disk qcow2, disk MBR raw, 3 memory dumps, disk+memory)", kinds.len());
    println!(
        "{:>6} {:>10} {:>12} {:>10} {:>8}",
        "jobs", "seconds", "machines/s", "items", "failed"
    );
    for jobs in [1usize, 2] {
        let dir = scratch.join(format!("index-{jobs}"));
        let _ = std::fs::remove_dir_all(&dir);
        let index = TantivyIndex::open_or_create(&dir).expect("index");
        let t = Instant::now();
        let report = crawl_into_index(
            &mut Fleet::builder().jobs(jobs).build(CrawlOptions::default()),
            &machines,
            &index,
            None::<&mut origami_frame::FrameWriter<Vec<u8>>>,
            |_, _| {},
        )
        .expect("fleet crawl");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{jobs:>6} {secs:>10.2} {:>12.2} {:>10} {:>8}",
            n as f64 / secs,
            report.items,
            report.failed.len()
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
