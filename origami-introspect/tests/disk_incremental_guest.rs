//! Incremental crawls after a real guest changed its files: the fixture kernel boots under
//! QEMU (TCG) with a copy of the fixture Debian disk attached as virtio-blk, mounts its
//! ext4 root, runs a scripted set of changes (creates, a delete, an append, chmod, chown,
//! a rename across directories, a directory moved, a hard link, a symlink retargeted),
//! syncs, unmounts and powers off, so that QEMU stores the persistent dirty bitmap.
//!
//! Then, against a full crawl of the changed disk: the incremental crawl given the dirty
//! bitmap, the one with no change source (inode digests compared), and (second test) the one
//! given the clusters of an external snapshot's overlay each give the full crawl's frame,
//! section by section, and the events are the script's own list of what it did (written
//! here by hand, not by the library).
//!
//! Skips outside CI when qemu-system-x86_64 or qemu-img is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use origami_core::dirty::DirtyMap;
use origami_core::Image;
use origami_introspect::frame::Frame;
use origami_introspect::incremental::{self, ChangeSource, CrawlState, FileEvent};
use origami_introspect::{CrawlOptions, Crawler, Target};
use origami_testsupport::qemu::{FixtureVm, VmOptions, CONSOLE_SHELL};
use origami_testsupport::Fixtures;

const BOOT: Duration = Duration::from_secs(600);
const CONSOLE: Duration = Duration::from_secs(180);

/// The modules the guest needs for a virtio disk holding ext4, dependencies first (the
/// fixture's `load-order.txt` order).
const MODULES: &[&str] = &[
    "kernel/crypto/crc32c_generic.ko",
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/block/virtio_blk.ko",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/lib/crc16.ko",
    "kernel/fs/mbcache.ko",
    "kernel/fs/jbd2/jbd2.ko",
    "kernel/fs/ext4/ext4.ko",
];

/// What the guest does, one shell command at a time, on the root file system mounted at
/// `/mnt`.
const SCRIPT: &[&str] = &[
    "mkdir /mnt/srv/incr",
    "echo hello > /mnt/srv/incr/new.txt",
    "rm /mnt/etc/motd",
    "echo '10.9.9.9 added' >> /mnt/etc/hosts",
    "chmod 600 /mnt/srv/fixture/known.bin",
    "chown 1001:2000 /mnt/etc/hostname",
    "mv /mnt/etc/issue.net /mnt/srv/incr/issue.net",
    "mv /mnt/usr/share/doc/nginx-light /mnt/srv/incr/nginx-doc",
    "ln /mnt/srv/incr/new.txt /mnt/srv/new-link.txt",
    "ln -sfn /etc/hostname /mnt/etc/nginx/sites-enabled/default",
];

/// The events the script makes, in the frame's paths: (event, path, previous path).
const TRUTH: &[(&str, &str, Option<&str>)] = &[
    ("file_created", "/srv/incr", None),
    ("file_created", "/srv/incr/new.txt", None),
    ("file_deleted", "/etc/motd", None),
    ("file_modified", "/etc/hosts", Some("/etc/hosts")),
    (
        "file_changed",
        "/srv/fixture/known.bin",
        Some("/srv/fixture/known.bin"),
    ),
    ("file_changed", "/etc/hostname", Some("/etc/hostname")),
    (
        "file_renamed",
        "/srv/incr/issue.net",
        Some("/etc/issue.net"),
    ),
    (
        "file_renamed",
        "/srv/incr/nginx-doc",
        Some("/usr/share/doc/nginx-light"),
    ),
    ("file_created", "/srv/new-link.txt", None),
    (
        "file_modified",
        "/etc/nginx/sites-enabled/default",
        Some("/etc/nginx/sites-enabled/default"),
    ),
];

fn ready() -> Option<&'static Fixtures> {
    let fx = origami_testsupport::fixtures()?;
    for p in ["qemu-system-x86_64", "qemu-img"] {
        if !origami_testsupport::require_program(p) {
            return None;
        }
    }
    Some(fx)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("origami-incr-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The guest's modules as initramfs files, `/incr-N.ko` in load order.
fn module_files(fx: &Fixtures) -> Vec<(String, u32, Vec<u8>)> {
    let tar = fx.path("memdump/kernel/modules-6.1.0-56-amd64.tar");
    MODULES
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let bytes = Command::new("tar")
                .arg("xOf")
                .arg(&tar)
                .arg(format!("lib/modules/6.1.0-56-amd64/{m}"))
                .output()
                .expect("tar runs")
                .stdout;
            assert!(!bytes.is_empty(), "module {m} in the fixture's tar");
            (format!("incr-{i:02}.ko"), 0o100644, bytes)
        })
        .collect()
}

