//! XFS, read-only, written here (no crate was both complete and guardable: `xfs-core`
//! reads through one `Read + Seek` cursor, `lamxfs` is `no_std` and bootloader-shaped).
//!
//! Both on-disk versions: v4 and v5 (self-describing metadata with CRCs, which are verified
//! only when [`XfsOptions::verify_checksums`] asks, as for ext4). Directories in all five
//! forms: short-form (in the inode), block, leaf, node and B+tree; a directory's entries are
//! read from its *data* blocks (those below the 32 GiB leaf offset of the directory's
//! address space), which hold every entry whatever the form, so the hash-index blocks
//! (leaf, node, free-space) are never followed and a loop among them cannot make a read
//! endless. File data through extent lists or extent B+trees (bmbt); unwritten extents and
//! holes read as zeros. Symlinks inline or in remote blocks (with the v5 `XSLM` header).
//!
//! Hostile metadata: the superblock is validated before anything else is read; every
//! extent must lie inside its allocation group and the image; B+tree walks are iterative,
//! each child's level must be its parent's minus one (so a pointer back up the tree is an
//! error, not a loop), and the blocks visited, extents collected and directory bytes
//! scanned are bounded. Errors name the image, the inode and the byte offset.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use origami_core::ReadAt;
use origami_frame::FileType;

use super::path::components;
use super::{format_uuid, guarded, DirEntry, FileSystem, FsInfo, FsKind, Stat};
use crate::error::{Error, Result};

pub(crate) mod crc;
mod layout;
mod reader;

use layout::*;
use reader::FileReader;

const FS: &str = "xfs";

/// The superblock magic, `XFSB`, at byte 0.
pub(crate) const MAGIC: &[u8; 4] = b"XFSB";

/// The most extents of one file (or directory) read into memory.
const MAX_EXTENTS: usize = 1 << 21;
/// The most extent B+tree blocks visited for one inode.
const MAX_BMBT_BLOCKS: usize = 1 << 20;
/// The deepest extent B+tree (the kernel's bound for 64-bit extent counts is 11).
const MAX_BMBT_LEVELS: u16 = 12;
/// The most directory-data bytes scanned for one directory (a directory of 2^24 short
/// names fits).
const MAX_DIR_BYTES: u64 = 1 << 30;
/// The longest symlink target (`MAXPATHLEN`).
const MAX_SYMLINK: u64 = 1024;
/// The most directory entries kept by the look-up cache (all directories together).
const DIR_CACHE_ENTRIES: usize = 1 << 18;
/// The directory address space where the hash-index (leaf) blocks begin: 32 GiB.
const DIR_LEAF_OFFSET: u64 = 1 << 35;

/// How an XFS file system is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XfsOptions {
    /// Verify the CRC32c of v5 metadata (superblock, inodes, extent-tree blocks, directory
    /// blocks, remote symlink blocks). Off by default, as for ext4: a checksum detects
    /// media corruption, not a hostile guest, and every structure is bounds-checked either
    /// way. No effect on v4 file systems, which have none.
    pub verify_checksums: bool,
}

type XErr = super::read_error::ReadError;

type XResult<T> = std::result::Result<T, XErr>;

fn bad<T>(what: impl Into<String>) -> XResult<T> {
    Err(XErr::Bad(what.into()))
}

fn be16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_be_bytes([s[0], s[1]]))
}
fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}
fn be64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_be_bytes(a)
    })
}

/// An XFS file system, read-only.
pub struct XfsFs {
    src: Arc<dyn ReadAt>,
    g: Geometry,
    info: FsInfo,
    verify: bool,
    /// Directories listed for path look-ups, by inode (entries counted, bounded by
    /// [`DIR_CACHE_ENTRIES`]): resolving paths one component at a time lists the same
    /// directories again and again, and the file system does not change.
    dir_cache: Mutex<(usize, HashMap<u64, DirList>)>,
}

