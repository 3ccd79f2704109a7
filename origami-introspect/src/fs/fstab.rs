//! Assembling the guest's tree the way the guest would: find the root file system (the one
//! with `/etc/os-release` or `/usr/lib/os-release`), read its `/etc/fstab`, and mount the
//! other volumes at their mount points, matched by `UUID=`, `LABEL=`, `PARTUUID=`,
//! `PARTLABEL=`, `/dev/disk/by-*/` links or kernel device names (`/dev/sda2`, `/dev/vdb1`,
//! `/dev/nvme0n1p2`, `/dev/mmcblk0p1`), or LVM2 names (`/dev/mapper/VG-LV`, with `-` in
//! either name doubled, `/dev/VG/LV`, `/dev/disk/by-id/dm-name-VG-LV`). An EFI system partition that fstab does not mount
//! (an unconfigured fstab, or one left to systemd's GPT auto-mounting) is placed at
//! `/boot/efi`, where distributions mount it.
//!
//! A btrfs volume shows its default subvolume; an fstab line with `subvol=` or
//! `subvolid=` mounts that subvolume of the volume it names (which may also be mounted
//! elsewhere, as `/` and `/home` of one btrfs commonly are).
//!
//! The root is the volume with `/etc/os-release` or `/usr/lib/os-release`, else one with
//! an older release file (`/etc/system-release`, `/etc/redhat-release`, ...: CentOS 6,
//! old SUSE). A btrfs volume whose default subvolume is neither (Fedora and Ubuntu keep
//! the root in a subvolume `root` or `@` of the top level and mount it with `subvol=`)
//! is searched one level down: the first subvolume of its top level with a release file
//! is the root, or the one its own fstab's `/` line selects.
//!
//! Limits: swap, network and pseudo file systems are skipped, as are lines the guest
//! itself does not mount at boot (`noauto`), removable media (`/dev/cdrom`, `/dev/sr0`,
//! `/dev/fd0`: never on a disk image) and `nofail` lines whose device is not on the
//! target; bind mounts are not modelled; any other fstab line naming no volume of the
//! target is reported, not fatal.

use super::path::display_path;
use super::{FileSystem, FsKind, GuestTree};
use crate::error::{Error, Result};

/// The GPT type GUID of an EFI system partition.
pub const ESP_TYPE_GUID: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// The longest `/etc/fstab` read (the default of [`crate::Limits::fstab`]).
pub const MAX_FSTAB: u64 = crate::Limits::DEFAULT.fstab;

/// Where a volume sits on the target's disks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionInfo {
    /// 1-based partition number, as Linux numbers them.
    pub number: u32,
    /// PARTUUID (GPT unique GUID, or MBR `<disk id>-<nn>`), lowercase.
    pub uuid: Option<String>,
    /// PARTLABEL (GPT partition name).
    pub label: Option<String>,
    /// GPT type GUID (lowercase) or MBR type as `0x83`.
    pub type_id: String,
}

/// A file system found on the target, with where it was found.
pub struct Volume {
    /// The opened file system.
    pub fs: Box<dyn FileSystem>,
    /// Which disk of the target (0-based, in the order given).
    pub disk: usize,
    /// The partition it fills, or `None` for a whole-disk file system (or a logical volume).
    pub partition: Option<PartitionInfo>,
    /// The LVM2 logical volume it fills, when it is on one (its `disk` is then the disk of
    /// the VG's first PV found, and `partition` is `None`).
    pub lvm: Option<LvmName>,
}

/// An LVM2 logical volume's names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LvmName {
    /// The volume group.
    pub vg: String,
    /// The logical volume.
    pub lv: String,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("fs", &self.fs.info())
            .field("disk", &self.disk)
            .field("partition", &self.partition)
            .field("lvm", &self.lvm)
            .finish()
    }
}

impl Volume {
    fn is_esp(&self) -> bool {
        self.fs.info().kind == FsKind::Fat
            && (self.partition.as_ref().is_some_and(|p| {
                p.type_id.eq_ignore_ascii_case(ESP_TYPE_GUID) || p.type_id == "0xef"
            }) || self
                .fs
                .lstat(b"/EFI")
                .is_ok_and(|s| s.file_type == super::FileType::Dir))
    }

