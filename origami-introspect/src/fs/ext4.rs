//! ext2/3/4 through `ext4-view` (which replays the journal itself), over a [`ReadAt`].
//!
//! The superblock is checked here before `ext4-view` sees it, so that a hostile size field
//! cannot make it allocate per-group tables for a disk larger than the image. Reads go
//! through [`CachedReader`]: `ext4-view`'s own cache holds only 64 blocks, so a full walk
//! would read the inode tables many times; a bigger read-ahead cache below it makes a walk
//! read each metadata region once.

use std::io::Read;
use std::sync::Arc;

use ext4_view::{Ext4, Ext4Error, Ext4Read};
use origami_core::ReadAt;
use origami_frame::FileType;

use super::{guarded, path::display_path, DirEntry, FileSystem, FsInfo, FsKind, Stat};
use crate::error::{Error, Result};

const FS: &str = "ext4";

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
    let u32_at = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
    if sb[0x38..0x3a] != [0x53, 0xEF] {
        return Err(bad("bad magic at offset 0x438".into()));
    }
    let log_block = u32_at(0x18);
    if log_block > 6 {
        return Err(bad(format!("block size 2^(10+{log_block}) is over 64 KiB")));
    }
    let block_size = 1024u64 << log_block;
    let incompat = u32_at(0x60);
    let mut blocks = u64::from(u32_at(0x4));
    if incompat & 0x80 != 0 {
        blocks |= u64::from(u32_at(0x150)) << 32;
    }
    let blocks_per_group = u32_at(0x20);
    let inodes_per_group = u32_at(0x28);
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
    /// Read through origami's 16 MiB read-ahead cache (64 KiB chunks). Worth it over
    /// `pread` and qcow2; a memory-mapped raw image is faster without it (one copy less).
    pub no_cache: bool,
}

/// The superblock's read-only-compatible feature word, and its `metadata_csum` bit.
const RO_COMPAT_OFFSET: u64 = 1024 + 0x64;
const RO_COMPAT_METADATA_CSUM: u8 = 0x04; // bit 0x400 of the little-endian word: byte 1

/// A read-ahead cache under `ext4-view`: reads whole aligned chunks and keeps the most
/// recent ones, so that the many small metadata reads of a walk cost memory copies rather
/// than system calls. When checksums are not verified, it shows `ext4-view` a superblock
/// without the `metadata_csum` feature (nothing else changes: the bit only asks for
/// verification).
struct CachedReader {
    inner: Arc<dyn ReadAt>,
    chunk: usize,
    slots: Vec<(u64, Box<[u8]>)>,
    hide_csum: bool,
    bypass: bool,
}

impl CachedReader {
    /// 64 KiB chunks, 256 of them: 16 MiB at most, whatever the guest.
    fn new(inner: Arc<dyn ReadAt>, hide_csum: bool, bypass: bool) -> Self {
        CachedReader {
            inner,
            chunk: 64 << 10,
            slots: Vec::new(),
            hide_csum,
            bypass,
        }
    }

    fn patch(&self, start: u64, dst: &mut [u8]) {
        let byte = RO_COMPAT_OFFSET + 1;
        if self.hide_csum && start <= byte && byte < start + dst.len() as u64 {
            if let Some(b) = dst.get_mut((byte - start) as usize) {
                *b &= !RO_COMPAT_METADATA_CSUM;
            }
        }
    }

    fn chunk_of(&mut self, index: u64) -> Result<&[u8], origami_core::Error> {
        const SLOTS: usize = 256;
        // A direct-mapped lookup keeps the hit path to one compare.
        let slot = (index as usize) % SLOTS;
        if self.slots.len() < SLOTS {
            self.slots
                .resize_with(SLOTS, || (u64::MAX, Vec::new().into_boxed_slice()));
        }
        if self.slots[slot].0 != index {
            let start = index * self.chunk as u64;
            let len = (self.inner.len().saturating_sub(start)).min(self.chunk as u64) as usize;
            let mut buf = std::mem::take(&mut self.slots[slot].1).into_vec();
            buf.resize(len, 0);
            self.inner.read_at(start, &mut buf)?;
            self.slots[slot] = (index, buf.into_boxed_slice());
        }
        Ok(&self.slots[slot].1)
    }
}

impl Ext4Read for CachedReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        // Large reads (file data) bypass the cache: they are read once.
        if self.bypass || dst.len() >= self.chunk {
            self.inner.read_at(start_byte, dst)?;
            self.patch(start_byte, dst);
            return Ok(());
        }
        origami_core::check_range(
            || self.inner.name(),
            start_byte,
            dst.len(),
            self.inner.len(),
        )?;
        let chunk = self.chunk as u64;
        let mut done = 0usize;
        while done < dst.len() {
            let pos = start_byte + done as u64;
            let index = pos / chunk;
            let within = (pos % chunk) as usize;
            let data = self.chunk_of(index)?;
            let take = (data.len().saturating_sub(within)).min(dst.len() - done);
            if take == 0 {
                return Err(Box::new(origami_core::Error::OutOfBounds {
                    source_name: self.inner.name(),
                    offset: pos,
                    len: dst.len() - done,
                    size: self.inner.len(),
                }));
            }
            dst[done..done + take].copy_from_slice(&data[within..within + take]);
            done += take;
        }
        self.patch(start_byte, dst);
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
        let reader = CachedReader::new(source, !options.verify_checksums, options.no_cache);
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
        let mut out = Vec::new();
        let mut over = false;
        self.guard(path, || {
            for entry in self.fs.read_dir(path)? {
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
                let m = entry.metadata()?;
                // ext4-view keeps inode numbers private, so a corrupt directory that
                // links to an ancestor is stopped by the tree's depth and entry bounds.
                out.push(DirEntry {
                    name: name.to_vec(),
                    stat: stat_of(&m, 0),
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
        self.guard(path, || {
            let t = self.fs.read_link(path)?;
            Ok(t.as_ref().to_vec())
        })
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + '_>> {
        let file = self.guard(path, || self.fs.open(path))?;
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
