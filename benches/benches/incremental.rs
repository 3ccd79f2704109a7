//! Re-crawling the fixture Debian root file system after about 1% of its regular files
//! changed, side by side in one run: the full crawl (`full`, all sections with sha256),
//! the incremental crawl given the changed blocks (`dirty-map`; goal: at most 10% of the
//! full crawl's time) and the incremental crawl that compares inode digests (`digests`;
//! goal: at most 40%).
//!
//! Both ways start from the state of a first crawl of the unchanged copy (a full crawl that
//! saved its state), as `origami crawl --state` does the first time. The bench runs with
//! mimalloc as its allocator (see `GLOBAL`; `--features system-alloc` for the system's).
//!
//! The changes are made with `debugfs -w` (e2fsprogs) on a copy of `debian/rootfs.ext4`:
//! every 100th regular file of the manifest is replaced by new content, every 100th
//! other one (offset by 50) is chmod'ed. The changed blocks are the 64 KiB granules that
//! differ between the copy before and after (what a dirty bitmap of that granularity
//! records for those writes). Skipped without debugfs.
//!
//! Beside them, what the command line adds to an incremental crawl: the state file's
//! encoding (`state-save`: the bytes, written and synced to a file, renamed over the old
//! one, as `origami crawl --state` does) and decoding (`state-load`). The sizes of the
//! state and what each way read (its report) are printed before the timings.

use std::io::Read;
use std::process::Command;

use criterion::{criterion_group, criterion_main, Criterion};

/// The allocator: mimalloc, as an embedder that crawls often would choose (glibc's malloc
/// spends about a quarter of a re-crawl consolidating the chunks the previous crawl freed);
/// `--features system-alloc` measures with the system allocator.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use origami_core::dirty::DirtyMap;
use origami_introspect::incremental;
use origami_introspect::{CrawlOptions, Crawler, Target};

const GRANULE: u64 = 65536;

/// The granules that differ between two files of the same size.
fn differing(a: &std::path::Path, b: &std::path::Path) -> DirtyMap {
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let len = fa.metadata().unwrap().len();
    let (mut ba, mut bb) = (vec![0u8; GRANULE as usize], vec![0u8; GRANULE as usize]);
    let mut ranges = Vec::new();
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(GRANULE) as usize;
        fa.read_exact(&mut ba[..n]).unwrap();
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            ranges.push(at..at + n as u64);
        }
        at += n as u64;
    }
    DirtyMap::from_ranges(len, GRANULE, ranges).unwrap()
}

fn incremental_crawl(c: &mut Criterion) {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    if !origami_testsupport::require_program("debugfs") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("origami-bench-incr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let before = dir.join("before.ext4");
    let after = dir.join("after.ext4");
    std::fs::copy(fx.path("debian/rootfs.ext4"), &before).unwrap();
    let crawler = Crawler::new(CrawlOptions::builder().hash_files(true).build().unwrap());
    let first = incremental::crawl(&crawler, &Target::disk(&before), None, &[]).unwrap();
    std::fs::copy(&before, &after).unwrap();

    // About 1% of the regular files changed.
    let manifest = fx.json("debian/rootfs.manifest.json");
    let files: Vec<&str> = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "file" && e.get("path_hex").is_none())
        .filter_map(|e| e["path"].as_str())
        .filter(|p| !p.contains(' ') && !p.contains('"'))
        .collect();
    let content = dir.join("new-content");
    std::fs::write(&content, vec![b'x'; 3000]).unwrap();
    let mut script = String::new();
    let mut changed = 0;
    for (i, p) in files.iter().enumerate() {
        if i % 100 == 0 {
            script.push_str(&format!("rm {p}\nwrite {} {p}\n", content.display()));
            changed += 1;
        } else if i % 100 == 50 {
            script.push_str(&format!("set_inode_field {p} mode 0100600\n"));
            changed += 1;
        }
    }
    let cmds = dir.join("changes.debugfs");
    std::fs::write(&cmds, script).unwrap();
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&cmds)
        .arg(&after)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "debugfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dirty = differing(&before, &after);
    eprintln!(
        "incremental bench: {changed} of {} regular files changed; {} of {} bytes dirty",
        files.len(),
        dirty.dirty_bytes(),
        dirty.disk_size()
    );

    let target = Target::disk(&after);
    // Each way must give the full crawl's frame before it is timed.
    let full = crawler.crawl(&target).unwrap();
    eprintln!(
        "incremental bench: full crawl timings {:?}",
        full.meta.timings
    );
    let strip = |f: &origami_introspect::frame::Frame| {
        let mut v: serde_json::Value = serde_json::from_str(&f.to_json()).unwrap();
        for k in ["timestamp", "duration_ms", "timings"] {
            v["_frame"].as_object_mut().unwrap().remove(k);
        }
        v
    };
    for map in [Some(dirty.clone()), None] {
        let r = incremental::crawl(&crawler, &target, Some(&first.state), &[map]).unwrap();
        assert_eq!(strip(&r.frame), strip(&full));
        assert!(!r.events.is_empty());
        eprintln!(
            "incremental bench: {} events; {:?}; timings {:?}",
            r.events.len(),
            r.report.volumes,
            r.frame.meta.timings
        );
    }
    let state_file = dir.join("state");
    let bytes = first.state.to_bytes();
    eprintln!(
        "incremental bench: state of {} inode records, {} file items: {} bytes",
        first
            .state
            .volumes
            .iter()
            .map(|v| v.inodes.len())
            .sum::<usize>(),
        first.state.files.len(),
        bytes.len()
    );

    let mut g = c.benchmark_group("incremental/rootfs.ext4-1%");
    g.sample_size(10);
    g.bench_function("full", |b| b.iter(|| crawler.crawl(&target).unwrap()));
    g.bench_function("dirty-map", |b| {
        b.iter(|| {
            incremental::crawl(
                &crawler,
                &target,
                Some(&first.state),
                &[Some(dirty.clone())],
            )
            .unwrap()
        })
    });
    g.bench_function("digests", |b| {
        b.iter(|| incremental::crawl(&crawler, &target, Some(&first.state), &[]).unwrap())
    });
    g.bench_function("state-save", |b| {
        b.iter(|| first.state.save(&state_file).unwrap())
    });
    g.bench_function("state-load", |b| {
        b.iter(|| incremental::CrawlState::load(&state_file).unwrap())
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, incremental_crawl);
criterion_main!(benches);