    /// A Windows system volume: NTFS with the SYSTEM registry hive.
    fn is_windows_system(&self) -> bool {
        self.fs.info().kind == FsKind::Ntfs
            && self.fs.lstat(b"/Windows/System32/config/SYSTEM").is_ok()
    }

    fn has_os_release(&self) -> bool {
        has_os_release(&*self.fs)
    }

    /// A release file older than os-release (and os-release itself).
    fn has_release_file(&self) -> bool {
        has_release_file(&*self.fs)
    }
}

/// The files that name the distribution where os-release is missing (CentOS 6, RHEL 6,
/// SLES 11, old Alpine); see [`crate::disk::os`].
pub const RELEASE_FILES: [&str; 7] = [
    "/etc/system-release",
    "/etc/redhat-release",
    "/etc/centos-release",
    "/etc/fedora-release",
    "/etc/SuSE-release",
    "/etc/alpine-release",
    "/etc/debian_version",
];

fn has_os_release(fs: &dyn FileSystem) -> bool {
    fs.lstat(b"/etc/os-release").is_ok() || fs.lstat(b"/usr/lib/os-release").is_ok()
}

fn has_release_file(fs: &dyn FileSystem) -> bool {
    has_os_release(fs) || RELEASE_FILES.iter().any(|f| fs.lstat(f.as_bytes()).is_ok())
}

/// The most top-level entries of a btrfs volume looked at for a root subvolume.
const MAX_SUBVOLUME_CANDIDATES: usize = 256;

/// The guest's root as a subvolume of `v`'s top level, for a volume with subvolumes whose
/// default one is not a root: the subvolume its own fstab mounts at `/`, else the first
/// (by name) holding a release file.
fn root_subvolume(v: &Volume) -> Option<Box<dyn FileSystem>> {
    let top = v.fs.open_subvolume("subvolid=5")?.ok()?;
    let mut entries = top.read_dir(b"/", MAX_SUBVOLUME_CANDIDATES).ok()?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in entries {
        if e.stat.file_type != super::FileType::Dir {
            continue;
        }
        let Ok(name) = std::str::from_utf8(&e.name) else {
            continue;
        };
        if name.contains(',') {
            continue;
        }
        // A plain directory is not a subvolume: opening it is an error, skipped.
        let Some(Ok(fs)) = v.fs.open_subvolume(&format!("subvol=/{name}")) else {
            continue;
        };
        if !has_release_file(&*fs) {
            continue;
        }
        // Its own fstab may say which subvolume is `/` (a snapshot can look like a root).
        let own = parse_fstab(&String::from_utf8_lossy(&small_file(&*fs, b"/etc/fstab")))
            .into_iter()
            .find(|l| l.file == "/" && selects_subvolume(&l.options))
            .and_then(|l| v.fs.open_subvolume(&l.options))
            .and_then(std::result::Result::ok)
            .filter(|fs| has_release_file(&**fs));
        return Some(own.unwrap_or(fs));
    }
    None
}

/// A regular file of `fs` (not through a symlink) of at most [`MAX_FSTAB`] bytes; empty
/// when it is missing, larger or unreadable.
fn small_file(fs: &dyn FileSystem, path: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let ok = fs
        .lstat(path)
        .is_ok_and(|s| s.file_type == super::FileType::File && s.size <= MAX_FSTAB);
    let mut out = Vec::new();
    if ok {
        if let Ok(r) = fs.open(path) {
            if r.take(MAX_FSTAB).read_to_end(&mut out).is_err() {
                out.clear();
            }
        }
    }
    out
}

/// True when fstab says the guest does not mount the line at boot (`noauto`), or mounts
/// it only when its device is there (`nofail`).
fn has_option(options: &str, name: &str) -> bool {
    options.split(',').any(|o| o == name)
}

