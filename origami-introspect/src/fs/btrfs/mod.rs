//! btrfs, read-only, written here (the crates found either read from one byte slice, the
//! whole image in memory, or only parse structures).
//!
//! The superblock's `sys_chunk_array` maps the chunk tree, whose chunk items map every
//! logical address to the device (single, DUP and RAID1-family profiles: any copy on this
//! device; striped profiles are refused by name). The root tree gives the subvolumes:
//! the file system shows its *default* subvolume at `/` (the root tree's `default` entry,
//! else the top level, id 5), or another one chosen with [`BtrfsFs::subvolume`] (fstab's
//! `subvol=` and `subvolid=`); subvolumes nested in it are entered like directories, as
//! Linux shows them. File data from inline and regular extents, holes and preallocated
//! extents reading as zeros, compressed with zlib, LZO or zstd (`decompress`).
//!
//! Hostile metadata: the superblock is validated first; every tree block read must say
//! it is the block asked for (its `bytenr`) and have the level its parent promised, one
//! less than the parent's, so a pointer back up a tree (or a chunk-map "loop") is an
//! error, never a cycle; tree walks are iterative with a bound on the blocks visited; item
//! offsets and sizes are checked against the block; chunk counts, extent counts and
//! decompressed sizes are bounded; a chunk must lie inside the device. Checksums
//! (crc32c) are verified when [`BtrfsOptions::verify_checksums`] asks.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use origami_core::ReadAt;
use origami_frame::FileType;

use super::path::{components, display_path};
use super::xfs::crc::crc32c_raw;
use super::{format_uuid, guarded, DirEntry, FileSystem, FsInfo, FsKind, Stat};
use crate::error::{Error, Result};

mod decompress;
mod reader;
mod tree;

use reader::FileReader;
use tree::open_inner;

const FS: &str = "btrfs";

/// Where the primary superblock is.
pub(crate) const SUPER_OFFSET: u64 = 0x10000;
/// The magic's offset in the superblock.
pub(crate) const MAGIC_OFFSET: u64 = 0x40;
/// The superblock magic.
pub(crate) const MAGIC: &[u8; 8] = b"_BHRfS_M";

/// The most chunks mapped.
const MAX_CHUNKS: usize = 1 << 20;
/// The most tree blocks visited by one search.
const MAX_NODES_PER_SEARCH: usize = 1 << 20;
/// The most extents of one file.
const MAX_EXTENTS: usize = 1 << 21;
/// The most subvolumes one file system view tracks (each is an id in [`Stat::ino`]).
const MAX_TREES: usize = 1 << 15;
/// The longest symlink target.
const MAX_SYMLINK: u64 = 4096;
/// Tree blocks cached (of `nodesize`, 16 KiB by default: 8 MiB).
const CACHE_NODES: usize = 512;
/// The deepest tree (`BTRFS_MAX_LEVEL`).
const MAX_LEVEL: u8 = 8;
/// The block header's size; items follow it.
const HDR: usize = 101;

const FS_TREE: u64 = 5;
const ROOT_TREE_DIR: u64 = 6;
const FIRST_CHUNK_TREE: u64 = 256;
const INODE_ITEM: u8 = 1;
const DIR_ITEM: u8 = 84;
const DIR_INDEX: u8 = 96;
const EXTENT_DATA: u8 = 108;
const ROOT_ITEM: u8 = 132;
const CHUNK_ITEM: u8 = 228;

/// How a btrfs file system is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BtrfsOptions {
    /// Verify the crc32c of the superblock and of every tree block read (file systems with
    /// another checksum type are read unverified). Off by default, as for ext4.
    pub verify_checksums: bool,
}

/// A subvolume to show at the root of a [`BtrfsFs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subvolume {
    /// The default subvolume (what a mount without `subvol=` shows).
    Default,
    /// By id (`subvolid=`); 5 is the top level.
    Id(u64),
    /// By path from the top level (`subvol=`, `@home` or `/root/@home`).
    Path(Vec<u8>),
}