/// A directory's entries (name, inode), shared by the look-up cache.
type DirList = Arc<Vec<(Vec<u8>, u64)>>;

impl std::fmt::Debug for XfsFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XfsFs").field("info", &self.info).finish()
    }
}

impl XfsFs {
    /// Opens the XFS file system on `source` with the default [`XfsOptions`].
    pub fn open(source: Arc<dyn ReadAt>) -> Result<XfsFs> {
        XfsFs::open_with(source, XfsOptions::default())
    }

    /// Opens the XFS file system on `source`: the superblock is validated (sizes, geometry,
    /// features) before anything else is read.
    pub fn open_with(source: Arc<dyn ReadAt>, options: XfsOptions) -> Result<XfsFs> {
        let name = source.name();
        let wrap = |e: XErr| e.into_error(&name, FS, None);
        if source.len() < 512 {
            return Err(wrap(XErr::Bad(format!(
                "image of {} bytes is too small",
                source.len()
            ))));
        }
        let mut sb = vec![0u8; 512.max(4096.min(source.len() as usize))];
        source.read_at(0, &mut sb)?;
        let (g, mut info) =
            parse_superblock(&sb, source.len(), options.verify_checksums).map_err(wrap)?;
        info.source = name.clone();
        let fs = XfsFs {
            src: source,
            g,
            info,
            verify: options.verify_checksums,
            dir_cache: Mutex::new((0, HashMap::new())),
        };
        let root = fs.inode(fs.g.root_ino).map_err(wrap)?;
        if root.mode & 0o170000 != 0o040000 {
            return Err(wrap(XErr::Bad(format!(
                "root inode {} is not a directory",
                fs.g.root_ino
            ))));
        }
        Ok(fs)
    }

