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
use crate::journal::JournalSuperblock;
use crate::journal::block_header::JournalBlockHeader;
use crate::util::read_u32be;
use crate::util::usize_from_u32;
use alloc::vec::Vec;

/// Ensure a revocation block's checksum is valid.
///
/// The checksum is stored in the last four bytes of the block.
pub(super) fn validate_revocation_block_checksum(
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
        Err(CorruptKind::JournalRevocationBlockChecksum.into())
    }
}

/// Read the revoked block indices from a revocation block.
///
/// The entries are appended to the end of `table`.
///
/// Origami patch: as the kernel's `scan_revoke_records`, `r_count` is
/// the number of bytes used in the block, header (16 bytes) included,
/// and records are 8 bytes with the 64-bit feature, 4 without (upstream
/// read `r_count` as the size of the records alone, so read two
/// records past the end, and supported only 64-bit records). A count
/// reaching into the checksum tail is an error; trailing bytes shorter
/// than a record are ignored.
pub(super) fn read_revocation_block_table(
    superblock: &JournalSuperblock,
    block: &[u8],
    table: &mut Vec<FsBlockIndex>,
) -> Result<(), Ext4Error> {
    // Size of the revoke header: the block header and `r_count`.
    const HEADER_SIZE: usize = JournalBlockHeader::SIZE + size_of::<u32>();

    let record_size = if superblock.is_64bit() { 8 } else { 4 };
    let r_count = usize_from_u32(read_u32be(block, JournalBlockHeader::SIZE));
    let limit = block.len().saturating_sub(superblock.tail_size());
    if r_count > limit {
        return Err(CorruptKind::JournalRevocationBlockInvalidTableSize(
            r_count,
        )
        .into());
    }

    // Records lie in `HEADER_SIZE..r_count` (empty if `r_count` is
    // smaller than the header).
    let records = block.get(HEADER_SIZE..r_count).unwrap_or(&[]);
    for record in records.chunks_exact(record_size) {
        let block_index = if let Ok(bytes) = <[u8; 8]>::try_from(record) {
            u64::from_be_bytes(bytes)
        } else {
            u64::from(read_u32be(record, 0))
        };
        table.push(block_index);
    }

    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::superblock::{
        JournalIncompatibleFeatures as F, test_superblock,
    };

    /// Test success and failure cases of `validate_revocation_block_checksum`.
    #[test]
    fn test_validate_revocation_block_checksum() {
        let superblock = test_superblock(F::IS_64BIT | F::CHECKSUM_V3);
        let mut block = vec![0; 1024];
        assert_eq!(
            validate_revocation_block_checksum(&superblock, &block)
                .unwrap_err(),
            CorruptKind::JournalRevocationBlockChecksum
        );

        block[1020..].copy_from_slice(&[0x74, 0xef, 0x0e, 0xf6]);
        assert!(
            validate_revocation_block_checksum(&superblock, &block).is_ok()
        );
    }

    /// A revocation block whose `r_count` covers three 8-byte
    /// entries (and the 16-byte header), followed by a fourth entry
    /// that is not counted.
    fn create_test_revocation_block() -> Vec<u8> {
        let mut block = Vec::new();

        // Add header data (all zeros since only the length matters for this test).
        block.extend([0; JournalBlockHeader::SIZE]);

        // Add size field (header and three 8-byte entries).
        block.extend(40u32.to_be_bytes());

        // Add three entries.
        block.extend(100u64.to_be_bytes());
        block.extend(101u64.to_be_bytes());
        block.extend(0x1_0000_0066u64.to_be_bytes());

        // Add another entry that isn't used because of the size.
        block.extend(103u64.to_be_bytes());

        // Pad out to a full block size.
        block.resize(1024usize, 0u8);

        block
    }

    /// Test a successful call to `read_revocation_block_table`.
    #[test]
    fn test_read_revocation_block_table_success() {
        let block = create_test_revocation_block();
        let mut table = Vec::new();
        let superblock = test_superblock(F::IS_64BIT | F::CHECKSUM_V3);
        read_revocation_block_table(&superblock, &block, &mut table).unwrap();
        assert_eq!(table, [100, 101, 0x1_0000_0066]);
    }

    /// Origami patch: without the 64-bit feature, records are 4 bytes.
    #[test]
    fn test_read_revocation_block_table_32bit() {
        let block = create_test_revocation_block();
        let mut table = Vec::new();
        let superblock = test_superblock(F::empty());
        read_revocation_block_table(&superblock, &block, &mut table).unwrap();
        assert_eq!(table, [0, 100, 0, 101, 1, 0x66]);
    }

    /// Origami patch: as in the kernel, bytes shorter than a record at
    /// the end of the count are ignored, and a count smaller than the
    /// header means no records.
    #[test]
    fn test_read_revocation_block_table_uneven_size() {
        let superblock = test_superblock(F::IS_64BIT);
        for (count, want) in [(39, &[100u64, 101][..]), (7, &[][..])] {
            let mut block = create_test_revocation_block();
            block[JournalBlockHeader::SIZE
                ..JournalBlockHeader::SIZE + size_of::<u32>()]
                .copy_from_slice(&u32::to_be_bytes(count));
            let mut table = Vec::new();
            read_revocation_block_table(&superblock, &block, &mut table)
                .unwrap();
            assert_eq!(table, want);
        }
    }

    /// Test that `read_revocation_block_table` rejects a table size
    /// that is bigger than the available space in the block (with
    /// checksum v2/v3, the last four bytes are the checksum tail).
    #[test]
    fn test_read_revocation_block_table_size_too_large() {
        for (features, count, ok) in [
            (F::IS_64BIT | F::CHECKSUM_V3, 1020, true),
            (F::IS_64BIT | F::CHECKSUM_V3, 1021, false),
            (F::IS_64BIT, 1024, true),
            (F::IS_64BIT, 1025, false),
            (F::empty(), u32::MAX, false),
        ] {
            let mut block = create_test_revocation_block();
            block[JournalBlockHeader::SIZE
                ..JournalBlockHeader::SIZE + size_of::<u32>()]
                .copy_from_slice(&count.to_be_bytes());
            let mut table = Vec::new();
            let result = read_revocation_block_table(
                &test_superblock(features),
                &block,
                &mut table,
            );
            if ok {
                result.unwrap();
            } else {
                assert_eq!(
                    result.unwrap_err(),
                    CorruptKind::JournalRevocationBlockInvalidTableSize(
                        usize_from_u32(count)
                    )
                );
            }
        }
    }
}
