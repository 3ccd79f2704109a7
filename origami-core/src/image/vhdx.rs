//! VHDX (Hyper-V), read-only: fixed and dynamic images without a parent.
//!
//! The current header (of the two, the valid one with the higher sequence number; CRC-32C
//! checked), a region table (CRC-32C checked) locating the block allocation table (BAT) and
//! the metadata region, whose items give the block size, the virtual size and the logical
//! sector size. A guest offset goes through the BAT (read whole at open, bounded by the file
//! and a 64 MiB cap) to a payload block: in the file (fully present) or zeros.
//!
//! Limits: differencing images (a parent), images whose log must be replayed (a non-zero log
//! GUID, left by an unclean shutdown) and unknown required regions or metadata items are
//! refused with [`Error::Unsupported`].

use crate::bytes::{le16, le32, le64};
use crate::error::{Error, Result};
use crate::partition::guid;
use crate::read::{check_range, ReadAt};

/// The eight bytes a VHDX file starts with.
pub const VHDX_MAGIC: [u8; 8] = *b"vhdxfile";

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
const MAX_BAT_BYTES: u64 = 64 * MIB;

const BAT_GUID: &str = "2dc27766-f623-4200-9d64-115e9bfd4a08";
const METADATA_GUID: &str = "8b7ca206-4790-4b9a-b8fe-575f050f886e";
const FILE_PARAMETERS: &str = "caa16737-fa36-4d43-b3b6-33f0aa44e76b";
const VIRTUAL_DISK_SIZE: &str = "2fa54224-cd1b-4876-b211-5dbed83bf4b8";
const LOGICAL_SECTOR_SIZE: &str = "8141bf1d-a96f-4709-ba47-f233a8faab5f";
const PHYSICAL_SECTOR_SIZE: &str = "cda348c7-445d-4471-9cc9-e9885251c556";
const PAGE_83_DATA: &str = "beca12ab-b2e6-4523-93ef-c309e000c746";

const FULLY_PRESENT: u64 = 6;
const PARTIALLY_PRESENT: u64 = 7;

/// CRC-32C (Castagnoli), the checksum of VHDX headers and region tables.
fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// True when the checksum at `at` in `block` is the CRC-32C of `block` with that field zeroed.
fn checksum_ok(block: &mut [u8], at: usize) -> bool {
    let stored = le32(block, at);
    if let Some(f) = block.get_mut(at..at + 4) {
        f.fill(0);
    }
    crc32c(block) == stored
}

/// A VHDX image read through any [`ReadAt`].
pub struct VhdxImage {
    file: Box<dyn ReadAt>,
    size: u64,
    block: u64,
    chunk_ratio: u64,
    bat: Vec<u64>,
}

impl std::fmt::Debug for VhdxImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhdxImage")
            .field("file", &self.file.name())
            .field("size", &self.size)
            .field("block", &self.block)
            .finish_non_exhaustive()
    }
}

impl VhdxImage {
    /// Opens the VHDX image held by `source`, checking its headers, region table, metadata
    /// and BAT.
    pub fn from_source(source: impl ReadAt + 'static) -> Result<VhdxImage> {
        Self::from_boxed(Box::new(source))
    }