/// Removable-media device names (`/dev/cdrom`, `/dev/sr0`, `/dev/fd0`): never on a disk
/// image.
fn is_removable_media(spec: &str) -> bool {
    let Some(dev) = spec.strip_prefix("/dev/") else {
        return false;
    };
    let numbered = |prefix: &str| {
        dev.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    matches!(dev, "cdrom" | "cdrw" | "dvd" | "dvdrw" | "floppy")
        || dev.starts_with("cdrom")
        || numbered("sr")
        || numbered("scd")
        || numbered("fd")
}

/// One line of `/etc/fstab`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FstabEntry {
    /// What is mounted (`UUID=...`, `/dev/sda1`, ...).
    pub spec: String,
    /// Where (`/boot/efi`).
    pub file: String,
    /// File-system type (`ext4`, `vfat`, `swap`, ...).
    pub vfstype: String,
    /// Mount options.
    pub options: String,
    /// 1-based line number.
    pub line: usize,
}

/// Decodes fstab's octal escapes (`\040` is a space).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (u32::from(b[i + 1] - b'0') << 6)
                | (u32::from(b[i + 2] - b'0') << 3)
                | u32::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses fstab text: comments and blank lines skipped, lines of fewer than two fields
/// ignored.
pub fn parse_fstab(text: &str) -> Vec<FstabEntry> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().take(4).collect();
        let [spec, file, rest @ ..] = f.as_slice() else {
            continue;
        };
        out.push(FstabEntry {
            spec: unescape(spec),
            file: unescape(file),
            vfstype: rest.first().map(|s| s.to_string()).unwrap_or_default(),
            options: rest.get(1).map(|s| s.to_string()).unwrap_or_default(),
            line: i + 1,
        });
    }
    out
}

/// How an fstab spec names a volume.
#[derive(Debug, PartialEq, Eq)]
enum Spec {
    Uuid(String),
    Label(String),
    PartUuid(String),
    PartLabel(String),
    Device { disk: usize, partition: Option<u32> },
    Lvm { vg: String, lv: String },
}

/// The VG and LV of a device-mapper name: `VG-LV`, where a `-` inside either name is
/// written `--` (`my--vg-lv--1` is VG `my-vg`, LV `lv-1`).
pub fn split_mapper_name(name: &str) -> Option<(String, String)> {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' {
            if b.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            let (vg, lv) = (&name[..i], &name[i + 1..]);
            if vg.is_empty() || lv.is_empty() {
                return None;
            }
            return Some((vg.replace("--", "-"), lv.replace("--", "-")));
        }
        i += 1;
    }
    None
}

/// `sda2` -> (0, Some(2)); `vdb` -> (1, None); `nvme0n1p2` -> (0, Some(2)).
fn parse_device(name: &str) -> Option<(usize, Option<u32>)> {
    for prefix in ["sd", "vd", "hd", "xvd"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let letters: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            let digits = &rest[letters.len()..];
            if letters.is_empty() || letters.len() > 2 {
                return None;
            }
            let mut disk = 0usize;
            for c in letters.bytes() {
                disk = disk * 26 + usize::from(c - b'a') + 1;
            }
            let part = if digits.is_empty() {
                None
            } else {
                Some(digits.parse().ok()?)
            };
            return Some((disk - 1, part));
        }
    }
    for (prefix, sep) in [("nvme", "n1"), ("mmcblk", "")] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let disk: usize = digits.parse().ok()?;
            let rest = rest[digits.len()..].strip_prefix(sep)?;
            let part = match rest.strip_prefix('p') {
                Some(n) => Some(n.parse().ok()?),
                None if rest.is_empty() => None,
                None => return None,
            };
            return Some((disk, part));
        }
    }
    None
}

