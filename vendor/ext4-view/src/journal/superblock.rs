// Copyright 2025 Google LLC
//
// Licensed under the Apache License, Version 2.0 <LICENSE-APACHE or
// https://www.apache.org/licenses/LICENSE-2.0> or the MIT license
// <LICENSE-MIT or https://opensource.org/licenses/MIT>, at your
// option. This file may not be copied, modified, or distributed
// except according to those terms.

use crate::Ext4;
use crate::checksum::Checksum;
use crate::error::{CorruptKind, Ext4Error, IncompatibleKind};
use crate::inode::Inode;
use crate::iters::file_blocks::FileBlocks;
use crate::journal::block_header::{JournalBlockHeader, JournalBlockType};
use crate::util::read_u32be;
use crate::uuid::Uuid;
use alloc::vec;
use bitflags::bitflags;

/// Size in bytes of the journal superblock. (Note that the underlying
/// block size may be larger, but only the first 1024 bytes are used.)
const SUPERBLOCK_SIZE: usize = 1024;

const CHECKSUM_TYPE_CRC32C: u8 = 4;

/// Origami patch: the largest journal, in blocks, that this library
/// replays: e2fsprogs' `JBD2_MAX_JOURNAL_BLOCKS` (1024 * 10000).
const MAX_JOURNAL_BLOCKS: u32 = 10_240_000;

// Field offsets within the superblock.
const SUPERBLOCK_BLOCKSIZE_OFFSET: usize = 0xc;
const SUPERBLOCK_MAXLEN_OFFSET: usize = 0x10;
const SUPERBLOCK_FIRST_OFFSET: usize = 0x14;
const SUPERBLOCK_SEQUENCE_OFFSET: usize = 0x18;
const SUPERBLOCK_START_OFFSET: usize = 0x1c;
const SUPERBLOCK_FEATURE_COMPAT_OFFSET: usize = 0x24;
const SUPERBLOCK_FEATURE_INCOMPAT_OFFSET: usize = 0x28;
const SUPERBLOCK_UUID_OFFSET: usize = 0x30;
const SUPERBLOCK_CHECKSUM_TYPE_OFFSET: usize = 0x50;
const SUPERBLOCK_CHECKSUM_OFFSET: usize = 0xfc;

/// Compatible feature `JBD2_FEATURE_COMPAT_CHECKSUM`: commit blocks
/// hold a CRC32 (big-endian, as the kernel's `crc32_be`) of the
/// transaction's descriptor and data blocks (checksum v1).
const COMPAT_CHECKSUM_V1: u32 = 0x1;

/// Origami patch: the incompatible features this library can replay,
/// as the kernel's recovery does (upstream required `IS_64BIT` and
/// `CHECKSUM_V3` and refused every other journal). Only fast commits
/// are not supported.
const ALLOWED_FEATURES: JournalIncompatibleFeatures =
    JournalIncompatibleFeatures::BLOCK_REVOCATIONS
        .union(JournalIncompatibleFeatures::IS_64BIT)
        .union(JournalIncompatibleFeatures::ASYNC_COMMITS)
        .union(JournalIncompatibleFeatures::CHECKSUM_V2)
        .union(JournalIncompatibleFeatures::CHECKSUM_V3);

#[derive(Debug, Eq, PartialEq)]
pub(super) struct JournalSuperblock {
    /// Size in bytes of journal blocks. This must be the same block
    /// size as the main filesystem.
    pub(super) block_size: u32,

    /// Origami patch: total number of blocks in the journal
    /// (`s_maxlen`). The log wraps around from its last block to
    /// `first`.
    pub(super) max_len: u32,

    /// Origami patch: index of the first block of log information
    /// (`s_first`), relative to the journal superblock.
    pub(super) first: u32,

    /// Sequence number of the first journal commit to apply.
    pub(super) sequence: u32,

    /// Index of the journal block from which to start reading
    /// data. This index is relative to the journal superblock.
    pub(super) start_block: u32,

    /// Journal UUID used for checksums.
    pub(super) uuid: Uuid,

    /// Origami patch: the incompatible features (they decide the size
    /// of block tags and revoke records, and the checksums).
    pub(super) features: JournalIncompatibleFeatures,

    /// Origami patch: whether commit blocks carry a checksum v1 (the
    /// compatible feature `JBD2_FEATURE_COMPAT_CHECKSUM`).
    pub(super) checksum_v1: bool,
}

impl JournalSuperblock {
    /// Origami patch: whether block numbers are 64-bit (in tags and
    /// revoke records).
    pub(super) fn is_64bit(&self) -> bool {
        self.features
            .contains(JournalIncompatibleFeatures::IS_64BIT)
    }

