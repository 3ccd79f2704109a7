//! What changed in a qcow2 image, as a [`DirtyMap`]: its persistent dirty bitmaps (the
//! `bitmaps` header extension, QEMU's `qemu-img bitmap --add --enable`) and the clusters
//! allocated in the image itself rather than in its backing file (an external snapshot's
//! overlay holds exactly what the guest wrote since the snapshot).
//!
//! A bitmap is believed only when the image says it is consistent: the autoclear bit that
//! validates the extension is set and the bitmap is not flagged `in_use` (QEMU sets that
//! while it has the image open and clears it when it stores the bitmap at a clean shutdown;
//! a bitmap still in use may miss writes). Every field is checked against the file before it
//! steers a read: the directory is at most 64 MiB, a bitmap table's length must be what the
//! virtual size and granularity need, and a data cluster must lie inside the file.

use std::ops::Range;

use crate::bytes::{be32, be64};
use crate::dirty::DirtyMap;
use crate::error::{Error, Result};
use crate::read::ReadAt;

use super::Qcow2Image;

const EXT_BITMAPS: u32 = 0x2385_2875;
const AUTOCLEAR_BITMAPS: u64 = 1;
const FLAG_IN_USE: u32 = 1;
const FLAG_AUTO: u32 = 2;
/// qemu's own bounds: bitmaps per image and the directory's size.
const MAX_BITMAPS: u32 = 65535;
const MAX_DIRECTORY: u64 = 64 << 20;
/// Entries of one bitmap table read at most (qemu: `BME_MAX_TABLE_SIZE`).
const MAX_TABLE: u32 = 0x800_0000;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A persistent bitmap as its directory entry describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitmapInfo {
    /// Its name.
    pub name: String,
    /// Guest bytes one bit stands for.
    pub granularity: u64,
    /// QEMU records writes in it (`auto`: an enabled bitmap).
    pub enabled: bool,
    /// QEMU had it open and did not store it back: it may miss writes.
    pub in_use: bool,
    table_offset: u64,
    table_size: u32,
}

impl Qcow2Image {
    fn bitmap_corrupt(&self, offset: u64, reason: String) -> Error {
        Error::Corrupt {
            source_name: self.file.name(),
            offset,
            reason: format!("bitmaps: {reason}"),
        }
    }

    /// The persistent bitmaps of the image (none for a version 2 image or one without the
    /// extension; none either when the extension is not marked consistent, as QEMU would
    /// ignore it).
    pub fn bitmaps(&self) -> Result<Vec<BitmapInfo>> {
        if self.header.version < 3 {
            return Ok(Vec::new());
        }
        let mut h = [0u8; 104];
        self.file.read_at(0, &mut h)?;
        if be64(&h, 88) & AUTOCLEAR_BITMAPS == 0 {
            return Ok(Vec::new());
        }
        let Some((count, dir_size, dir_offset)) = self.bitmaps_extension(be32(&h, 100))? else {
            return Ok(Vec::new());
        };
        if count > MAX_BITMAPS || dir_size > MAX_DIRECTORY {
            return Err(self.bitmap_corrupt(
                dir_offset,
                format!("{count} bitmaps in a directory of {dir_size} bytes"),
            ));
        }
        if dir_offset
            .checked_add(dir_size)
            .is_none_or(|e| e > self.file.len())
        {
            return Err(self.bitmap_corrupt(dir_offset, "directory lies past the file".into()));
        }
        let mut dir = vec![0u8; dir_size as usize];
        self.file.read_at(dir_offset, &mut dir)?;
        let mut out = Vec::new();
        let mut at = 0usize;
        for _ in 0..count {
            let here = dir_offset + at as u64;
            let Some(e) = dir.get(at..at + 24) else {
                return Err(self.bitmap_corrupt(here, "directory entry cut short".into()));
            };
            let (name_size, extra) = (usize::from(be16(e, 18)), be32(e, 20) as usize);
            let gbits = u32::from(e[17]);
            if e[16] != 1 || !(9..=31).contains(&gbits) {
                return Err(
                    self.bitmap_corrupt(here, format!("type {} granularity 2^{gbits}", e[16]))
                );
            }
            let name_at = at + 24 + extra;
            let Some(name) = dir.get(name_at..name_at + name_size) else {
                return Err(self.bitmap_corrupt(here, "name past the directory".into()));
            };
            out.push(BitmapInfo {
                name: String::from_utf8_lossy(name).into_owned(),
                granularity: 1 << gbits,
                enabled: be32(e, 12) & FLAG_AUTO != 0,
                in_use: be32(e, 12) & FLAG_IN_USE != 0,
                table_offset: be64(e, 0),
                table_size: be32(e, 8),
            });
            at = (name_at + name_size).next_multiple_of(8);
        }
        Ok(out)
    }

