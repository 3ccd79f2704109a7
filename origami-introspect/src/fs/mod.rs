//! Guest file systems: one small trait, [`FileSystem`], with an ext2/3/4 implementation
//! ([`Ext4Fs`], through `ext4-view`) and a FAT12/16/32 one ([`FatFs`], through `fatfs`,
//! wrapped so nothing is ever written back), plus the guest's assembled tree
//! ([`GuestTree`]) in which paths are resolved the way the guest would resolve them.
//!
//! A [`FileSystem`] answers for paths *inside one file system* whose directory components
//! are already known not to be symlinks; following links, `..` and mount points is the
//! tree's job, so that a guest-written link can never point outside the guest. Both
//! libraries are treated as possibly panicking on hostile metadata: every call into them is
//! made under `catch_unwind`, and a panic becomes [`Error::FileSystem`](crate::Error).
//!
//! ```no_run
//! use std::sync::Arc;
//! use origami_core::FileSource;
//! use origami_introspect::fs::{open_filesystem, GuestTree};
//!
//! let fs = open_filesystem(Arc::new(FileSource::open("rootfs.ext4")?))?;
//! let tree = GuestTree::single(fs);
//! let hosts = tree.read_file(b"/etc/hosts", 1 << 20)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use origami_core::ReadAt;
pub use origami_frame::FileType;

use crate::error::{Error, Result};

mod btrfs;
mod ext4;
mod fat;
pub mod fstab;
pub mod ntfs;
mod path;
mod read_error;
mod tree;
mod xfs;

pub use btrfs::{BtrfsFs, BtrfsOptions, Subvolume};
pub use ext4::{Ext4Fs, Ext4Options};
pub use fat::FatFs;
pub use ntfs::{NtfsFs, NtfsMeta};
pub use path::{display_path, join_path};
pub use tree::{GuestTree, Mount, Resolved, WalkControl, WalkEntry, WalkLimits, MAX_SYMLINKS};
pub use xfs::{XfsFs, XfsOptions};

/// The kind of a guest file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// ext2, ext3 or ext4.
    Ext4,
    /// FAT12, FAT16 or FAT32 (vfat).
    Fat,
    /// XFS (v4 or v5).
    Xfs,
    /// btrfs.
    Btrfs,
    /// NTFS (read-only, through the `ntfs` crate).
    Ntfs,
}

impl FsKind {
    /// A short name, as `/etc/fstab` would spell the type (`ext4`, `vfat`).
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext4 => "ext4",
            FsKind::Fat => "vfat",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
            FsKind::Ntfs => "ntfs",
        }
    }
}

/// What a file system says about itself: how fstab lines name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    /// Its kind.
    pub kind: FsKind,
    /// The file-system UUID as `blkid` prints it: ext4 `7d1e0000-...`, FAT `1234-ABCD`.
    pub uuid: Option<String>,
    /// The volume label, when set.
    pub label: Option<String>,
    /// Where it was read from (image, partition).
    pub source: String,
}

/// The metadata of one entry, as `lstat` would give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// File, directory, symlink, device, ...
    pub file_type: FileType,
    /// Permission bits, `st_mode & 0o7777`.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Size in bytes (for a symlink, the length of its target).
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// An id unique within its file system (the inode number on ext4), used to read an
    /// entry again without resolving its path and to stop a corrupt tree from looping;
    /// 0 when unknown.
    pub ino: u64,
    /// FAT attribute letters (`+r`, `+h`, `+s`), empty elsewhere.
    pub fat_attrs: String,
    /// What NTFS keeps beyond the above (times, attributes, links, streams, reparse tag);
    /// `None` on other file systems.
    pub ntfs: Option<Box<NtfsMeta>>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (raw bytes: guest names need not be UTF-8).
    pub name: Vec<u8>,
    /// Its metadata (not following a symlink).
    pub stat: Stat,
}

