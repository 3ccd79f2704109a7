//! Disks over NBD and running VMs' disks through fleecing (issue 13 items 1, 2 and 4).
//!
//! `origami crawl --disk nbd+unix:///EXPORT?socket=PATH` of the fixture Debian disk served
//! by `qemu-nbd` is judged by the shared independent checker
//! (`../shared/tools/frame-vs-truth.py`), which must say 100% on every figure; a disk on a
//! host that is not loopback is refused.
//!
//! A live guest, booted once for this file: the fixture kernel under QEMU TCG with a copy of
//! the fixture disk attached (virtio-blk) and a QMP socket, the disk mounted read-write by
//! the guest, which then writes, renames, deletes and syncs files in a loop from its
//! console. While it does, `origami crawl --qmp SOCKET --drive vd0` runs 10 times; each
//! frame is internally consistent: no errors, and the loop's files form what one instant
//! of the loop leaves (a window of at most 6 consecutive generations, each file's text a
//! prefix of what the loop wrote into it, its size its text's length). Three more
//! point-in-time views taken through the library's `Fleece` are checked by `e2fsck -fn`
//! (after replaying the journal, as a crash would need) on their root partition, and the
//! loop's files as origami reads them before that (ext4-view replaying the journal, 64bit
//! and checksum v3 as the guest's kernel writes it, in memory) must be those e2fsck's
//! replay leaves; at least one view must have had a journal to replay. Afterwards
//! QEMU holds no node, export or NBD server of ours, the guest's device is back on its own
//! node, and the guest still writes.
//!
//! Skips outside CI when the fixtures, qemu-nbd, qemu-system-x86_64, tar, python3, e2fsck or
//! dumpe2fs are missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use origami_core::partition::read_partitions;
use origami_core::qmp::{Fleece, FleeceOptions, QmpClient};
use origami_core::{FileSource, ReadAt};
use origami_introspect::fs::{Ext4Fs, FileSystem};
use origami_testsupport::live_disk::DiskVm;
use origami_testsupport::nbd::{Listen, QemuNbd};
use serde_json::Value;

const IP: &str = "10.20.30.40";
const BOOT: Duration = Duration::from_secs(600);