    fn read(&self, offset: u64, len: usize) -> XResult<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.src.read_at(offset, &mut buf)?;
        Ok(buf)
    }

    fn check_crc(&self, what: &str, block: &[u8], crc_at: usize, offset: u64) -> XResult<()> {
        if !self.verify || !self.g.v5 {
            return Ok(());
        }
        let want = u32::from_le_bytes(
            block
                .get(crc_at..crc_at + 4)
                .and_then(|s| s.try_into().ok())
                .unwrap_or([0; 4]),
        );
        let got = crc::crc32c_with_hole(block, crc_at);
        if want != got {
            return bad(format!(
                "{what} at offset {offset:#x}: checksum {want:#010x}, computed {got:#010x}"
            ));
        }
        Ok(())
    }

    /// Reads inode `ino`.
    fn inode(&self, ino: u64) -> XResult<Inode> {
        let g = &self.g;
        let per_ag = g.ag_blk_log + g.inop_blog;
        let agno = ino.checked_shr(per_ag).unwrap_or(u64::MAX);
        let agbno = (ino >> g.inop_blog) & ((1u64 << g.ag_blk_log) - 1);
        let slot = ino & ((1u64 << g.inop_blog) - 1);
        if ino == 0 || agno >= g.ag_count || agbno >= g.ag_blocks {
            return bad(format!("inode number {ino} is outside the file system"));
        }
        let offset = (agno * g.ag_blocks + agbno) * g.block_size + slot * g.inode_size as u64;
        let raw = self.read(offset, g.inode_size)?;
        if &raw[0..2] != b"IN" {
            return bad(format!("inode {ino} at offset {offset:#x}: bad magic"));
        }
        let version = raw[4];
        let core = match version {
            1 | 2 if !g.v5 => 100,
            3 if g.v5 => 176,
            _ => {
                return bad(format!(
                    "inode {ino} at offset {offset:#x}: version {version}"
                ))
            }
        };
        if version == 3 {
            self.check_crc(&format!("inode {ino}"), &raw, 100, offset)?;
            if be64(&raw, 152) != ino {
                return bad(format!(
                    "inode {ino} at offset {offset:#x} says it is inode {}",
                    be64(&raw, 152)
                ));
            }
        }
        let forkoff = usize::from(raw[82]) * 8;
        let fork_len = if forkoff != 0 {
            forkoff.min(g.inode_size - core)
        } else {
            g.inode_size - core
        };
        let flags2 = if version == 3 { be64(&raw, 120) } else { 0 };
        let mtime = if flags2 & (1 << 3) != 0 {
            (be64(&raw, 40) / 1_000_000_000) as i64 - (1i64 << 31)
        } else {
            i64::from(be32(&raw, 40) as i32)
        };
        let nextents = if g.nrext64 && flags2 & (1 << 4) != 0 {
            be64(&raw, 24)
        } else {
            u64::from(be32(&raw, 76))
        };
        let size = be64(&raw, 56);
        if size > i64::MAX as u64 {
            return bad(format!("inode {ino}: size {size}"));
        }
        Ok(Inode {
            ino,
            mode: be16(&raw, 2),
            format: raw[5],
            uid: be32(&raw, 8),
            gid: be32(&raw, 12),
            size,
            mtime,
            nextents,
            realtime: be16(&raw, 90) & 1 != 0,
            fork: raw[core..core + fork_len].to_vec(),
        })
    }

    /// Checks that an extent lies inside its allocation group (and so the image).
    fn check_extent(&self, ino: u64, e: &Extent) -> XResult<()> {
        if e.unwritten {
            return Ok(());
        }
        self.g
            .block_offset(e.start, e.len)
            .map(|_| ())
            .map_err(|_| {
                XErr::Bad(format!(
                    "inode {ino}: extent of {} blocks at file block {} points past the device (block {:#x})",
                    e.len, e.off, e.start
                ))
            })
    }

    /// The block map of an inode whose data fork is an extent list or a B+tree, sorted by
    /// file block.
    fn extents(&self, inode: &Inode) -> XResult<Vec<Extent>> {
        let ino = inode.ino;
        let mut out = Vec::new();
        match inode.format {
            FMT_EXTENTS => {
                let n = inode.nextents;
                if n > (inode.fork.len() / 16) as u64 {
                    return bad(format!(
                        "inode {ino}: {n} extents do not fit in its {}-byte fork",
                        inode.fork.len()
                    ));
                }
                for r in inode.fork.chunks_exact(16).take(n as usize) {
                    out.push(parse_extent(r));
                }
            }
            FMT_BTREE => self.bmbt_extents(inode, &mut out)?,
            FMT_LOCAL | FMT_DEV => {}
            f => return bad(format!("inode {ino}: data fork format {f}")),
        }
        out.retain(|e| e.len > 0);
        out.sort_by_key(|e| e.off);
        for e in &out {
            self.check_extent(ino, e)?;
        }
        Ok(out)
    }

    /// Collects the records of an extent B+tree rooted in the inode, iteratively.
    fn bmbt_extents(&self, inode: &Inode, out: &mut Vec<Extent>) -> XResult<()> {
        let ino = inode.ino;
        let fork = &inode.fork;
        let level = be16(fork, 0);
        let numrecs = usize::from(be16(fork, 2));
        if fork.len() < 4 + 16 {
            return bad(format!("inode {ino}: extent B+tree root in a tiny fork"));
        }
        let maxrecs = (fork.len() - 4) / 16;
        if level == 0 || level > MAX_BMBT_LEVELS || numrecs == 0 || numrecs > maxrecs {
            return bad(format!(
                "inode {ino}: extent B+tree root of level {level} with {numrecs} records"
            ));
        }
        let ptrs = 4 + maxrecs * 8;
        // (block, level the block must have), visited in key order.
        let mut stack: Vec<(u64, u16)> = (0..numrecs)
            .rev()
            .map(|i| (be64(fork, ptrs + i * 8), level - 1))
            .collect();
        let bs = self.g.block_size as usize;
        let (magic, hdr): (&[u8; 4], usize) = if self.g.v5 {
            (b"BMA3", 72)
        } else {
            (b"BMAP", 24)
        };
        let block_max = (bs - hdr) / 16;
        let mut visited = 0usize;
        while let Some((fsb, want_level)) = stack.pop() {
            visited += 1;
            if visited > MAX_BMBT_BLOCKS {
                return Err(XErr::Limit(
                    format!("extent B+tree blocks of inode {ino}"),
                    MAX_BMBT_BLOCKS as u64,
                ));
            }
            let offset = self.g.block_offset(fsb, 1).map_err(|_| {
                XErr::Bad(format!(
                    "inode {ino}: extent B+tree pointer to block {fsb:#x} is past the device"
                ))
            })?;
            let b = self.read(offset, bs)?;
            if &b[0..4] != magic {
                return bad(format!(
                    "inode {ino}: extent B+tree block at offset {offset:#x}: bad magic"
                ));
            }
            if self.g.v5 {
                self.check_crc(&format!("inode {ino} extent B+tree block"), &b, 64, offset)?;
                if be64(&b, 56) != ino {
                    return bad(format!(
                        "inode {ino}: extent B+tree block at offset {offset:#x} belongs to inode {}",
                        be64(&b, 56)
                    ));
                }
            }
            let lvl = be16(&b, 4);
            let n = usize::from(be16(&b, 6));
            if lvl != want_level {
                return bad(format!(
                    "inode {ino}: extent B+tree block at offset {offset:#x} has level {lvl} where {want_level} is due (a loop?)"
                ));
            }
            if n > block_max {
                return bad(format!(
                    "inode {ino}: extent B+tree block at offset {offset:#x} claims {n} records"
                ));
            }
            if lvl == 0 {
                if out.len() + n > MAX_EXTENTS {
                    return Err(XErr::Limit(
                        format!("extents of inode {ino}"),
                        MAX_EXTENTS as u64,
                    ));
                }
                for i in 0..n {
                    out.push(parse_extent(&b[hdr + i * 16..hdr + i * 16 + 16]));
                }
            } else {
                let p = hdr + block_max * 8;
                for i in (0..n).rev() {
                    stack.push((be64(&b, p + i * 8), lvl - 1));
                }
            }
        }
        Ok(())
    }

    /// Reads `len` bytes at byte `pos` of the address space mapped by `extents` (holes
    /// and unwritten extents read as zeros).
    fn read_mapped(&self, extents: &[Extent], pos: u64, buf: &mut [u8]) -> XResult<()> {
        let bs = self.g.block_size;
        let mut done = 0usize;
        while done < buf.len() {
            let p = pos + done as u64;
            let blk = p / bs;
            let i = extents.partition_point(|e| e.off + e.len <= blk);
            let want = buf.len() - done;
            match extents.get(i) {
                Some(e) if e.off <= blk => {
                    let in_ext = (e.off + e.len) * bs - p;
                    let n = want.min(usize::try_from(in_ext).unwrap_or(usize::MAX));
                    if e.unwritten {
                        buf[done..done + n].fill(0);
                    } else {
                        let base = self.g.block_offset(e.start, e.len)?;
                        let at = base + (p - e.off * bs);
                        self.src.read_at(at, &mut buf[done..done + n])?;
                    }
                    done += n;
                }
                next => {
                    let hole_end = next.map_or(u64::MAX, |e| e.off.saturating_mul(bs));
                    let n = want.min(usize::try_from(hole_end - p).unwrap_or(usize::MAX));
                    buf[done..done + n].fill(0);
                    done += n;
                }
            }
        }
        Ok(())
    }

    /// The entries (name, inode) of directory `dir`, without `.` and `..`.
    fn dir_entries(&self, dir: &Inode, limit: usize) -> XResult<Vec<(Vec<u8>, u64)>> {
        if dir.mode & 0o170000 != 0o040000 {
            return Err(XErr::NotDir);
        }
        let mut out = Vec::new();
        let push = |out: &mut Vec<(Vec<u8>, u64)>, name: &[u8], ino: u64| -> XResult<()> {
            if out.len() >= limit {
                return Err(XErr::Limit("entries of a directory".into(), limit as u64));
            }
            out.push((name.to_vec(), ino));
            Ok(())
        };
        if dir.format == FMT_LOCAL {
            let f = &dir.fork;
            let count = usize::from(f.first().copied().unwrap_or(0));
            let i8count = usize::from(f.get(1).copied().unwrap_or(0));
            let inosz = if i8count > 0 { 8 } else { 4 };
            let n = if i8count > 0 { i8count } else { count };
            let mut pos = 2 + inosz;
            for _ in 0..n {
                let namelen = usize::from(f.get(pos).copied().unwrap_or(0));
                let name_at = pos + 3;
                let ino_at = name_at + namelen + usize::from(self.g.ftype);
                let end = ino_at + inosz;
                if namelen == 0 || end > f.len() {
                    return bad(format!(
                        "inode {}: short-form directory entry at byte {pos} runs past the fork",
                        dir.ino
                    ));
                }
                let ino = if inosz == 8 {
                    be64(f, ino_at)
                } else {
                    u64::from(be32(f, ino_at))
                };
                push(&mut out, &f[name_at..name_at + namelen], ino)?;
                pos = end;
            }
            return Ok(out);
        }
        let extents = self.extents(dir)?;
        let dbs = self.g.dir_blk_size;
        let leaf_block = DIR_LEAF_OFFSET / self.g.block_size;
        // The directory blocks (by index) holding data, in order, each once.
        let mut blocks: Vec<u64> = Vec::new();
        let fsb_per_db = dbs / self.g.block_size;
        let mut scanned = 0u64;
        for e in extents.iter().filter(|e| e.off < leaf_block) {
            let end = (e.off + e.len).min(leaf_block);
            let mut db = e.off / fsb_per_db;
            while db * fsb_per_db < end {
                if blocks.last() != Some(&db) {
                    scanned += dbs;
                    if scanned > MAX_DIR_BYTES {
                        return Err(XErr::Limit(
                            format!("directory bytes of inode {}", dir.ino),
                            MAX_DIR_BYTES,
                        ));
                    }
                    blocks.push(db);
                }
                db += 1;
            }
        }
        let (block_magic, data_magic, hdr): (&[u8; 4], &[u8; 4], usize) = if self.g.v5 {
            (b"XDB3", b"XDD3", 64)
        } else {
            (b"XD2B", b"XD2D", 16)
        };
        let mut buf = vec![0u8; dbs as usize];
        for db in blocks {
            let pos = db * dbs;
            self.read_mapped(&extents, pos, &mut buf)?;
            let is_block = &buf[0..4] == block_magic;
            if !is_block && &buf[0..4] != data_magic {
                return bad(format!(
                    "inode {}: directory block {db} has no data-block magic",
                    dir.ino
                ));
            }
            self.check_crc(
                &format!("inode {} directory block {db}", dir.ino),
                &buf,
                4,
                pos,
            )?;
            let end = if is_block {
                let count = u64::from(be32(&buf, buf.len() - 8));
                match (dbs - 8)
                    .checked_sub(count.saturating_mul(8))
                    .filter(|&e| e >= hdr as u64)
                {
                    Some(e) => e as usize,
                    None => {
                        return bad(format!(
                            "inode {}: block directory claims {count} leaf entries",
                            dir.ino
                        ))
                    }
                }
            } else {
                buf.len()
            };
            let mut p = hdr;
            while p < end {
                if be16(&buf, p) == 0xffff {
                    let len = usize::from(be16(&buf, p + 2));
                    if len < 8 || len % 8 != 0 || p + len > end {
                        return bad(format!(
                            "inode {}: directory block {db}: free entry of {len} bytes at {p}",
                            dir.ino
                        ));
                    }
                    p += len;
                    continue;
                }
                let ino = be64(&buf, p);
                let namelen = usize::from(buf[p + 8]);
                let size = (8 + 1 + namelen + usize::from(self.g.ftype) + 2 + 7) & !7;
                if namelen == 0 || p + size > end {
                    return bad(format!(
                        "inode {}: directory block {db}: entry at {p} runs past the block",
                        dir.ino
                    ));
                }
                let name = &buf[p + 9..p + 9 + namelen];
                if name != b"." && name != b".." {
                    push(&mut out, name, ino)?;
                }
                p += size;
            }
        }
        Ok(out)
    }

    /// The inode of `path` (no symlink is followed).
    fn lookup(&self, path: &[u8]) -> XResult<Inode> {
        let mut cur = self.inode(self.g.root_ino)?;
        for part in components(path) {
            if part == b"." {
                continue;
            }
            if cur.mode & 0o170000 != 0o040000 {
                return Err(XErr::NotDir);
            }
            let entries = self.cached_dir(&cur)?;
            let ino = entries
                .iter()
                .find(|(n, _)| n == part)
                .map(|(_, i)| *i)
                .ok_or(XErr::NotFound)?;
            cur = self.inode(ino)?;
        }
        Ok(cur)
    }

    /// The entries of directory `dir`, through the look-up cache.
    fn cached_dir(&self, dir: &Inode) -> XResult<DirList> {
        let lock = || self.dir_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = lock().1.get(&dir.ino) {
            return Ok(l.clone());
        }
        let list = Arc::new(self.dir_entries(dir, usize::MAX)?);
        let mut c = lock();
        if c.0 + list.len() > DIR_CACHE_ENTRIES {
            c.1.clear();
            c.0 = 0;
        }
        if list.len() <= DIR_CACHE_ENTRIES {
            c.0 += list.len();
            c.1.insert(dir.ino, list.clone());
        }
        Ok(list)
    }

    fn inode_for(&self, path: &[u8], ino: u64) -> XResult<Inode> {
        if ino != 0 {
            self.inode(ino)
        } else {
            self.lookup(path)
        }
    }

    fn symlink_target(&self, inode: &Inode) -> XResult<Vec<u8>> {
        if inode.mode & 0o170000 != 0o120000 {
            return bad(format!("inode {} is not a symlink", inode.ino));
        }
        if inode.size == 0 || inode.size > MAX_SYMLINK {
            return bad(format!(
                "inode {}: symlink of {} bytes",
                inode.ino, inode.size
            ));
        }
        let size = inode.size as usize;
        if inode.format == FMT_LOCAL {
            return inode.fork.get(..size).map(<[u8]>::to_vec).ok_or_else(|| {
                XErr::Bad(format!(
                    "inode {}: inline symlink of {size} bytes in a {}-byte fork",
                    inode.ino,
                    inode.fork.len()
                ))
            });
        }
        let extents = self.extents(inode)?;
        let bs = self.g.block_size as usize;
        if !self.g.v5 {
            let mut buf = vec![0u8; size];
            self.read_mapped(&extents, 0, &mut buf)?;
            return Ok(buf);
        }
        // v5: each block starts with a 56-byte header (`XSLM`) before its part of the target.
        let mut out = Vec::with_capacity(size);
        let mut blk = 0u64;
        let mut block = vec![0u8; bs];
        while out.len() < size {
            self.read_mapped(&extents, blk * bs as u64, &mut block)?;
            if &block[0..4] != b"XSLM" {
                // mkfs.xfs -p of xfsprogs 6.1 writes a v5 remote symlink as bare data,
                // without the header (xfs_repair flags it, the kernel refuses it): read
                // as such, unless checksums are verified, the one check it cannot pass.
                if self.verify || blk != 0 {
                    return bad(format!(
                        "inode {}: remote symlink block {blk}: bad magic",
                        inode.ino
                    ));
                }
                let mut buf = vec![0u8; size];
                self.read_mapped(&extents, 0, &mut buf)?;
                return Ok(buf);
            }
            self.check_crc(&format!("inode {} symlink block", inode.ino), &block, 12, 0)?;
            let n = (size - out.len()).min(bs - 56);
            out.extend_from_slice(&block[56..56 + n]);
            blk += 1;
        }
        Ok(out)
    }

    fn fail(&self, path: &[u8], e: XErr) -> Error {
        e.into_error(&self.info.source, FS, Some(path))
    }
}

