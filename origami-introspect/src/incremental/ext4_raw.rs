//! A small raw reader of ext2/3/4 metadata for incremental crawls: the superblock, the
//! group descriptors, where each group's inode table lies and how much of it is in use, and
//! the raw inodes themselves, digested.
//!
//! It reads no file and resolves no path (that stays `ext4-view`'s job); it only says which
//! inodes changed since a previous crawl. Every size comes from the guest and is checked
//! against the volume before it steers a read or sizes an allocation; errors name the
//! volume and the byte offset. Not read: `meta_bg` group descriptors (refused, so the
//! caller crawls in full), the journal (a file system that needs recovery is flagged:
//! its inode tables may be older than what `ext4-view`, which replays the journal, shows).

use std::ops::Range;

use origami_core::bytes::{le16, le32};
use origami_core::ReadAt;

use crate::error::{Error, Result};

const SUPERBLOCK: u64 = 1024;
const MAGIC: u16 = 0xEF53;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_64BIT: u32 = 0x80;
const RO_COMPAT_GDT_CSUM: u32 = 0x10;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
const BG_INODE_UNINIT: u16 = 0x1;
/// More groups than this (a 128 TiB file system of 4 KiB blocks) is refused.
const MAX_GROUPS: u64 = 1 << 20;

/// The root directory's inode number.
pub const ROOT_INO: u64 = 2;

/// One block group's inode table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupTable {
    /// Byte offset of the table in the volume.
    pub offset: u64,
    /// Inodes of the table that may be in use (the rest were never initialised).
    pub used: u32,
}

/// What an incremental crawl needs of one ext4 volume's metadata.
#[derive(Debug, Clone)]
pub struct RawExt4 {
    /// The file-system UUID, as `blkid` prints it.
    pub uuid: String,
    /// Bytes per block.
    pub block_size: u64,
    /// Blocks in the file system.
    pub blocks: u64,
    /// Inodes per block group.
    pub inodes_per_group: u32,
    /// Bytes per on-disk inode.
    pub inode_size: u32,
    /// The journal has transactions not yet written to their place (`needs_recovery`).
    pub needs_recovery: bool,
    /// Each group's inode table.
    pub groups: Vec<GroupTable>,
}

fn bad(source: &dyn ReadAt, offset: u64, what: String) -> Error {
    Error::FileSystem {
        source_name: source.name(),
        fs: "ext4",
        path: None,
        what: format!("raw metadata at offset {offset:#x}: {what}"),
    }
}

