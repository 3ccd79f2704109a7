//! Partition tables: MBR (with the extended/logical chain) and GPT, read from a disk.
//!
//! [`read_partitions`] reads sector 0: a protective MBR (type `0xee`) sends it to the GPT,
//! whose header and entry array CRCs are checked, and whose backup (at the disk's last
//! sector) is used when the primary is damaged; otherwise the MBR is read, walking the EBR
//! chain of an extended partition (at most [`MAX_LOGICAL`] links, a link that comes back to an
//! EBR already seen is an error). A disk with neither gives [`TableKind::None`]. Partitions are
//! numbered as Linux numbers them (GPT: entry index + 1; MBR: primaries 1-4, logicals from 5).
//!
//! Limits: 512-byte logical sectors for MBR; GPT is tried with 512- then 4096-byte sectors.
//! Hybrid MBRs are read as GPT; Apple, BSD disklabels and LDM are not read.
//!
//! Parsed by hand rather than with `gptman`/`mbrman`: both read through `Read + Seek` rather
//! than `&self` positional reads, size their entry vectors from header fields, and return
//! their own error types without the disk offset; this table reader is small, allocates only
//! sizes it has bounded, and names the offset of every fault.

mod gpt;
mod mbr;
mod types;

use crate::error::Result;
use crate::read::{ReadAt, Slice};

pub(crate) use gpt::guid;
pub use types::{gpt_type_name, mbr_type_name};

/// Most logical partitions walked in an EBR chain (Linux stops far earlier in practice).
pub const MAX_LOGICAL: usize = 256;

/// The kind of partition table on a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// GUID Partition Table (behind a protective MBR).
    Gpt,
    /// DOS/MBR table, with logical partitions in an extended one.
    Mbr,
    /// No partition table: the disk is one file system, or empty, or unknown.
    None,
}

/// A disk's partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    /// GPT, MBR or none.
    pub kind: TableKind,
    /// The disk GUID (GPT, lowercase) or the MBR disk signature as 8 hex digits.
    pub disk_id: Option<String>,
    /// The partitions, in number order.
    pub partitions: Vec<Partition>,
    /// Damage that was worked around (a bad primary GPT header, a bad backup, ...).
    pub warnings: Vec<String>,
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based as Linux numbers them (MBR logical ones start at 5).
    pub number: u32,
    /// Bytes from the start of the disk.
    pub start: u64,
    /// Bytes.
    pub size: u64,
    /// GPT type GUID (lowercase) or MBR type as `"0x83"`.
    pub type_id: String,
    /// `"Linux filesystem"`, `"EFI System"`, `"Linux swap"`, `"Extended"`, ... (util-linux's names).
    pub type_name: String,
    /// PARTUUID: the GPT unique GUID (lowercase); MBR `"<disk id hex8>-<nn>"`, e.g. `"1a2b3c4d-05"`.
    pub uuid: Option<String>,
    /// The GPT partition name.
    pub label: Option<String>,
    /// The MBR boot flag (GPT: the legacy BIOS bootable attribute, bit 2).
    pub bootable: bool,
}

impl Partition {
    /// The partition's bytes, as a [`Slice`] of `disk`; fails when it reaches past the disk.
    pub fn open<R: ReadAt>(&self, disk: R) -> Result<Slice<R>> {
        Slice::new(disk, self.start, self.size, format!("p{}", self.number))
    }

    /// True for an MBR extended partition (a container of logical ones, not a file system).
    pub fn is_extended(&self) -> bool {
        matches!(self.type_id.as_str(), "0x05" | "0x0f" | "0x85")
    }
}

/// Reads the partition table of `disk`.
pub fn read_partitions(disk: &dyn ReadAt) -> Result<PartitionTable> {
    let mut sector = [0u8; 512];
    if disk.len() < 512 {
        return Ok(PartitionTable::none());
    }
    disk.read_at(0, &mut sector)?;
    match mbr::Mbr::parse(&sector) {
        Some(m) if m.is_protective() => gpt::read(disk),
        Some(m) => mbr::read(disk, &m),
        None => {
            // No usable MBR: a GPT without its protective MBR is still worth finding.
            if gpt::has_signature(disk)? {
                gpt::read(disk)
            } else {
                Ok(PartitionTable::none())
            }
        }
    }
}

impl PartitionTable {
    fn none() -> PartitionTable {
        PartitionTable {
            kind: TableKind::None,
            disk_id: None,
            partitions: Vec::new(),
            warnings: Vec::new(),
        }
    }
}
