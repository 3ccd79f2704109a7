//! Origami's own non-Debian fixture guests, built by `scripts/fixtures/make-guests.py` into
//! `target/origami-guests/` (once; the script skips a finished guest): an Alpine-like disk
//! (apk), a RHEL-like disk (GPT, ESP, /boot, an LVM2 VG with root and swap LVs, a real
//! rpmdb.sqlite; root and /boot on XFS as on RHEL, or ext4 with `ORIGAMI_GUEST_FS=ext4`,
//! each built in its own folder), a two-disk machine whose VG spans both disks (a root LV
//! with a segment on each, a striped LV), a Fedora-like disk (btrfs: the root in subvolume
//! `root` mounted with `subvol=root`, `/home` in subvolume `home`, files compressed with
//! zstd, rpm's sqlite database in `/usr/lib/sysimage/rpm`) and a CentOS-7-like disk without
//! os-release (XFS, the fixtures' real Berkeley DB rpm database). Each frame is judged by
//! `shared/tools/frame-vs-truth.py` against the truth the script wrote from its own
//! inputs, and the LVs' bytes against lvm2's own report of their layout. The hostile cases
//! patch copies of the RHEL-like disk's LVM metadata (checksums recomputed): a segment past
//! its PV, a text that wraps onto itself, and a text that legitimately wraps around the end
//! of the circular buffer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use origami_core::partition::read_partitions;
use origami_core::volume::lvm::{self, lvm_crc, LvmError, INITIAL_CRC};
use origami_core::{FileSource, ReadAt, Slice};
use origami_introspect::frame::Frame;
use origami_introspect::fs::FsKind;
use origami_introspect::{open_guest, CrawlOptions, Crawler, Disk, DiskOptions, Target};

const IP: &str = "10.20.30.40";

/// The guests' folder, with the guest `kind` built; `None` (skip) when the tools are missing.
fn guest(kind: &str) -> Option<PathBuf> {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let needs: &[&str] = match kind {
        "alpine" => &["mkfs.ext4", "sfdisk"],
        "centos7" => &["mkfs.xfs", "sfdisk", "zstd"],
        "fedora" => &[
            "mkfs.btrfs",
            "mkfs.ext4",
            "sfdisk",
            "rpmbuild",
            "rpm",
            "mkfs.vfat",
            "mmd",
            "mcopy",
        ],
        _ => &[
            "mkfs.ext4",
            "sfdisk",
            "losetup",
            "pvcreate",
            "rpmbuild",
            "rpm",
            "mkfs.vfat",
            "mmd",
            "mcopy",
            "mkswap",
        ],
    };
    for p in needs {
        if !origami_testsupport::require_program(p) {
            return None;
        }
    }
    if kind == "fedora" && !btrfs_can_compress() {
        return None;
    }
    if kind.starts_with("rhel") && !Path::new("/dev/loop-control").exists() {
        origami_testsupport::skip("no loop devices (lvm2 needs them to write the fixture's VG)");
        return None;
    }
    let root = origami_testsupport::workspace_root();
    // The root and /boot file systems of the RHEL-like guests: XFS (RHEL's default), or
    // what ORIGAMI_GUEST_FS names (`ext4`), each in its own folder; the other guests in
    // `other`.
    let fs = std::env::var("ORIGAMI_GUEST_FS").unwrap_or_else(|_| "xfs".into());
    let folder = if kind.starts_with("rhel") {
        fs.as_str()
    } else {
        "other"
    };
    let out = root.join("target/origami-guests").join(folder);
    std::fs::create_dir_all(&out).unwrap();
    let _g = LOCK
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let lock = std::fs::File::create(out.join(".lock")).unwrap();
    lock.lock().unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(root.join("scripts/fixtures/make-guests.py"));
    match kind {
        "rhel-two" => cmd.args(["rhel", out.to_str().unwrap(), "--two-disks", "--fs", &fs]),
        "rhel" => cmd.args(["rhel", out.to_str().unwrap(), "--fs", &fs]),
        "centos7" => {
            let fx = origami_testsupport::fixtures()?;
            let db = fx.source().join("data/rpmdb/libuuid/Packages.zst");
            cmd.args([
                "centos7",
                out.to_str().unwrap(),
                "--rpmdb",
                db.to_str().unwrap(),
            ])
        }
        k => cmd.args([k, out.to_str().unwrap()]),
    };
    let o = cmd.output().unwrap();
    if !o.status.success() {
        let why = format!(
            "make-guests.py {kind}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
        // Without root (losetup, chown) the guests cannot be built: a skip, like a
        // missing tool.
        origami_testsupport::skip(&why);
        return None;
    }
    Some(out)
}

/// btrfs-progs with `mkfs.btrfs --compress` (6.13 and later; bookworm-backports).
fn btrfs_can_compress() -> bool {
    let help = Command::new("mkfs.btrfs").arg("--help").output();
    let ok = help.is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout).contains("--compress")
            || String::from_utf8_lossy(&o.stderr).contains("--compress")
    });
    if !ok {
        origami_testsupport::skip("mkfs.btrfs has no --compress (btrfs-progs 6.13+ is needed)");
    }
    ok
}

