//! `origami crawl --state FILE --events OUT.jsonl` and `origami watch --disk IMG --state
//! FILE` on a copy of the fixture Debian root file system changed by `debugfs -w` (e2fsprogs, which
//! writes the file system without the kernel and without updating directory times: the
//! directory-block digests must see its changes). The events are checked against the
//! debugfs script's own list; the incremental frame against a plain `origami crawl`.

use std::path::Path;
use std::process::Command;

fn origami() -> Command {
    Command::new(env!("CARGO_BIN_EXE_origami"))
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("origami runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn debugfs(image: &Path, script: &str) {
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-R")
        .arg(script)
        .arg(image)
        .output()
        .expect("debugfs runs");
    assert!(out.status.success(), "debugfs {script}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains(": "), "debugfs {script}: {err}");
}

fn events(text: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                e["event"].as_str().unwrap().to_string(),
                e["file"]["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn frame(path: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for k in ["timestamp", "duration_ms", "timings"] {
        v["_frame"].as_object_mut().unwrap().remove(k);
    }
    v
}

#[test]
fn crawl_with_state_then_watch() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    if !origami_testsupport::require_program("debugfs") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("origami-cli-incr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("fs.img");
    std::fs::copy(fx.path("debian/rootfs.ext4"), &img).unwrap();
    let state = dir.join("state");
    let crawl = |events: &str, out: &str| {
        ok(origami()
            .args(["crawl", "--hash", "--disk"])
            .arg(&img)
            .arg("--state")
            .arg(&state)
            .arg("--events")
            .arg(dir.join(events))
            .arg("--out")
            .arg(dir.join(out)));
    };
    crawl("e1.jsonl", "f1.json");
    assert!(state.is_file());
    assert_eq!(std::fs::read_to_string(dir.join("e1.jsonl")).unwrap(), "");

    let host = dir.join("content.txt");
    std::fs::write(&host, "new content\n").unwrap();
    for step in [
        "mkdir /newdir".to_string(),
        format!("write {} /newdir/f.txt", host.display()),
        "rm /etc/motd".into(),
        "set_inode_field /srv/fixture/known.bin mode 0100600".into(),
        "ln /newdir/f.txt /hl2".into(),
    ] {
        debugfs(&img, &step);
    }
    crawl("e2.jsonl", "f2.json");
    let got = events(&std::fs::read_to_string(dir.join("e2.jsonl")).unwrap());
    let truth: Vec<(String, String)> = [
        ("file_changed", "/srv/fixture/known.bin"),
        ("file_created", "/hl2"),
        ("file_created", "/newdir"),
        ("file_created", "/newdir/f.txt"),
        ("file_deleted", "/etc/motd"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, truth);
    ok(origami()
        .args(["crawl", "--hash", "--disk"])
        .arg(&img)
        .arg("--out")
        .arg(dir.join("full.json")));
    assert_eq!(frame(&dir.join("f2.json")), frame(&dir.join("full.json")));

    // Nothing changed since: a watch round prints nothing; then one more change.
    let watch = || {
        ok(origami()
            .args(["watch", "--count", "1", "--disk"])
            .arg(&img)
            .arg("--state")
            .arg(&state))
    };
    assert_eq!(watch(), "");
    debugfs(&img, "unlink /hl2");
    assert_eq!(
        events(&watch()),
        vec![("file_deleted".to_string(), "/hl2".to_string())]
    );

    // A corrupt state: a full crawl, said on stderr, and the state written anew.
    std::fs::write(&state, b"ORIGAMI-CRAWLST\n garbage").unwrap();
    let out = origami()
        .args(["crawl", "--hash", "--disk"])
        .arg(&img)
        .arg("--state")
        .arg(&state)
        .arg("--out")
        .arg(dir.join("f3.json"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt crawl state"));
    assert!(origami_introspect::incremental::CrawlState::load(&state).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `origami crawl --disk nbd+unix:///... --state F --bitmap NAME`: the changed blocks come
/// from the NBD server's `qemu:dirty-bitmap:NAME` context. A qcow2 copy of the fixture
/// disk gets a persistent, enabled bitmap (`qemu-img bitmap --add --enable`) and is served
/// by `qemu-nbd -B` for a first crawl; its root file system is then changed with
/// `debugfs -w` on a copy of the partition, and the 64 KiB granules that differ are
/// written back into the qcow2 by `qemu-io` (QEMU marks them in the bitmap). Served again,
/// the incremental crawl must give the frame of a plain crawl of the export, the events of
/// the debugfs script, and the map must cover every granule written while marking a small
/// part of the disk; the library's report must say the map was used.
#[test]
fn nbd_dirty_bitmap_drives_the_incremental_crawl() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    for p in ["debugfs", "qemu-nbd", "qemu-img", "qemu-io"] {
        if !origami_testsupport::require_program(p) {
            return;
        }
    }
    use origami_core::ReadAt;
    use origami_testsupport::nbd::{Listen, QemuNbd};
    let dir = std::env::temp_dir().join(format!("origami-cli-incr-nbd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("disk.qcow2");
    std::fs::copy(fx.path("debian/disk-gpt.qcow2"), &disk).unwrap();
    let st = Command::new("qemu-img")
        .args(["bitmap", "--add", "--enable"])
        .arg(&disk)
        .arg("b0")
        .status()
        .unwrap();
    assert!(st.success(), "qemu-img bitmap --add");
    let state = dir.join("state");
    let crawl = |uri: &str, incremental: bool, events: &str, out: &str| {
        let mut cmd = origami();
        cmd.args(["crawl", "--hash", "--disk", uri]);
        if incremental {
            cmd.arg("--state")
                .arg(&state)
                .args(["--bitmap", "b0", "--events"])
                .arg(dir.join(events));
        }
        ok(cmd.arg("--out").arg(dir.join(out)));
    };
    {
        let server = QemuNbd::serve(&disk, "qcow2", "disk", Listen::Unix, &["-B", "b0"]);
        crawl(&server.uri, true, "e1.jsonl", "f1.json");
    }
    assert_eq!(std::fs::read_to_string(dir.join("e1.jsonl")).unwrap(), "");

    // The root partition, changed by debugfs on a copy of its bytes.
    let image = origami_core::Image::open(&disk).unwrap();
    let table = origami_core::partition::read_partitions(&image).unwrap();
    let root = table.partitions.iter().find(|p| p.number == 2).unwrap();
    let part = root.open(&image).unwrap();
    let before = {
        let mut b = vec![0u8; part.len() as usize];
        part.read_at(0, &mut b).unwrap();
        b
    };
    let start = root.start;
    drop(part);
    drop(image);
    let raw = dir.join("root.ext4");
    std::fs::write(&raw, &before).unwrap();
    let host = dir.join("content.txt");
    std::fs::write(&host, "new content\n").unwrap();
    for step in [
        "mkdir /newdir".to_string(),
        format!("write {} /newdir/f.txt", host.display()),
        "rm /etc/motd".into(),
        "set_inode_field /etc/hostname mode 0100600".into(),
        "ln /newdir/f.txt /hl2".into(),
    ] {
        debugfs(&raw, &step);
    }
    let after = std::fs::read(&raw).unwrap();
    assert_eq!(after.len(), before.len());
    const GRANULE: usize = 65536;
    let mut written = Vec::new();
    let mut io = Command::new("qemu-io");
    io.args(["-f", "qcow2"]).arg(&disk);
    for (i, (a, b)) in before
        .chunks(GRANULE)
        .zip(after.chunks(GRANULE))
        .enumerate()
    {
        if a != b {
            let chunk = dir.join(format!("g{i}"));
            std::fs::write(&chunk, b).unwrap();
            let at = start + (i * GRANULE) as u64;
            io.arg("-c")
                .arg(format!("write -s {} {at} {}", chunk.display(), b.len()));
            written.push(at..at + b.len() as u64);
        }
    }
    assert!(!written.is_empty());
    let out = io.output().unwrap();
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("rror"),
        "qemu-io: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = QemuNbd::serve(&disk, "qcow2", "disk", Listen::Unix, &["-B", "b0"]);
    let map = origami_examples::incremental::nbd_bitmap(
        &server.uri,
        "b0",
        &origami_core::nbd::NbdOptions::default(),
    )
    .unwrap();
    for w in &written {
        assert!(map.intersects(w.clone()), "{w:?} written, not in {map:?}");
    }
    assert!(
        map.dirty_bytes() < map.disk_size() / 20,
        "{} of {} bytes dirty",
        map.dirty_bytes(),
        map.disk_size()
    );
    crawl(&server.uri, true, "e2.jsonl", "f2.json");
    let got = events(&std::fs::read_to_string(dir.join("e2.jsonl")).unwrap());
    let truth: Vec<(String, String)> = [
        ("file_changed", "/etc/hostname"),
        ("file_created", "/hl2"),
        ("file_created", "/newdir"),
        ("file_created", "/newdir/f.txt"),
        ("file_deleted", "/etc/motd"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, truth);
    crawl(&server.uri, false, "", "full.json");
    assert_eq!(frame(&dir.join("f2.json")), frame(&dir.join("full.json")));

    // The same through the library, with its report: the map, not the digests, was used,
    // and only the inode-table blocks it marks were read.
    let crawler = origami_introspect::Crawler::new(
        origami_introspect::CrawlOptions::builder()
            .hash_files(true)
            .build()
            .unwrap(),
    );
    let target = origami_introspect::Target::disk(&server.uri);
    let saved = origami_introspect::incremental::CrawlState::load(&state).unwrap();
    // The state was saved after the changes: the map (which still marks them) says more
    // than what changed since, which is safe; the frame must still be the full one.
    let r = origami_introspect::incremental::crawl(&crawler, &target, Some(&saved), &[Some(map)])
        .unwrap();
    assert!(r.events.is_empty(), "{:?}", r.events);
    let root_fs: Vec<_> = r
        .report
        .volumes
        .iter()
        .filter(|v| v.source == Some(origami_introspect::incremental::ChangeSource::DirtyMap))
        .collect();
    assert_eq!(root_fs.len(), 1, "{:?}", r.report);
    let blocks_total: u64 = saved
        .volumes
        .iter()
        .flat_map(|v| v.groups.iter())
        .map(|g| g.blocks.len() as u64)
        .sum();
    assert!(
        root_fs[0].table_blocks_read < blocks_total / 4,
        "{:?} of {blocks_total} inode-table blocks",
        root_fs[0]
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The dirty bitmap of an NBD export is asked with the NBD options given: a host that
/// is not loopback is refused as for the disk itself, unless the options allow it as
/// `--allow-remote-nbd` does (then the connection is tried: 0.0.0.0 is not loopback
/// and, with nothing listening on port 1, refuses at once).
#[test]
fn a_remote_exports_bitmap_follows_allow_remote_nbd() {
    use origami_core::nbd::NbdOptions;
    use origami_examples::incremental::{dirty_maps, StateArgs};
    use origami_introspect::Target;
    let target = Target::disk("nbd://0.0.0.0:1/export");
    let args = StateArgs {
        state: Some("unused.state".into()),
        bitmap: Some("b0".into()),
        ..StateArgs::default()
    };
    let e = dirty_maps(&NbdOptions::default(), &target, &args)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a loopback address"), "{e}");
    let open = NbdOptions::default().allow_remote(true);
    let e = dirty_maps(&open, &target, &args).unwrap_err().to_string();
    assert!(!e.contains("not a loopback address"), "{e}");
    assert!(e.contains("0.0.0.0"), "{e}");
}
