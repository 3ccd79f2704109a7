//! ext2/3/4 through `ext4-view` (which replays the journal itself), over a [`ReadAt`].
//!
//! The superblock is checked here before `ext4-view` sees it, so that a hostile size field
//! cannot make it allocate per-group tables for a disk larger than the image.
//!
//! `ext4-view` is vendored (`vendor/ext4-view`, see its `ORIGAMI-PATCHES.md`) with two
//! changes that make a full walk 3-4x faster: an 8 MiB set-associative block cache (the
//! original held 64 blocks, searched linearly, and copied each block twice) and by-inode
//! access (`read_dir_by_inode`, `open_by_inode`, ...): the walk reads each directory by the
//! inode number of its entry instead of resolving its path from `/` again. Its handle is
//! `Send + Sync` (`Arc` and mutexes instead of `Rc` and `RefCell`; the block cache locks one
//! set at a time), so an [`Ext4Fs`] is opened once and shared by the threads that read it.

use std::io::Read;
use std::sync::Arc;

use ext4_view::{Ext4, Ext4Error, Ext4Read};
use origami_core::ReadAt;
use origami_frame::FileType;

use super::{guarded, path::display_path, DirEntry, FileSystem, FsInfo, FsKind, Stat};
use crate::error::{Error, Result};
use origami_core::bytes::{le16, le32};

const FS: &str = "ext4";

/// The superblock's magic number, and its offset in the superblock (byte 1024 of the
/// file system).
pub(crate) const MAGIC: u16 = 0xEF53;
pub(crate) const MAGIC_OFFSET: usize = 0x38;

/// An ext2/3/4 file system, read-only.
pub struct Ext4Fs {
    fs: Ext4,
    info: FsInfo,
}

impl std::fmt::Debug for Ext4Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ext4Fs").field("info", &self.info).finish()
    }
}

/// The superblock fields checked before `ext4-view` is trusted with the image.
fn validate_superblock(source: &dyn ReadAt) -> Result<()> {
    let name = source.name();
    let bad = |what: String| Error::FileSystem {
        source_name: name.clone(),
        fs: FS,
        path: None,
        what: format!("superblock: {what}"),
    };
    if source.len() < 2048 {
        return Err(bad(format!("image of {} bytes is too small", source.len())));
    }
    let mut sb = [0u8; 1024];
    source.read_at(1024, &mut sb)?;
    if le16(&sb, MAGIC_OFFSET) != MAGIC {
        return Err(bad("bad magic at offset 0x438".into()));
    }
    let log_block = le32(&sb, 0x18);
    if log_block > 6 {
        return Err(bad(format!("block size 2^(10+{log_block}) is over 64 KiB")));
    }
    let block_size = 1024u64 << log_block;
    let incompat = le32(&sb, 0x60);
    let mut blocks = u64::from(le32(&sb, 0x4));
    if incompat & 0x80 != 0 {
        blocks |= u64::from(le32(&sb, 0x150)) << 32;
    }
    let blocks_per_group = le32(&sb, 0x20);
    let inodes_per_group = le32(&sb, 0x28);
    if blocks_per_group == 0 || inodes_per_group == 0 {
        return Err(bad("zero blocks or inodes per group".into()));
    }
    match blocks.checked_mul(block_size) {
        Some(bytes) if bytes <= source.len() => {}
        _ => {
            return Err(bad(format!(
                "{blocks} blocks of {block_size} bytes do not fit in the {} bytes of the image",
                source.len()
            )))
        }
    }
    Ok(())
}

/// How an ext4 file system is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ext4Options {
    /// Verify metadata checksums (`metadata_csum`) of directory blocks, inodes and extent
    /// blocks. Off by default: a checksum detects media corruption, not a hostile guest
    /// (which writes valid checksums), every structure is bounds-checked either way, and
    /// verifying costs two thirds of a full-tree walk (byte-wise crc32c of every directory
    /// block at every path look-up).
    pub verify_checksums: bool,
}