fn crawl(target: &Target) -> Frame {
    let options = CrawlOptions::builder()
        .hash_files(true)
        .config_glob("/srv/**/*.txt")
        .build()
        .unwrap();
    Crawler::new(options).crawl(target).unwrap()
}

/// `frame-vs-truth.py disk` at 100% on every figure.
fn independent_check(frame: &Frame, dir: &Path, name: &str) {
    let fx = origami_testsupport::require_fixtures!();
    let checker = fx.source().join("../tools/frame-vs-truth.py");
    if !checker.is_file() {
        origami_testsupport::skip("shared/tools/frame-vs-truth.py is missing");
        return;
    }
    let out_path = std::env::temp_dir().join(format!("origami-{}-{name}.json", std::process::id()));
    std::fs::write(&out_path, frame.to_json()).unwrap();
    let out = Command::new("python3")
        .arg(&checker)
        .arg("disk")
        .arg(&out_path)
        .arg(dir.join(format!("{name}.facts.json")))
        .arg(dir.join(format!("{name}.manifest.json")))
        .arg(IP)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&out_path);
    let line = String::from_utf8_lossy(&out.stdout);
    eprintln!("frame-vs-truth ({name}): {}", line.trim());
    assert!(
        out.status.success(),
        "frame-vs-truth {name}: {line} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn facts(dir: &Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.facts.json"))).unwrap()).unwrap()
}

#[test]
fn alpine_guest_matches_its_truth() {
    let Some(dir) = guest("alpine") else { return };
    let frame = crawl(&Target::disk(dir.join("alpine.raw")));
    assert!(frame.meta.errors.is_empty(), "{:?}", frame.meta.errors);
    let f = facts(&dir, "alpine");
    assert_eq!(frame.os.id.as_deref(), Some("alpine"));
    let want = f["packages"].as_array().unwrap();
    assert_eq!(frame.package.len(), want.len());
    for w in want {
        let p = frame
            .package
            .iter()
            .find(|p| p.name == w["name"].as_str().unwrap())
            .unwrap();
        assert_eq!(p.manager, "apk");
        assert_eq!(p.version, w["version"].as_str().unwrap());
        assert_eq!(p.arch, w["arch"].as_str().unwrap());
        assert_eq!(p.source.as_deref(), w["source"].as_str());
        assert_eq!(p.size, w["size"].as_u64());
        assert_eq!(p.extra["license"], w["license"]);
        assert_eq!(p.extra["files"], w["files"]);
    }
    independent_check(&frame, &dir, "alpine");
}

/// The rpm packages of a frame against the script's package list.
fn check_rpms(frame: &Frame, f: &serde_json::Value) {
    let want = f["packages"].as_array().unwrap();
    assert_eq!(frame.package.len(), want.len(), "{:?}", frame.package);
    for w in want {
        let p = frame
            .package
            .iter()
            .find(|p| p.name == w["name"].as_str().unwrap())
            .unwrap();
        assert_eq!(p.manager, "rpm");
        assert_eq!(p.arch, w["arch"].as_str().unwrap());
        let evr = format!(
            "{}-{}",
            w["version"].as_str().unwrap(),
            w["release"].as_str().unwrap()
        );
        let epoch = w["epoch"].as_u64().unwrap();
        let want_version = if epoch == 0 {
            evr
        } else {
            format!("{epoch}:{evr}")
        };
        assert_eq!(p.version, want_version);
        assert_eq!(p.extra["license"], w["license"]);
        assert_eq!(p.extra["vendor"], w["vendor"]);
        assert_eq!(p.extra["files"], w["files"], "{}", p.name);
        assert_eq!(p.source.as_deref(), w["name"].as_str());
    }
}