/// Boots the guest with `disk` attached, runs the script on its root file system and
/// powers it off cleanly.
fn guest_changes(fx: &Fixtures, name: &str, disk: &Path) {
    let options = VmOptions {
        console_shell: true,
        extra_args: vec![
            "-drive".into(),
            format!(
                "file={},if=virtio,format=qcow2,cache=unsafe",
                disk.display()
            ),
        ],
        extra_files: module_files(fx),
        ..VmOptions::default()
    };
    let mut vm = FixtureVm::boot_with(fx, name, "", BOOT, &options);
    vm.wait_for_console(CONSOLE_SHELL, BOOT);
    let loaded = vm.console_run(
        "for m in /incr-*.ko; do insmod $m || echo FAILED $m; done; sleep 1; ls /dev/vda2",
        CONSOLE,
    );
    assert!(loaded.contains("/dev/vda2"), "the disk shows: {loaded}");
    let mounted = vm.console_run(
        "mkdir -p /mnt && mount -t ext4 /dev/vda2 /mnt && echo MOUNTED",
        CONSOLE,
    );
    assert!(mounted.contains("MOUNTED"), "{mounted}");
    for step in SCRIPT {
        let out = vm.console_run(&format!("{step} && echo STEP-OK"), CONSOLE);
        assert!(out.contains("STEP-OK"), "{step}: {out}");
    }
    let out = vm.console_run("sync; umount /mnt && echo UNMOUNTED; sync", CONSOLE);
    assert!(out.contains("UNMOUNTED"), "{out}");
    vm.console_send("poweroff -f");
    let status = vm.wait_exit(Duration::from_secs(120));
    assert!(status.is_some(), "QEMU exits when the guest powers off");
}

fn crawler() -> Crawler {
    Crawler::new(CrawlOptions::builder().hash_files(true).build().unwrap())
}

/// A frame as JSON, without what differs between two crawls of the same bytes (when and
/// how long).
fn comparable(frame: &Frame) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&frame.to_json()).unwrap();
    let meta = v["_frame"].as_object_mut().unwrap();
    for k in ["timestamp", "duration_ms", "timings"] {
        meta.remove(k);
    }
    v
}

fn assert_same_frame(incremental: &Frame, full: &Frame, what: &str) {
    let (a, b) = (comparable(incremental), comparable(full));
    for (section, value) in b.as_object().unwrap() {
        assert!(
            a.get(section) == Some(value),
            "{what}: section {section} differs from the full crawl's"
        );
    }
    assert_eq!(a, b, "{what}: frames differ");
}

fn event_list(events: &[FileEvent]) -> Vec<(String, String, Option<String>)> {
    let mut out: Vec<_> = events
        .iter()
        .map(|e| {
            let previous = match e {
                FileEvent::FileModified { previous, .. }
                | FileEvent::FileChanged { previous, .. }
                | FileEvent::FileRenamed { previous, .. } => Some(previous.path.clone()),
                _ => None,
            };
            (e.name().to_string(), e.file().path.clone(), previous)
        })
        .collect();
    out.sort();
    out
}

fn truth() -> Vec<(String, String, Option<String>)> {
    let mut t: Vec<_> = TRUTH
        .iter()
        .map(|(e, p, q)| (e.to_string(), p.to_string(), q.map(str::to_string)))
        .collect();
    t.sort();
    t
}

/// The state of the first crawl, through its file (written and read back).
fn saved(state: &CrawlState, dir: &Path) -> CrawlState {
    let path = dir.join("state.bin");
    state.save(&path).unwrap();
    CrawlState::load(&path).unwrap()
}