impl Subvolume {
    /// The subvolume fstab's mount options select (`subvolid=` wins, as in Linux, then
    /// `subvol=`), or the default one.
    pub fn from_options(options: &str) -> Subvolume {
        let mut path = None;
        for o in options.split(',') {
            if let Some(id) = o.strip_prefix("subvolid=") {
                if let Ok(id) = id.parse() {
                    return Subvolume::Id(id);
                }
            }
            if let Some(p) = o.strip_prefix("subvol=") {
                path = Some(Subvolume::Path(p.as_bytes().to_vec()));
            }
        }
        path.unwrap_or(Subvolume::Default)
    }
}

type BErr = super::read_error::ReadError;

type BResult<T> = std::result::Result<T, BErr>;

fn bad<T>(what: impl Into<String>) -> BResult<T> {
    Err(BErr::Bad(what.into()))
}

use origami_core::bytes::{le16, le32, le64};

/// A key of every btrfs tree: ordered by object id, type, offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    obj: u64,
    ty: u8,
    off: u64,
}

impl Key {
    fn at(b: &[u8], at: usize) -> Key {
        Key {
            obj: le64(b, at),
            ty: b.get(at + 8).copied().unwrap_or(0),
            off: le64(b, at + 9),
        }
    }
}

/// One chunk: `len` bytes of logical addresses from `logical`, at `phys` on this device
/// (or why they cannot be read).
#[derive(Debug, Clone)]
struct Chunk {
    logical: u64,
    len: u64,
    phys: std::result::Result<u64, String>,
}

/// A tree's root block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Root {
    id: u64,
    bytenr: u64,
    level: u8,
    dir: u64,
}

/// What every view of one file system shares.
struct Inner {
    src: Arc<dyn ReadAt>,
    name: String,
    nodesize: usize,
    sectorsize: u64,
    fsid: [u8; 16],
    root_tree: (u64, u8),
    chunks: Vec<Chunk>,
    verify: bool,
    cache: Mutex<HashMap<u64, Arc<Vec<u8>>>>,
}

/// A btrfs file system, read-only, showing one subvolume at its root.
pub struct BtrfsFs {
    inner: Arc<Inner>,
    info: FsInfo,
    /// The subvolumes met, by index: index 0 is the one at `/`. A [`Stat::ino`] is the
    /// index << 48 | the inode's object id.
    trees: Mutex<Vec<Root>>,
}

impl std::fmt::Debug for BtrfsFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BtrfsFs").field("info", &self.info).finish()
    }
}

/// The (name, location) entries packed in one DIR_ITEM or DIR_INDEX item.
fn dir_items(d: &[u8]) -> BResult<Vec<(&[u8], Key)>> {
    let mut out = Vec::new();
    let mut p = 0usize;
    while p < d.len() {
        let data_len = usize::from(le16(d, p + 25));
        let name_len = usize::from(le16(d, p + 27));
        let end = p + 30 + name_len + data_len;
        if name_len == 0 || end > d.len() {
            return bad(format!(
                "directory item: entry of {name_len} + {data_len} bytes past the item"
            ));
        }
        out.push((&d[p + 30..p + 30 + name_len], Key::at(d, p)));
        p = end;
    }
    Ok(out)
}

/// The name hash of DIR_ITEM keys.
fn name_hash(name: &[u8]) -> u64 {
    u64::from(crc32c_raw(!1, name))
}

/// An inode's fields.
#[derive(Debug, Clone)]
struct Inode {
    size: u64,
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
}

fn parse_inode(d: &[u8]) -> BResult<Inode> {
    if d.len() < 160 {
        return bad(format!("inode item of {} bytes", d.len()));
    }
    Ok(Inode {
        size: le64(d, 16),
        uid: le32(d, 44),
        gid: le32(d, 48),
        mode: le32(d, 52),
        mtime: le64(d, 136) as i64,
    })
}