    /// Origami patch: whether metadata blocks and data blocks carry
    /// crc32c checksums (checksum v2 or v3).
    pub(super) fn has_csum_v2_or_v3(&self) -> bool {
        self.features.intersects(
            JournalIncompatibleFeatures::CHECKSUM_V2
                .union(JournalIncompatibleFeatures::CHECKSUM_V3),
        )
    }

    /// Origami patch: the size in bytes of a descriptor block tag,
    /// without the UUID that may follow it (the kernel's
    /// `journal_tag_bytes`).
    pub(super) fn tag_size(&self) -> usize {
        if self
            .features
            .contains(JournalIncompatibleFeatures::CHECKSUM_V3)
        {
            return 16;
        }
        // `journal_block_tag_t` is 12 bytes; checksum v2 adds two, and
        // without 64-bit block numbers the last four are not there.
        let csum_v2 = self
            .features
            .contains(JournalIncompatibleFeatures::CHECKSUM_V2);
        match (csum_v2, self.is_64bit()) {
            (false, false) => 8,
            (false, true) => 12,
            (true, false) => 10,
            (true, true) => 14,
        }
    }

    /// Origami patch: the size in bytes of the checksum tail at the
    /// end of descriptor and revoke blocks (zero without checksum v2
    /// or v3).
    pub(super) fn tail_size(&self) -> usize {
        if self.has_csum_v2_or_v3() { 4 } else { 0 }
    }
}

impl JournalSuperblock {
    /// Load the journal superblock from the filesystem.
    ///
    /// An error is returned if:
    /// * The superblock cannot be read from the filesystem.
    /// * `JournalSuperblock::read_bytes` fails.
    /// * The journal's block size does not match the filesystem block size.
    pub(super) fn load(
        fs: &Ext4,
        journal_inode: &Inode,
    ) -> Result<Self, Ext4Error> {
        // Get an iterator over the journal's block indices.
        let mut journal_block_iter =
            FileBlocks::new(fs.clone(), journal_inode)?;

        // Read the first 1024 bytes of the first block. This is the
        // journal's superblock.
        let block_index = journal_block_iter
            .next()
            .ok_or(CorruptKind::JournalSize)??;
        let mut block = vec![0; SUPERBLOCK_SIZE];
        fs.read_from_block(block_index, 0, &mut block)?;

        let superblock = Self::read_bytes(&block)?;

        // Ensure the journal block size matches the rest of the
        // filesystem.
        if superblock.block_size != fs.0.superblock.block_size {
            return Err(CorruptKind::JournalBlockSize.into());
        }

        // Origami patch: the log must lie within the journal inode
        // (the kernel's `load_superblock`: `s_maxlen` at most the
        // inode's size in blocks, `s_first` inside the journal), and
        // a log to replay must start inside it.
        let inode_blocks = journal_inode
            .metadata
            .size_in_bytes
            .checked_div(fs.0.superblock.block_size.to_u64())
            .unwrap_or(0);
        // Also at most `JBD2_MAX_JOURNAL_BLOCKS`, the largest journal
        // e2fsprogs makes: the replay walks the journal inode's blocks
        // one by one up to `s_start`, which must stay short for a
        // hostile inode mapping billions of blocks.
        if u64::from(superblock.max_len) > inode_blocks
            || superblock.max_len > MAX_JOURNAL_BLOCKS
        {
            return Err(CorruptKind::JournalSize.into());
        }
        if superblock.first == 0 || superblock.first >= superblock.max_len {
            return Err(CorruptKind::JournalStart.into());
        }
        if superblock.start_block != 0
            && (superblock.start_block < superblock.first
                || superblock.start_block >= superblock.max_len)
        {
            return Err(CorruptKind::JournalStart.into());
        }

        Ok(superblock)
    }