/// The superblock's read-only-compatible feature word, and its `metadata_csum` bit.
const RO_COMPAT_OFFSET: u64 = 1024 + 0x64;
const RO_COMPAT_METADATA_CSUM: u8 = 0x04; // bit 0x400 of the little-endian word: byte 1

/// The reader under `ext4-view`. It caches nothing: the vendored `ext4-view` keeps an
/// 8 MiB set-associative cache of 32 KiB groups of blocks (`vendor/ext4-view`), and a
/// second cache here only added a copy per miss. When checksums are not verified, it shows
/// `ext4-view` a superblock without the `metadata_csum` feature (nothing else changes: the
/// bit only asks for verification).
struct SourceReader {
    inner: Arc<dyn ReadAt>,
    hide_csum: bool,
}

impl Ext4Read for SourceReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.inner.read_at(start_byte, dst)?;
        let byte = RO_COMPAT_OFFSET + 1;
        if self.hide_csum && start_byte <= byte && byte < start_byte + dst.len() as u64 {
            if let Some(b) = dst.get_mut((byte - start_byte) as usize) {
                *b &= !RO_COMPAT_METADATA_CSUM;
            }
        }
        Ok(())
    }
}

fn file_type(t: ext4_view::FileType) -> FileType {
    use ext4_view::FileType as T;
    match t {
        T::BlockDevice => FileType::Block,
        T::CharacterDevice => FileType::Char,
        T::Directory => FileType::Dir,
        T::Fifo => FileType::Fifo,
        T::Regular => FileType::File,
        T::Socket => FileType::Socket,
        T::Symlink => FileType::Symlink,
    }
}

/// The ext4 inode number to read by, when the caller knows one (`Stat::ino` is 0 when not).
fn known_inode(ino: u64) -> Option<u32> {
    u32::try_from(ino).ok().filter(|&i| i != 0)
}

fn stat_of(m: &ext4_view::Metadata, ino: u64) -> Stat {
    Stat {
        file_type: file_type(m.file_type()),
        mode: u32::from(m.mode()) & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        size: m.len(),
        mtime: m.modified().seconds(),
        ino,
        fat_attrs: String::new(),
        ntfs: None,
    }
}

impl Ext4Fs {
    /// Opens the ext2/3/4 file system on `source` (journal replayed in memory), with
    /// the default [`Ext4Options`].
    pub fn open(source: Arc<dyn ReadAt>) -> Result<Ext4Fs> {
        Ext4Fs::open_with(source, Ext4Options::default())
    }

    /// Opens the ext2/3/4 file system on `source` with `options`.
    pub fn open_with(source: Arc<dyn ReadAt>, options: Ext4Options) -> Result<Ext4Fs> {
        validate_superblock(&*source)?;
        let name = source.name();
        let reader = SourceReader {
            inner: source,
            hide_csum: !options.verify_checksums,
        };
        let fs = guarded(&name, FS, b"/", || {
            Ext4::load(Box::new(reader)).map_err(|e| Error::FileSystem {
                source_name: name.clone(),
                fs: FS,
                path: None,
                what: e.to_string(),
            })
        })?;
        let label = fs.label().to_str().ok().map(str::to_string);
        let info = FsInfo {
            kind: FsKind::Ext4,
            uuid: Some(fs.uuid().to_string()),
            label: label.filter(|l| !l.is_empty()),
            source: name,
        };
        Ok(Ext4Fs { fs, info })
    }

    fn err(&self, path: &[u8], e: Ext4Error) -> Error {
        match e {
            Ext4Error::NotFound => Error::NotFound {
                path: display_path(path),
            },
            Ext4Error::NotADirectory => Error::NotADirectory {
                path: display_path(path),
            },
            e => Error::FileSystem {
                source_name: self.info.source.clone(),
                fs: FS,
                path: Some(display_path(path)),
                what: e.to_string(),
            },
        }
    }