#[test]
fn rhel_guest_on_lvm_matches_its_truth() {
    let Some(dir) = guest("rhel") else { return };
    let frame = crawl(&Target::disk(dir.join("rhel.raw")));
    assert!(frame.meta.errors.is_empty(), "{:?}", frame.meta.errors);
    let f = facts(&dir, "rhel");
    check_rpms(&frame, &f);
    // /boot and /boot/efi came from fstab (UUID=), the root from /dev/mapper/rhel-root.
    let boot = frame.file.iter().find(|x| x.path == "/boot/grub2/grub.cfg");
    assert!(boot.is_some());
    assert!(frame
        .file
        .iter()
        .any(|x| x.path == "/boot/efi/EFI/BOOT/BOOTX64.EFI"));
    independent_check(&frame, &dir, "rhel");
}

#[test]
fn rhel_guest_root_is_xfs_on_lvm_by_default() {
    if std::env::var("ORIGAMI_GUEST_FS").is_ok_and(|f| f != "xfs") {
        return;
    }
    let Some(dir) = guest("rhel") else { return };
    let f = facts(&dir, "rhel");
    assert_eq!(f["filesystem"], "xfs");
    let (assembly, problems) =
        open_guest(&[Disk::from(dir.join("rhel.raw"))], DiskOptions::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let mounts = assembly.tree.mounts();
    let root = mounts.iter().find(|m| m.point == b"/").unwrap();
    assert_eq!(root.info.kind, FsKind::Xfs);
    assert!(
        assembly.root_source.contains("root"),
        "{}",
        assembly.root_source
    );
    let boot = mounts.iter().find(|m| m.point == b"/boot").unwrap();
    assert_eq!(boot.info.kind, FsKind::Xfs);
}

/// The Fedora-like guest: its root is subvolume `root` (not the default one), `/home` is
/// subvolume `home`, files are zstd-compressed, and the fstab's optical-drive lines
/// (`noauto`, `nofail`) give no error.
#[test]
fn fedora_guest_on_btrfs_subvolumes_matches_its_truth() {
    let Some(dir) = guest("fedora") else { return };
    let frame = crawl(&Target::disk(dir.join("fedora.raw")));
    assert!(frame.meta.errors.is_empty(), "{:?}", frame.meta.errors);
    let f = facts(&dir, "fedora");
    check_rpms(&frame, &f);
    assert_eq!(frame.os.id.as_deref(), Some("fixture-fedora"));
    // the database was found through the /var/lib/rpm symlink's target
    let disk: Arc<dyn ReadAt> = Arc::new(FileSource::open(dir.join("fedora.raw")).unwrap());
    let p3 = read_partitions(&*disk).unwrap().partitions[2].clone();
    let part = dir.join("fedora.btrfs.tmp");
    {
        let mut img = vec![0u8; p3.size as usize];
        disk.read_at(p3.start, &mut img).unwrap();
        std::fs::write(&part, img).unwrap();
    }
    // The image really holds zstd extents (btrfs-progs' own word), and the compressed files
    // read back as the script wrote them (frame-vs-truth checks their sha256).
    let dump = Command::new("btrfs")
        .args(["inspect-internal", "dump-tree"])
        .arg(&part)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&part);
    assert!(dump.status.success());
    assert!(String::from_utf8_lossy(&dump.stdout).contains("compression 3"));
    for p in f["btrfs"]["compressed_files"].as_array().unwrap() {
        let p = p.as_str().unwrap();
        let got = frame.file.iter().find(|x| x.path == p).unwrap();
        assert!(got.sha256.is_some(), "{p}");
    }
    let (assembly, problems) = open_guest(
        &[Disk::from(dir.join("fedora.raw"))],
        DiskOptions::default(),
    )
    .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(assembly.notes.is_empty(), "{:?}", assembly.notes);
    assert!(
        assembly.root_source.ends_with("subvolume 256"),
        "{}",
        assembly.root_source
    );
    independent_check(&frame, &dir, "fedora");
}

