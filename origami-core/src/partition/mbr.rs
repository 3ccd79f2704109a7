//! The DOS/MBR table: four primary entries in sector 0, and logical partitions in a chain of
//! extended boot records (EBRs) inside an extended partition.

use super::{types::mbr_type_name, Partition, PartitionTable, TableKind, MAX_LOGICAL};
use crate::bytes::le32;
use crate::error::{Error, Result};
use crate::read::ReadAt;

const SECTOR: u64 = 512;

/// One 16-byte partition entry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    status: u8,
    kind: u8,
    lba: u32,
    sectors: u32,
}

impl Entry {
    fn is_used(&self) -> bool {
        self.kind != 0 && self.sectors != 0
    }
    fn is_extended(&self) -> bool {
        matches!(self.kind, 0x05 | 0x0f | 0x85)
    }
}

/// A parsed boot sector: its disk signature and four entries.
#[derive(Debug, Clone)]
pub(super) struct Mbr {
    disk_id: u32,
    entries: [Entry; 4],
}

fn entries(sector: &[u8; 512]) -> [Entry; 4] {
    let mut out = [Entry {
        status: 0,
        kind: 0,
        lba: 0,
        sectors: 0,
    }; 4];
    for (i, e) in out.iter_mut().enumerate() {
        let at = 446 + 16 * i;
        *e = Entry {
            status: sector[at],
            kind: sector[at + 4],
            lba: le32(sector, at + 8),
            sectors: le32(sector, at + 12),
        };
    }
    out
}

impl Mbr {
    /// Parses sector 0 as an MBR; `None` when it does not look like one (no 0x55AA, a boot
    /// flag other than 0x00/0x80, which is how a file system's boot sector tells itself
    /// apart, or no entry at all).
    pub(super) fn parse(sector: &[u8; 512]) -> Option<Mbr> {
        if sector[510..512] != [0x55, 0xaa] {
            return None;
        }
        let entries = entries(sector);
        if entries.iter().any(|e| e.status != 0 && e.status != 0x80) {
            return None;
        }
        if !entries.iter().any(|e| e.kind != 0) {
            return None;
        }
        Some(Mbr {
            disk_id: le32(sector, 440),
            entries,
        })
    }

    /// A protective (or hybrid) MBR, announcing a GPT.
    pub(super) fn is_protective(&self) -> bool {
        self.entries.iter().any(|e| e.kind == 0xee)
    }
}

fn partition(disk_id: u32, number: u32, e: &Entry, start_lba: u64) -> Partition {
    let type_id = format!("0x{:02x}", e.kind);
    Partition {
        number,
        start: start_lba * SECTOR,
        size: u64::from(e.sectors) * SECTOR,
        type_name: mbr_type_name(e.kind).to_string(),
        type_id,
        uuid: Some(format!("{disk_id:08x}-{number:02x}")),
        label: None,
        bootable: e.status == 0x80,
    }
}

/// Reads the primaries of `mbr` and the logical partitions of its first extended partition.
pub(super) fn read(disk: &dyn ReadAt, mbr: &Mbr) -> Result<PartitionTable> {
    let mut partitions = Vec::new();
    let mut warnings = Vec::new();
    let mut extended = None;
    for (i, e) in mbr.entries.iter().enumerate() {
        if !e.is_used() {
            continue;
        }
        partitions.push(partition(mbr.disk_id, i as u32 + 1, e, u64::from(e.lba)));
        if e.is_extended() {
            if extended.is_none() {
                extended = Some(*e);
            } else {
                warnings.push(format!(
                    "second extended partition (entry {}) ignored",
                    i + 1
                ));
            }
        }
    }
    if let Some(ext) = extended {
        read_logical(disk, mbr.disk_id, &ext, &mut partitions)?;
    }
    Ok(PartitionTable {
        kind: TableKind::Mbr,
        disk_id: Some(format!("{:08x}", mbr.disk_id)),
        partitions,
        warnings,
    })
}

/// Walks the EBR chain: each EBR holds one logical partition (start relative to the EBR) and
/// a link to the next EBR (start relative to the extended partition).
fn read_logical(
    disk: &dyn ReadAt,
    disk_id: u32,
    ext: &Entry,
    out: &mut Vec<Partition>,
) -> Result<()> {
    let base = u64::from(ext.lba);
    let mut ebr = base;
    let mut seen: Vec<u64> = Vec::new();
    let mut number = 5u32;
    loop {
        let offset = ebr * SECTOR;
        let corrupt = |reason: String| Error::Corrupt {
            source_name: disk.name(),
            offset,
            reason,
        };
        if seen.contains(&ebr) {
            return Err(corrupt(format!("EBR chain loops back to sector {ebr}")));
        }
        if seen.len() >= MAX_LOGICAL {
            return Err(corrupt(format!(
                "EBR chain longer than {MAX_LOGICAL} links"
            )));
        }
        seen.push(ebr);
        let mut sector = [0u8; 512];
        disk.read_at(offset, &mut sector)?;
        if sector[510..512] != [0x55, 0xaa] {
            // The first EBR of an empty extended partition may be blank; a broken link
            // further down ends the chain, as Linux does.
            if seen.len() == 1 {
                return Ok(());
            }
            return Err(corrupt("EBR without the 0x55AA signature".into()));
        }
        let entries = entries(&sector);
        let mut next = None;
        for e in &entries {
            if !e.is_used() {
                continue;
            }
            if e.is_extended() {
                if next.is_none() {
                    next = Some(base + u64::from(e.lba));
                }
                continue;
            }
            out.push(partition(disk_id, number, e, ebr + u64::from(e.lba)));
            number += 1;
        }
        match next {
            Some(n) => ebr = n,
            None => return Ok(()),
        }
    }
}