fn check(
    name: &str,
    crawler: &Crawler,
    target: &Target,
    state: &CrawlState,
    dirty: Option<DirtyMap>,
    expect: ChangeSource,
    full: &Frame,
) {
    let got = incremental::crawl(crawler, target, Some(state), &[dirty]).unwrap();
    assert_same_frame(&got.frame, full, name);
    assert_eq!(event_list(&got.events), truth(), "{name}: events");
    assert!(got.report.events, "{name}: {:?}", got.report);
    let root = got
        .report
        .volumes
        .iter()
        .find(|v| v.uuid.starts_with("7d1e0000"))
        .expect("the root volume is cached");
    assert_eq!(root.source, Some(expect), "{name}: {:?}", got.report);
    assert!(
        root.inodes_changed > 0 && root.cache_hits > 0,
        "{name}: {root:?}"
    );
    // The file section is patched: most of its items carried over, the changed
    // directories' (and the ESP's, FAT being read in full) made again.
    let r = &got.report;
    assert!(
        r.file_patched && r.file_items_carried > 10 * r.file_items_made,
        "{name}: {r:?}"
    );
    // The ESP (FAT) is read in full, and the report says so.
    assert!(
        got.report.notes.iter().any(|n| n.contains("vfat")),
        "{name}: {:?}",
        got.report.notes
    );
    eprintln!("{name}: {root:?}");
}

#[test]
fn guest_changes_seen_through_bitmap_and_digests() {
    let Some(fx) = ready() else { return };
    let dir = scratch("bitmap");
    let disk = dir.join("disk.qcow2");
    std::fs::copy(fx.path("debian/disk-gpt.qcow2"), &disk).unwrap();
    run(Command::new("qemu-img")
        .args(["bitmap", "--add", "--enable"])
        .arg(&disk)
        .arg("incr0"));
    let crawler = crawler();
    let target = Target::disk(&disk);
    let first = incremental::crawl(&crawler, &target, None, &[]).unwrap();
    // A crawl that saves a state is itself a full crawl's frame.
    assert_same_frame(
        &first.frame,
        &crawler.crawl(&target).unwrap(),
        "first crawl",
    );
    assert!(first.events.is_empty());
    let state = saved(&first.state, &dir);

    guest_changes(fx, "origami-incr-bitmap", &disk);

    let image = Image::open(&disk).unwrap();
    let qcow2 = image.qcow2().expect("a qcow2 image");
    let info = run(Command::new("qemu-img").arg("info").arg(&disk));
    assert!(info.contains("incr0"), "{info}");
    let bitmap = qcow2.persistent_bitmap("incr0").unwrap();
    assert!(bitmap.dirty_bytes() > 0);
    // Only a small part of the disk was written.
    assert!(bitmap.dirty_bytes() < image_len(&disk) / 4, "{bitmap:?}");

    let full = crawler.crawl(&target).unwrap();
    check(
        "dirty bitmap",
        &crawler,
        &target,
        &state,
        Some(bitmap),
        ChangeSource::DirtyMap,
        &full,
    );
    check(
        "inode digests",
        &crawler,
        &target,
        &state,
        None,
        ChangeSource::Digests,
        &full,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn image_len(disk: &Path) -> u64 {
    origami_core::ReadAt::len(&Image::open(disk).unwrap())
}

#[test]
fn guest_changes_seen_through_an_overlay() {
    let Some(fx) = ready() else { return };
    let dir = scratch("overlay");
    let base = dir.join("base.qcow2");
    std::fs::copy(fx.path("debian/disk-gpt.qcow2"), &base).unwrap();
    let crawler = crawler();
    let first = incremental::crawl(&crawler, &Target::disk(&base), None, &[]).unwrap();
    let state = saved(&first.state, &dir);
    // The external snapshot: from now on the guest writes to the overlay.
    let overlay = dir.join("overlay.qcow2");
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
        .arg(&overlay));
    guest_changes(fx, "origami-incr-overlay", &overlay);
    let image = Image::open(&overlay).unwrap();
    let changed = image.qcow2().unwrap().allocated_ranges().unwrap();
    // qemu-img's own account of the overlay's clusters.
    let map = run(Command::new("qemu-img")
        .args(["map", "--output=json", "-f", "qcow2"])
        .arg(&overlay));
    let map: serde_json::Value = serde_json::from_str(&map).unwrap();
    let from_qemu: u64 = map
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["depth"] == 0)
        .map(|e| e["length"].as_u64().unwrap())
        .sum();
    assert_eq!(
        changed.dirty_bytes(),
        from_qemu,
        "allocated clusters vs qemu-img map"
    );
    let target = Target::disk(&overlay);
    let full = crawler.crawl(&target).unwrap();
    check(
        "overlay",
        &crawler,
        &target,
        &state,
        Some(changed),
        ChangeSource::DirtyMap,
        &full,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