impl FileSystem for XfsFs {
    fn info(&self) -> FsInfo {
        self.info.clone()
    }

    fn lstat(&self, path: &[u8]) -> Result<Stat> {
        guarded(&self.info.source, FS, path, || {
            self.lookup(path)
                .and_then(|i| i.stat())
                .map_err(|e| self.fail(path, e))
        })
    }

    fn read_dir(&self, path: &[u8], limit: usize) -> Result<Vec<DirEntry>> {
        self.read_dir_by_inode(path, 0, limit)
    }

    fn read_dir_by_inode(&self, path: &[u8], ino: u64, limit: usize) -> Result<Vec<DirEntry>> {
        guarded(&self.info.source, FS, path, || {
            let run = || -> XResult<Vec<DirEntry>> {
                let dir = self.inode_for(path, ino)?;
                let mut out = Vec::new();
                for (name, ino) in self.dir_entries(&dir, limit)? {
                    let stat = self.inode(ino)?.stat()?;
                    out.push(DirEntry { name, stat });
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
            self.inode_for(path, ino)
                .and_then(|i| self.symlink_target(&i))
                .map_err(|e| self.fail(path, e))
        })
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + '_>> {
        self.open_by_inode(path, 0)
    }

    fn open_by_inode(&self, path: &[u8], ino: u64) -> Result<Box<dyn Read + '_>> {
        guarded(&self.info.source, FS, path, || {
            let run = || -> XResult<FileReader<'_>> {
                let inode = self.inode_for(path, ino)?;
                if inode.mode & 0o170000 != 0o100000 {
                    return bad(format!("inode {} is not a regular file", inode.ino));
                }
                if inode.realtime {
                    return bad(format!(
                        "inode {}: data on the realtime device is not read",
                        inode.ino
                    ));
                }
                let (extents, inline) = if inode.format == FMT_LOCAL {
                    let n = usize::try_from(inode.size).unwrap_or(usize::MAX);
                    let data = inode.fork.get(..n).map(<[u8]>::to_vec).ok_or_else(|| {
                        XErr::Bad(format!("inode {}: inline data past its fork", inode.ino))
                    })?;
                    (Vec::new(), Some(data))
                } else {
                    (self.extents(&inode)?, None)
                };
                Ok(FileReader {
                    fs: self,
                    path: path.to_vec(),
                    extents,
                    inline,
                    size: inode.size,
                    pos: 0,
                })
            };
            run().map_err(|e| self.fail(path, e))
        })
        .map(|r| Box::new(r) as Box<dyn Read + '_>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extent_record_fields() {
        // unwritten, startoff 5, startblock 2^44 + 0x1234 (split across the words),
        // blockcount 7.
        let start: u64 = (1 << 44) | 0x1234;
        let hi: u64 = (1 << 63) | (5 << 9) | (start >> 43);
        let lo: u64 = ((start & ((1 << 43) - 1)) << 21) | 7;
        let mut r = [0u8; 16];
        r[..8].copy_from_slice(&hi.to_be_bytes());
        r[8..].copy_from_slice(&lo.to_be_bytes());
        assert_eq!(
            parse_extent(&r),
            Extent {
                off: 5,
                start,
                len: 7,
                unwritten: true
            }
        );
    }

    #[test]
    fn uuid_text() {
        let u = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        assert_eq!(format_uuid(&u), "12345678-9abc-def0-0102-030405060708");
    }
}
