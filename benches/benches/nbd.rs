//! Whole-export sequential read through the NBD client against `qemu-img convert` from the
//! same export (issue 13's goal: the client at least as fast, >= 1.0x), printed side by
//! side in one run.
//!
//! `qemu-nbd` serves the fixture Debian disk (`disk-gpt.qcow2`, 350 MiB, 164 MiB
//! allocated) read-only on a Unix socket. Each round reads the whole export
//!
//! - through `NbdClient::read_at` in 32 MiB pieces (several requests in flight), into one
//!   buffer, bytes thrown away; and
//! - with `qemu-img convert -n -f raw nbd+unix://... --target-image-opts
//!   driver=null-co,size=N`: qemu's own NBD client, its 8 coroutines, into QEMU's null
//!   driver (nothing written);
//!
//! alternately, 7 rounds each; the medians and their ratio are printed. Both skip the
//! export's holes the same way: the server sends them as hole chunks (our client) or
//! reports them in block status (qemu-img), so neither moves their zeros.
//!
//! Run: `cargo bench -p origami-benches --bench nbd`. Skips when the fixtures, qemu-nbd or
//! qemu-img are missing.

use std::process::Command;
use std::time::{Duration, Instant};

use origami_core::nbd::{NbdClient, NbdOptions};
use origami_core::ReadAt;
use origami_testsupport::nbd::{Listen, QemuNbd};

const ROUNDS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing we need.
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    if !origami_testsupport::require_program("qemu-nbd")
        || !origami_testsupport::require_program("qemu-img")
    {
        return;
    }
    let image = fx.path("debian/disk-gpt.qcow2");
    let server = QemuNbd::serve(&image, "qcow2", "disk", Listen::Unix, &[]);
    let client = NbdClient::open(&server.uri, &NbdOptions::default()).expect("connect");
    let size = client.len();
    let mut buf = vec![0u8; 32 << 20];
    let mut ours = Vec::new();
    let mut qemu = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let mut off = 0u64;
        while off < size {
            let n = (size - off).min(buf.len() as u64) as usize;
            client.read_at(off, &mut buf[..n]).expect("read");
            off += n as u64;
        }
        std::hint::black_box(&buf);
        ours.push(t.elapsed());

        let t = Instant::now();
        let st = Command::new("qemu-img")
            .args([
                "convert",
                "-n",
                "-f",
                "raw",
                &server.uri,
                "--target-image-opts",
            ])
            .arg(format!("driver=null-co,size={size}"))
            .status()
            .expect("qemu-img");
        assert!(st.success(), "qemu-img convert failed");
        qemu.push(t.elapsed());
    }
    let (a, b) = (median(ours), median(qemu));
    let mib = size as f64 / f64::from(1 << 20);
    println!("nbd/whole-export read, {mib:.0} MiB, median of {ROUNDS} rounds:");
    println!(
        "  origami NbdClient::read_at (32 MiB pieces)  {:>8.1} ms  {:>7.0} MiB/s",
        a.as_secs_f64() * 1e3,
        mib / a.as_secs_f64()
    );
    println!(
        "  qemu-img convert -> null-co                 {:>8.1} ms  {:>7.0} MiB/s",
        b.as_secs_f64() * 1e3,
        mib / b.as_secs_f64()
    );
    println!(
        "  ratio (qemu-img time / ours): {:.2}x  (goal >= 1.0x)",
        b.as_secs_f64() / a.as_secs_f64()
    );
}