    /// The bitmaps extension's (count, directory size, directory offset), if present.
    fn bitmaps_extension(&self, header_length: u32) -> Result<Option<(u32, u64, u64)>> {
        let mut at = u64::from(header_length);
        let end = self.cluster_size.min(self.file.len());
        // Each extension takes at least 8 bytes: the walk ends within the first cluster.
        while at + 8 <= end {
            let mut h = [0u8; 8];
            self.file.read_at(at, &mut h)?;
            let (kind, len) = (be32(&h, 0), u64::from(be32(&h, 4)));
            if kind == 0 {
                break;
            }
            if kind == EXT_BITMAPS {
                if len < 24 || at + 8 + 24 > end {
                    return Err(self.bitmap_corrupt(at, format!("extension of {len} bytes")));
                }
                let mut d = [0u8; 24];
                self.file.read_at(at + 8, &mut d)?;
                return Ok(Some((be32(&d, 0), be64(&d, 8), be64(&d, 16))));
            }
            at += 8 + len.next_multiple_of(8);
        }
        Ok(None)
    }

    /// The guest ranges the persistent bitmap `name` marks as written. An error when the
    /// image has no such bitmap, or QEMU left it in use (it may miss writes).
    pub fn persistent_bitmap(&self, name: &str) -> Result<DirtyMap> {
        let bitmaps = self.bitmaps()?;
        let Some(b) = bitmaps.iter().find(|b| b.name == name) else {
            return Err(self.bitmap_corrupt(
                0,
                format!(
                    "no persistent bitmap named {name:?} (it has: {})",
                    bitmaps
                        .iter()
                        .map(|b| b.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        if b.in_use {
            return Err(self.bitmap_corrupt(
                b.table_offset,
                format!("bitmap {name:?} is marked in use (QEMU did not store it back)"),
            ));
        }
        let size = self.header.size;
        let bits = size.div_ceil(b.granularity);
        let bits_per_cluster = self.cluster_size * 8;
        let needed = bits.div_ceil(bits_per_cluster);
        if u64::from(b.table_size) != needed || b.table_size > MAX_TABLE {
            return Err(self.bitmap_corrupt(
                b.table_offset,
                format!(
                    "bitmap {name:?}'s table has {} entries, the disk needs {needed}",
                    b.table_size
                ),
            ));
        }
        let table_bytes = u64::from(b.table_size) * 8;
        if b.table_offset
            .checked_add(table_bytes)
            .is_none_or(|e| e > self.file.len())
        {
            return Err(self.bitmap_corrupt(b.table_offset, "table lies past the file".into()));
        }
        let mut table = vec![0u8; table_bytes as usize];
        self.file.read_at(b.table_offset, &mut table)?;
        let mut ranges: Vec<Range<u64>> = Vec::new();
        let mut push = |start_bit: u64, end_bit: u64| {
            let r = start_bit * b.granularity..(end_bit * b.granularity).min(size);
            match ranges.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => ranges.push(r),
            }
        };
        let mut data = vec![0u8; self.cluster_size as usize];
        for (i, entry) in table.chunks_exact(8).map(|c| be64(c, 0)).enumerate() {
            let first = i as u64 * bits_per_cluster;
            let last = (first + bits_per_cluster).min(bits);
            let host = entry & super::tables::OFFSET_MASK;
            if host == 0 {
                if entry & 1 != 0 {
                    push(first, last);
                }
                continue;
            }
            if !host.is_multiple_of(self.cluster_size)
                || host
                    .checked_add(self.cluster_size)
                    .is_none_or(|e| e > self.file.len())
            {
                return Err(self.bitmap_corrupt(
                    b.table_offset + i as u64 * 8,
                    format!("data cluster {host:#x} is not a cluster inside the file"),
                ));
            }
            self.file.read_at(host, &mut data)?;
            for bit in first..last {
                let k = bit - first;
                if (data[(k / 8) as usize] >> (k % 8)) & 1 != 0 {
                    push(bit, bit + 1);
                }
            }
        }
        DirtyMap::from_ranges(size, b.granularity, ranges)
    }

    /// The guest ranges whose clusters this image holds itself (data, compressed or zero
    /// clusters) rather than leaving them to its backing file: for an external snapshot's
    /// overlay, what the guest wrote since the snapshot.
    pub fn allocated_ranges(&self) -> Result<DirtyMap> {
        let size = self.header.size;
        let mut ranges: Vec<Range<u64>> = Vec::new();
        let mut table = None;
        let mut g = 0u64;
        while g < size {
            let (kind, run) = self.extent(g, size - g, &mut table)?;
            let run = run.max(1);
            if kind != super::tables::Extent::Unallocated {
                match ranges.last_mut() {
                    Some(last) if last.end == g => last.end = g + run,
                    _ => ranges.push(g..g + run),
                }
            }
            g += run;
        }
        let granularity = if self.header.extended_l2 {
            self.cluster_size / 32
        } else {
            self.cluster_size
        };
        DirtyMap::from_ranges(size, granularity.max(512), ranges)
    }
}
