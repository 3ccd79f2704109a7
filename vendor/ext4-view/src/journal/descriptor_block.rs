// Copyright 2025 Google LLC
//
// Licensed under the Apache License, Version 2.0 <LICENSE-APACHE or
// https://www.apache.org/licenses/LICENSE-2.0> or the MIT license
// <LICENSE-MIT or https://opensource.org/licenses/MIT>, at your
// option. This file may not be copied, modified, or distributed
// except according to those terms.

use crate::block_index::FsBlockIndex;
use crate::checksum::Checksum;
use crate::error::{CorruptKind, Ext4Error};
use crate::journal::block_header::JournalBlockHeader;
use crate::journal::superblock::{
    JournalIncompatibleFeatures, JournalSuperblock,
};
use crate::util::{read_u32be, u64_from_hilo};
use bitflags::bitflags;

/// Ensure a descriptor block's checksum is valid.
///
/// The checksum is stored in the last four bytes of the block.
pub(super) fn validate_descriptor_block_checksum(
    superblock: &JournalSuperblock,
    block: &[u8],
) -> Result<(), Ext4Error> {
    // OK to unwrap: minimum block length is 1024.
    let checksum_offset = block.len().checked_sub(4).unwrap();
    let expected_checksum = read_u32be(block, checksum_offset);
    let mut checksum = Checksum::new();
    checksum.update(superblock.uuid.as_bytes());
    checksum.update(&block[..checksum_offset]);
    checksum.update_u32_be(0);

    if checksum.finalize() == expected_checksum {
        Ok(())
    } else {
        Err(CorruptKind::JournalDescriptorBlockChecksum.into())
    }
}

/// Data block tag within a descriptor block.
///
/// Each descriptor block contains an array of tags, one for each data
/// block following the descriptor block. Each data block will replace a
/// block within the ext4 filesystem. The tag indicates where the data
/// block maps into the filesystem, and provides a checksum for the data
/// block.
///
/// Origami patch: every tag format of the kernel's recovery is read
/// (upstream read only `journal_block_tag3_t`): with checksum v3 the
/// 16-byte `journal_block_tag3_t` (a 32-bit flags word and a 32-bit
/// checksum); otherwise `journal_block_tag_t` (a 16-bit checksum, with
/// checksum v2 only, and 16-bit flags), whose high block number is
/// present only with the 64-bit feature. See
/// `JournalSuperblock::tag_size`.
#[derive(Debug, Eq, PartialEq)]
pub(super) struct DescriptorBlockTag {
    /// Absolute block index in the filesystem that should be replaced
    /// with the data block associated with this tag.
    pub(super) block_index: FsBlockIndex,

    /// Checksum of the block data: 32 bits with checksum v3, the low
    /// 16 bits with checksum v2, zero without either.
    ///
    /// Note that this checksum is for the data block associated with
    /// this tag. The data in the tag itself is covered by the
    /// descriptor block checksum.
    pub(super) checksum: u32,

    flags: DescriptorBlockTagFlags,
}

impl DescriptorBlockTag {
    /// Size of the UUID that follows a tag without `UUID_OMITTED`.
    const UUID_SIZE: usize = 16;

    /// Whether the data block was escaped: its first four bytes were
    /// the journal magic number, written to the journal as zeros.
    pub(super) fn is_escaped(&self) -> bool {
        self.flags.contains(DescriptorBlockTagFlags::ESCAPED)
    }

    /// Whether `computed`, the crc32c of the data block (seeded with
    /// the journal UUID and the sequence), matches the tag's checksum
    /// (all of it with checksum v3, its low 16 bits with v2; the
    /// kernel's `jbd2_block_tag_csum_verify`).
    pub(super) fn checksum_matches(
        &self,
        superblock: &JournalSuperblock,
        computed: u32,
    ) -> bool {
        if superblock
            .features
            .contains(JournalIncompatibleFeatures::CHECKSUM_V3)
        {
            computed == self.checksum
        } else {
            (computed & 0xffff) == self.checksum
        }
    }

