//! qcow2 persistent dirty bitmaps and overlay clusters read as [`DirtyMap`]s, checked
//! against what `qemu-io` wrote (the ground truth: the offsets the test asked it to write)
//! and against `qemu-img map`; damaged bitmap metadata is an error, never a panic.

use std::path::Path;
use std::process::Command;

use origami_core::{FileSource, Qcow2Image, ReadAt};

fn have(program: &str) -> bool {
    origami_testsupport::require_program(program)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn open(path: &Path) -> Qcow2Image {
    Qcow2Image::from_source(FileSource::open(path).unwrap()).unwrap()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("origami-bitmap-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_persistent_bitmap_marks_what_qemu_io_wrote() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = scratch("writes");
    let img = dir.join("d.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&img)
        .arg("64M"));
    run(Command::new("qemu-img")
        .args(["bitmap", "--add", "--enable", "-g", "64K"])
        .arg(&img)
        .arg("b0"));
    // Writes: one inside a granule, one across two, one at the end of the disk.
    let writes = [
        (1 << 20, 512u64),
        (3 * 65536 + 65000, 1000),
        ((64 << 20) - 4096, 4096),
    ];
    for (at, len) in writes {
        run(Command::new("qemu-io")
            .args(["-f", "qcow2", "-c"])
            .arg(format!("write {at} {len}"))
            .arg(&img));
    }
    let q = open(&img);
    let b = q.bitmaps().unwrap();
    assert_eq!(b.len(), 1);
    assert!(b[0].enabled && !b[0].in_use && b[0].granularity == 65536 && b[0].name == "b0");
    let map = q.persistent_bitmap("b0").unwrap();
    let g = 65536u64;
    let expect = vec![
        3 * g..5 * g,
        (1 << 20)..(1 << 20) + g,
        (64 << 20) - g..(64 << 20),
    ];
    let mut got = map.ranges().to_vec();
    got.sort_by_key(|r| r.start);
    let mut expect = expect;
    expect.sort_by_key(|r| r.start);
    assert_eq!(got, expect);
    assert!(q.persistent_bitmap("nope").is_err());

    // Damaged metadata: the directory entry's table size, its flags (in use), the
    // extension's directory offset. Found by the bitmap name in the file.
    let bytes = std::fs::read(&img).unwrap();
    let name_at = bytes
        .windows(2)
        .rposition(|w| w == b"b0")
        .expect("the bitmap's name in the file");
    // The entry: 24 bytes of fields, no extra data, then the name.
    let entry = name_at - 24;
    let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        f(&mut b);
        Qcow2Image::from_source(b).unwrap()
    };
    let in_use = mutate(&|b| b[entry + 15] |= 1);
    assert!(in_use.persistent_bitmap("b0").is_err());
    let big_table = mutate(&|b| b[entry + 8..entry + 12].copy_from_slice(&u32::MAX.to_be_bytes()));
    assert!(big_table.persistent_bitmap("b0").is_err());
    let far_table = mutate(&|b| b[entry..entry + 8].copy_from_slice(&(1u64 << 50).to_be_bytes()));
    assert!(far_table.persistent_bitmap("b0").is_err());
    let long_name = mutate(&|b| b[entry + 18..entry + 20].copy_from_slice(&u16::MAX.to_be_bytes()));
    assert!(long_name.bitmaps().is_err());
    let bad_granularity = mutate(&|b| b[entry + 17] = 63);
    assert!(bad_granularity.bitmaps().is_err());
    // Without the autoclear bit, the extension is ignored, as QEMU ignores it.
    let stale = mutate(&|b| b[95] &= !1);
    assert!(stale.bitmaps().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_overlay_holds_what_was_written_since_the_snapshot() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = scratch("overlay");
    let base = dir.join("base.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&base)
        .arg("32M"));
    run(Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write 0 8M"])
        .arg(&base));
    let top = dir.join("top.qcow2");
    run(Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            "base.qcow2",
        ])
        .arg(&top));
    for c in ["write 4M 100k", "write -z 20M 64k", "write 31M 1M"] {
        run(Command::new("qemu-io")
            .args(["-f", "qcow2", "-c", c])
            .arg(&top));
    }
    let q = open(&top);
    let map = q.allocated_ranges().unwrap();
    let json = run(Command::new("qemu-img")
        .args(["map", "--output=json", "-f", "qcow2"])
        .arg(&top));
    let entries: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut from_qemu: Vec<std::ops::Range<u64>> = Vec::new();
    for e in entries.as_array().unwrap() {
        if e["depth"] == 0 {
            let (s, l) = (e["start"].as_u64().unwrap(), e["length"].as_u64().unwrap());
            match from_qemu.last_mut() {
                Some(r) if r.end == s => r.end = s + l,
                _ => from_qemu.push(s..s + l),
            }
        }
    }
    assert_eq!(map.ranges(), from_qemu.as_slice());
    assert_eq!(map.disk_size(), q.len());
    let _ = std::fs::remove_dir_all(&dir);
}
