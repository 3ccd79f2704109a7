//! Live crawls of a running guest: the fixture guest booted under QEMU TCG, its kernel
//! discovered once, then warm crawls (`crawl_kernel`: os, processes, connections, modules)
//! per second, read
//!
//! - through `/proc/PID/mem` (`MemoryDump::attach_qemu_pid`, anonymous RAM, a `pread` per
//!   read; issue 12's goal: >= 1,000 crawls/s), and
//! - through a shared RAM file (`MemoryDump::open_live`, `memory-backend-file,share=on`,
//!   copies out of the mapping; goal >= 2,000 crawls/s).
//!
//! Each also through a `PageCache` cleared after every crawl (each page read once per
//! crawl: a few hundred `pread`s instead of a few thousand).
//!
//! The two guests are booted one after the other (each takes a minute or two under TCG),
//! so only one runs while measured; an idle TCG guest still takes some host CPU for its
//! timers, which the figures include. Throughput is printed as crawls/s (`elem/s`).
//!
//! Run: `cargo bench -p origami-benches --bench live`. Skips when the fixtures or
//! qemu-system-x86_64 are missing.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use origami_core::memory::{MemoryDump, PageCache, RamLayout};
use origami_introspect::frame::{Frame, Section};
use origami_introspect::linux::{crawl_kernel, discover, LinuxOptions};
use origami_testsupport::qemu::{FixtureVm, RamBacking, VmOptions};

const BOOT: Duration = Duration::from_secs(900);

fn bench_crawls(c: &mut Criterion, name: &str, mem: &MemoryDump) {
    let kernel = discover(mem, &LinuxOptions::default().no_cache()).expect("discover");
    // Processes and connections: the sections a watcher re-reads many times a second.
    let opts = LinuxOptions::default().with_sections([Section::Process, Section::Connection]);
    let mut g = c.benchmark_group("live");
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("crawl_warm/{name}"), |b| {
        b.iter(|| {
            let mut f = Frame::new("bench");
            crawl_kernel(&kernel, mem, &opts).merge_into(&mut f);
            assert!(f.process.len() > 40, "{:?}", f.meta.errors);
            f
        })
    });
    // Each page read once per crawl, whole (the cache cleared after every crawl).
    let cached = PageCache::new(mem);
    g.bench_function(format!("crawl_warm_page_cache/{name}"), |b| {
        b.iter(|| {
            let mut f = Frame::new("bench");
            crawl_kernel(&kernel, &cached, &opts).merge_into(&mut f);
            cached.clear();
            assert!(f.process.len() > 40, "{:?}", f.meta.errors);
            f
        })
    });
    g.finish();
}

fn live(c: &mut Criterion) {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    if std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: qemu-system-x86_64 not installed");
        return;
    }
    {
        let mut vm = FixtureVm::boot(fx, "origami-bench-live-file", "", BOOT);
        vm.wait_for_console("@@FIXTURE-READY@@", BOOT);
        let mem =
            MemoryDump::open_live(&vm.ram_file, RamLayout::q35(origami_testsupport::qemu::RAM))
                .expect("open_live");
        bench_crawls(c, "memory_file", &mem);
    }
    {
        let options = VmOptions {
            backing: RamBacking::Anonymous,
            ..VmOptions::default()
        };
        let mut vm = FixtureVm::boot_with(fx, "origami-bench-live-pid", "", BOOT, &options);
        vm.wait_for_console("@@FIXTURE-READY@@", BOOT);
        let mem = MemoryDump::attach_qemu_pid(vm.pid()).expect("attach");
        bench_crawls(c, "proc_pid_mem", &mem);
    }
}

criterion_group!(benches, live);
criterion_main!(benches);