/// Read-only access to one guest file system.
///
/// Paths are absolute within the file system (`/etc/hosts`), raw bytes, and the caller
/// guarantees that no directory component is a symlink: implementations never follow
/// symlinks, so a guest link can only be followed by [`GuestTree`], inside the guest.
///
/// A file system is `Send + Sync`: one opened guest is shared by the threads that read it
/// (the file crawler's hashing threads), rather than opened again per thread.
///
/// Naming: a method named `*_by_inode` takes the entry's path and its [`Stat::ino`] (as this
/// file system gave it, 0 when unknown) and reads by inode where it can, skipping the
/// resolution of `path`, which still names the entry in errors (as ext4-view's
/// `read_dir_by_inode`). [`GuestTree`] names its methods the same way; "at" is left to
/// [`ReadAt::read_at`] (at a byte offset).
pub trait FileSystem: Send + Sync {
    /// How the file system names itself.
    fn info(&self) -> FsInfo;
    /// The metadata of `path` itself (a symlink is not followed).
    fn lstat(&self, path: &[u8]) -> Result<Stat>;
    /// The entries of directory `path`, without `.` and `..`; at most `limit` of them
    /// (more is an [`Error::LimitExceeded`]).
    fn read_dir(&self, path: &[u8], limit: usize) -> Result<Vec<DirEntry>>;
    /// The target of symlink `path`, as stored.
    fn read_link(&self, path: &[u8]) -> Result<Vec<u8>>;
    /// A reader of regular file `path`'s content.
    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + '_>>;
    /// As [`FileSystem::read_dir`], for a directory whose [`Stat::ino`] (as this file
    /// system gave it, 0 when unknown) is `ino`: a file system that can read by inode
    /// skips resolving `path` again. The default reads by path (as do the other
    /// `*_by_inode` defaults).
    fn read_dir_by_inode(&self, path: &[u8], ino: u64, limit: usize) -> Result<Vec<DirEntry>> {
        let _ = ino;
        self.read_dir(path, limit)
    }
    /// What [`FileSystem::read_dir_by_inode`] gives as the [`Stat`] of an entry at `path`
    /// whose inode is `ino` (not 0). The default `lstat`s `path`.
    fn lstat_by_inode(&self, path: &[u8], ino: u64) -> Result<Stat> {
        let mut st = self.lstat(path)?;
        st.ino = ino;
        Ok(st)
    }
    /// As [`FileSystem::read_dir_by_inode`], but an entry whose metadata `known(inode,
    /// name)` gives (a caller that knows the entry's inode did not change) is not
    /// `lstat`ed: its [`Stat`] is the one given. The default ignores `known`.
    fn read_dir_known(
        &self,
        path: &[u8],
        ino: u64,
        limit: usize,
        known: &dyn Fn(u64, &[u8]) -> Option<Stat>,
    ) -> Result<Vec<DirEntry>> {
        let _ = known;
        self.read_dir_by_inode(path, ino, limit)
    }
    /// As [`FileSystem::read_link`], by inode when `ino` is not 0 (see
    /// [`FileSystem::read_dir_by_inode`]).
    fn read_link_by_inode(&self, path: &[u8], ino: u64) -> Result<Vec<u8>> {
        let _ = ino;
        self.read_link(path)
    }
    /// As [`FileSystem::open`], by inode when `ino` is not 0 (see
    /// [`FileSystem::read_dir_by_inode`]).
    fn open_by_inode(&self, path: &[u8], ino: u64) -> Result<Box<dyn Read + '_>> {
        let _ = ino;
        self.open(path)
    }
    /// The hex sha256 of regular file `path` (inode `ino`, as for
    /// [`FileSystem::read_dir_by_inode`]) when the file system knows it without the caller
    /// streaming the content (an incremental crawl's cache, see [`crate::incremental`]);
    /// `None` (the default) lets the caller read and hash the file itself.
    fn sha256_by_inode(&self, path: &[u8], ino: u64) -> Option<Result<String>> {
        let _ = (path, ino);
        None
    }
    /// For a file system with subvolumes (btrfs), the same file system showing the
    /// subvolume that fstab's mount `options` select (`subvol=`, `subvolid=`; the default
    /// one without either); `None` for a file system without subvolumes (the default).
    fn open_subvolume(&self, options: &str) -> Option<Result<Box<dyn FileSystem>>> {
        let _ = options;
        None
    }
}