fn origami(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_origami"))
        .args(args)
        .output()
        .expect("run origami")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("origami-cli-nbd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn crawl_of_an_nbd_disk_passes_the_independent_checker() {
    let fx = origami_testsupport::require_fixtures!();
    if !origami_testsupport::require_program("python3")
        || !origami_testsupport::require_program("qemu-nbd")
    {
        return;
    }
    let dir = scratch("crawl");
    let server = QemuNbd::serve(
        &fx.path("debian/disk-gpt.qcow2"),
        "qcow2",
        "debian",
        Listen::Unix,
        &[],
    );
    let frame = dir.join("disk.json");
    let out = origami(&[
        "crawl",
        "--disk",
        &server.uri,
        "--hash",
        "--config",
        "/home/*/.bash_history",
        "--out",
        frame.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checker = fx.source().join("../tools/frame-vs-truth.py");
    let judged = Command::new("python3")
        .arg(&checker)
        .arg("disk")
        .arg(&frame)
        .arg(fx.path("debian/rootfs.facts.json"))
        .arg(fx.path("debian/rootfs.manifest.json"))
        .arg(IP)
        .output()
        .unwrap();
    assert!(
        judged.status.success(),
        "disk over NBD: {}{}",
        String::from_utf8_lossy(&judged.stdout),
        String::from_utf8_lossy(&judged.stderr)
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&frame).unwrap()).unwrap();
    assert!(
        v["_frame"]["errors"].as_array().is_none_or(Vec::is_empty),
        "{}",
        v["_frame"]
    );

    // A host that is not loopback: refused, and the message says how to allow it.
    let out = origami(&["crawl", "--disk", "nbd://192.0.2.7:10809/debian"]);
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("not a loopback address") && text.contains("--allow-remote-nbd"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The loop the guest runs: generation `i` writes `g$i.tmp` (the line `gen $i` repeated
/// `lines(i)` times), renames it to `g$i`, deletes `g$((i-5))` and syncs.
const WRITER: &str = "mkdir -p /mnt/srv/live; ( i=0; while :; do i=$((i+1)); \
    yes \"gen $i\" | head -n $(( (i % 7) * 400 + 1 )) > /mnt/srv/live/g$i.tmp; \
    mv /mnt/srv/live/g$i.tmp /mnt/srv/live/g$i; rm -f /mnt/srv/live/g$((i-5)); \
    echo $i > /mnt/srv/live/last; sync; done ) >/dev/null 2>&1 &";

/// How many lines generation `i` writes.
fn lines(i: u64) -> usize {
    (i % 7) as usize * 400 + 1
}

/// Checks one frame of the live guest: no errors, and the loop's files as one instant of
/// the loop leaves them. Returns the newest generation seen.
fn check_live_frame(frame: &Value, n: usize) -> u64 {
    let errors = frame["_frame"]["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(errors.is_empty(), "crawl {n}: errors {errors:?}");
    let sizes: BTreeMap<String, u64> = frame["file"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| {
            let p = f["path"].as_str()?;
            let name = p.strip_prefix("/srv/live/")?;
            Some((name.to_string(), f["size"].as_u64().unwrap_or(u64::MAX)))
        })
        .collect();
    let texts: BTreeMap<String, String> = frame["config"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| {
            let name = c["path"].as_str()?.strip_prefix("/srv/live/")?;
            Some((
                name.to_string(),
                c["content"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect();
    let mut gens = Vec::new();
    for (name, size) in &sizes {
        if name == "last" {
            continue;
        }
        let g: u64 = name
            .trim_start_matches('g')
            .trim_end_matches(".tmp")
            .parse()
            .unwrap_or_else(|_| panic!("crawl {n}: unexpected file {name}"));
        let text = texts.get(name).map(String::as_str).unwrap_or("");
        assert_eq!(
            *size,
            text.len() as u64,
            "crawl {n}: {name}: size against its text"
        );
        let full = format!("gen {g}\n").repeat(lines(g));
        assert!(
            full.starts_with(text),
            "crawl {n}: {name} is no prefix of what generation {g} wrote"
        );
        if !name.ends_with(".tmp") {
            gens.push(g);
        }
    }
    gens.sort_unstable();
    if let (Some(a), Some(b)) = (gens.first(), gens.last()) {
        assert!(
            b - a <= 5,
            "crawl {n}: generations {gens:?} span more than one instant"
        );
        assert_eq!(gens.len() as u64, b - a + 1, "crawl {n}: a gap in {gens:?}");
    }
    gens.last().copied().unwrap_or(0)
}

/// The loop's folder of the ext4 image `img` as origami reads it (ext4-view replaying the
/// journal in memory): each entry's name and content.
fn live_files(img: &Path) -> BTreeMap<String, Vec<u8>> {
    let fs = Ext4Fs::open(Arc::new(FileSource::open(img).unwrap())).unwrap();
    fs.read_dir(b"/srv/live", 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.name != b"." && e.name != b"..")
        .map(|e| {
            let mut path = b"/srv/live/".to_vec();
            path.extend(&e.name);
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut fs.open(&path).unwrap(), &mut content).unwrap();
            (String::from_utf8_lossy(&e.name).into_owned(), content)
        })
        .collect()
}

/// The jbd2 log start of the ext4 image `img` (0 when its journal has nothing to replay)
/// and its journal features, as `dumpe2fs -h` gives them.
fn journal_start(img: &Path) -> (u64, String) {
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    (
        field("Journal start:").map_or(0, |v| v.parse().unwrap()),
        field("Journal features:").unwrap_or_default(),
    )
}

/// The root partition of a point-in-time view, copied to `out` and checked by e2fsck;
/// before that, the loop's files as origami reads them (replaying the journal in memory)
/// must be those that e2fsck's replay of the journal leaves. Returns whether the journal
/// had transactions to replay.
fn fsck_view(disk: &dyn ReadAt, out: &Path) -> bool {
    let table = read_partitions(disk).unwrap();
    let root = table.partitions.iter().find(|p| p.number == 2).unwrap();
    let part = root.open(disk).unwrap();
    let mut f = std::fs::File::create(out).unwrap();
    let mut buf = vec![0u8; 8 << 20];
    let mut off = 0u64;
    while off < part.len() {
        let n = (part.len() - off).min(buf.len() as u64) as usize;
        part.read_at(off, &mut buf[..n]).unwrap();
        std::io::Write::write_all(&mut f, &buf[..n]).unwrap();
        off += n as u64;
    }
    drop(f);
    let (start, features) = journal_start(out);
    let dirty = start != 0;
    if dirty {
        assert!(
            features.contains("journal_64bit") && features.contains("journal_checksum_v3"),
            "journal features: {features}"
        );
    }
    let replayed_by_origami = live_files(out);
    // A crash-consistent view needs its journal replayed, as after a power cut.
    let replay = Command::new("e2fsck")
        .args(["-E", "journal_only", "-y"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        replay.status.code().is_some_and(|c| c <= 1),
        "journal replay: {replay:?}"
    );
    let check = Command::new("e2fsck").arg("-fn").arg(out).output().unwrap();
    assert!(
        check.status.success(),
        "e2fsck -fn of a fleeced view: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(journal_start(out).0, 0);
    let replayed_by_e2fsck = live_files(out);
    assert_eq!(
        replayed_by_origami.keys().collect::<Vec<_>>(),
        replayed_by_e2fsck.keys().collect::<Vec<_>>()
    );
    assert!(
        replayed_by_origami == replayed_by_e2fsck,
        "the loop's files differ after origami's and e2fsck's journal replays"
    );
    dirty
}

#[test]
fn crawls_of_a_running_vm_through_fleecing_are_consistent() {
    let fx = origami_testsupport::require_fixtures!();
    for p in ["qemu-system-x86_64", "tar", "e2fsck", "dumpe2fs"] {
        if !origami_testsupport::require_program(p) {
            return;
        }
    }
    let mut guest = DiskVm::boot(
        fx,
        "origami-fleece",
        &fx.path("debian/disk-gpt.qcow2"),
        BOOT,
    );
    guest.vm.console_run(WRITER, Duration::from_secs(60));
    let dir = scratch("fleece");
    let qmp = guest.qmp.to_str().unwrap().to_string();
    // The temporary folder of this test's fleeces (the CLI's through TMPDIR, the library's
    // through `FleeceOptions::temp_dir`), so that the check that none is left at the end
    // sees only this test's, not those of another test running at the same time.
    let fleece_tmp = dir.join("tmp");
    std::fs::create_dir_all(&fleece_tmp).unwrap();

    let hostname = fx.json("debian/rootfs.facts.json")["hostname"].clone();
    let mut newest = 0;
    for n in 0..10 {
        let out_path = dir.join(format!("frame-{n}.json"));
        let out = Command::new(env!("CARGO_BIN_EXE_origami"))
            .args([
                "crawl",
                "--qmp",
                &qmp,
                "--drive",
                "vd0",
                "--config",
                "/srv/live/*",
                "--out",
                out_path.to_str().unwrap(),
            ])
            .env("TMPDIR", &fleece_tmp)
            .output()
            .expect("run origami");
        assert!(
            out.status.success(),
            "crawl {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let frame: Value = serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
        assert_eq!(frame["os"]["hostname"], hostname, "crawl {n}");
        let g = check_live_frame(&frame, n);
        assert!(g >= newest, "crawl {n}: generation {g} after {newest}");
        newest = g;
    }
    assert!(newest > 0, "the guest's loop never showed on disk");

    // Point-in-time views through the library, checked by e2fsck.
    let mut dirty = 0;
    for n in 0..3 {
        let fleece = Fleece::start(
            &guest.qmp,
            &FleeceOptions::default().drive("vd0").temp_dir(&fleece_tmp),
        )
        .unwrap();
        dirty += usize::from(fsck_view(&fleece, &dir.join(format!("root-{n}.ext4"))));
        fleece.close().unwrap();
    }
    // The views did need journal replay (the guest syncs in a loop, so its journal always
    // holds transactions not yet checkpointed).
    assert!(dirty > 0, "no fleeced view had a journal to replay");

    // Nothing of ours is left in QEMU, and the device is back on its node.
    let mut q = QmpClient::connect(&guest.qmp, Duration::from_secs(10)).unwrap();
    let nodes = q.execute("query-named-block-nodes", None).unwrap();
    assert!(!nodes.to_string().contains("\"ofl-"), "{nodes}");
    assert_eq!(
        q.execute("query-block-exports", None).unwrap(),
        serde_json::json!([])
    );
    let blocks = q.execute("query-block", None).unwrap();
    let vd0 = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["qdev"].as_str().is_some_and(|d| d.contains("vd0")))
        .unwrap();
    assert_eq!(vd0["inserted"]["node-name"], "disk0");
    drop(q);
    let left: Vec<_> = std::fs::read_dir(&fleece_tmp)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("origami-fleece-"))
        .collect();
    assert!(left.is_empty(), "fleece folders left: {left:?}");
    // The guest still writes. The value is read after a key (the shell's prompt, and the
    // command itself if echoed, share the console's lines).
    let out = guest.vm.console_run(
        "echo LAST=$(cat /mnt/srv/live/last)",
        Duration::from_secs(60),
    );
    let last: u64 = out
        .split("LAST=")
        .skip(1)
        .find_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no LAST= in the console's answer: {out:?}"));
    assert!(last >= newest, "the guest's loop stopped at {last}");
    let _ = std::fs::remove_dir_all(&dir);
}