    /// Read superblock data from `bytes`.
    ///
    /// An error is returned if:
    /// * The superblock magic number is not present.
    /// * The superblock type is unsupported.
    /// * The checksum type is unsupported.
    /// * The superblock's checksum is incorrect.
    fn read_bytes(bytes: &[u8]) -> Result<Self, Ext4Error> {
        assert_eq!(bytes.len(), SUPERBLOCK_SIZE);

        let header = JournalBlockHeader::read_bytes(bytes)
            .ok_or(CorruptKind::JournalMagic)?;

        // Origami patch: a v1 superblock (no feature fields, as the
        // kernel reads it) is accepted as well as v2.
        let is_v2 = header.block_type == JournalBlockType::SUPERBLOCK_V2;
        if !is_v2 && header.block_type != JournalBlockType::SUPERBLOCK_V1 {
            return Err(IncompatibleKind::JournalSuperblockType(
                header.block_type.0,
            )
            .into());
        }

        let s_blocksize = read_u32be(bytes, SUPERBLOCK_BLOCKSIZE_OFFSET);
        let s_maxlen = read_u32be(bytes, SUPERBLOCK_MAXLEN_OFFSET);
        let s_first = read_u32be(bytes, SUPERBLOCK_FIRST_OFFSET);
        let s_sequence = read_u32be(bytes, SUPERBLOCK_SEQUENCE_OFFSET);
        let s_start = read_u32be(bytes, SUPERBLOCK_START_OFFSET);
        let (s_feature_compat, s_feature_incompat) = if is_v2 {
            (
                read_u32be(bytes, SUPERBLOCK_FEATURE_COMPAT_OFFSET),
                read_u32be(bytes, SUPERBLOCK_FEATURE_INCOMPAT_OFFSET),
            )
        } else {
            (0, 0)
        };
        let s_uuid =
            &bytes[SUPERBLOCK_UUID_OFFSET..SUPERBLOCK_UUID_OFFSET + 16];
        let s_checksum_type = bytes[SUPERBLOCK_CHECKSUM_TYPE_OFFSET];
        let s_checksum = read_u32be(bytes, SUPERBLOCK_CHECKSUM_OFFSET);

        let features = check_incompat_features(s_feature_incompat)?;
        let checksum_v1 = s_feature_compat & COMPAT_CHECKSUM_V1 != 0;
        let csum_v2_or_v3 = features.intersects(
            JournalIncompatibleFeatures::CHECKSUM_V2
                .union(JournalIncompatibleFeatures::CHECKSUM_V3),
        );
        // As the kernel: checksum v1 and v2/v3 exclude each other.
        if checksum_v1 && csum_v2_or_v3 {
            return Err(IncompatibleKind::UnsupportedJournalFeatures(
                (features
                    & (JournalIncompatibleFeatures::CHECKSUM_V2
                        | JournalIncompatibleFeatures::CHECKSUM_V3))
                    .bits(),
            )
            .into());
        }

        // Origami patch: the checksum type and the superblock checksum
        // are only meaningful with checksum v2 or v3 (the kernel's
        // `jbd2_superblock_csum_verify`).
        if csum_v2_or_v3 {
            // For now only one checksum type is supported.
            if s_checksum_type != CHECKSUM_TYPE_CRC32C {
                return Err(IncompatibleKind::JournalChecksumType(
                    s_checksum_type,
                )
                .into());
            }

            // Validate the superblock checksum.
            let mut checksum = Checksum::new();
            checksum.update(&bytes[..SUPERBLOCK_CHECKSUM_OFFSET]);
            checksum.update_u32_le(0);
            checksum.update(
                &bytes[SUPERBLOCK_CHECKSUM_OFFSET + 4..SUPERBLOCK_SIZE],
            );
            if checksum.finalize() != s_checksum {
                return Err(CorruptKind::JournalSuperblockChecksum.into());
            }
        }

        // OK to unwrap: `s_uuid` is always 16 bytes.
        let uuid = Uuid(s_uuid.try_into().unwrap());

        Ok(Self {
            block_size: s_blocksize,
            max_len: s_maxlen,
            first: s_first,
            sequence: s_sequence,
            start_block: s_start,
            uuid,
            features,
            checksum_v1,
        })
    }
}

/// Origami patch: a journal superblock for unit tests, with a zero
/// UUID, 1024-byte blocks and the given incompatible features.
#[cfg(test)]
pub(super) fn test_superblock(
    features: JournalIncompatibleFeatures,
) -> JournalSuperblock {
    JournalSuperblock {
        block_size: 1024,
        max_len: 1024,
        first: 1,
        sequence: 0,
        start_block: 0,
        uuid: Uuid([0; 16]),
        features,
        checksum_v1: false,
    }
}

bitflags! {
    #[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd, Hash)]
    pub(crate) struct JournalIncompatibleFeatures: u32 {
        const BLOCK_REVOCATIONS = 0x1;
        const IS_64BIT = 0x2;
        const ASYNC_COMMITS = 0x4;
        const CHECKSUM_V2 = 0x8;
        const CHECKSUM_V3 = 0x10;
        const FAST_COMMITS = 0x20;
    }
}

