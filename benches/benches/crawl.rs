//! Crawling the fixture Debian guest: all disk sections, with and without sha256.
//!
//! The floor, a native full-metadata scan of the same root file system, is timed in the
//! same run as `crawl/rootfs.ext4/e2fsck-fn` (`e2fsck -fn rootfs.ext4`, a process per
//! iteration, as one would run it; skipped when e2fsprogs is missing). `virt-inspector`
//! (libguestfs boots an appliance VM) takes minutes and is timed by hand. Inputs: `debian/disk-gpt.qcow2` (the guest as a
//! hypervisor stores it) and `debian/rootfs.ext4` (the bare root file system).

use criterion::{criterion_group, criterion_main, Criterion};
use origami_frame::Section;
use origami_introspect::{CrawlOptions, Crawler, Target};

fn crawl(c: &mut Criterion) {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    // Each configuration must crawl cleanly before it is timed.
    for image in ["debian/rootfs.ext4", "debian/disk-gpt.qcow2"] {
        let frame = Crawler::default()
            .crawl(&Target::disk(fx.path(image)))
            .unwrap();
        assert!(
            frame.meta.errors.is_empty(),
            "{image}: {:?}",
            frame.meta.errors
        );
    }
    let mut g = c.benchmark_group("crawl");
    g.sample_size(10);
    for image in ["debian/rootfs.ext4", "debian/disk-gpt.qcow2"] {
        let target = Target::disk(fx.path(image));
        let name = image.rsplit('/').next().unwrap_or(image);
        for hash in [false, true] {
            let crawler = Crawler::new(CrawlOptions::builder().hash_files(hash).build().unwrap());
            let label = if hash { "all+sha256" } else { "all" };
            g.bench_function(format!("{name}/{label}"), |b| {
                b.iter(|| crawler.crawl(&target).unwrap())
            });
        }
        for mmap in [false, true] {
            let files_only = Crawler::new(
                CrawlOptions::builder()
                    .sections([Section::File])
                    .memory_map(mmap)
                    .build()
                    .unwrap(),
            );
            let label = if mmap {
                "file-metadata+mmap"
            } else {
                "file-metadata"
            };
            g.bench_function(format!("{name}/{label}"), |b| {
                b.iter(|| files_only.crawl(&target).unwrap())
            });
        }
        let one_thread = Crawler::new(
            CrawlOptions::builder()
                .hash_files(true)
                .threads(1)
                .build()
                .unwrap(),
        );
        g.bench_function(format!("{name}/all+sha256/1-thread"), |b| {
            b.iter(|| one_thread.crawl(&target).unwrap())
        });
        let mapped = Crawler::new(CrawlOptions::builder().memory_map(true).build().unwrap());
        g.bench_function(format!("{name}/all+mmap"), |b| {
            b.iter(|| mapped.crawl(&target).unwrap())
        });
    }
    match std::process::Command::new("e2fsck").arg("-V").output() {
        Ok(_) => {
            let rootfs = fx.path("debian/rootfs.ext4");
            g.bench_function("rootfs.ext4/e2fsck-fn", |b| {
                b.iter(|| {
                    let out = std::process::Command::new("e2fsck")
                        .arg("-fn")
                        .arg(&rootfs)
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "e2fsck -fn: {out:?}");
                })
            });
        }
        Err(e) => println!("e2fsck not run ({e}): install e2fsprogs for the floor"),
    }
    g.finish();
}

criterion_group!(benches, crawl);
criterion_main!(benches);
