//! The PV label, the PV header and the metadata areas (LVM2's `format_text/layout.h`).
//!
//! ```text
//! one of sectors 0-3:  "LABELONE", u64 sector, u32 crc (of bytes 20..512), u32 offset of
//!                      the PV header (from the sector), "LVM2 001"
//! PV header:           32-char UUID, u64 device size, then {u64 offset, u64 size} pairs:
//!                      the data areas up to a zero pair, then the metadata areas up to one
//! metadata area:       a 512-byte header: u32 crc (of bytes 4..512), magic
//!                      " LVM2 x[5A%r0N*>", u32 version 1, u64 start, u64 size, then raw
//!                      locations {u64 offset, u64 size, u32 crc, u32 flags} up to a zero one;
//!                      the first is the committed metadata text, at `offset` from the area's
//!                      start, wrapping to just after the header when it passes the area's end
//! ```
//!
//! All integers are little-endian. A metadata area whose header or text fails its checksum,
//! whose text claims more than the circular buffer holds, or lies outside the area, is
//! reported in [`PhysicalVolume::problems`] and not used; the other area (LVM can keep one at
//! each end of the PV) may still serve.

use std::sync::Arc;

use super::metadata::{self, Section};
use super::{lvm_crc, LvmError, INITIAL_CRC};
use crate::read::ReadAt;

const SECTOR: u64 = 512;
/// The metadata-area header's size; the circular buffer follows it.
pub const MDA_HEADER_SIZE: u64 = 512;
const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
/// The largest metadata text read (LVM's own default area is 1 MiB).
pub const MAX_METADATA: u64 = 64 << 20;
/// The most data or metadata areas read from a PV header.
const MAX_AREAS: usize = 8;

/// One LVM2 physical volume: its header and the newest valid metadata text found on it.
pub struct PhysicalVolume {
    /// The PV's bytes (a partition or a whole disk).
    pub source: Arc<dyn ReadAt>,
    /// The PV's UUID as the label stores it (32 characters, no dashes).
    pub uuid: String,
    /// The device size the label records.
    pub device_size: u64,
    /// Where the first data area (the extents) starts, in bytes.
    pub data_start: Option<u64>,
    /// The newest valid metadata on this PV: (VG name, seqno, parsed text), if any.
    pub metadata: Option<(String, u64, Section)>,
    /// Metadata areas that could not be used, and why.
    pub problems: Vec<LvmError>,
}

impl std::fmt::Debug for PhysicalVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhysicalVolume")
            .field("source", &self.source.name())
            .field("uuid", &self.uuid)
            .field("device_size", &self.device_size)
            .field("data_start", &self.data_start)
            .field(
                "vg",
                &self.metadata.as_ref().map(|(n, s, _)| (n.clone(), *s)),
            )
            .field("problems", &self.problems)
            .finish()
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn corrupt(source: &dyn ReadAt, offset: u64, what: impl Into<String>) -> LvmError {
    LvmError::Corrupt {
        source_name: source.name(),
        offset,
        what: what.into(),
    }
}

/// True when one of the first four sectors of `source` starts with an LVM2 label (checked
/// no further: [`probe`] checks it).
pub fn has_label(source: &dyn ReadAt) -> bool {
    (0..4u64).any(|s| {
        let mut b = [0u8; 32];
        (s + 1) * SECTOR <= source.len()
            && source.read_at(s * SECTOR, &mut b).is_ok()
            && &b[0..8] == b"LABELONE"
            && &b[24..32] == b"LVM2 001"
    })
}