fn file_type(mode: u32) -> BResult<FileType> {
    Ok(match mode & 0o170000 {
        0o040000 => FileType::Dir,
        0o100000 => FileType::File,
        0o120000 => FileType::Symlink,
        0o020000 => FileType::Char,
        0o060000 => FileType::Block,
        0o010000 => FileType::Fifo,
        0o140000 => FileType::Socket,
        m => return bad(format!("file type {m:#o}")),
    })
}

/// One EXTENT_DATA item.
#[derive(Debug, Clone)]
struct FileExtent {
    /// File offset.
    off: u64,
    /// Bytes of the file it covers.
    len: u64,
    kind: ExtentKind,
}

#[derive(Debug, Clone)]
enum ExtentKind {
    /// Data in the item (maybe compressed: type, uncompressed size).
    Inline(Vec<u8>, u8, u64),
    /// Data elsewhere: disk extent, its size, offset in the (uncompressed) extent,
    /// compression, uncompressed size. A disk address of 0 is a hole.
    Regular {
        disk: u64,
        disk_len: u64,
        offset: u64,
        compression: u8,
        ram: u64,
    },
    /// Allocated, never written: zeros.
    Prealloc,
}

impl BtrfsFs {
    /// Opens the btrfs file system on `source` with the default [`BtrfsOptions`], showing
    /// its default subvolume.
    pub fn open(source: Arc<dyn ReadAt>) -> Result<BtrfsFs> {
        BtrfsFs::open_with(source, BtrfsOptions::default())
    }

    /// Opens the btrfs file system on `source`, showing its default subvolume: the
    /// superblock is validated, the chunk map built (bootstrap chunks, then the chunk
    /// tree), the root tree read.
    pub fn open_with(source: Arc<dyn ReadAt>, options: BtrfsOptions) -> Result<BtrfsFs> {
        let name = source.name();
        let inner = open_inner(source, options.verify_checksums)
            .map_err(|e| e.into_error(&name, FS, None))?;
        let inner = Arc::new(inner);
        let id = inner
            .default_subvolume()
            .map_err(|e| e.into_error(&name, FS, None))?;
        BtrfsFs::view(inner, id)
    }

    fn view(inner: Arc<Inner>, id: u64) -> Result<BtrfsFs> {
        let name = inner.name.clone();
        let root = inner
            .tree_root(id)
            .map_err(|e| e.into_error(&name, FS, None))?;
        let mut sb = vec![0u8; 0x1000];
        inner.src.read_at(SUPER_OFFSET, &mut sb)?;
        let label_raw = &sb[0x12b..0x22b];
        let end = label_raw
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(label_raw.len());
        let label = String::from_utf8_lossy(&label_raw[..end]).into_owned();
        let info = FsInfo {
            kind: FsKind::Btrfs,
            uuid: Some(format_uuid(&sb[0x20..0x30])),
            label: Some(label).filter(|l| !l.is_empty()),
            source: if id == FS_TREE {
                name
            } else {
                format!("{name} subvolume {id}")
            },
        };
        let fs = BtrfsFs {
            inner,
            info,
            trees: Mutex::new(vec![root]),
        };
        let st = fs
            .stat_of(0, root.dir)
            .map_err(|e| e.into_error(&fs.info.source, FS, Some(b"/")))?;
        if st.file_type != FileType::Dir {
            return Err(
                BErr::Bad(format!("subvolume {id}: its root is not a directory")).into_error(
                    &fs.info.source,
                    FS,
                    Some(b"/"),
                ),
            );
        }
        Ok(fs)
    }

    /// The same file system showing subvolume `which` at its root.
    pub fn subvolume(&self, which: &Subvolume) -> Result<BtrfsFs> {
        let name = &self.inner.name;
        let id = match which {
            Subvolume::Default => self.inner.default_subvolume(),
            Subvolume::Id(id) => Ok(*id),
            Subvolume::Path(p) => self.subvolume_by_path(p),
        }
        .map_err(|e| e.into_error(name, FS, None))?;
        BtrfsFs::view(self.inner.clone(), id)
    }