/// A guest without os-release is named by its release file; its Berkeley DB rpm database
/// (the fixtures' CentOS one) is read.
#[test]
fn centos7_guest_without_os_release_matches_its_truth() {
    let Some(dir) = guest("centos7") else { return };
    let frame = crawl(&Target::disk(dir.join("centos7.raw")));
    assert!(frame.meta.errors.is_empty(), "{:?}", frame.meta.errors);
    let f = facts(&dir, "centos7");
    let osr = &f["os_release"];
    assert_eq!(frame.os.name.as_deref(), osr["NAME"].as_str());
    assert_eq!(frame.os.version.as_deref(), osr["VERSION_ID"].as_str());
    assert_eq!(frame.os.id.as_deref(), osr["ID"].as_str());
    assert_eq!(
        frame.os.pretty_name.as_deref(),
        osr["REDHAT_RELEASE"].as_str()
    );
    assert_eq!(frame.os.extra["release_file"], "/etc/system-release");
    let want = f["packages"].as_array().unwrap();
    assert_eq!(frame.package.len(), want.len());
    independent_check(&frame, &dir, "centos7");
}

#[test]
fn two_disk_volume_group_matches_its_truth() {
    let Some(dir) = guest("rhel-two") else { return };
    let target = Target::disk(dir.join("rhel-two.raw")).with_disk(dir.join("rhel-two-disk1.raw"));
    let frame = crawl(&target);
    assert!(frame.meta.errors.is_empty(), "{:?}", frame.meta.errors);
    let f = facts(&dir, "rhel-two");
    check_rpms(&frame, &f);
    // the striped LV, mounted by its /dev/VG/LV name
    assert!(frame.file.iter().any(|x| x.path == "/srv/data/blob.bin"));
    independent_check(&frame, &dir, "rhel-two");

    // One disk alone: the VG is incomplete; the LVs on the missing PV are refused by name.
    let target = Target::disk(dir.join("rhel-two.raw"));
    let err = Crawler::new(CrawlOptions::default()).crawl(&target);
    let text = match err {
        Ok(frame) => format!("{:?}", frame.meta.errors),
        Err(e) => e.to_string(),
    };
    assert!(text.contains("root") && text.contains("missing"), "{text}");
}

/// The PVs of a machine's disk images (partitions with an LVM label, or whole disks).
fn pvs(disks: &[PathBuf]) -> Vec<lvm::PhysicalVolume> {
    let mut out = Vec::new();
    for d in disks {
        let disk: Arc<dyn ReadAt> = Arc::new(FileSource::open(d).unwrap());
        let table = read_partitions(&*disk).unwrap();
        let mut sources: Vec<Arc<dyn ReadAt>> = table
            .partitions
            .iter()
            .map(|p| Arc::new(p.open(disk.clone()).unwrap()) as Arc<dyn ReadAt>)
            .collect();
        if sources.is_empty() {
            sources.push(disk.clone());
        }
        for s in sources {
            if let Some(pv) = lvm::probe(s).unwrap() {
                assert!(pv.problems.is_empty(), "{:?}", pv.problems);
                out.push(pv);
            }
        }
    }
    out
}