    /// [`VhdxImage::from_source`] for an already boxed source.
    pub fn from_boxed(file: Box<dyn ReadAt>) -> Result<VhdxImage> {
        let corrupt = |offset: u64, reason: String| Error::Corrupt {
            source_name: file.name(),
            offset,
            reason,
        };
        let unsupported = |offset: u64, feature: String| Error::Unsupported {
            source_name: file.name(),
            offset,
            feature,
        };
        let len = file.len();
        if len < 1024 * KIB {
            return Err(corrupt(
                0,
                format!("{len} bytes is too short for a VHDX file"),
            ));
        }
        let mut magic = [0u8; 8];
        file.read_at(0, &mut magic)?;
        if magic != VHDX_MAGIC {
            return Err(corrupt(0, "not a VHDX file (bad magic)".into()));
        }

        // The current header: the valid one with the higher sequence number.
        let mut current: Option<(u64, u64, Vec<u8>)> = None;
        for at in [64 * KIB, 128 * KIB] {
            let mut h = vec![0u8; 4096];
            file.read_at(at, &mut h)?;
            if &h[..4] != b"head" || !checksum_ok(&mut h, 4) {
                continue;
            }
            let seq = le64(&h, 8);
            if current.as_ref().is_none_or(|(s, _, _)| seq > *s) {
                current = Some((seq, at, h));
            }
        }
        let Some((_, header_at, h)) = current else {
            return Err(corrupt(64 * KIB, "neither VHDX header is valid".into()));
        };
        if le16(&h, 66) != 1 {
            return Err(unsupported(
                header_at + 66,
                format!("VHDX version {}", le16(&h, 66)),
            ));
        }
        if h[48..64].iter().any(|b| *b != 0) {
            return Err(unsupported(
                header_at + 48,
                "VHDX log to replay (unclean shutdown)".into(),
            ));
        }

        // The region table (either copy, whichever checks out).
        let mut regions = None;
        for at in [192 * KIB, 256 * KIB] {
            let mut r = vec![0u8; 64 * KIB as usize];
            file.read_at(at, &mut r)?;
            if &r[..4] == b"regi" && checksum_ok(&mut r, 4) {
                regions = Some((at, r));
                break;
            }
        }
        let Some((regions_at, r)) = regions else {
            return Err(corrupt(
                192 * KIB,
                "neither VHDX region table is valid".into(),
            ));
        };
        let count = le32(&r, 8);
        if count > 2047 {
            return Err(corrupt(
                regions_at + 8,
                format!("{count} region table entries"),
            ));
        }
        let (mut bat, mut meta) = (None, None);
        for i in 0..count as usize {
            let e = r.get(16 + 32 * i..48 + 32 * i).unwrap_or(&[]);
            let id = guid(e);
            let region = (le64(e, 16), u64::from(le32(e, 24)));
            match id.as_str() {
                BAT_GUID => bat = Some(region),
                METADATA_GUID => meta = Some(region),
                _ if le32(e, 28) & 1 != 0 => {
                    return Err(unsupported(
                        regions_at + 16 + 32 * i as u64,
                        format!("required VHDX region {id}"),
                    ))
                }
                _ => {}
            }
        }
        let (Some((bat_at, bat_len)), Some((meta_at, meta_len))) = (bat, meta) else {
            return Err(corrupt(
                regions_at,
                "region table lacks the BAT or the metadata".into(),
            ));
        };
        for (what, at, n) in [("BAT", bat_at, bat_len), ("metadata", meta_at, meta_len)] {
            if at.checked_add(n).is_none_or(|end| end > len) || n == 0 {
                return Err(corrupt(
                    regions_at,
                    format!("{what} region {at:#x}+{n:#x} lies outside the file"),
                ));
            }
        }

        // Metadata: block size, virtual size, logical sector size.
        let table_len = meta_len.min(64 * KIB);
        let mut m = vec![0u8; table_len as usize];
        file.read_at(meta_at, &mut m)?;
        if m.get(..8) != Some(b"metadata".as_slice()) {
            return Err(corrupt(
                meta_at,
                "metadata table without its signature".into(),
            ));
        }
        let items = le16(&m, 10);
        if items > 2047 {
            return Err(corrupt(meta_at + 10, format!("{items} metadata entries")));
        }
        let (mut block, mut size, mut sector, mut flags) = (None, None, None, 0u32);
        for i in 0..items as usize {
            let e = m.get(32 + 32 * i..64 + 32 * i).unwrap_or(&[]);
            if e.len() < 32 {
                return Err(corrupt(
                    meta_at + 32 + 32 * i as u64,
                    "metadata entry past the table".into(),
                ));
            }
            let id = guid(e);
            let (off, n) = (u64::from(le32(e, 16)), u64::from(le32(e, 20)));
            let entry_at = meta_at + 32 + 32 * i as u64;
            let known = matches!(
                id.as_str(),
                FILE_PARAMETERS
                    | VIRTUAL_DISK_SIZE
                    | LOGICAL_SECTOR_SIZE
                    | PHYSICAL_SECTOR_SIZE
                    | PAGE_83_DATA
            );
            if !known {
                if le32(e, 24) & 4 != 0 {
                    return Err(unsupported(
                        entry_at,
                        format!("required VHDX metadata item {id}"),
                    ));
                }
                continue;
            }
            if off.checked_add(n).is_none_or(|end| end > meta_len) || n > 64 {
                if matches!(
                    id.as_str(),
                    FILE_PARAMETERS | VIRTUAL_DISK_SIZE | LOGICAL_SECTOR_SIZE
                ) {
                    return Err(corrupt(
                        entry_at,
                        format!("metadata item {id} lies outside its region"),
                    ));
                }
                continue;
            }
            let mut v = [0u8; 64];
            let v = &mut v[..n as usize];
            file.read_at(meta_at + off, v)?;
            match id.as_str() {
                FILE_PARAMETERS => {
                    block = Some(u64::from(le32(v, 0)));
                    flags = le32(v, 4);
                }
                VIRTUAL_DISK_SIZE => size = Some(le64(v, 0)),
                LOGICAL_SECTOR_SIZE => sector = Some(u64::from(le32(v, 0))),
                _ => {}
            }
        }
        let (Some(block), Some(size), Some(sector)) = (block, size, sector) else {
            return Err(corrupt(
                meta_at,
                "metadata lacks the block size, virtual size or sector size".into(),
            ));
        };
        if flags & 2 != 0 {
            return Err(unsupported(
                meta_at,
                "VHDX differencing image (has a parent)".into(),
            ));
        }
        if !(MIB..=256 * MIB).contains(&block) || !block.is_power_of_two() {
            return Err(corrupt(meta_at, format!("block size {block}")));
        }
        if sector != 512 && sector != 4096 {
            return Err(corrupt(meta_at, format!("logical sector size {sector}")));
        }
        let chunk_ratio = ((1u64 << 23) * sector) / block;
        let blocks = size.div_ceil(block);
        let entries = blocks + blocks.saturating_sub(1) / chunk_ratio;
        let bat_bytes = entries.saturating_mul(8);
        if bat_bytes > bat_len || bat_bytes > MAX_BAT_BYTES {
            return Err(corrupt(
                bat_at,
                format!(
                    "virtual size {size} needs a BAT of {entries} entries, the region holds {}",
                    bat_len / 8
                ),
            ));
        }
        // Bounded by the BAT region (inside the file) and MAX_BAT_BYTES.
        let mut raw = vec![0u8; bat_bytes as usize];
        file.read_at(bat_at, &mut raw)?;
        let bat = raw.chunks_exact(8).map(|c| le64(c, 0)).collect();
        Ok(VhdxImage {
            file,
            size,
            block,
            chunk_ratio,
            bat,
        })
    }

