//! The GUID Partition Table: a header at LBA 1 (and a backup at the last LBA), each with a
//! CRC32 of itself and of the partition entry array it points to.

use super::{types::gpt_type_name, Partition, PartitionTable, TableKind};
use crate::bytes::{le32, le64};
use crate::error::{Error, Result};
use crate::read::ReadAt;

const SIGNATURE: &[u8; 8] = b"EFI PART";
/// The largest entry array read: 128 bytes x 128 entries is the norm; a few MiB is generous.
const MAX_ENTRIES_BYTES: u64 = 4 << 20;
const SECTOR_SIZES: [u64; 2] = [512, 4096];

/// Formats a GPT GUID (mixed-endian on disk) as lowercase text.
pub(crate) fn guid(b: &[u8]) -> String {
    let mut g = [0u8; 16];
    if let Some(s) = b.get(..16) {
        g.copy_from_slice(s);
    }
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
        u16::from_le_bytes([g[4], g[5]]),
        u16::from_le_bytes([g[6], g[7]]),
        g[8],
        g[9],
        g[10],
        g[11],
        g[12],
        g[13],
        g[14],
        g[15]
    )
}

/// A checked GPT header.
struct Header {
    disk_guid: String,
    entries_lba: u64,
    entry_count: u32,
    entry_size: u32,
    entries_crc: u32,
    alternate_lba: u64,
}

