//! A qcow2 image written while it is read (issue 13 item 2): `qemu-io` allocates clusters
//! in an image an `Image` has open; the change of an L2 table is found by
//! `check_unchanged`, a new L2 table (a changed L1 table) by the reads themselves, and an
//! image nobody writes stays unchanged however much is read. Skips when qemu-img or qemu-io
//! is missing (outside CI).

use std::process::Command;
use std::time::Duration;

use origami_core::{Error, Image, ReadAt};

fn run(cmd: &str, args: &[&str]) {
    let o = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn have_qemu() -> bool {
    origami_testsupport::require_program("qemu-img")
        && origami_testsupport::require_program("qemu-io")
}

#[test]
fn metadata_written_under_a_reader_is_reported() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.qcow2");
    let p = path.to_str().unwrap();
    // 64 KiB clusters: one L2 table maps 512 MiB.
    run("qemu-img", &["create", "-q", "-f", "qcow2", p, "2G"]);
    run("qemu-io", &["-f", "qcow2", "-c", "write -P 0x11 0 1M", p]);

    let img = Image::open(&path).unwrap();
    let mut b = vec![0u8; 1 << 20];
    img.read_at(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0x11));
    // Reading, with nobody writing, changes nothing.
    for i in 0..200u64 {
        img.read_at(i * 4096, &mut b[..4096]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(60));
    img.read_at(0, &mut b[..512]).unwrap();
    img.check_unchanged().unwrap();

    // A cluster allocated in the first L2 table: its entry changes.
    run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0x22 100M 64k", p],
    );
    match img.check_unchanged() {
        Err(e @ Error::ChangedWhileRead { .. }) => {
            let t = e.to_string();
            assert!(t.contains("L2 table") && t.contains("live.qcow2"), "{t}");
        }
        other => panic!("{other:?}"),
    }

    // A fresh reader, then a write past the first 512 MiB: a new L2 table, a changed L1
    // table, seen by the reads themselves.
    let img = Image::open(&path).unwrap();
    img.read_at(0, &mut b).unwrap();
    run("qemu-io", &["-f", "qcow2", "-c", "write -P 0x33 1G 64k", p]);
    std::thread::sleep(Duration::from_millis(60));
    match img.read_at(0, &mut b[..4096]) {
        Err(Error::ChangedWhileRead { what, .. }) => assert!(what.contains("L1"), "{what}"),
        other => panic!("{other:?}"),
    }
}