impl RawExt4 {
    /// Reads the superblock and group descriptors of the ext4 file system on `source`.
    pub fn open(source: &dyn ReadAt) -> Result<RawExt4> {
        if source.len() < 2048 {
            return Err(bad(source, 0, "volume too small for a superblock".into()));
        }
        let mut sb = [0u8; 1024];
        source.read_at(SUPERBLOCK, &mut sb)?;
        if le16(&sb, 0x38) != MAGIC {
            return Err(bad(source, SUPERBLOCK + 0x38, "no ext2/3/4 magic".into()));
        }
        let log = le32(&sb, 0x18);
        if log > 6 {
            return Err(bad(
                source,
                SUPERBLOCK + 0x18,
                format!("block size 2^(10+{log})"),
            ));
        }
        let block_size = 1024u64 << log;
        let incompat = le32(&sb, 0x60);
        let ro_compat = le32(&sb, 0x64);
        if incompat & INCOMPAT_META_BG != 0 {
            return Err(bad(
                source,
                SUPERBLOCK + 0x60,
                "meta_bg group descriptors are not read".into(),
            ));
        }
        let mut blocks = u64::from(le32(&sb, 0x4));
        let is64 = incompat & INCOMPAT_64BIT != 0;
        if is64 {
            blocks |= u64::from(le32(&sb, 0x150)) << 32;
        }
        if blocks
            .checked_mul(block_size)
            .is_none_or(|b| b > source.len())
        {
            return Err(bad(
                source,
                SUPERBLOCK + 0x4,
                format!("{blocks} blocks do not fit in {} bytes", source.len()),
            ));
        }
        let first_data_block = u64::from(le32(&sb, 0x14));
        let blocks_per_group = u64::from(le32(&sb, 0x20));
        let inodes_per_group = le32(&sb, 0x28);
        let rev = le32(&sb, 0x4C);
        let inode_size = if rev == 0 {
            128
        } else {
            u32::from(le16(&sb, 0x58))
        };
        if blocks_per_group == 0 || inodes_per_group == 0 {
            return Err(bad(
                source,
                SUPERBLOCK + 0x20,
                "zero blocks or inodes per group".into(),
            ));
        }
        if !inode_size.is_power_of_two() || !(128..=block_size as u32).contains(&inode_size) {
            return Err(bad(
                source,
                SUPERBLOCK + 0x58,
                format!("inode size {inode_size}"),
            ));
        }
        let desc_size = if is64 { u64::from(le16(&sb, 0xFE)) } else { 32 };
        if !(32..=1024).contains(&desc_size) || !desc_size.is_power_of_two() {
            return Err(bad(
                source,
                SUPERBLOCK + 0xFE,
                format!("group descriptor size {desc_size}"),
            ));
        }
        let groups = blocks
            .saturating_sub(first_data_block)
            .div_ceil(blocks_per_group);
        if groups == 0 || groups > MAX_GROUPS {
            return Err(bad(
                source,
                SUPERBLOCK + 0x20,
                format!("{groups} block groups"),
            ));
        }
        let gdt = (first_data_block + 1) * block_size;
        let gdt_len = groups * desc_size;
        if gdt.checked_add(gdt_len).is_none_or(|e| e > source.len()) {
            return Err(bad(source, gdt, "group descriptors past the volume".into()));
        }
        // Bounded: at most MAX_GROUPS descriptors of at most 1 KiB, and inside the volume.
        let mut raw = vec![0u8; gdt_len as usize];
        source.read_at(gdt, &mut raw)?;
        let trust_unused = ro_compat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM) != 0;
        let table_bytes = u64::from(inodes_per_group) * u64::from(inode_size);
        let mut tables = Vec::with_capacity(groups as usize);
        for g in 0..groups as usize {
            let d = &raw[g * desc_size as usize..(g + 1) * desc_size as usize];
            let mut block = u64::from(le32(d, 0x8));
            if is64 && desc_size >= 64 {
                block |= u64::from(le32(d, 0x28)) << 32;
            }
            let mut used = inodes_per_group;
            if trust_unused {
                let flags = le16(d, 0x12);
                let mut unused = u32::from(le16(d, 0x1C));
                if is64 && desc_size >= 64 {
                    unused |= u32::from(le16(d, 0x32)) << 16;
                }
                used = if flags & BG_INODE_UNINIT != 0 {
                    0
                } else {
                    inodes_per_group.saturating_sub(unused)
                };
            }
            let offset = block.checked_mul(block_size);
            match offset.and_then(|o| o.checked_add(table_bytes)) {
                Some(end) if end <= source.len() => {}
                _ => {
                    return Err(bad(
                        source,
                        gdt + (g as u64) * desc_size,
                        format!("group {g}'s inode table at block {block} lies past the volume"),
                    ))
                }
            }
            tables.push(GroupTable {
                offset: block * block_size,
                used,
            });
        }
        Ok(RawExt4 {
            uuid: crate::fs::format_uuid(&sb[0x68..0x78]),
            block_size,
            blocks,
            inodes_per_group,
            inode_size,
            needs_recovery: incompat & INCOMPAT_RECOVER != 0,
            groups: tables,
        })
    }

    /// The inode number of index `i` of group `g`'s table.
    pub fn ino(&self, g: usize, i: u32) -> u64 {
        g as u64 * u64::from(self.inodes_per_group) + u64::from(i) + 1
    }

    /// The bytes of the volume holding the used inodes `range` of group `g`'s table.
    pub fn table_bytes(&self, g: usize, range: Range<u32>) -> Range<u64> {
        let t = &self.groups[g];
        let size = u64::from(self.inode_size);
        t.offset + u64::from(range.start) * size..t.offset + u64::from(range.end) * size
    }

    /// Inodes per block of an inode table (the unit of [`RawExt4::scan`]'s block digests).
    pub fn per_block(&self) -> u32 {
        (self.block_size / u64::from(self.inode_size)).clamp(1, 1 << 16) as u32
    }

    /// The used inodes of block `b` of group `g`'s inode table.
    pub fn block_inodes(&self, g: usize, b: u32) -> Range<u32> {
        let used = self.groups.get(g).map_or(0, |t| t.used);
        let pb = self.per_block();
        let start = b.saturating_mul(pb).min(used);
        start..start.saturating_add(pb).min(used)
    }

    /// Reads the blocks `blocks` of group `g`'s inode table (their used inodes) and digests
    /// each with `key` ([`digest_block`]). A block whose digest `previous.block(b)` gives back held
    /// what it held: its inodes are not digested one by one; every other block's inodes
    /// are ([`digest_inode`], the content's digest taken from `previous.inode(index)` when
    /// the whole inode's is the previous one) and go to `out`, as each block's digest.
    /// Reads at most 1 MiB at a time.
    pub fn scan(
        &self,
        source: &dyn ReadAt,
        key: &[u8; 32],
        g: usize,
        blocks: Range<u32>,
        previous: &Previous<'_>,
        out: &mut Scanned,
    ) -> Result<()> {
        let size = self.inode_size as usize;
        let pb = self.per_block();
        let per_read = ((1u32 << 20) / (pb * self.inode_size).max(1)).max(1);
        let mut buf = Vec::new();
        let mut b = blocks.start;
        while b < blocks.end {
            let n = per_read.min(blocks.end - b);
            let first = self.block_inodes(g, b);
            let last = self.block_inodes(g, b + n - 1);
            if first.start >= last.end {
                break;
            }
            let bytes = self.table_bytes(g, first.start..last.end);
            buf.resize((bytes.end - bytes.start) as usize, 0);
            source.read_at(bytes.start, &mut buf)?;
            for k in b..b + n {
                let r = self.block_inodes(g, k);
                let at = (r.start - first.start) as usize * size;
                let Some(raw) = buf.get(at..at + (r.end - r.start) as usize * size) else {
                    break;
                };
                if raw.is_empty() {
                    continue;
                }
                let d = digest_block(key, raw);
                out.blocks.push((k, d));
                if (previous.block)(k) == Some(d) {
                    continue;
                }
                for (j, inode) in raw.chunks_exact(size).enumerate() {
                    let i = r.start + j as u32;
                    let all = digest_all(key, inode);
                    let d = match (previous.inode)(i) {
                        Some(p) if p.all == all => p,
                        _ => digest_inode(key, inode),
                    };
                    out.inodes.push((i, d));
                }
            }
            b += n;
        }
        Ok(())
    }
}

