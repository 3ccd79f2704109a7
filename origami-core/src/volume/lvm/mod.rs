//! LVM2, read-only: physical volume labels, the text metadata in their metadata areas, volume
//! groups assembled across several disks, and logical volumes made of linear and striped
//! segments, each a [`ReadAt`](crate::ReadAt).
//!
//! - [`label`]: the `LABELONE` label in one of a PV's first four sectors, the PV header
//!   (UUID, size, data and metadata areas), each metadata area's header and the newest
//!   metadata text it points at (checksum checked, a text that wraps past the end of the
//!   circular buffer joined back);
//! - [`metadata`]: a small parser for the text format (bounded depth, items and size);
//! - [`vg`]: the volume group read from that text, assembled from the PVs that carry it
//!   (the copy with the highest `seqno` wins), and its logical volumes.
//!
//! Thin pools and thin volumes, RAID, mirrors, cache, VDO and snapshots are refused with
//! [`LvmError::Unsupported`] naming the LV; so is an LV whose PV is missing. Every segment is
//! checked against its PV's size and extent count before it is read.
//!
//! ```
//! use origami_core::volume::lvm::metadata::parse;
//! let text = b"vg0 {\nseqno = 3\nextent_size = 8192\n}\n";
//! let root = parse(text).unwrap();
//! assert_eq!(root.section("vg0").unwrap().int("seqno"), Some(3));
//! ```

pub mod label;
pub mod metadata;
pub mod vg;

pub use label::{probe, PhysicalVolume};
pub use vg::{assemble, LogicalVolume, LvDef, VolumeGroup};

use crate::error::Error;

/// The GPT partition type of an LVM physical volume.
pub const GPT_TYPE_LVM: &str = "e6d6d379-f507-44c2-a23c-238f2a3df928";

/// What went wrong reading LVM2 structures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LvmError {
    /// Reading the PV's bytes failed.
    #[error(transparent)]
    Read(#[from] Error),
    /// A label, PV header or metadata-area header is malformed.
    #[error("{source_name}: LVM2 {what} at offset {offset:#x}")]
    Corrupt {
        /// The PV (disk or partition).
        source_name: String,
        /// Where the bad structure lies.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The metadata text does not parse, or lacks what a volume group needs.
    #[error("{source_name}: LVM2 metadata: {what}")]
    Metadata {
        /// The PV (or the VG) whose metadata it is.
        source_name: String,
        /// What is wrong, with the line where there is one.
        what: String,
    },
    /// A logical volume of a kind this reader does not serve.
    #[error("volume group {vg}: logical volume {lv}: unsupported {kind}")]
    Unsupported {
        /// The volume group.
        vg: String,
        /// The logical volume.
        lv: String,
        /// The segment type (`thin`, `raid1`, `cache`, `snapshot`, ...) or what is missing.
        kind: String,
    },
    /// A logical volume's segment is inconsistent: it points past its PV's data area,
    /// overlaps another, or its extents do not add up.
    #[error("volume group {vg}: logical volume {lv}: segment {segment}: {what}")]
    BadSegment {
        /// The volume group.
        vg: String,
        /// The logical volume.
        lv: String,
        /// The segment's name in the metadata (`segment1`).
        segment: String,
        /// What is wrong.
        what: String,
    },
}

impl From<LvmError> for Error {
    fn from(e: LvmError) -> Error {
        match e {
            LvmError::Read(e) => e,
            LvmError::Corrupt {
                source_name,
                offset,
                what,
            } => Error::Corrupt {
                source_name,
                offset,
                reason: format!("LVM2 {what}"),
            },
            LvmError::Unsupported { vg, lv, kind } => Error::Unsupported {
                source_name: format!("LVM2 volume group {vg}"),
                offset: 0,
                feature: format!("logical volume {lv}: {kind}"),
            },
            e @ (LvmError::Metadata { .. } | LvmError::BadSegment { .. }) => Error::Corrupt {
                source_name: "LVM2".into(),
                offset: 0,
                reason: e.to_string(),
            },
        }
    }
}

/// LVM2's checksum: CRC-32 (the IEEE polynomial, reflected) from the seed `0xf597a6cf`, with
/// neither the initial nor the final inversion of the usual CRC-32.
pub fn lvm_crc(seed: u32, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(!seed);
    h.update(data);
    !h.finalize()
}

/// The seed LVM2 starts its checksums from.
pub const INITIAL_CRC: u32 = 0xf597_a6cf;
