//! The Crawler over a whole target (disk and memory of one machine), judged by the shared
//! independent checker `../shared/tools/frame-vs-truth.py` against the fixtures' truth; and
//! the target's seams: a disk held in memory (the caller's `ReadAt`) and memory read
//! through the caller's own `PhysicalMemory` crawl exactly like their files.

use crate::memory_truth;

use std::process::Command;
use std::sync::Arc;

use origami_core::memory::{MemoryDump, PhysRange, PhysicalMemory};
use origami_introspect::frame::{Frame, Section};
use origami_introspect::{CrawlOptions, Crawler, MemorySource, Target};

fn checker(fx: &origami_testsupport::Fixtures) -> std::path::PathBuf {
    fx.source().join("../tools/frame-vs-truth.py")
}

fn judge(
    fx: &origami_testsupport::Fixtures,
    args: &[&str],
    frame: &origami_frame::Frame,
) -> String {
    let dir = std::env::temp_dir().join(format!("origami-judge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.json", frame.system()));
    std::fs::write(&path, frame.to_json()).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(checker(fx)).arg(args[0]).arg(&path);
    for a in &args[1..] {
        cmd.arg(if a.contains('/') {
            fx.path(a).into_os_string()
        } else {
            (*a).into()
        });
    }
    let out = cmd.output().expect("python3 runs the checker");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "checker says {line} ({})",
        String::from_utf8_lossy(&out.stderr)
    );
    line
}

#[test]
fn memory_only_target_matches_each_dump_truth() {
    let fx = origami_testsupport::require_fixtures!();
    let crawler = Crawler::new(CrawlOptions::builder().use_cache(false).build().unwrap());
    for dump in ["memdump", "memdump-novmcoreinfo", "memdump-la57"] {
        let frame = crawler
            .crawl(&Target::default().with_memory(fx.path(&format!("{dump}/memory.elf"))))
            .unwrap();
        let line = judge(fx, &["memory", &format!("{dump}/truth.json")], &frame);
        eprintln!("{dump}: {line}");
    }
}

#[test]
fn disk_and_memory_of_one_machine_make_one_frame() {
    let fx = origami_testsupport::require_fixtures!();
    let target = Target::disk(fx.path("debian/disk-gpt.qcow2"))
        .with_memory(fx.path("memdump/memory.elf"))
        .with_system_map(fx.path("memdump/kernel/System.map-6.1.0-56-amd64"));
    let frame = Crawler::new(CrawlOptions::builder().system("both").build().unwrap())
        .crawl(&target)
        .unwrap();
    assert_eq!(frame.system(), "both");
    // Disk sections and memory sections side by side, each judged by the checker.
    let disk = judge(
        fx,
        &[
            "disk",
            "debian/rootfs.facts.json",
            "debian/rootfs.manifest.json",
            "10.20.30.40",
        ],
        &{
            // The disk check compares os.hostname with the disk's; memory's hostname wins in
            // the frame, so judge a copy carrying the disk's view of it.
            let mut f = frame.clone();
            f.os.hostname = Some(
                fx.json("debian/rootfs.facts.json")["hostname"]
                    .as_str()
                    .unwrap()
                    .into(),
            );
            f
        },
    );
    let _ = disk;
    let truth = fx.json("memdump/truth.json");
    assert_eq!(
        frame.os.kernel.as_deref(),
        truth["kernel"]["release"].as_str()
    );
    assert_eq!(frame.os.version.as_deref(), Some("12"));
    assert!(frame.meta.source.len() == 2);
    judge(fx, &["memory", "memdump/truth.json"], &frame);
}

/// The frame without what differs between two crawls of one machine: when and how long.
fn timeless(mut f: Frame) -> Frame {
    f.meta.timestamp = time::OffsetDateTime::UNIX_EPOCH;
    f.meta.duration_ms = 0;
    f.meta.timings.clear();
    f
}

#[test]
fn a_disk_held_in_memory_crawls_like_its_file() {
    let fx = origami_testsupport::require_fixtures!();
    let path = fx.path("debian/disk-gpt.raw");
    // Hashing reopens the guest on each hashing thread: through the reader too.
    let crawler = Crawler::new(
        CrawlOptions::builder()
            .hash_files(true)
            .max_hash_size(64 << 10)
            .threads(2)
            .build()
            .unwrap(),
    );
    let from_file = crawler.crawl(&Target::disk(&path)).unwrap();
    let bytes: Vec<u8> = std::fs::read(&path).unwrap();
    let target = Target::disk_reader(path.display().to_string(), Arc::new(bytes));
    let from_memory = crawler.crawl(&target).unwrap();
    assert!(
        from_file.package.len() > 100
            && from_file.file.len() > 1000
            && from_file.file.iter().any(|f| f.sha256.is_some()),
        "a real guest was crawled"
    );
    assert!(
        from_memory.meta.errors.is_empty(),
        "{:#?}",
        from_memory.meta.errors
    );
    assert_eq!(timeless(from_memory), timeless(from_file));
}