/// Every LV's bytes, read through Origami, equal the bytes at the places lvm2's own report
/// says (read from the PV images directly).
#[test]
fn lv_bytes_are_where_lvm_says() {
    let Some(dir) = guest("rhel-two") else { return };
    let disks = [dir.join("rhel-two.raw"), dir.join("rhel-two-disk1.raw")];
    let f = facts(&dir, "rhel-two");
    // the PV of disk 0 is its third partition; disk 1 is a whole-disk PV
    let d0: Arc<dyn ReadAt> = Arc::new(FileSource::open(&disks[0]).unwrap());
    let p3 = read_partitions(&*d0).unwrap().partitions[2].clone();
    let pv_sources: Vec<Arc<dyn ReadAt>> = vec![
        Arc::new(Slice::new(d0.clone(), p3.start, p3.size, "pv0").unwrap()),
        Arc::new(FileSource::open(&disks[1]).unwrap()),
    ];
    let (vgs, errors) = lvm::assemble(pvs(&disks));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(vgs.len(), 1);
    let vg = &vgs[0];
    assert_eq!(vg.name, f["lvm"]["vg"].as_str().unwrap());
    assert_eq!(vg.extent_size, f["lvm"]["extent_size"].as_u64().unwrap());
    let extent = vg.extent_size;
    let lvs = f["lvm"]["lvs"].as_object().unwrap();
    let opened = vg.logical_volumes();
    assert_eq!(opened.len(), lvs.len());
    for (name, lv) in opened {
        let lv = lv.unwrap();
        let segs = lvs[&name].as_array().unwrap();
        for seg in segs {
            let areas = seg["areas"].as_array().unwrap();
            let n = areas.len() as u64;
            let chunk = if n > 1 {
                seg["stripe_size"].as_u64().unwrap()
            } else {
                extent
            };
            let base = seg["start_pe"].as_u64().unwrap() * extent;
            let area_len = areas[0][2].as_u64().unwrap();
            // every chunk of the segment: its first and last 512 bytes
            for i in 0..(area_len * n / chunk) {
                let a = &areas[(i % n) as usize];
                let pv = &pv_sources[a[0].as_u64().unwrap() as usize];
                let at = a[1].as_u64().unwrap() + (i / n) * chunk;
                for (lo, pv_at) in [(0, at), (chunk - 512, at + chunk - 512)] {
                    let mut want = [0u8; 512];
                    pv.read_at(pv_at + lo - lo, &mut want).unwrap();
                    let mut got = [0u8; 512];
                    lv.read_at(base + i * chunk + lo, &mut got).unwrap();
                    assert_eq!(got, want, "{name} chunk {i} +{lo}");
                }
            }
        }
        // a read across every chunk boundary of the LV, whole
        let mut all = vec![0u8; lv.len() as usize];
        lv.read_at(0, &mut all).unwrap();
        let mut one = [0u8; 4096];
        lv.read_at(lv.len() - 4096, &mut one).unwrap();
        assert_eq!(&all[all.len() - 4096..], &one);
        assert!(lv.read_at(lv.len() - 1, &mut [0u8; 2]).is_err());
        assert_eq!(lv.mapper_name(), format!("vg--two-{name}"));
    }
}