    /// The id of the subvolume at `path` from the top level.
    fn subvolume_by_path(&self, path: &[u8]) -> BResult<u64> {
        let top =
            BtrfsFs::view(self.inner.clone(), FS_TREE).map_err(|e| BErr::Bad(e.to_string()))?;
        let (tree, obj) = top.lookup(path)?;
        let root = top.root(tree)?;
        if obj != root.dir {
            return bad(format!(
                "{} is a directory, not a subvolume",
                display_path(path)
            ));
        }
        Ok(root.id)
    }

    fn root(&self, index: usize) -> BResult<Root> {
        self.trees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(index)
            .copied()
            .ok_or_else(|| BErr::Bad(format!("no subvolume of index {index}")))
    }

    /// The index of subvolume `id` in `trees`, added when new.
    fn tree_index(&self, id: u64) -> BResult<usize> {
        if let Some(i) = self
            .trees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .position(|r| r.id == id)
        {
            return Ok(i);
        }
        let root = self.inner.tree_root(id)?;
        let mut t = self.trees.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() >= MAX_TREES {
            return Err(BErr::Limit("subvolumes met".into(), MAX_TREES as u64));
        }
        t.push(root);
        Ok(t.len() - 1)
    }

    fn ino_of(tree: usize, obj: u64) -> BResult<u64> {
        if obj >= 1 << 48 {
            return bad(format!("inode number {obj} over 2^48"));
        }
        Ok(((tree as u64) << 48) | obj)
    }

    fn split_ino(ino: u64) -> (usize, u64) {
        ((ino >> 48) as usize, ino & ((1 << 48) - 1))
    }

    fn inode(&self, tree: usize, obj: u64) -> BResult<Inode> {
        let r = self.root(tree)?;
        let d = self
            .inner
            .get(
                (r.bytenr, r.level),
                Key {
                    obj,
                    ty: INODE_ITEM,
                    off: 0,
                },
            )?
            .ok_or_else(|| BErr::Bad(format!("subvolume {}: no inode {obj}", r.id)))?;
        parse_inode(&d)
    }

    fn stat_of(&self, tree: usize, obj: u64) -> BResult<Stat> {
        let i = self.inode(tree, obj)?;
        Ok(Stat {
            file_type: file_type(i.mode)?,
            mode: i.mode & 0o7777,
            uid: i.uid,
            gid: i.gid,
            size: i.size,
            mtime: i.mtime,
            ino: BtrfsFs::ino_of(tree, obj)?,
            fat_attrs: String::new(),
            ntfs: None,
        })
    }

    /// Where a directory entry's location leads: (tree index, object id).
    fn follow(&self, tree: usize, loc: Key) -> BResult<(usize, u64)> {
        match loc.ty {
            INODE_ITEM => Ok((tree, loc.obj)),
            ROOT_ITEM => {
                let t = self.tree_index(loc.obj)?;
                Ok((t, self.root(t)?.dir))
            }
            t => bad(format!("directory entry locating a key of type {t}")),
        }
    }

    /// The entries of directory (tree, obj): (name, tree, object id).
    fn dir_entries(
        &self,
        tree: usize,
        obj: u64,
        limit: usize,
    ) -> BResult<Vec<(Vec<u8>, usize, u64)>> {
        let r = self.root(tree)?;
        let mut raw = Vec::new();
        self.inner.search(
            (r.bytenr, r.level),
            Key {
                obj,
                ty: DIR_INDEX,
                off: 0,
            },
            Key {
                obj,
                ty: DIR_INDEX,
                off: u64::MAX,
            },
            &mut |_, d| {
                for (name, loc) in dir_items(d)? {
                    if raw.len() >= limit {
                        return Err(BErr::Limit("entries of a directory".into(), limit as u64));
                    }
                    raw.push((name.to_vec(), loc));
                }
                Ok(true)
            },
        )?;
        let mut out = Vec::with_capacity(raw.len());
        for (name, loc) in raw {
            let (t, o) = self.follow(tree, loc)?;
            out.push((name, t, o));
        }
        Ok(out)
    }