/// What the previous crawl knew of one group's inode table, for [`RawExt4::scan`].
pub struct Previous<'p> {
    /// The digest of block `b` of the table, when known.
    pub block: &'p dyn Fn(u32) -> Option<u64>,
    /// The digests of inode `index` of the table, when known.
    pub inode: &'p dyn Fn(u32) -> Option<InodeDigests>,
}

/// What [`RawExt4::scan`] found: each block's digest, and the digests of the inodes of the
/// blocks that changed.
#[derive(Debug, Default)]
pub struct Scanned {
    /// (block of the table, its digest).
    pub blocks: Vec<(u32, u64)>,
    /// (inode index in the table, its digests), for the blocks whose digest changed.
    pub inodes: Vec<(u32, InodeDigests)>,
}

/// The keyed digest of the raw bytes of (the used part of) an inode-table block.
pub fn digest_block(key: &[u8; 32], raw: &[u8]) -> u64 {
    first_u64(blake3::keyed_hash(key, raw))
}

fn first_u64(h: blake3::Hash) -> u64 {
    let mut d = [0u8; 8];
    d.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(d)
}

const EXTENTS_FL: u32 = 0x8_0000;
const INLINE_DATA_FL: u32 = 0x1000_0000;
const EXTENT_MAGIC: u16 = 0xF30A;
/// The most extents (and index entries) followed for one inode, and the deepest tree.
const MAX_EXTENTS: usize = 4096;
const MAX_DEPTH: u16 = 5;

impl RawExt4 {
    /// The raw bytes of inode `ino`.
    pub fn read_inode(&self, source: &dyn ReadAt, ino: u64) -> Result<Vec<u8>> {
        let ipg = u64::from(self.inodes_per_group);
        let idx = ino
            .checked_sub(1)
            .ok_or_else(|| bad(source, 0, "inode 0".into()))?;
        let (g, i) = ((idx / ipg) as usize, (idx % ipg) as u32);
        if g >= self.groups.len() {
            return Err(bad(source, 0, format!("inode {ino} past the last group")));
        }
        let r = self.table_bytes(g, i..i + 1);
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        source.read_at(r.start, &mut buf)?;
        Ok(buf)
    }