/// Check that no unsupported features are present, and return the
/// features.
///
/// Origami patch: no feature is required (upstream required `IS_64BIT`
/// and `CHECKSUM_V3`); checksums v2 and v3 together are refused, as
/// the kernel does.
fn check_incompat_features(
    s_feature_incompat: u32,
) -> Result<JournalIncompatibleFeatures, IncompatibleKind> {
    let present =
        JournalIncompatibleFeatures::from_bits_retain(s_feature_incompat);

    // Note: the `bits` conversion is needed because otherwise the `!`
    // would only negate "known" bits specified in the bitflags
    // definition. Convert to raw bits first to correct this.
    let unsupported = !(ALLOWED_FEATURES.bits());

    let present_unsupported = present.bits() & unsupported;
    if present_unsupported != 0 {
        return Err(IncompatibleKind::UnsupportedJournalFeatures(
            present_unsupported,
        ));
    }

    let both = JournalIncompatibleFeatures::CHECKSUM_V2
        | JournalIncompatibleFeatures::CHECKSUM_V3;
    if present.contains(both) {
        return Err(IncompatibleKind::UnsupportedJournalFeatures(both.bits()));
    }

    Ok(present)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    #[cfg(ext4_view_upstream_test_data)]
    use crate::test_util::load_compressed_filesystem;

    #[cfg(ext4_view_upstream_test_data)]
    #[test]
    fn test_load_journal_superblock() {
        let fs =
            load_compressed_filesystem("test_disk_4k_block_journal.bin.zst");
        let journal_inode =
            Inode::read(&fs, fs.0.superblock.journal_inode.unwrap()).unwrap();
        let superblock = JournalSuperblock::load(&fs, &journal_inode).unwrap();
        // Origami patch: the fields upstream checked (the journal
        // superblock has more now).
        assert_eq!(superblock.block_size, 4096);
        assert_eq!(superblock.sequence, 3);
        assert_eq!(superblock.start_block, 289);
        assert_eq!(
            superblock.uuid,
            Uuid([
                0xd2, 0x28, 0xa8, 0x78, 0xb9, 0xa7, 0x49, 0xe4, 0x9e, 0x3d,
                0xbb, 0xee, 0xd5, 0x60, 0x1c, 0xd3
            ])
        );
    }

    fn write_u32be(bytes: &mut [u8], offset: usize, value: u32) {
        // Origami patch: no `+` (upstream's arithmetic_side_effects lint).
        bytes[offset..][..4].copy_from_slice(&value.to_be_bytes());
    }

    fn create_test_superblock() -> Vec<u8> {
        let mut block = vec![0; 1024];
        // Set magic.
        write_u32be(&mut block, 0, JournalBlockHeader::MAGIC);
        // Set superblock type.
        write_u32be(&mut block, 4, 4);
        // Set block size.
        write_u32be(&mut block, SUPERBLOCK_BLOCKSIZE_OFFSET, 4096);
        // Set sequence.
        write_u32be(&mut block, SUPERBLOCK_SEQUENCE_OFFSET, 123);
        // Set start block.
        write_u32be(&mut block, SUPERBLOCK_START_OFFSET, 456);
        // Set features.
        write_u32be(&mut block, SUPERBLOCK_FEATURE_INCOMPAT_OFFSET, 0x12);
        // Set UUID.
        block[SUPERBLOCK_UUID_OFFSET..SUPERBLOCK_UUID_OFFSET + 16]
            .copy_from_slice(&[0xab; 16]);
        // Set checksum type.
        block[SUPERBLOCK_CHECKSUM_TYPE_OFFSET] = CHECKSUM_TYPE_CRC32C;
        // Set checksum.
        write_u32be(&mut block, SUPERBLOCK_CHECKSUM_OFFSET, 0x78a2_c32b);
        block
    }

    #[test]
    fn test_journal_superblock_read_success() {
        let block = create_test_superblock();
        assert_eq!(
            JournalSuperblock::read_bytes(&block).unwrap(),
            JournalSuperblock {
                block_size: 4096,
                max_len: 0,
                first: 0,
                sequence: 123,
                start_block: 456,
                uuid: Uuid([0xab; 16]),
                features: JournalIncompatibleFeatures::IS_64BIT
                    | JournalIncompatibleFeatures::CHECKSUM_V3,
                checksum_v1: false,
            }
        );
    }

    /// Origami patch: sizes of block tags, as the kernel's
    /// `journal_tag_bytes`, and of the checksum tail.
    #[test]
    fn test_journal_tag_and_tail_sizes() {
        use JournalIncompatibleFeatures as F;
        let mut sb =
            JournalSuperblock::read_bytes(&create_test_superblock()).unwrap();
        for (features, tag, tail) in [
            (F::empty(), 8, 0),
            (F::IS_64BIT, 12, 0),
            (F::CHECKSUM_V2, 10, 4),
            (F::CHECKSUM_V2 | F::IS_64BIT, 14, 4),
            (F::CHECKSUM_V3, 16, 4),
            (F::CHECKSUM_V3 | F::IS_64BIT, 16, 4),
        ] {
            sb.features = features;
            assert_eq!((sb.tag_size(), sb.tail_size()), (tag, tail));
        }
    }

    /// Origami patch: a version 1 superblock has no features.
    #[test]
    fn test_journal_superblock_v1() {
        let mut block = create_test_superblock();
        write_u32be(&mut block, 4, 3);
        let sb = JournalSuperblock::read_bytes(&block).unwrap();
        assert_eq!(sb.features, JournalIncompatibleFeatures::empty());
        assert!(!sb.checksum_v1);
    }

    #[test]
    fn test_journal_superblock_invalid_magic() {
        let mut block = create_test_superblock();
        // Override magic in the block header.
        write_u32be(&mut block, 0, 0);
        assert_eq!(
            JournalSuperblock::read_bytes(&block).unwrap_err(),
            CorruptKind::JournalMagic
        );
    }

    #[test]
    fn test_journal_superblock_unsupported_type() {
        let mut block = create_test_superblock();
        // Override type in the block header.
        write_u32be(&mut block, 4, 0);
        assert_eq!(
            JournalSuperblock::read_bytes(&block).unwrap_err(),
            IncompatibleKind::JournalSuperblockType(0)
        );
    }

    /// Origami patch: without checksum v2/v3 nothing is required, and
    /// the checksum type and superblock checksum are not checked.
    #[test]
    fn test_journal_superblock_no_features() {
        let mut block = create_test_superblock();
        write_u32be(&mut block, SUPERBLOCK_FEATURE_INCOMPAT_OFFSET, 0);
        block[SUPERBLOCK_CHECKSUM_TYPE_OFFSET] = 0;
        write_u32be(&mut block, SUPERBLOCK_CHECKSUM_OFFSET, 0);
        let sb = JournalSuperblock::read_bytes(&block).unwrap();
        assert_eq!(sb.features, JournalIncompatibleFeatures::empty());
        assert_eq!(sb.tag_size(), 8);
    }

    /// Origami patch: checksum v2 and v3 together, or v1 with either,
    /// are refused (as the kernel does).
    #[test]
    fn test_journal_superblock_conflicting_checksums() {
        let mut block = create_test_superblock();
        write_u32be(&mut block, SUPERBLOCK_FEATURE_INCOMPAT_OFFSET, 0x1a);
        assert_eq!(
            JournalSuperblock::read_bytes(&block).unwrap_err(),
            IncompatibleKind::UnsupportedJournalFeatures(0x18),
        );
        let mut block = create_test_superblock();
        write_u32be(&mut block, SUPERBLOCK_FEATURE_COMPAT_OFFSET, 1);
        assert_eq!(
            JournalSuperblock::read_bytes(&block).unwrap_err(),
            IncompatibleKind::UnsupportedJournalFeatures(0x10),
        );
    }

    #[test]
    fn test_journal_superblock_unsupported_features() {
        let mut block = create_test_superblock();
        write_u32be(
            &mut block,
            SUPERBLOCK_FEATURE_INCOMPAT_OFFSET,
            (JournalIncompatibleFeatures::IS_64BIT
                | JournalIncompatibleFeatures::CHECKSUM_V3
                // A known but unsupported feature (origami patch:
                // async commits are supported now).
                | JournalIncompatibleFeatures::FAST_COMMITS)
                .bits()
                // An unknown and unsupported feature.
                | 0x10_000,
        );
        assert_eq!(
            JournalSuperblock::read_bytes(&block).unwrap_err(),
            IncompatibleKind::UnsupportedJournalFeatures(
                JournalIncompatibleFeatures::FAST_COMMITS.bits() | 0x10_000
            ),
        );
    }

    #[test]
    fn test_journal_superblock_unsupported_checksum_type() {
        let mut block = create_test_superblock();
        block[SUPERBLOCK_CHECKSUM_TYPE_OFFSET] = 0;
        assert_eq!(
            JournalSuperblock::read_bytes(&block).unwrap_err(),
            IncompatibleKind::JournalChecksumType(0)
        );
    }

    #[test]
    fn test_journal_superblock_incorrect_checksum() {
        let mut block = create_test_superblock();
        write_u32be(&mut block, SUPERBLOCK_CHECKSUM_OFFSET, 0);
        assert_eq!(
            JournalSuperblock::read_bytes(&block).unwrap_err(),
            CorruptKind::JournalSuperblockChecksum,
        );
    }
}