    /// Where payload block `b` lies in the file, or `None` for zeros.
    fn block_at(&self, b: u64) -> Result<Option<u64>> {
        let index = b + b / self.chunk_ratio;
        let e = usize::try_from(index)
            .ok()
            .and_then(|i| self.bat.get(i))
            .copied()
            .ok_or_else(|| Error::Corrupt {
                source_name: self.file.name(),
                offset: 0,
                reason: format!("no BAT entry {index}"),
            })?;
        match e & 7 {
            FULLY_PRESENT => Ok(Some((e >> 20) << 20)),
            PARTIALLY_PRESENT => Err(Error::Corrupt {
                source_name: self.file.name(),
                offset: 0,
                reason: format!("block {b} is partially present in an image without a parent"),
            }),
            _ => Ok(None),
        }
    }
}

impl ReadAt for VhdxImage {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(|| self.name(), offset, buf.len(), self.size)?;
        let mut pos = 0usize;
        while pos < buf.len() {
            let g = offset + pos as u64;
            let within = g % self.block;
            let run = (self.block - within).min((buf.len() - pos) as u64) as usize;
            let out = &mut buf[pos..pos + run];
            match self.block_at(g / self.block)? {
                Some(at) => self.file.read_at(at + within, out)?,
                None => out.fill(0),
            }
            pos += run;
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.size
    }

    fn name(&self) -> String {
        self.file.name()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(super::crc32c(b"123456789"), 0xe306_9283);
    }
}
