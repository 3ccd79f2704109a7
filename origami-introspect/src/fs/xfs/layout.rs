//! The superblock's geometry and the on-disk inode and extent records of XFS (see the
//! parent module).

use super::*;

/// The superblock fields this reader uses, validated.
#[derive(Debug, Clone)]
pub(super) struct Geometry {
    pub(super) block_size: u64,
    pub(super) ag_blocks: u64,
    pub(super) ag_blk_log: u32,
    pub(super) ag_count: u64,
    pub(super) inode_size: usize,
    pub(super) inop_blog: u32,
    pub(super) dir_blk_size: u64,
    pub(super) root_ino: u64,
    pub(super) v5: bool,
    pub(super) ftype: bool,
    pub(super) nrext64: bool,
}

impl Geometry {
    /// Byte offset of file-system block `fsb` (AG number in the high bits), checking that
    /// `count` blocks from it stay inside its allocation group.
    pub(super) fn block_offset(&self, fsb: u64, count: u64) -> XResult<u64> {
        let agno = fsb >> self.ag_blk_log;
        let agbno = fsb & ((1u64 << self.ag_blk_log) - 1);
        if agno >= self.ag_count || agbno.saturating_add(count) > self.ag_blocks {
            return bad(format!(
                "block {fsb:#x} (+{count}) is outside the file system (AG {agno}, block {agbno})"
            ));
        }
        Ok((agno * self.ag_blocks + agbno) * self.block_size)
    }
}

/// Known v5 incompatible features: ftype, sparse inodes, meta_uuid, bigtime,
/// needsrepair, nrext64, exchange-range, parent pointers (none changes how a directory
/// or file is read).
pub(super) const INCOMPAT_KNOWN: u32 = 0xff;
pub(super) const INCOMPAT_FTYPE: u32 = 1;
pub(super) const INCOMPAT_NREXT64: u32 = 1 << 5;
/// v4: version-2 directories are required; `features2` bit 0x200 is the ftype field.
pub(super) const V4_DIRV2: u16 = 0x2000;
pub(super) const V4_MOREBITS: u16 = 0x8000;
pub(super) const V4_FEATURES2_FTYPE: u32 = 0x200;

pub(super) fn parse_superblock(
    sb: &[u8],
    image_len: u64,
    verify: bool,
) -> XResult<(Geometry, FsInfo)> {
    if sb.get(0..4) != Some(&MAGIC[..]) {
        return bad("bad superblock magic at offset 0");
    }
    let block_size = u64::from(be32(sb, 4));
    let dblocks = be64(sb, 8);
    let version = be16(sb, 100);
    let sect_size = be16(sb, 102);
    let inode_size = be16(sb, 104);
    let inopblock = be16(sb, 106);
    let block_log = u32::from(sb[120]);
    let inode_log = u32::from(sb[122]);
    let inop_blog = u32::from(sb[123]);
    let ag_blk_log = u32::from(sb[124]);
    let ag_blocks = u64::from(be32(sb, 84));
    let ag_count = u64::from(be32(sb, 88));
    let dir_blk_log = u32::from(sb[192]);
    let v = version & 0xf;
    if v != 4 && v != 5 {
        return bad(format!("superblock version {v} (only 4 and 5 are read)"));
    }
    if !(9..=16).contains(&block_log) || block_size != 1 << block_log {
        return bad(format!("block size {block_size} (log {block_log})"));
    }
    if !sect_size.is_power_of_two() || !(512..=32768).contains(&sect_size) {
        return bad(format!("sector size {sect_size}"));
    }
    if !(8..=11).contains(&inode_log)
        || u32::from(inode_size) != 1 << inode_log
        || inop_blog != block_log.saturating_sub(inode_log)
        || u64::from(inopblock) != block_size >> inode_log
    {
        return bad(format!(
            "inode size {inode_size} (log {inode_log}, {inopblock} per block)"
        ));
    }
    if ag_blocks == 0
        || ag_count == 0
        || ag_blk_log > 31
        || ag_blocks > 1 << ag_blk_log
        || (ag_blk_log > 0 && ag_blocks <= 1 << (ag_blk_log - 1))
    {
        return bad(format!(
            "allocation groups: {ag_count} of {ag_blocks} blocks (log {ag_blk_log})"
        ));
    }
    // The last group may be short, the others are whole.
    if dblocks > ag_count * ag_blocks || dblocks <= (ag_count - 1) * ag_blocks {
        return bad(format!(
            "{dblocks} blocks for {ag_count} groups of {ag_blocks}"
        ));
    }
    match dblocks.checked_mul(block_size) {
        Some(n) if n <= image_len => {}
        _ => {
            return bad(format!(
                "{dblocks} blocks of {block_size} bytes do not fit in the {image_len} bytes of the image"
            ))
        }
    }
    let dir_blk_size = block_size << dir_blk_log.min(8);
    if dir_blk_log > 8 || dir_blk_size > 65536 {
        return bad(format!("directory block size 2^{dir_blk_log} blocks"));
    }
    let (ftype, nrext64) = if v == 5 {
        let incompat = be32(sb, 216);
        if incompat & !INCOMPAT_KNOWN != 0 {
            return bad(format!(
                "unknown incompatible features {:#x}",
                incompat & !INCOMPAT_KNOWN
            ));
        }
        if verify {
            let want = u32::from_le_bytes([sb[224], sb[225], sb[226], sb[227]]);
            let got = crc::crc32c_with_hole(&sb[..usize::from(sect_size)], 224);
            if want != got {
                return bad(format!(
                    "superblock checksum {want:#010x}, computed {got:#010x}"
                ));
            }
        }
        (
            incompat & INCOMPAT_FTYPE != 0,
            incompat & INCOMPAT_NREXT64 != 0,
        )
    } else {
        if version & V4_DIRV2 == 0 {
            return bad("version-1 directories (before 2002) are not read");
        }
        let f2 = if version & V4_MOREBITS != 0 {
            be32(sb, 200)
        } else {
            0
        };
        (f2 & V4_FEATURES2_FTYPE != 0, false)
    };
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&sb[32..48]);
    let label_raw = &sb[108..120];
    let end = label_raw.iter().position(|&b| b == 0).unwrap_or(12);
    let label = String::from_utf8_lossy(&label_raw[..end]).into_owned();
    let g = Geometry {
        block_size,
        ag_blocks,
        ag_blk_log,
        ag_count,
        inode_size: usize::from(inode_size),
        inop_blog,
        dir_blk_size,
        root_ino: be64(sb, 56),
        v5: v == 5,
        ftype,
        nrext64,
    };
    let info = FsInfo {
        kind: FsKind::Xfs,
        uuid: Some(format_uuid(&uuid)),
        label: Some(label).filter(|l| !l.is_empty()),
        source: String::new(),
    };
    Ok((g, info))
}

