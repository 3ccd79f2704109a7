//! Linux memory introspection on the fixture dump: cold discovery (banner, kallsyms
//! recovered from memory, BTF parsed, no cache), warm discovery (from the discovery cache),
//! and the warm crawl (processes + connections + modules from an already discovered
//! kernel). Goals: cold discovery <= 1 s, warm crawl <= 50 ms.
//!
//! `cargo bench -p origami-benches --bench linux`

use criterion::{criterion_group, criterion_main, Criterion};
use origami_core::memory::MemoryDump;
use origami_introspect::frame::Frame;
use origami_introspect::linux::{crawl_kernel, discover, LinuxOptions};

fn linux(c: &mut Criterion) {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let mut g = c.benchmark_group("linux");
    g.sample_size(10);
    for name in ["memdump", "memdump-novmcoreinfo"] {
        let dump = MemoryDump::open(fx.path(&format!("{name}/memory.elf"))).expect("dump");
        let cold = LinuxOptions::default().no_cache();
        g.bench_function(format!("{name}/discovery_cold"), |b| {
            b.iter(|| discover(&dump, &cold).expect("discover"))
        });
        let dir = std::env::temp_dir().join(format!("origami-bench-cache-{}", std::process::id()));
        let warm = LinuxOptions::default().with_cache_dir(&dir);
        discover(&dump, &warm).expect("fill the cache");
        g.bench_function(format!("{name}/discovery_warm_cache"), |b| {
            b.iter(|| discover(&dump, &warm).expect("discover"))
        });
        let _ = std::fs::remove_dir_all(&dir);
        let kernel = discover(&dump, &cold).expect("discover");
        g.bench_function(format!("{name}/crawl_warm"), |b| {
            b.iter(|| {
                let mut f = Frame::new("bench");
                crawl_kernel(&kernel, &dump, &cold).merge_into(&mut f);
                assert!(f.process.len() > 50);
                f
            })
        });
    }
    g.finish();
}

criterion_group!(benches, linux);
criterion_main!(benches);