/// Opens the file system on `source`, recognised by its magic: ext2/3/4 (superblock magic
/// `0xEF53` at byte 1080), XFS (`XFSB` at byte 0), btrfs (`_BHRfS_M` at byte 65600), NTFS
/// (OEM id `NTFS` in the boot sector) or FAT (a valid boot sector).
pub fn open_filesystem(source: Arc<dyn ReadAt>) -> Result<Box<dyn FileSystem>> {
    open_filesystem_with(source, Ext4Options::default())
}

/// As [`open_filesystem`], with the options of an ext4 file system (whose
/// `verify_checksums` applies to XFS and btrfs metadata too).
pub fn open_filesystem_with(
    source: Arc<dyn ReadAt>,
    ext4: Ext4Options,
) -> Result<Box<dyn FileSystem>> {
    match sniff(&*source)? {
        Some(FsKind::Ext4) => Ok(Box::new(Ext4Fs::open_with(source, ext4)?)),
        Some(FsKind::Fat) => Ok(Box::new(FatFs::open(source)?)),
        Some(FsKind::Xfs) => Ok(Box::new(XfsFs::open_with(
            source,
            XfsOptions {
                verify_checksums: ext4.verify_checksums,
            },
        )?)),
        Some(FsKind::Btrfs) => Ok(Box::new(BtrfsFs::open_with(
            source,
            BtrfsOptions {
                verify_checksums: ext4.verify_checksums,
            },
        )?)),
        Some(FsKind::Ntfs) => Ok(Box::new(NtfsFs::open(source)?)),
        None => Err(Error::FileSystem {
            source_name: source.name(),
            fs: "unknown",
            path: None,
            what: "no ext2/3/4, XFS, btrfs, NTFS or FAT file system recognised".into(),
        }),
    }
}

/// Which file system `source` holds, if any this crate reads.
pub fn sniff(source: &dyn ReadAt) -> Result<Option<FsKind>> {
    if source.len() >= 2048 {
        let mut magic = [0u8; 2];
        source.read_at(1024 + ext4::MAGIC_OFFSET as u64, &mut magic)?;
        if origami_core::bytes::le16(&magic, 0) == ext4::MAGIC {
            return Ok(Some(FsKind::Ext4));
        }
    }
    if source.len() >= 512 {
        let mut magic = [0u8; 4];
        source.read_at(0, &mut magic)?;
        if &magic == xfs::MAGIC {
            return Ok(Some(FsKind::Xfs));
        }
    }
    if source.len() >= btrfs::SUPER_OFFSET + 4096 {
        let mut magic = [0u8; 8];
        source.read_at(btrfs::SUPER_OFFSET + btrfs::MAGIC_OFFSET, &mut magic)?;
        if &magic == btrfs::MAGIC {
            return Ok(Some(FsKind::Btrfs));
        }
    }
    if source.len() >= 512 {
        let mut boot = [0u8; 512];
        source.read_at(0, &mut boot)?;
        if ntfs::looks_like_ntfs(&boot) {
            return Ok(Some(FsKind::Ntfs));
        }
        if fat::looks_like_fat(&boot) {
            return Ok(Some(FsKind::Fat));
        }
    }
    Ok(None)
}

/// A file system's 16-byte UUID in its usual text form (`8-4-4-4-12` lowercase hex); other
/// lengths as plain hex.
pub(crate) fn format_uuid(u: &[u8]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    if h.len() != 32 {
        return h;
    }
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Runs `f` (a call into a file-system library), turning a panic into an error: the last
/// line of defence against a library bug triggered by hostile metadata.
pub(crate) fn guarded<T>(
    source_name: &str,
    fs: &'static str,
    path: &[u8],
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::FileSystem {
                source_name: source_name.to_string(),
                fs,
                path: Some(display_path(path)),
                what: format!("the file-system library panicked: {msg}"),
            })
        }
    }
}

impl std::fmt::Debug for dyn FileSystem + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FileSystem").field(&self.info()).finish()
    }
}