    /// Read a tag from `bytes`, which holds at least
    /// `superblock.tag_size()` bytes (8 or more).
    fn read_bytes(superblock: &JournalSuperblock, bytes: &[u8]) -> Self {
        let t_blocknr = read_u32be(bytes, 0);
        let is_v3 = superblock
            .features
            .contains(JournalIncompatibleFeatures::CHECKSUM_V3);
        // The flags are the low 16 bits of tag3's 32-bit word (the
        // kernel reads both formats through `journal_block_tag_t`).
        let t_flags = u32::from(u16::from_be_bytes([bytes[6], bytes[7]]));
        let t_blocknr_high = if superblock.is_64bit() {
            read_u32be(bytes, 8)
        } else {
            0
        };
        let t_checksum = if is_v3 {
            read_u32be(bytes, 12)
        } else if superblock
            .features
            .contains(JournalIncompatibleFeatures::CHECKSUM_V2)
        {
            u32::from(u16::from_be_bytes([bytes[4], bytes[5]]))
        } else {
            0
        };

        Self {
            block_index: u64_from_hilo(t_blocknr_high, t_blocknr),
            flags: DescriptorBlockTagFlags::from_bits_retain(t_flags),
            checksum: t_checksum,
        }
    }
}

/// Iterator over tags in a descriptor block.
///
/// Origami patch: as the kernel's recovery, the tags end at the first
/// one with `LAST_TAG`, or where the next tag would not fit before the
/// checksum tail; a descriptor without `LAST_TAG` is not an error
/// (upstream failed with `JournalDescriptorBlockTruncated`).
pub(super) struct DescriptorBlockTagIter<'a> {
    superblock: &'a JournalSuperblock,

    /// The tag area: the block without its header and checksum tail.
    bytes: &'a [u8],

    /// Offset of the next tag in `bytes`.
    offset: usize,

    /// Set to true after the last element is returned. All future
    /// calls to `next` will return `None`.
    is_done: bool,
}

impl<'a> DescriptorBlockTagIter<'a> {
    /// Create a tag iterator from the raw bytes of a whole descriptor
    /// block.
    pub(super) fn new(
        superblock: &'a JournalSuperblock,
        block: &'a [u8],
    ) -> Self {
        let end = block.len().saturating_sub(superblock.tail_size());
        let bytes = block.get(JournalBlockHeader::SIZE..end).unwrap_or(&[]);
        Self {
            superblock,
            bytes,
            offset: 0,
            is_done: false,
        }
    }
}

impl Iterator for DescriptorBlockTagIter<'_> {
    type Item = DescriptorBlockTag;

    fn next(&mut self) -> Option<Self::Item> {
        if self.is_done {
            return None;
        }

        let tag_size = self.superblock.tag_size();
        let Some(bytes) = self
            .offset
            .checked_add(tag_size)
            .and_then(|end| self.bytes.get(self.offset..end))
        else {
            self.is_done = true;
            return None;
        };
        let tag = DescriptorBlockTag::read_bytes(self.superblock, bytes);

        let mut advance = tag_size;
        if !tag.flags.contains(DescriptorBlockTagFlags::UUID_OMITTED) {
            advance = advance.saturating_add(DescriptorBlockTag::UUID_SIZE);
        }
        self.offset = self.offset.saturating_add(advance);

        if tag.flags.contains(DescriptorBlockTagFlags::LAST_TAG) {
            // Last tag reached, nothing more to read.
            self.is_done = true;
        }

        Some(tag)
    }
}