    /// Looks `name` up in directory (tree, obj) through the name-hash index.
    fn lookup_in(&self, tree: usize, obj: u64, name: &[u8]) -> BResult<(usize, u64)> {
        let r = self.root(tree)?;
        let d = self.inner.get(
            (r.bytenr, r.level),
            Key {
                obj,
                ty: DIR_ITEM,
                off: name_hash(name),
            },
        )?;
        let d = d.ok_or(BErr::NotFound)?;
        let loc = dir_items(&d)?
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, l)| l)
            .ok_or(BErr::NotFound)?;
        self.follow(tree, loc)
    }

    /// (tree index, object id) of `path` (no symlink followed).
    fn lookup(&self, path: &[u8]) -> BResult<(usize, u64)> {
        let mut cur = (0usize, self.root(0)?.dir);
        for part in components(path) {
            if part == b"." {
                continue;
            }
            let st = self.inode(cur.0, cur.1)?;
            if st.mode & 0o170000 != 0o040000 {
                return Err(BErr::NotDir);
            }
            cur = self.lookup_in(cur.0, cur.1, part)?;
        }
        Ok(cur)
    }

    fn locate(&self, path: &[u8], ino: u64) -> BResult<(usize, u64)> {
        if ino != 0 {
            let (t, o) = BtrfsFs::split_ino(ino);
            self.root(t)?;
            Ok((t, o))
        } else {
            self.lookup(path)
        }
    }

    fn extents(&self, tree: usize, obj: u64) -> BResult<Vec<FileExtent>> {
        let r = self.root(tree)?;
        let mut out = Vec::new();
        self.inner.search(
            (r.bytenr, r.level),
            Key {
                obj,
                ty: EXTENT_DATA,
                off: 0,
            },
            Key {
                obj,
                ty: EXTENT_DATA,
                off: u64::MAX,
            },
            &mut |k, d| {
                if out.len() >= MAX_EXTENTS {
                    return Err(BErr::Limit(
                        format!("extents of inode {obj}"),
                        MAX_EXTENTS as u64,
                    ));
                }
                if d.len() < 21 {
                    return bad(format!("inode {obj}: extent item of {} bytes", d.len()));
                }
                let ram = le64(d, 8);
                let compression = d[16];
                if d[17] != 0 || le16(d, 18) != 0 {
                    return bad(format!("inode {obj}: encrypted or encoded extent"));
                }
                let e = match d[20] {
                    0 => FileExtent {
                        off: k.off,
                        len: ram,
                        kind: ExtentKind::Inline(d[21..].to_vec(), compression, ram),
                    },
                    t @ (1 | 2) => {
                        if d.len() < 53 {
                            return bad(format!("inode {obj}: extent item of {} bytes", d.len()));
                        }
                        FileExtent {
                            off: k.off,
                            len: le64(d, 45),
                            kind: if t == 2 {
                                ExtentKind::Prealloc
                            } else {
                                ExtentKind::Regular {
                                    disk: le64(d, 21),
                                    disk_len: le64(d, 29),
                                    offset: le64(d, 37),
                                    compression,
                                    ram,
                                }
                            },
                        }
                    }
                    t => return bad(format!("inode {obj}: extent type {t}")),
                };
                out.push(e);
                Ok(true)
            },
        )?;
        Ok(out)
    }

    fn read_link_at(&self, tree: usize, obj: u64) -> BResult<Vec<u8>> {
        let i = self.inode(tree, obj)?;
        if i.mode & 0o170000 != 0o120000 {
            return bad(format!("inode {obj} is not a symlink"));
        }
        if i.size > MAX_SYMLINK {
            return bad(format!("inode {obj}: symlink of {} bytes", i.size));
        }
        let mut r = self.reader(tree, obj, i.size, b"")?;
        let mut out = Vec::new();
        r.read_all(&mut out, i.size as usize)?;
        Ok(out)
    }

    fn reader(&self, tree: usize, obj: u64, size: u64, path: &[u8]) -> BResult<FileReader<'_>> {
        Ok(FileReader {
            fs: self,
            path: path.to_vec(),
            extents: self.extents(tree, obj)?,
            size,
            pos: 0,
            cached: None,
        })
    }

    fn fail(&self, path: &[u8], e: BErr) -> Error {
        e.into_error(&self.info.source, FS, Some(path))
    }
}