/// Reads the PV on `source`: `Ok(None)` when it has no LVM2 label, an error when the label or
/// the PV header is damaged. A damaged metadata area is not an error (see
/// [`PhysicalVolume::problems`]).
pub fn probe(source: Arc<dyn ReadAt>) -> Result<Option<PhysicalVolume>, LvmError> {
    let src = &*source;
    let mut found = None;
    for s in 0..4u64 {
        if (s + 1) * SECTOR > src.len() {
            break;
        }
        let mut sector = vec![0u8; SECTOR as usize];
        src.read_at(s * SECTOR, &mut sector)?;
        if &sector[0..8] != b"LABELONE" {
            continue;
        }
        let at = s * SECTOR;
        if le64(&sector, 8) != s {
            return Err(corrupt(
                src,
                at + 8,
                format!(
                    "label in sector {s} says it is in sector {}",
                    le64(&sector, 8)
                ),
            ));
        }
        let crc = lvm_crc(INITIAL_CRC, &sector[20..]);
        if crc != le32(&sector, 16) {
            return Err(corrupt(
                src,
                at + 16,
                format!(
                    "label checksum {crc:#010x}, label says {:#010x}",
                    le32(&sector, 16)
                ),
            ));
        }
        if &sector[24..32] != b"LVM2 001" {
            return Err(corrupt(src, at + 24, "label type is not \"LVM2 001\""));
        }
        found = Some((at, sector));
        break;
    }
    let Some((label_at, sector)) = found else {
        return Ok(None);
    };
    let hdr = le32(&sector, 20) as usize;
    // UUID (32) + device size (8) + at least the two terminating pairs (32).
    if !(32..=SECTOR as usize - 72).contains(&hdr) {
        return Err(corrupt(
            src,
            label_at + 20,
            format!("PV header offset {hdr}"),
        ));
    }
    let uuid = String::from_utf8_lossy(&sector[hdr..hdr + 32]).into_owned();
    let device_size = le64(&sector, hdr + 32);
    // The two lists of areas, each ended by a zero pair, inside the sector.
    let mut lists: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()];
    let mut at = hdr + 40;
    for list in lists.iter_mut() {
        loop {
            if at + 16 > sector.len() {
                return Err(corrupt(
                    src,
                    label_at + at as u64,
                    "PV header area list runs off its sector",
                ));
            }
            let (off, size) = (le64(&sector, at), le64(&sector, at + 8));
            at += 16;
            if off == 0 {
                break;
            }
            if list.len() >= MAX_AREAS {
                return Err(corrupt(
                    src,
                    label_at + at as u64,
                    "more than 8 areas in the PV header",
                ));
            }
            list.push((off, size));
        }
    }
    let [data_areas, meta_areas] = lists;
    let mut pv = PhysicalVolume {
        uuid,
        device_size,
        data_start: data_areas.first().map(|a| a.0),
        metadata: None,
        problems: Vec::new(),
        source: source.clone(),
    };
    for (start, size) in meta_areas {
        match read_area(src, start, size) {
            Ok(Some((name, seqno, text))) => {
                if pv.metadata.as_ref().is_none_or(|m| seqno > m.1) {
                    pv.metadata = Some((name, seqno, text));
                }
            }
            Ok(None) => {}
            Err(e) => pv.problems.push(e),
        }
    }
    Ok(Some(pv))
}

/// The committed metadata of the area at `start` (`size` bytes): `Ok(None)` when the area
/// holds none (a new or ignored area).
fn read_area(
    src: &dyn ReadAt,
    start: u64,
    size: u64,
) -> Result<Option<(String, u64, Section)>, LvmError> {
    let end = start.checked_add(size).filter(|&e| e <= src.len());
    if end.is_none() || size <= MDA_HEADER_SIZE {
        return Err(corrupt(
            src,
            start,
            format!(
                "metadata area of {size} bytes is outside the {}-byte PV",
                src.len()
            ),
        ));
    }
    let mut h = vec![0u8; MDA_HEADER_SIZE as usize];
    src.read_at(start, &mut h)?;
    let crc = lvm_crc(INITIAL_CRC, &h[4..]);
    if crc != le32(&h, 0) {
        return Err(corrupt(
            src,
            start,
            format!(
                "metadata area header checksum {crc:#010x}, header says {:#010x}",
                le32(&h, 0)
            ),
        ));
    }
    if &h[4..20] != MDA_MAGIC {
        return Err(corrupt(
            src,
            start + 4,
            "metadata area header without its magic",
        ));
    }
    if le64(&h, 24) != start {
        return Err(corrupt(
            src,
            start + 24,
            format!("metadata area header says it starts at {:#x}", le64(&h, 24)),
        ));
    }
    // The first raw location is the committed metadata.
    let (off, len, want, flags) = (le64(&h, 40), le64(&h, 48), le32(&h, 56), le32(&h, 60));
    if off == 0 || flags & 1 != 0 {
        return Ok(None);
    }
    let buffer = size - MDA_HEADER_SIZE;
    if off < MDA_HEADER_SIZE || off >= size {
        return Err(corrupt(
            src,
            start + 40,
            format!("metadata text at {off:#x} is outside its {size:#x}-byte area"),
        ));
    }
    if len == 0 || len > buffer || len > MAX_METADATA {
        return Err(corrupt(
            src,
            start + 48,
            format!(
                "metadata text of {len} bytes does not fit the {buffer}-byte circular buffer (it would wrap onto itself)"
            ),
        ));
    }
    let first = len.min(size - off);
    let mut text = vec![0u8; len as usize];
    src.read_at(start + off, &mut text[..first as usize])?;
    if first < len {
        // Wrapped: the rest follows the header.
        src.read_at(start + MDA_HEADER_SIZE, &mut text[first as usize..])?;
    }
    let crc = lvm_crc(INITIAL_CRC, &text);
    if crc != want {
        return Err(corrupt(
            src,
            start + off,
            format!("metadata text checksum {crc:#010x}, its location says {want:#010x}"),
        ));
    }
    let text = match text.iter().position(|&b| b == 0) {
        Some(n) => &text[..n],
        None => &text[..],
    };
    let root = metadata::parse(text).map_err(|what| LvmError::Metadata {
        source_name: src.name(),
        what,
    })?;
    let Some((name, vg)) = root.sections().next() else {
        return Err(LvmError::Metadata {
            source_name: src.name(),
            what: "no volume group section".into(),
        });
    };
    let seqno = vg
        .int("seqno")
        .and_then(|s| u64::try_from(s).ok())
        .ok_or_else(|| LvmError::Metadata {
            source_name: src.name(),
            what: format!("volume group {name} has no seqno"),
        })?;
    Ok(Some((name.to_string(), seqno, vg.clone())))
}
