//! Kernel layouts from outside the dump (issue #20): discovery of a kernel from its
//! in-memory BTF, from its DWARF `vmlinux` (Debian's `-dbg` package, ~630 MB, read one
//! unit at a time) and from a Volatility ISF (`dwarf2json`'s, trimmed, plain and `.xz`),
//! the last two on a copy of the dump whose BTF is zeroed; each cold (no cache) and warm
//! (from the discovery cache, filled once by that source). Goal: DWARF cold <= 5 s with
//! <= 1 GiB RSS (see the issue; RSS is measured with `/usr/bin/time -f %M` around
//! `origami crawl`, not here).
//!
//! Kernels: the fixture's 6.1 (inputs under `target/kernel-debug/`, made by
//! `cargo test --release -p origami-introspect --test memory_layout_sources`) and Debian
//! 11's 5.10 (under `target/kernel-dumps/`, made by `--test memory_kernels`); a kernel
//! whose inputs are missing is left out with a note.
//!
//! `nice -n 10 cargo bench -p origami-benches --bench linux_layouts`

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use origami_core::memory::MemoryDump;
use origami_introspect::linux::{discover, LayoutSource, LinuxOptions};

/// One kernel's inputs: its dump, the dump with its BTF zeroed, its DWARF and ISF files.
struct Kernel {
    tag: &'static str,
    dump: PathBuf,
    nobtf: PathBuf,
    vmlinux: PathBuf,
    isf_xz: PathBuf,
    isf_json: Option<PathBuf>,
}

fn kernels() -> Vec<Kernel> {
    let root = origami_testsupport::workspace_root();
    let isf_dir = root.join("origami-introspect/tests/data/isf");
    let mut all = Vec::new();
    if let Some(fx) = origami_testsupport::fixtures() {
        let dir = root.join("target/kernel-debug");
        all.push(Kernel {
            tag: "6.1",
            dump: fx.path("memdump/memory.elf"),
            nobtf: dir.join("memdump-nobtf.elf"),
            vmlinux: dir.join("vmlinux-6.1.0-56-amd64"),
            isf_xz: isf_dir.join("6.1.0-56-amd64.json.xz"),
            isf_json: Some(dir.join("6.1.0-56-amd64.json")),
        });
    }
    let dir = root.join("target/kernel-dumps");
    all.push(Kernel {
        tag: "5.10",
        dump: dir.join("bullseye-5.10/memory.elf"),
        nobtf: dir.join("bullseye-5.10/memory-nobtf.elf"),
        vmlinux: dir.join(".cache/dbg-5.10.0-32-amd64/vmlinux-5.10.0-32-amd64"),
        isf_xz: isf_dir.join("5.10.0-32-amd64.json.xz"),
        isf_json: None,
    });
    all.retain(|k| {
        let missing: Vec<&Path> = [&k.dump, &k.nobtf, &k.vmlinux, &k.isf_xz]
            .into_iter()
            .map(PathBuf::as_path)
            .filter(|p| !p.is_file())
            .collect();
        if !missing.is_empty() {
            eprintln!("SKIP kernel {}: missing {missing:?}", k.tag);
        }
        missing.is_empty()
    });
    all
}

fn layouts(c: &mut Criterion) {
    let mut g = c.benchmark_group("linux_layouts");
    g.sample_size(10);
    for k in kernels() {
        let cold = LinuxOptions::default().no_cache();
        let dump = MemoryDump::open(&k.dump).expect("dump");
        g.bench_function(format!("{}/btf_cold", k.tag), |b| {
            b.iter(|| discover(&dump, &cold).expect("discover"))
        });
        warm(&mut g, k.tag, "btf", &dump, None);
        let nobtf = MemoryDump::open(&k.nobtf).expect("dump");
        let mut sources = vec![
            ("dwarf", LayoutSource::KernelDebuginfo(k.vmlinux.clone())),
            ("isf_xz", LayoutSource::Isf(k.isf_xz.clone())),
        ];
        if let Some(json) = k.isf_json.as_ref().filter(|p| p.is_file()) {
            sources.push(("isf_json", LayoutSource::Isf(json.clone())));
        }
        for (tag, src) in &sources {
            let opts = cold.clone().with_layouts(src.clone());
            g.bench_function(format!("{}/{tag}_cold", k.tag), |b| {
                b.iter(|| discover(&nobtf, &opts).expect("discover"))
            });
            warm(&mut g, k.tag, tag, &nobtf, Some(src));
        }
    }
    g.finish();
}

/// Discovery from the cache, filled once from `src` (or the dump's own BTF).
fn warm(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    kernel: &str,
    tag: &str,
    dump: &MemoryDump,
    src: Option<&LayoutSource>,
) {
    let cache = std::env::temp_dir().join(format!(
        "origami-bench-layouts-{kernel}-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&cache);
    let opts = LinuxOptions::default().with_cache_dir(&cache);
    let fill = match src {
        Some(s) => opts.clone().with_layouts(s.clone()),
        None => opts.clone(),
    };
    discover(dump, &fill).expect("fill the cache");
    g.bench_function(format!("{kernel}/{tag}_warm_cache"), |b| {
        b.iter(|| {
            let k = discover(dump, &opts).expect("discover");
            assert!(k.from_cache);
            k
        })
    });
    let _ = std::fs::remove_dir_all(&cache);
}

criterion_group!(benches, layouts);
criterion_main!(benches);