/// True when LBA 1 (of either sector size) carries the GPT signature.
pub(super) fn has_signature(disk: &dyn ReadAt) -> Result<bool> {
    for ss in SECTOR_SIZES {
        if disk.len() >= ss * 2 {
            let mut sig = [0u8; 8];
            disk.read_at(ss, &mut sig)?;
            if &sig == SIGNATURE {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Reads and checks the header at `lba`; `Err(reason)` when it is damaged.
fn header(disk: &dyn ReadAt, ss: u64, lba: u64) -> Result<std::result::Result<Header, String>> {
    let Some(offset) = lba
        .checked_mul(ss)
        .filter(|o| o.saturating_add(ss) <= disk.len())
    else {
        return Ok(Err(format!("header LBA {lba} is outside the disk")));
    };
    let mut s = vec![0u8; ss as usize];
    disk.read_at(offset, &mut s)?;
    if &s[..8] != SIGNATURE {
        return Ok(Err(format!("no GPT signature at LBA {lba}")));
    }
    let header_size = le32(&s, 12);
    if header_size < 92 || u64::from(header_size) > ss {
        return Ok(Err(format!("header size {header_size} at LBA {lba}")));
    }
    let stored_crc = le32(&s, 16);
    let mut h = s[..header_size as usize].to_vec();
    h[16..20].fill(0);
    if crc32fast::hash(&h) != stored_crc {
        return Ok(Err(format!("header CRC mismatch at LBA {lba}")));
    }
    if le64(&s, 24) != lba {
        return Ok(Err(format!(
            "header at LBA {lba} says it is at LBA {}",
            le64(&s, 24)
        )));
    }
    let entry_count = le32(&s, 80);
    let entry_size = le32(&s, 84);
    if entry_size < 128 || !entry_size.is_multiple_of(8) {
        return Ok(Err(format!(
            "partition entry size {entry_size} at LBA {lba}"
        )));
    }
    Ok(Ok(Header {
        disk_guid: guid(&s[56..72]),
        entries_lba: le64(&s, 72),
        entry_count,
        entry_size,
        entries_crc: le32(&s, 88),
        alternate_lba: le64(&s, 32),
    }))
}

/// Reads the entry array of `h` and checks its CRC; `Err(reason)` when damaged.
fn entries(disk: &dyn ReadAt, ss: u64, h: &Header) -> Result<std::result::Result<Vec<u8>, String>> {
    let bytes = u64::from(h.entry_count) * u64::from(h.entry_size);
    if bytes > MAX_ENTRIES_BYTES {
        return Ok(Err(format!(
            "partition entry array of {bytes} bytes is implausibly large"
        )));
    }
    let fits = h
        .entries_lba
        .checked_mul(ss)
        .and_then(|o| o.checked_add(bytes).map(|end| (o, end)))
        .filter(|(_, end)| *end <= disk.len());
    let Some((offset, _)) = fits else {
        return Ok(Err(format!(
            "partition entry array at LBA {} lies outside the disk",
            h.entries_lba
        )));
    };
    // Bounded above by MAX_ENTRIES_BYTES and by the disk's size.
    let mut raw = vec![0u8; bytes as usize];
    disk.read_at(offset, &mut raw)?;
    if crc32fast::hash(&raw) != h.entries_crc {
        return Ok(Err(format!(
            "partition entry array CRC mismatch at LBA {}",
            h.entries_lba
        )));
    }
    Ok(Ok(raw))
}

/// Reads the GPT, falling back to the backup header and entries when the primary is bad.
pub(super) fn read(disk: &dyn ReadAt) -> Result<PartitionTable> {
    let mut problems = Vec::new();
    for ss in SECTOR_SIZES {
        if disk.len() < ss * 3 {
            continue;
        }
        let last_lba = disk.len() / ss - 1;
        let mut warnings = Vec::new();
        let mut candidates = vec![1u64];
        match header(disk, ss, 1)? {
            Ok(primary) => {
                match entries(disk, ss, &primary)? {
                    Ok(raw) => return Ok(table(&primary, ss, &raw, warnings)),
                    Err(why) => warnings.push(format!("primary GPT: {why}")),
                }
                if primary.alternate_lba != last_lba {
                    candidates.push(primary.alternate_lba);
                }
            }
            Err(why) => warnings.push(format!("primary GPT: {why}")),
        }
        candidates.push(last_lba);
        candidates.dedup();
        for lba in candidates.into_iter().skip(1) {
            match header(disk, ss, lba)? {
                Ok(backup) => match entries(disk, ss, &backup)? {
                    Ok(raw) => {
                        warnings.push(format!("used the backup GPT header at LBA {lba}"));
                        return Ok(table(&backup, ss, &raw, warnings));
                    }
                    Err(why) => warnings.push(format!("backup GPT: {why}")),
                },
                Err(why) => warnings.push(format!("backup GPT: {why}")),
            }
        }
        problems.extend(
            warnings
                .into_iter()
                .map(|w| format!("{ss}-byte sectors: {w}")),
        );
    }
    Err(Error::Corrupt {
        source_name: disk.name(),
        offset: 512,
        reason: format!(
            "no valid GPT (protective MBR present): {}",
            problems.join("; ")
        ),
    })
}

fn table(h: &Header, ss: u64, raw: &[u8], warnings: Vec<String>) -> PartitionTable {
    let mut partitions = Vec::new();
    for (i, e) in raw.chunks_exact(h.entry_size as usize).enumerate() {
        let type_guid = &e[..16];
        if type_guid.iter().all(|b| *b == 0) {
            continue;
        }
        let first = le64(e, 32);
        let last = le64(e, 40);
        let attributes = le64(e, 48);
        let name: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|c| *c != 0)
            .collect();
        let type_id = guid(type_guid);
        partitions.push(Partition {
            number: i as u32 + 1,
            start: first.saturating_mul(ss),
            size: last
                .checked_sub(first)
                .map_or(0, |n| n.saturating_add(1).saturating_mul(ss)),
            type_name: gpt_type_name(&type_id).to_string(),
            type_id,
            uuid: Some(guid(&e[16..32])),
            label: Some(String::from_utf16_lossy(&name)),
            bootable: attributes & (1 << 2) != 0,
        });
    }
    PartitionTable {
        kind: TableKind::Gpt,
        disk_id: Some(h.disk_guid.clone()),
        partitions,
        warnings,
    }
}