impl FileSystem for BtrfsFs {
    fn info(&self) -> FsInfo {
        self.info.clone()
    }

    fn lstat(&self, path: &[u8]) -> Result<Stat> {
        guarded(&self.info.source, FS, path, || {
            self.lookup(path)
                .and_then(|(t, o)| self.stat_of(t, o))
                .map_err(|e| self.fail(path, e))
        })
    }

    fn read_dir(&self, path: &[u8], limit: usize) -> Result<Vec<DirEntry>> {
        self.read_dir_by_inode(path, 0, limit)
    }

    fn read_dir_by_inode(&self, path: &[u8], ino: u64, limit: usize) -> Result<Vec<DirEntry>> {
        guarded(&self.info.source, FS, path, || {
            let run = || -> BResult<Vec<DirEntry>> {
                let (t, o) = self.locate(path, ino)?;
                if self.inode(t, o)?.mode & 0o170000 != 0o040000 {
                    return Err(BErr::NotDir);
                }
                let mut out = Vec::new();
                for (name, t, o) in self.dir_entries(t, o, limit)? {
                    out.push(DirEntry {
                        name,
                        stat: self.stat_of(t, o)?,
                    });
                }
                Ok(out)
            };
            run().map_err(|e| self.fail(path, e))
        })
    }

    fn read_link(&self, path: &[u8]) -> Result<Vec<u8>> {
        self.read_link_by_inode(path, 0)
    }

    fn read_link_by_inode(&self, path: &[u8], ino: u64) -> Result<Vec<u8>> {
        guarded(&self.info.source, FS, path, || {
            self.locate(path, ino)
                .and_then(|(t, o)| self.read_link_at(t, o))
                .map_err(|e| self.fail(path, e))
        })
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + '_>> {
        self.open_by_inode(path, 0)
    }

    fn open_by_inode(&self, path: &[u8], ino: u64) -> Result<Box<dyn Read + '_>> {
        guarded(&self.info.source, FS, path, || {
            let run = || -> BResult<FileReader<'_>> {
                let (t, o) = self.locate(path, ino)?;
                let i = self.inode(t, o)?;
                if i.mode & 0o170000 != 0o100000 {
                    return bad(format!("inode {o} is not a regular file"));
                }
                self.reader(t, o, i.size, path)
            };
            run().map_err(|e| self.fail(path, e))
        })
        .map(|r| Box::new(r) as Box<dyn Read + '_>)
    }

    fn open_subvolume(&self, options: &str) -> Option<Result<Box<dyn FileSystem>>> {
        Some(
            self.subvolume(&Subvolume::from_options(options))
                .map(|fs| Box::new(fs) as Box<dyn FileSystem>),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subvolume_options() {
        assert_eq!(Subvolume::from_options("defaults"), Subvolume::Default);
        assert_eq!(
            Subvolume::from_options("compress=zstd,subvol=@home"),
            Subvolume::Path(b"@home".to_vec())
        );
        assert_eq!(
            Subvolume::from_options("subvol=/@,subvolid=256"),
            Subvolume::Id(256)
        );
    }

    #[test]
    fn name_hash_known() {
        // btrfs's hash of "default" (the root tree's default-subvolume entry), as
        // `btrfs inspect-internal dump-tree` prints its key: (6 DIR_ITEM 2378154706).
        assert_eq!(name_hash(b"default"), 2_378_154_706);
    }
}