fn parse_spec(spec: &str) -> Option<Spec> {
    let (key, value) = match spec.split_once('=') {
        Some((k, v)) => (k, v.trim_matches('"')),
        None => {
            let dev = spec.strip_prefix("/dev/")?;
            if let Some(v) = dev.strip_prefix("disk/by-uuid/") {
                return Some(Spec::Uuid(v.into()));
            }
            if let Some(v) = dev.strip_prefix("disk/by-label/") {
                return Some(Spec::Label(unescape(&v.replace("\\x20", "\\040"))));
            }
            if let Some(v) = dev.strip_prefix("disk/by-partuuid/") {
                return Some(Spec::PartUuid(v.into()));
            }
            if let Some(v) = dev.strip_prefix("disk/by-partlabel/") {
                return Some(Spec::PartLabel(v.into()));
            }
            let mapper = dev
                .strip_prefix("mapper/")
                .or_else(|| dev.strip_prefix("disk/by-id/dm-name-"));
            if let Some(name) = mapper {
                let (vg, lv) = split_mapper_name(name)?;
                return Some(Spec::Lvm { vg, lv });
            }
            if let Some((vg, lv)) = dev.split_once('/') {
                if !vg.is_empty() && !lv.is_empty() && !lv.contains('/') && vg != "disk" {
                    return Some(Spec::Lvm {
                        vg: vg.into(),
                        lv: lv.into(),
                    });
                }
            }
            let (disk, partition) = parse_device(dev)?;
            return Some(Spec::Device { disk, partition });
        }
    };
    match key {
        "UUID" => Some(Spec::Uuid(value.into())),
        "LABEL" => Some(Spec::Label(value.into())),
        "PARTUUID" => Some(Spec::PartUuid(value.into())),
        "PARTLABEL" => Some(Spec::PartLabel(value.into())),
        _ => None,
    }
}

fn matches(spec: &Spec, v: &Volume) -> bool {
    let info = v.fs.info();
    let eq = |a: &Option<String>, b: &str| a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(b));
    match spec {
        Spec::Uuid(u) => eq(&info.uuid, u),
        Spec::Label(l) => info.label.as_deref() == Some(l.as_str()),
        Spec::PartUuid(u) => v.partition.as_ref().is_some_and(|p| eq(&p.uuid, u)),
        Spec::PartLabel(l) => v
            .partition
            .as_ref()
            .is_some_and(|p| p.label.as_deref() == Some(l.as_str())),
        Spec::Device { disk, partition } => {
            v.lvm.is_none()
                && v.disk == *disk
                && v.partition.as_ref().map(|p| p.number) == *partition
        }
        Spec::Lvm { vg, lv } => v.lvm.as_ref().is_some_and(|n| &n.vg == vg && &n.lv == lv),
    }
}

/// The guest's tree and what assembling it noticed.
#[derive(Debug)]
pub struct Assembly {
    /// The assembled tree.
    pub tree: GuestTree,
    /// Where the root came from.
    pub root_source: String,
    /// fstab lines that named no volume, volumes left unmounted, and the like.
    pub notes: Vec<String>,
}

const SKIP_TYPES: &[&str] = &[
    "swap",
    "proc",
    "sysfs",
    "tmpfs",
    "devpts",
    "devtmpfs",
    "nfs",
    "nfs4",
    "cifs",
    "smbfs",
    "none",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "efivarfs",
    "bpf",
    "overlay",
];

/// True when fstab mount options choose a subvolume (btrfs `subvol=`, `subvolid=`).
fn selects_subvolume(options: &str) -> bool {
    options
        .split(',')
        .any(|o| o.starts_with("subvol=") || o.starts_with("subvolid="))
}

/// Keeps a second handle on `v`'s file system when it has subvolumes, so that later
/// fstab lines can mount other subvolumes of it.
fn keep_subvolume_source(sources: &mut Vec<Volume>, v: &Volume) {
    if let Some(Ok(fs)) = v.fs.open_subvolume("") {
        sources.push(Volume {
            fs,
            disk: v.disk,
            partition: v.partition.clone(),
            lvm: v.lvm.clone(),
        });
    }
}

/// Builds the guest's tree from the volumes found on the target's disks.
pub fn assemble(volumes: Vec<Volume>) -> Result<Assembly> {
    assemble_with(volumes, MAX_FSTAB, &crate::Budget::unlimited())
}

