//! Disk image reads through origami-core against qemu's own reader, in one run.
//!
//! For each fixture qcow2 (plain, zlib-compressed, the overlay chain): read the whole device
//! sequentially in 2 MiB pieces through [`Image`]; the same with 4 KiB random reads (a fixed
//! pseudo-random set of 4096 offsets); and `qemu-img convert` of the image into qemu's
//! `null-co` driver (a target that discards writes; `-O raw IMG /dev/null` itself fails on
//! qemu 10 with "Cannot grow device files"). Throughput is in bytes of guest disk.
//!
//! Wall-clock times on a shared machine say as much about the neighbours as about the code,
//! so the sequential reads are also measured in CPU time (`*-cpu`: user + system time of
//! this process, its scoped decompression threads included, or of the qemu-img child).
//!
//! Run: `cargo bench -p origami-benches --bench disk` (needs the fixtures and `qemu-img`).

use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use origami_core::{Image, ReadAt};

const IMAGES: [&str; 3] = [
    "debian/disk-gpt.qcow2",
    "debian/disk-gpt-compressed.qcow2",
    "debian/disk-overlay.qcow2",
];

fn read_sequential(img: &Image, buf: &mut [u8]) -> u64 {
    let mut off = 0u64;
    let mut sum = 0u64;
    while off < img.len() {
        let n = (img.len() - off).min(buf.len() as u64) as usize;
        img.read_at(off, &mut buf[..n])
            .unwrap_or_else(|e| panic!("{e}"));
        sum = sum.wrapping_add(u64::from(buf[0]));
        off += n as u64;
    }
    sum
}

/// User + system CPU time of this process (`RUSAGE_SELF`) or of its waited-for children.
fn cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut r) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(r.ru_utime) + tv(r.ru_stime)
}

fn random_offsets(len: u64, count: usize) -> Vec<u64> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (len / 4096)) * 4096
        })
        .collect()
}

fn qemu_img_convert(path: &str, size: u64) {
    let status = Command::new("qemu-img")
        .args(["convert", "-n", "--target-image-opts", path])
        .arg(format!("driver=null-co,size={size}"))
        .status()
        .unwrap_or_else(|e| panic!("qemu-img: {e}"));
    assert!(status.success(), "qemu-img convert {path} failed");
}

fn disk(c: &mut Criterion) {
    let Some(fx) = origami_testsupport::fixtures() else {
        eprintln!("{}", origami_benches::fixtures_hint());
        return;
    };
    let have_qemu = Command::new("qemu-img").arg("--version").output().is_ok();
    for name in IMAGES {
        let path = fx.path(name);
        let img = Image::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let size = img.len();
        let mut group = c.benchmark_group(format!("disk/{name}"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(5));

        group.throughput(Throughput::Bytes(size));
        let mut buf = vec![0u8; 2 << 20];
        group.bench_function(BenchmarkId::new("sequential", "origami"), |b| {
            b.iter(|| read_sequential(&img, &mut buf))
        });
        if have_qemu {
            let p = path.to_str().unwrap_or_default().to_string();
            group.bench_function(BenchmarkId::new("sequential", "qemu-img-convert"), |b| {
                b.iter(|| qemu_img_convert(&p, size))
            });
        }

        group.bench_function(BenchmarkId::new("sequential-cpu", "origami"), |b| {
            b.iter_custom(|iters| {
                let start = cpu_time(libc::RUSAGE_SELF);
                for _ in 0..iters {
                    read_sequential(&img, &mut buf);
                }
                cpu_time(libc::RUSAGE_SELF) - start
            })
        });
        if have_qemu {
            let p = path.to_str().unwrap_or_default().to_string();
            group.bench_function(
                BenchmarkId::new("sequential-cpu", "qemu-img-convert"),
                |b| {
                    b.iter_custom(|iters| {
                        let start = cpu_time(libc::RUSAGE_CHILDREN);
                        for _ in 0..iters {
                            qemu_img_convert(&p, size);
                        }
                        cpu_time(libc::RUSAGE_CHILDREN) - start
                    })
                },
            );
        }

        let offsets = random_offsets(size, 4096);
        group.throughput(Throughput::Bytes(4096 * offsets.len() as u64));
        let mut page = [0u8; 4096];
        group.bench_function(BenchmarkId::new("random-4k", "origami"), |b| {
            b.iter(|| {
                for &o in &offsets {
                    img.read_at(o, &mut page).unwrap_or_else(|e| panic!("{e}"));
                }
                page[0]
            })
        });
        group.finish();
    }
}

criterion_group!(benches, disk);
criterion_main!(benches);