    /// The bytes of the volume an inode's content lies in, with the extent-tree blocks
    /// below its root: `Some(vec![])` for inline data (the inode holds it), `None` for an
    /// inode mapped by block lists (ext2/3) or a tree past the bounds.
    pub fn extent_ranges(
        &self,
        source: &dyn ReadAt,
        raw: &[u8],
    ) -> Result<Option<Vec<Range<u64>>>> {
        if raw.len() < 0x28 + 60 {
            return Ok(None);
        }
        let flags = le32(raw, 0x20);
        if flags & INLINE_DATA_FL != 0 {
            return Ok(Some(Vec::new()));
        }
        if flags & EXTENTS_FL == 0 {
            return Ok(None);
        }
        let mut out = Vec::new();
        let root = raw[0x28..0x28 + 60].to_vec();
        if !self.walk_node(source, &root, MAX_DEPTH, &mut out)? {
            return Ok(None);
        }
        out.sort_by_key(|r: &Range<u64>| r.start);
        Ok(Some(out))
    }

    /// Adds the ranges of one extent-tree node; false when the tree breaks a bound or
    /// does not parse (the caller then trusts nothing of it).
    fn walk_node(
        &self,
        source: &dyn ReadAt,
        node: &[u8],
        depth_left: u16,
        out: &mut Vec<Range<u64>>,
    ) -> Result<bool> {
        if node.len() < 12 || le16(node, 0) != EXTENT_MAGIC {
            return Ok(false);
        }
        let entries = usize::from(le16(node, 2));
        let depth = le16(node, 6);
        if depth > depth_left || 12 + entries * 12 > node.len() {
            return Ok(false);
        }
        for k in 0..entries {
            if out.len() >= MAX_EXTENTS {
                return Ok(false);
            }
            let e = &node[12 + k * 12..24 + k * 12];
            if depth == 0 {
                let mut len = u64::from(le16(e, 4));
                if len > 32768 {
                    len -= 32768;
                }
                let start = (u64::from(le16(e, 6)) << 32) | u64::from(le32(e, 8));
                if start.checked_add(len).is_none_or(|end| end > self.blocks) {
                    return Ok(false);
                }
                out.push(start * self.block_size..(start + len) * self.block_size);
            } else {
                let leaf = (u64::from(le16(e, 8)) << 32) | u64::from(le32(e, 4));
                if leaf >= self.blocks {
                    return Ok(false);
                }
                let at = leaf * self.block_size;
                out.push(at..at + self.block_size);
                let mut child = vec![0u8; self.block_size as usize];
                source.read_at(at, &mut child)?;
                if !self.walk_node(source, &child, depth - 1, out)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

/// The digest of the bytes of `ranges` (at most `limit` bytes; `None` past it).
pub fn digest_ranges(
    source: &dyn ReadAt,
    key: &[u8; 32],
    ranges: &[Range<u64>],
    limit: u64,
) -> Result<Option<u64>> {
    let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    if total > limit {
        return Ok(None);
    }
    let mut h = blake3::Hasher::new_keyed(key);
    let mut buf = Vec::new();
    for r in ranges {
        let mut at = r.start;
        while at < r.end {
            let n = (r.end - at).min(1 << 20);
            buf.resize(n as usize, 0);
            source.read_at(at, &mut buf)?;
            h.update(&buf);
            at += n;
        }
    }
    Ok(Some(first_u64(h.finalize())))
}

/// The `all` digest of [`digest_inode`] alone.
pub fn digest_all(key: &[u8; 32], raw: &[u8]) -> u64 {
    digest_masked(key, raw, &mut [0u8; 1024]).0
}

/// Copies `raw` (its first 1 KiB) into `copy` with what changes when a file is only read
/// zeroed (the access time and, with it, the inode checksum), and digests that: the digest
/// and the length copied.
fn digest_masked(key: &[u8; 32], raw: &[u8], copy: &mut [u8; 1024]) -> (u64, usize) {
    let n = raw.len().min(copy.len());
    let c = &mut copy[..n];
    c.copy_from_slice(&raw[..n]);
    // i_atime, l_i_checksum_lo.
    for r in [0x08..0x0C, 0x7C..0x7E] {
        if let Some(f) = c.get_mut(r) {
            f.fill(0);
        }
    }
    // i_checksum_hi and i_atime_extra, when the extra part covers them.
    let extra = 128 + usize::from(le16(c, 0x80).min(1024));
    for r in [0x82..0x84, 0x8C..0x90] {
        if r.end <= extra.min(n) {
            c[r].fill(0);
        }
    }
    (first_u64(blake3::keyed_hash(key, c)), n)
}

/// What [`digest_inode`] says of one raw inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InodeDigests {
    /// The digest of the whole inode but what changes when a file is only read.
    pub all: u64,
    /// The digest of what says where the content lies and when it was last written.
    pub content: u64,
    /// `i_generation`.
    pub generation: u32,
}

/// The digests of a raw inode:
///
/// - `all`: every byte but what changes when a file is only read (the access time and,
///   with it, the inode checksum);
/// - `content`: the file type, size, flags, block map or extent-tree root (or inline
///   data), modification time and generation. Every write through the file system changes
///   the modification time or the map (the rule the whole incremental crawl rests on), so
///   an inode whose `all` changed but `content` did not (a chmod, a chown, a new link)
///   still holds the content it held.
pub fn digest_inode(key: &[u8; 32], raw: &[u8]) -> InodeDigests {
    let mut copy = [0u8; 1024];
    let (all, n) = digest_masked(key, raw, &mut copy);
    let c = &copy[..n];
    let extra = 128 + usize::from(le16(c, 0x80).min(1024));
    // The content's part: type bits, size (low and high), mtime, flags, i_block (with
    // generation right after), and mtime_extra when present.
    let mut part = [0u8; 2 + 4 + 4 + 4 + 60 + 4 + 4 + 4];
    if n >= 0x70 {
        let mode = le16(c, 0) & 0xF000;
        part[0..2].copy_from_slice(&mode.to_le_bytes());
        part[2..6].copy_from_slice(&c[0x04..0x08]);
        part[6..10].copy_from_slice(&c[0x10..0x14]);
        part[10..14].copy_from_slice(&c[0x20..0x24]);
        part[14..78].copy_from_slice(&c[0x28..0x68]);
        part[78..82].copy_from_slice(&c[0x6C..0x70]);
        if 0x8C <= extra.min(n) {
            part[82..86].copy_from_slice(&c[0x88..0x8C]);
        }
    }
    let content = first_u64(blake3::keyed_hash(key, &part));
    let generation = if n >= 0x68 { le32(c, 0x64) } else { 0 };
    InodeDigests {
        all,
        content,
        generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: [u8; 32] = [1; 32];

    #[test]
    fn digests_depend_on_the_key() {
        let a = vec![5u8; 256];
        let other = [2u8; 32];
        assert_ne!(digest_inode(&K, &a).all, digest_inode(&other, &a).all);
        assert_ne!(
            digest_inode(&K, &a).content,
            digest_inode(&other, &a).content
        );
        assert_ne!(digest_block(&K, &a), digest_block(&other, &a));
        assert_eq!(digest_block(&K, &a), digest_block(&K, &a));
    }

    #[test]
    fn digest_ignores_access_time_only() {
        let mut a = vec![0u8; 256];
        a[0x80] = 32; // extra isize
        a[0x64] = 7;
        let d0 = digest_inode(&K, &a);
        assert_eq!(d0.generation, 7);
        a[0x08] = 1;
        a[0x8C] = 1;
        a[0x7C] = 9;
        assert_eq!(digest_inode(&K, &a), d0);
        a[0x00] = 0x80; // permission bits (0o200): metadata only
        a[0x02] = 3; // uid
        let chmod = digest_inode(&K, &a);
        assert_ne!(chmod.all, d0.all);
        assert_eq!(chmod.content, d0.content);
        a[0x10] = 1; // mtime
        let written = digest_inode(&K, &a);
        assert_ne!(written.all, chmod.all);
        assert_ne!(written.content, d0.content);
        a[0x10] = 0;
        a[0x30] = 1; // the extent root
        assert_ne!(digest_inode(&K, &a).content, d0.content);
    }

    #[test]
    fn refuses_garbage() {
        let v = vec![0u8; 4096];
        assert!(RawExt4::open(&v).is_err());
        let mut v = vec![0u8; 8192];
        v[1024 + 0x38] = 0x53;
        v[1024 + 0x39] = 0xEF;
        v[1024 + 0x18] = 9;
        assert!(RawExt4::open(&v).is_err());
    }
}