/// One mapping of file blocks to disk blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Extent {
    /// First file block.
    pub(super) off: u64,
    /// First file-system block (AG number in the high bits).
    pub(super) start: u64,
    /// Length in blocks.
    pub(super) len: u64,
    /// Allocated but never written: reads as zeros.
    pub(super) unwritten: bool,
}

pub(super) fn parse_extent(r: &[u8]) -> Extent {
    let hi = be64(r, 0);
    let lo = be64(r, 8);
    Extent {
        unwritten: hi >> 63 != 0,
        off: (hi >> 9) & ((1u64 << 54) - 1),
        start: ((hi & 0x1ff) << 43) | (lo >> 21),
        len: lo & ((1u64 << 21) - 1),
    }
}

/// The inode fields this reader uses.
#[derive(Debug, Clone)]
pub(super) struct Inode {
    pub(super) ino: u64,
    pub(super) mode: u16,
    pub(super) format: u8,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) size: u64,
    pub(super) mtime: i64,
    pub(super) nextents: u64,
    pub(super) realtime: bool,
    /// The data fork, as stored in the inode.
    pub(super) fork: Vec<u8>,
}

impl Inode {
    pub(super) fn file_type(&self) -> XResult<FileType> {
        Ok(match self.mode & 0o170000 {
            0o040000 => FileType::Dir,
            0o100000 => FileType::File,
            0o120000 => FileType::Symlink,
            0o020000 => FileType::Char,
            0o060000 => FileType::Block,
            0o010000 => FileType::Fifo,
            0o140000 => FileType::Socket,
            m => return bad(format!("inode {}: file type {m:#o}", self.ino)),
        })
    }

    pub(super) fn stat(&self) -> XResult<Stat> {
        Ok(Stat {
            file_type: self.file_type()?,
            mode: u32::from(self.mode) & 0o7777,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            mtime: self.mtime,
            ino: self.ino,
            fat_attrs: String::new(),
            ntfs: None,
        })
    }
}

/// Data fork formats.
pub(super) const FMT_DEV: u8 = 0;
pub(super) const FMT_LOCAL: u8 = 1;
pub(super) const FMT_EXTENTS: u8 = 2;
pub(super) const FMT_BTREE: u8 = 3;