/// The metadata area of a PV image: (area start, area size) from the PV header, and the
/// committed text's (offset, size) from the area header.
struct Mda {
    start: usize,
    size: usize,
    text_off: usize,
    text_len: usize,
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn mda(pv: &[u8]) -> Mda {
    let label = (0..4)
        .map(|s| s * 512)
        .find(|&o| &pv[o..o + 8] == b"LABELONE")
        .unwrap();
    let hdr = label + u32::from_le_bytes(pv[label + 20..label + 24].try_into().unwrap()) as usize;
    // skip the data areas to the metadata areas
    let mut at = hdr + 40;
    while le64(pv, at) != 0 {
        at += 16;
    }
    at += 16;
    let (start, size) = (le64(pv, at) as usize, le64(pv, at + 8) as usize);
    Mda {
        start,
        size,
        text_off: le64(pv, start + 40) as usize,
        text_len: le64(pv, start + 48) as usize,
    }
}

/// Rewrites the committed text of the PV image's metadata area: `text` at `offset` in the
/// area (wrapping after the header past its end), the location's size and checksum, and the
/// header's checksum.
fn write_text(pv: &mut [u8], m: &Mda, offset: usize, text: &[u8], claimed_len: Option<usize>) {
    let buffer = m.size - 512;
    for (i, &b) in text.iter().enumerate() {
        let pos = offset + i;
        let pos = if pos >= m.size {
            512 + (pos - m.size) % buffer
        } else {
            pos
        };
        pv[m.start + pos] = b;
    }
    let h = m.start;
    pv[h + 40..h + 48].copy_from_slice(&(offset as u64).to_le_bytes());
    pv[h + 48..h + 56].copy_from_slice(&(claimed_len.unwrap_or(text.len()) as u64).to_le_bytes());
    pv[h + 56..h + 60].copy_from_slice(&lvm_crc(INITIAL_CRC, text).to_le_bytes());
    let crc = lvm_crc(INITIAL_CRC, &pv[h + 4..h + 512]);
    pv[h..h + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The RHEL-like disk's PV (partition 3) as bytes, and its metadata text.
fn rhel_pv(dir: &Path) -> (Vec<u8>, Mda, String) {
    let disk = std::fs::read(dir.join("rhel.raw")).unwrap();
    let src: Arc<dyn ReadAt> = Arc::new(FileSource::open(dir.join("rhel.raw")).unwrap());
    let p3 = read_partitions(&*src).unwrap().partitions[2].clone();
    let pv = disk[p3.start as usize..(p3.start + p3.size) as usize].to_vec();
    let m = mda(&pv);
    let text = &pv[m.start + m.text_off..m.start + m.text_off + m.text_len];
    let text = String::from_utf8_lossy(text.split(|&b| b == 0).next().unwrap()).into_owned();
    (pv, m, text)
}

fn open_pv(pv: Vec<u8>) -> Result<Option<lvm::PhysicalVolume>, LvmError> {
    lvm::probe(Arc::new(
        Slice::new(pv.clone(), 0, pv.len() as u64, "patched-pv").unwrap(),
    ))
}

#[test]
fn metadata_that_wraps_around_the_circular_buffer_is_joined() {
    let Some(dir) = guest("rhel") else { return };
    let (mut pv, m, text) = rhel_pv(&dir);
    // put the text so that it crosses the end of the area: half before, half after the header
    let off = m.size - text.len() / 2;
    write_text(&mut pv, &m, off, text.as_bytes(), None);
    let got = open_pv(pv).unwrap().unwrap();
    assert!(got.problems.is_empty(), "{:?}", got.problems);
    let (vgs, e) = lvm::assemble(vec![got]);
    assert!(e.is_empty());
    assert_eq!(vgs[0].name, "rhel");
    assert!(vgs[0].open("root").is_ok());
}

#[test]
fn metadata_that_wraps_onto_itself_is_a_typed_error() {
    let Some(dir) = guest("rhel") else { return };
    let (mut pv, m, text) = rhel_pv(&dir);
    // a location claiming more than the whole circular buffer
    write_text(&mut pv, &m, m.text_off, text.as_bytes(), Some(m.size));
    let got = open_pv(pv).unwrap().unwrap();
    assert!(got.metadata.is_none());
    assert!(
        matches!(&got.problems[..], [LvmError::Corrupt { what, .. }] if what.contains("wrap onto itself")),
        "{:?}",
        got.problems
    );
    // and a checksum that does not match the text
    let (mut pv, m, _) = rhel_pv(&dir);
    pv[m.start + m.text_off + 10] ^= 0x20;
    let got = open_pv(pv).unwrap().unwrap();
    assert!(
        matches!(&got.problems[..], [LvmError::Corrupt { what, .. }] if what.contains("checksum"))
    );
}

#[test]
fn segment_past_its_pv_is_a_typed_error() {
    let Some(dir) = guest("rhel") else { return };
    let (mut pv, m, text) = rhel_pv(&dir);
    // swap's stripe starts at the PV's last extents; move it far past the PV's end
    let at = text.find("swap {").unwrap();
    let rel = text[at..].find("\"pv0\", ").unwrap() + at + "\"pv0\", ".len();
    let end = rel + text[rel..].find('\n').unwrap();
    let patched = format!("{}100000{}", &text[..rel], &text[end..]);
    write_text(&mut pv, &m, m.text_off, patched.as_bytes(), None);
    let (vgs, e) = lvm::assemble(vec![open_pv(pv).unwrap().unwrap()]);
    assert!(e.is_empty(), "{e:?}");
    match vgs[0].open("swap") {
        Err(LvmError::BadSegment { lv, what, .. }) => {
            assert_eq!(lv, "swap");
            assert!(what.contains("past"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    // the root LV is untouched and still opens
    assert!(vgs[0].open("root").is_ok());
}

#[test]
fn thin_and_raid_lvs_are_refused_by_name() {
    let Some(dir) = guest("rhel") else { return };
    let (mut pv, m, text) = rhel_pv(&dir);
    let patched = text.replacen("type = \"striped\"", "type = \"thin\"", 1);
    write_text(&mut pv, &m, m.text_off, patched.as_bytes(), None);
    let (vgs, _) = lvm::assemble(vec![open_pv(pv).unwrap().unwrap()]);
    let refused: Vec<String> = vgs[0]
        .logical_volumes()
        .into_iter()
        .filter_map(|(n, r)| match r {
            Err(LvmError::Unsupported { lv, kind, .. }) => Some(format!("{n} {lv} {kind}")),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].starts_with("root root segment type thin"),
        "{refused:?}"
    );
}