/// A caller's own memory: here a dump it opened itself, behind its own type.
struct CallerMemory(MemoryDump);

impl PhysicalMemory for CallerMemory {
    fn read_phys(&self, addr: u64, buf: &mut [u8]) -> origami_core::Result<()> {
        self.0.read_phys(addr, buf)
    }
    fn ranges(&self) -> Vec<PhysRange> {
        self.0.ranges()
    }
    fn name(&self) -> String {
        self.0.name()
    }
}

fn caller_source(path: &std::path::Path) -> MemorySource {
    let dump = MemoryDump::open(path).unwrap();
    MemorySource {
        name: path.display().to_string(),
        cpus: dump.cpus().to_vec(),
        vmcoreinfo: dump.vmcoreinfo().cloned(),
        phys: Arc::new(CallerMemory(dump)),
    }
}

#[test]
fn memory_through_a_callers_physical_memory_crawls_like_its_file() {
    let fx = origami_testsupport::require_fixtures!();
    let crawler = Crawler::default();
    for dump in ["memdump", "memdump-novmcoreinfo"] {
        let truth = fx.json(&format!("{dump}/truth.json"));
        let path = fx.path(&format!("{dump}/memory.elf"));
        let from_file = crawler
            .crawl(&Target::default().with_memory(&path))
            .unwrap();
        let target = Target::default().with_memory_source(caller_source(&path));
        let from_source = crawler.crawl(&target).unwrap();
        let bad = memory_truth::compare(&from_source, &truth);
        assert!(bad.is_empty(), "{dump}: {bad:#?}");
        assert_eq!(timeless(from_source), timeless(from_file), "{dump}");
    }
}

#[test]
fn memory_the_caller_knows_nothing_about_is_still_crawled() {
    let fx = origami_testsupport::require_fixtures!();
    // No CPU state and no VMCOREINFO: the kernel is found by searching RAM.
    let path = fx.path("memdump-novmcoreinfo/memory.elf");
    let dump = MemoryDump::open(&path).unwrap();
    let source = MemorySource::new("hypervisor memory", Arc::new(CallerMemory(dump)));
    let frame = Crawler::default()
        .crawl(&Target::default().with_memory_source(source))
        .unwrap();
    let bad = memory_truth::compare(&frame, &fx.json("memdump-novmcoreinfo/truth.json"));
    assert!(bad.is_empty(), "{bad:#?}");
    assert_eq!(frame.meta.source, ["hypervisor memory"]);
}

#[test]
fn sections_choose_the_memory_sections_too() {
    let fx = origami_testsupport::require_fixtures!();
    let truth = fx.json("memdump/truth.json");
    let path = fx.path("memdump/memory.elf");
    let crawl = |sections: &[Section]| {
        let options = CrawlOptions::builder()
            .sections(sections.iter().copied())
            .build()
            .unwrap();
        Crawler::new(options)
            .crawl(&Target::default().with_memory(&path))
            .unwrap()
    };
    let full = crawl(&Section::ALL);
    let bad = memory_truth::compare(&full, &truth);
    assert!(bad.is_empty(), "{bad:#?}");

    let f = crawl(&[Section::Process]);
    assert_eq!(f.process, full.process);
    assert!(f.connection.is_empty() && f.module.is_empty() && f.os.is_empty());
    assert!(f.meta.errors.is_empty(), "{:#?}", f.meta.errors);

    // Connections alone still walk the task list for the sockets' owners.
    let f = crawl(&[Section::Connection]);
    assert_eq!(f.connection, full.connection);
    assert!(f.process.is_empty() && f.module.is_empty() && f.os.is_empty());

    let f = crawl(&[Section::Os, Section::Module]);
    assert!(f.process.is_empty() && f.connection.is_empty());
    assert_eq!(f.module, full.module);
    assert_eq!(f.os, full.os);

    // Disk sections only: the memory is not read at all.
    let f = crawl(&[Section::Package]);
    assert!(f.os.is_empty() && f.process.is_empty() && f.meta.errors.is_empty());
    assert!(!f.meta.timings.contains_key("memory"));
}