/// As [`assemble`], reading an `/etc/fstab` of at most `max_fstab` bytes, reserved on the
/// crawl's memory `budget` while it is parsed. An fstab over either bound is a note of
/// the assembly (the tree is then the root alone), as is one that cannot be read.
pub fn assemble_with(
    volumes: Vec<Volume>,
    max_fstab: u64,
    budget: &crate::Budget,
) -> Result<Assembly> {
    let mut volumes: Vec<Option<Volume>> = volumes.into_iter().map(Some).collect();
    if !volumes
        .iter()
        .any(|v| v.as_ref().is_some_and(Volume::has_release_file))
    {
        // A root in a btrfs subvolume other than the default one (Fedora's `root`).
        for v in volumes.iter_mut().flatten() {
            if let Some(fs) = root_subvolume(v) {
                v.fs = fs;
                break;
            }
        }
    }
    if !volumes
        .iter()
        .any(|v| v.as_ref().is_some_and(Volume::has_release_file))
    {
        if let Some(i) = volumes
            .iter()
            .position(|v| v.as_ref().is_some_and(Volume::is_windows_system))
        {
            return Ok(assemble_windows(volumes, i));
        }
    }
    let root_index = volumes
        .iter()
        .position(|v| v.as_ref().is_some_and(Volume::has_os_release))
        .or_else(|| {
            volumes
                .iter()
                .position(|v| v.as_ref().is_some_and(Volume::has_release_file))
        })
        .ok_or_else(|| Error::NoRoot {
            looked_at: volumes
                .iter()
                .flatten()
                .map(|v| v.fs.info().source)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let root = volumes
        .get_mut(root_index)
        .and_then(Option::take)
        .ok_or_else(|| Error::NoRoot {
            looked_at: String::new(),
        })?;
    let root_source = root.fs.info().source;
    // Handles on the btrfs file systems placed in the tree, for fstab lines mounting
    // another subvolume of one (`subvol=`, `subvolid=`).
    let mut subvol_sources: Vec<Volume> = Vec::new();
    keep_subvolume_source(&mut subvol_sources, &root);
    let mut tree = GuestTree::single(root.fs);
    let mut notes = Vec::new();
    let fstab = match crate::disk::read_whole(&tree, b"/etc/fstab", max_fstab, budget) {
        Ok((t, _held)) => parse_fstab(&String::from_utf8_lossy(&t)),
        Err(Error::NotFound { .. }) => Vec::new(),
        Err(e) => {
            notes.push(format!("/etc/fstab: {e}"));
            Vec::new()
        }
    };
    let mut wanted: Vec<&FstabEntry> = fstab
        .iter()
        .filter(|e| e.file.starts_with('/') && e.file != "/")
        .filter(|e| !SKIP_TYPES.contains(&e.vfstype.as_str()))
        .filter(|e| !has_option(&e.options, "noauto") && !is_removable_media(&e.spec))
        .collect();
    // Parents before children, as `mount -a` would need them.
    wanted.sort_by_key(|e| e.file.matches('/').count());
    for entry in wanted {
        // The guest boots without a `nofail` line's device: its absence is no problem.
        let nofail = has_option(&entry.options, "nofail");
        let Some(spec) = parse_spec(&entry.spec) else {
            if nofail {
                continue;
            }
            notes.push(format!(
                "/etc/fstab line {}: {} is not a device this crawler can match",
                entry.line, entry.spec
            ));
            continue;
        };
        let found = volumes
            .iter_mut()
            .find(|v| v.as_ref().is_some_and(|v| matches(&spec, v)))
            .and_then(Option::take);
        if selects_subvolume(&entry.options) {
            if let Some(v) = found {
                keep_subvolume_source(&mut subvol_sources, &v);
            }
            let opened = subvol_sources
                .iter()
                .find(|v| matches(&spec, v))
                .and_then(|v| v.fs.open_subvolume(&entry.options));
            match opened {
                Some(Ok(fs)) => tree.mount(entry.file.as_bytes(), fs),
                Some(Err(e)) => notes.push(format!("/etc/fstab line {}: {e}", entry.line)),
                None if nofail => {}
                None => notes.push(format!(
                    "/etc/fstab line {}: {} for {} is on no disk of the target (as a file system with subvolumes)",
                    entry.line, entry.spec, entry.file
                )),
            }
            continue;
        }
        match found {
            Some(v) => {
                keep_subvolume_source(&mut subvol_sources, &v);
                tree.mount(entry.file.as_bytes(), v.fs)
            }
            None if nofail => {}
            None => notes.push(format!(
                "/etc/fstab line {}: {} for {} is on no disk of the target",
                entry.line, entry.spec, entry.file
            )),
        }
    }
    let efi_taken = tree.mounts().iter().any(|m| m.point == b"/boot/efi");
    if !efi_taken {
        if let Some(esp) = volumes
            .iter_mut()
            .find(|v| v.as_ref().is_some_and(Volume::is_esp))
            .and_then(Option::take)
        {
            tree.mount(b"/boot/efi", esp.fs);
        }
    }
    for v in volumes.into_iter().flatten() {
        notes.push(format!(
            "{} is not mounted in the guest tree",
            v.fs.info().source
        ));
    }
    Ok(Assembly {
        tree,
        root_source,
        notes,
    })
}

/// A Windows guest's tree: the system volume (drive C:) as `/`. Windows mounts no EFI
/// system partition and no Microsoft reserved partition (which holds no file system), so
/// those are left out silently; any other volume is noted as not mounted (drive letters
/// live in the SYSTEM hive's `MountedDevices`, not modelled here).
fn assemble_windows(mut volumes: Vec<Option<Volume>>, root_index: usize) -> Assembly {
    let root = volumes[root_index].take();
    let root_fs = match root {
        Some(r) => r.fs,
        None => unreachable!("the root index names a volume"),
    };
    let root_source = root_fs.info().source;
    let tree = GuestTree::single(root_fs);
    let notes = volumes
        .into_iter()
        .flatten()
        .filter(|v| !v.is_esp())
        .map(|v| format!("{} is not mounted in the guest tree", v.fs.info().source))
        .collect();
    Assembly {
        tree,
        root_source,
        notes,
    }
}

/// The mount points of a tree as text (`/`, `/boot/efi`), for reports.
pub fn mount_points(tree: &GuestTree) -> Vec<String> {
    tree.mounts()
        .iter()
        .map(|m| display_path(&m.point))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fstab_lines() {
        let t = "# c\nUUID=ab-cd / ext4 defaults 0 1\n\nLABEL=My\\040Disk /data ext4 rw\n/dev/sda1 none swap sw\nbad\n";
        let e = parse_fstab(t);
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].spec, "LABEL=My Disk");
        assert_eq!(e[1].line, 4);
        assert_eq!(e[2].vfstype, "swap");
    }

    #[test]
    fn parses_device_names() {
        assert_eq!(parse_device("sda2"), Some((0, Some(2))));
        assert_eq!(parse_device("vdb"), Some((1, None)));
        assert_eq!(parse_device("sdaa1"), Some((26, Some(1))));
        assert_eq!(parse_device("nvme0n1p2"), Some((0, Some(2))));
        assert_eq!(parse_device("mmcblk1p1"), Some((1, Some(1))));
        assert_eq!(parse_device("loop0"), None);
        assert_eq!(
            parse_spec("/dev/disk/by-uuid/1234-ABCD"),
            Some(Spec::Uuid("1234-ABCD".into()))
        );
        assert_eq!(
            parse_spec("/dev/mapper/rhel-root"),
            Some(Spec::Lvm {
                vg: "rhel".into(),
                lv: "root".into()
            })
        );
        assert_eq!(
            parse_spec("/dev/mapper/my--vg-lv--a--b"),
            Some(Spec::Lvm {
                vg: "my-vg".into(),
                lv: "lv-a-b".into()
            })
        );
        assert_eq!(
            parse_spec("/dev/my-vg/lv-a"),
            Some(Spec::Lvm {
                vg: "my-vg".into(),
                lv: "lv-a".into()
            })
        );
        assert_eq!(parse_spec("/dev/mapper/nodash"), None);
        assert_eq!(parse_spec("/dev/mapper/-x"), None);
        assert_eq!(parse_spec("/dev/disk/by-foo/x"), None);
        assert_eq!(
            parse_spec("PARTUUID=\"x\""),
            Some(Spec::PartUuid("x".into()))
        );
    }
}