bitflags! {
    #[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd, Hash)]
    struct DescriptorBlockTagFlags: u32 {
        const ESCAPED = 0x1;
        const UUID_OMITTED = 0x2;
        const DELETED = 0x4;
        const LAST_TAG = 0x8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::superblock::test_superblock;
    use JournalIncompatibleFeatures as F;

    /// Test success and failure cases of `validate_descriptor_block_checksum`.
    #[test]
    fn test_validate_descriptor_block_checksum() {
        let superblock = test_superblock(F::IS_64BIT | F::CHECKSUM_V3);
        let mut block = vec![0; 1024];
        assert_eq!(
            validate_descriptor_block_checksum(&superblock, &block)
                .unwrap_err(),
            CorruptKind::JournalDescriptorBlockChecksum
        );

        block[1020..].copy_from_slice(&[0x74, 0xef, 0x0e, 0xf6]);
        assert!(
            validate_descriptor_block_checksum(&superblock, &block).is_ok()
        );
    }

    fn push_u32be(bytes: &mut Vec<u8>, value: u32) {
        bytes.extend(&value.to_be_bytes());
    }

    fn push_u16be(bytes: &mut Vec<u8>, value: u16) {
        bytes.extend(&value.to_be_bytes());
    }

    /// A 1024-byte descriptor block holding `tags` after its header.
    fn block_with(tags: &[u8]) -> Vec<u8> {
        let mut block = vec![0; JournalBlockHeader::SIZE];
        block.extend(tags);
        block.resize(1024, 0);
        block
    }

    fn tags(
        superblock: &JournalSuperblock,
        block: &[u8],
    ) -> Vec<DescriptorBlockTag> {
        DescriptorBlockTagIter::new(superblock, block).collect()
    }

    /// Test `DescriptorBlockTagIter` on valid csum v3 input. The first
    /// tag has no UUID, the second tag does have a UUID.
    #[test]
    fn test_descriptor_block_tag_iter() {
        let mut bytes = vec![];

        // Block number low.
        push_u32be(&mut bytes, 0x1000);
        // Flags.
        push_u32be(&mut bytes, DescriptorBlockTagFlags::UUID_OMITTED.bits());
        // Block number high.
        push_u32be(&mut bytes, 0xa000);
        // Checksum.
        push_u32be(&mut bytes, 0x123);

        // Block number low.
        push_u32be(&mut bytes, 0x2000);
        // Flags.
        push_u32be(&mut bytes, DescriptorBlockTagFlags::LAST_TAG.bits());
        // Block number high.
        push_u32be(&mut bytes, 0xb000);
        // Checksum.
        push_u32be(&mut bytes, 0x456);
        // UUID.
        bytes.extend([0; 16]);

        // Another tag after the last one, which is not read.
        push_u32be(&mut bytes, 0x3000);

        assert_eq!(
            tags(
                &test_superblock(F::IS_64BIT | F::CHECKSUM_V3),
                &block_with(&bytes)
            ),
            [
                DescriptorBlockTag {
                    block_index: 0xa000_0000_1000,
                    flags: DescriptorBlockTagFlags::UUID_OMITTED,
                    checksum: 0x123,
                },
                DescriptorBlockTag {
                    block_index: 0xb000_0000_2000,
                    flags: DescriptorBlockTagFlags::LAST_TAG,
                    checksum: 0x456,
                }
            ]
        );

        // Without the 64-bit feature, the high word is not read.
        assert_eq!(
            tags(&test_superblock(F::CHECKSUM_V3), &block_with(&bytes))
                .iter()
                .map(|t| t.block_index)
                .collect::<Vec<_>>(),
            [0x1000, 0x2000]
        );
    }

    /// Origami patch: `journal_block_tag_t` with checksum v2 (14 bytes
    /// with 64-bit, 10 without) and with no checksum (12 and 8 bytes).
    #[test]
    fn test_descriptor_block_tag_formats() {
        for (features, with_csum, with_high) in [
            (F::CHECKSUM_V2 | F::IS_64BIT, true, true),
            (F::CHECKSUM_V2, true, false),
            (F::IS_64BIT, false, true),
            (F::empty(), false, false),
        ] {
            let superblock = test_superblock(features);
            let mut bytes = vec![];
            for (i, flags) in [
                DescriptorBlockTagFlags::UUID_OMITTED,
                DescriptorBlockTagFlags::ESCAPED,
                DescriptorBlockTagFlags::LAST_TAG
                    | DescriptorBlockTagFlags::UUID_OMITTED,
            ]
            .into_iter()
            .enumerate()
            {
                let i = u32::try_from(i).unwrap();
                push_u32be(&mut bytes, 0x100 + i);
                push_u16be(&mut bytes, if with_csum { 0xbeef } else { 0 });
                push_u16be(&mut bytes, u16::try_from(flags.bits()).unwrap());
                if with_high {
                    push_u32be(&mut bytes, 7);
                }
                if with_csum {
                    // The two bytes checksum v2 adds to the tag's size.
                    push_u16be(&mut bytes, 0);
                }
                if !flags.contains(DescriptorBlockTagFlags::UUID_OMITTED) {
                    bytes.extend([0xaa; 16]);
                }
            }
            let got = tags(&superblock, &block_with(&bytes));
            let high = if with_high { 7 << 32 } else { 0 };
            assert_eq!(
                got.iter().map(|t| t.block_index).collect::<Vec<_>>(),
                [high | 0x100, high | 0x101, high | 0x102],
                "{features:?}"
            );
            assert!(
                got.iter()
                    .all(|t| t.checksum == if with_csum { 0xbeef } else { 0 })
            );
            assert_eq!(
                got.iter()
                    .map(DescriptorBlockTag::is_escaped)
                    .collect::<Vec<_>>(),
                [false, true, false]
            );
        }
    }

    /// Origami patch: a v2 tag's checksum is compared with the low 16
    /// bits of the crc32c, a v3 tag's with all of it.
    #[test]
    fn test_descriptor_block_tag_checksum_matches() {
        let tag = DescriptorBlockTag {
            block_index: 1,
            checksum: 0xbeef,
            flags: DescriptorBlockTagFlags::empty(),
        };
        let v2 = test_superblock(F::CHECKSUM_V2);
        let v3 = test_superblock(F::CHECKSUM_V3);
        assert!(tag.checksum_matches(&v2, 0x1234_beef));
        assert!(!tag.checksum_matches(&v2, 0x1234_beee));
        assert!(!tag.checksum_matches(&v3, 0x1234_beef));
        assert!(tag.checksum_matches(&v3, 0xbeef));
    }

    /// Origami patch: without `LAST_TAG`, the tags end where the next
    /// one would not fit before the checksum tail, as in the kernel
    /// (upstream failed); an empty area has no tags.
    #[test]
    fn test_descriptor_block_tag_iter_fills_block() {
        // Every tag without a UUID and without LAST_TAG: (1024 - 12 -
        // 4) / 16 = 63 tags fit.
        let superblock = test_superblock(F::IS_64BIT | F::CHECKSUM_V3);
        let mut bytes = vec![];
        for _ in 0..100 {
            push_u32be(&mut bytes, 9);
            push_u32be(
                &mut bytes,
                DescriptorBlockTagFlags::UUID_OMITTED.bits(),
            );
            push_u32be(&mut bytes, 0);
            push_u32be(&mut bytes, 0);
        }
        let mut block = vec![0; JournalBlockHeader::SIZE];
        block.extend(bytes);
        block.truncate(1024);
        assert_eq!(tags(&superblock, &block).len(), 63);

        // Tags each followed by a UUID (32 bytes): the 32nd, at offset
        // 992 of the 1008-byte area, fits without its UUID and is read
        // (the kernel checks only the tag itself).
        assert_eq!(tags(&superblock, &[0; 1024]).len(), 32);

        // Blocks too short for a header have no tags.
        assert!(tags(&superblock, &[0; 8]).is_empty());
    }
}
