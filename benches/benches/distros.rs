//! Non-Debian guests from disk against the tools that read the same bytes, in one run:
//!
//! - `xfs-lvm/rhel-root`: a full crawl of the RHEL-like fixture guest (its root is XFS on an
//!   LVM2 LV; every file listed and hashed, packages from its rpm database) against
//!   `xfs_repair -n` on the root LV's bytes (copied once to a file: xfs_repair reads a
//!   device or an image, not an LV inside a disk image). xfs_repair -n reads every inode and
//!   directory block, as `e2fsck -fn` does for ext4: the floor of a full walk.
//! - `ntfs/windows-volume`: the inventory of the Windows fixture's NTFS volume (every entry
//!   stat'ed: sizes, times, attributes, streams) against `ntfsls -R -l -a` (ntfs-3g) on the
//!   same image.
//!
//! The guests are the ones the tests build: `target/origami-guests/xfs/rhel.raw`
//! (`cargo test --release -p origami-introspect --test disk_lvm_rpm`) and
//! `target/windows-fixture/ntfs.img` (`--test it disk_windows::`); a missing one is skipped with
//! a hint.
//!
//! Run: `cargo bench -p origami-benches --bench distros` (needs xfsprogs and ntfs-3g).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use origami_core::partition::read_partitions;
use origami_core::volume::lvm;
use origami_core::{FileSource, ReadAt};
use origami_introspect::fs::{GuestTree, NtfsFs, WalkControl, WalkLimits};
use origami_introspect::{CrawlOptions, Crawler, Target};

fn guest(rel: &str, how: &str) -> Option<PathBuf> {
    let p = origami_testsupport::workspace_root().join(rel);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("{} is missing: build it with {how}", p.display());
        None
    }
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The root LV of the RHEL-like disk, written to `out`.
fn extract_root_lv(disk: &Path, out: &Path) {
    let d: Arc<dyn ReadAt> = Arc::new(FileSource::open(disk).unwrap());
    let table = read_partitions(&*d).unwrap();
    let mut pvs = Vec::new();
    for p in &table.partitions {
        let part: Arc<dyn ReadAt> = Arc::new(p.open(d.clone()).unwrap());
        if let Some(pv) = lvm::probe(part).unwrap() {
            pvs.push(pv);
        }
    }
    let (vgs, errors) = lvm::assemble(pvs);
    assert!(errors.is_empty(), "{errors:?}");
    let lv = vgs[0].open("root").unwrap();
    let mut data = vec![0u8; lv.len() as usize];
    lv.read_at(0, &mut data).unwrap();
    std::fs::write(out, data).unwrap();
}

fn xfs_lvm(c: &mut Criterion) {
    let Some(disk) = guest(
        "target/origami-guests/xfs/rhel.raw",
        "cargo test --release -p origami-introspect --test disk_lvm_rpm",
    ) else {
        return;
    };
    let mut group = c.benchmark_group("xfs-lvm/rhel-root");
    group.sample_size(10);
    let options = CrawlOptions::builder().hash_files(true).build().unwrap();
    let crawler = Crawler::new(options);
    let target = Target::disk(disk.clone());
    group.bench_function("origami-crawl-hashed", |b| {
        b.iter(|| {
            let f = crawler.crawl(&target).unwrap();
            assert!(f.meta.errors.is_empty(), "{:?}", f.meta.errors);
            f.file.len()
        })
    });
    if have("xfs_repair") {
        let lv = std::env::temp_dir().join(format!("origami-bench-root-lv-{}", std::process::id()));
        extract_root_lv(&disk, &lv);
        group.bench_function("xfs_repair-n", |b| {
            b.iter(|| {
                let s = Command::new("xfs_repair")
                    .args(["-n", "-f"])
                    .arg(&lv)
                    .output()
                    .unwrap();
                assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
            })
        });
        let _ = std::fs::remove_file(&lv);
    }
    group.finish();
}

fn ntfs(c: &mut Criterion) {
    let Some(img) = guest(
        "target/windows-fixture/ntfs.img",
        "cargo test --release -p origami-introspect --test it disk_windows::",
    ) else {
        return;
    };
    let mut group = c.benchmark_group("ntfs/windows-volume");
    group.sample_size(20);
    group.bench_function("origami-inventory", |b| {
        b.iter(|| {
            let fs = NtfsFs::open(Arc::new(FileSource::open(&img).unwrap())).unwrap();
            let tree = GuestTree::single(Box::new(fs));
            let mut n = 0usize;
            let errors = tree.walk(b"/", &WalkLimits::default(), &mut |_e| {
                n += 1;
                WalkControl::Continue
            });
            assert!(errors.is_empty(), "{errors:?}");
            n
        })
    });
    if have("ntfsls") {
        group.bench_function("ntfsls-R-l-a", |b| {
            b.iter(|| {
                let o = Command::new("ntfsls")
                    .args(["-R", "-l", "-a", "-f"])
                    .arg(&img)
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                o.stdout.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, xfs_lvm, ntfs);
criterion_main!(benches);
