//! Kernel layouts from outside the dump (issue #20): cold discovery of the fixture kernel
//! from its in-memory BTF, from its DWARF `vmlinux` (Debian's `-dbg` package, ~630 MB,
//! read one unit at a time) and from a Volatility ISF (`dwarf2json`'s, plain and `.xz`),
//! each on a copy of the dump whose BTF is zeroed; then warm from the discovery cache.
//! Goal: DWARF cold <= 5 s with <= 1 GiB RSS (see the issue; RSS is measured with
//! `/usr/bin/time -f %M` around `origami crawl`, not here).
//!
//! Needs the inputs the tests make under `target/kernel-debug/` (run
//! `cargo test --release -p origami-introspect --test memory_layout_sources` first).
//!
//! `nice cargo bench -p origami-benches --bench linux_layouts`

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use origami_core::memory::MemoryDump;
use origami_introspect::linux::{discover, LayoutSource, LinuxOptions};

fn layouts(c: &mut Criterion) {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let dir = origami_testsupport::workspace_root().join("target/kernel-debug");
    let nobtf = dir.join("memdump-nobtf.elf");
    let vmlinux = dir.join("vmlinux-6.1.0-56-amd64");
    if !nobtf.is_file() || !vmlinux.is_file() {
        eprintln!("SKIP: {} or {} missing", nobtf.display(), vmlinux.display());
        return;
    }
    let mut g = c.benchmark_group("linux_layouts");
    g.sample_size(10);
    let dump = MemoryDump::open(fx.path("memdump/memory.elf")).expect("dump");
    let cold = LinuxOptions::default().no_cache();
    g.bench_function("btf_cold", |b| {
        b.iter(|| discover(&dump, &cold).expect("discover"))
    });
    let dump = MemoryDump::open(&nobtf).expect("dump");
    let mut sources = vec![("dwarf_cold", LayoutSource::KernelDebuginfo(vmlinux))];
    for (tag, name) in [
        ("isf_cold", "6.1.0-56-amd64.json"),
        ("isf_xz_cold", "6.1.0-56-amd64.json.xz"),
    ] {
        let p: PathBuf = dir.join(name);
        if p.is_file() {
            sources.push((tag, LayoutSource::Isf(p)));
        }
    }
    for (tag, src) in &sources {
        let opts = cold.clone().with_layouts(src.clone());
        g.bench_function(*tag, |b| {
            b.iter(|| discover(&dump, &opts).expect("discover"))
        });
    }
    let cache = std::env::temp_dir().join(format!("origami-bench-layouts-{}", std::process::id()));
    let fill = LinuxOptions::default()
        .with_cache_dir(&cache)
        .with_layouts(sources[0].1.clone());
    discover(&dump, &fill).expect("fill the cache");
    let warm = LinuxOptions::default().with_cache_dir(&cache);
    g.bench_function("dwarf_warm_cache", |b| {
        b.iter(|| {
            let k = discover(&dump, &warm).expect("discover");
            assert!(k.from_cache);
            k
        })
    });
    let _ = std::fs::remove_dir_all(&cache);
    g.finish();
}

criterion_group!(benches, layouts);
criterion_main!(benches);