    fn guard<T>(&self, path: &[u8], f: impl FnOnce() -> Result<T, Ext4Error>) -> Result<T> {
        guarded(&self.info.source, FS, path, || {
            f().map_err(|e| self.err(path, e))
        })
    }
}

impl FileSystem for Ext4Fs {
    fn info(&self) -> FsInfo {
        self.info.clone()
    }

    fn lstat(&self, path: &[u8]) -> Result<Stat> {
        self.guard(path, || {
            let m = self.fs.symlink_metadata(path)?;
            Ok(stat_of(&m, 0))
        })
    }

    fn read_dir(&self, path: &[u8], limit: usize) -> Result<Vec<DirEntry>> {
        self.read_dir_by_inode(path, 0, limit)
    }

    fn lstat_by_inode(&self, path: &[u8], ino: u64) -> Result<Stat> {
        match known_inode(ino) {
            Some(i) => self.guard(path, || Ok(stat_of(&self.fs.metadata_by_inode(i)?, ino))),
            None => self.lstat(path),
        }
    }

    fn read_dir_by_inode(&self, path: &[u8], ino: u64, limit: usize) -> Result<Vec<DirEntry>> {
        self.read_dir_known(path, ino, limit, &|_, _| None)
    }

    fn read_dir_known(
        &self,
        path: &[u8],
        ino: u64,
        limit: usize,
        known: &dyn Fn(u64, &[u8]) -> Option<Stat>,
    ) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        let mut over = false;
        self.guard(path, || {
            let dir = match known_inode(ino) {
                Some(ino) => self.fs.read_dir_by_inode(ino, path)?,
                None => self.fs.read_dir(path)?,
            };
            for entry in dir {
                let entry = entry?;
                let name = entry.file_name();
                let name = name.as_ref();
                if name == b"." || name == b".." {
                    continue;
                }
                if out.len() >= limit {
                    over = true;
                    break;
                }
                let number = u64::from(entry.inode_number());
                let stat = match known(number, name) {
                    Some(st) => st,
                    None => stat_of(&entry.metadata()?, number),
                };
                out.push(DirEntry {
                    name: name.to_vec(),
                    stat,
                });
            }
            Ok(())
        })?;
        if over {
            return Err(Error::LimitExceeded {
                what: format!("entries of directory {}", display_path(path)),
                limit: limit as u64,
            });
        }
        Ok(out)
    }

    fn read_link(&self, path: &[u8]) -> Result<Vec<u8>> {
        self.read_link_by_inode(path, 0)
    }

    fn read_link_by_inode(&self, path: &[u8], ino: u64) -> Result<Vec<u8>> {
        self.guard(path, || {
            let t = match known_inode(ino) {
                Some(ino) => self.fs.read_link_by_inode(ino)?,
                None => self.fs.read_link(path)?,
            };
            Ok(t.as_ref().to_vec())
        })
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + '_>> {
        self.open_by_inode(path, 0)
    }

    fn open_by_inode(&self, path: &[u8], ino: u64) -> Result<Box<dyn Read + '_>> {
        let file = self.guard(path, || match known_inode(ino) {
            Some(ino) => self.fs.open_by_inode(ino),
            None => self.fs.open(path),
        })?;
        Ok(Box::new(GuardedRead {
            inner: file,
            source: &self.info.source,
            path: path.to_vec(),
        }))
    }
}

/// A file reader whose reads are guarded against library panics too.
struct GuardedRead<'a, R> {
    inner: R,
    source: &'a str,
    path: Vec<u8>,
}

impl<R: Read> Read for GuardedRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let inner = &mut self.inner;
        guarded(self.source, FS, &self.path, || {
            inner.read(buf).map_err(|e| Error::FileSystem {
                source_name: self.source.to_string(),
                fs: FS,
                path: None,
                what: e.to_string(),
            })
        })
        .map_err(std::io::Error::other)
    }
}
