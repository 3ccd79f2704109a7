// Copyright 2025 Google LLC
//
// Licensed under the Apache License, Version 2.0 <LICENSE-APACHE or
// https://www.apache.org/licenses/LICENSE-2.0> or the MIT license
// <LICENSE-MIT or https://opensource.org/licenses/MIT>, at your
// option. This file may not be copied, modified, or distributed
// except according to those terms.

use crate::checksum::Checksum;
use crate::error::{CorruptKind, Ext4Error};
use crate::journal::superblock::JournalSuperblock;
use crate::util::read_u32be;

/// Ensure a commit block's checksum is valid.
///
/// The checksum covers the entire block. The checksum field is treated
/// as zero for the checksum calculation.
pub(super) fn validate_commit_block_checksum(
    superblock: &JournalSuperblock,
    block: &[u8],
) -> Result<(), Ext4Error> {
    // The kernel documentation says that fields 0xc and 0xd contain the
    // checksum type and size, but this is not correct. If the
    // superblock features include `CHECKSUM_V3`, the type/size fields
    // are both zero.

    const CHECKSUM_OFFSET: usize = 16;
    const CHECKSUM_SIZE: usize = 4;

    let expected_checksum = read_u32be(block, CHECKSUM_OFFSET);

    let mut checksum = Checksum::new();
    checksum.update(superblock.uuid.as_bytes());
    checksum.update(&block[..CHECKSUM_OFFSET]);
    checksum.update(&[0; CHECKSUM_SIZE]);
    checksum.update(&block[CHECKSUM_OFFSET + CHECKSUM_SIZE..]);

    if checksum.finalize() == expected_checksum {
        Ok(())
    } else {
        Err(CorruptKind::JournalCommitBlockChecksum.into())
    }
}

/// Origami patch: the running checksum v1 of a transaction (the
/// compatible feature `JBD2_FEATURE_COMPAT_CHECKSUM`): the kernel's
/// `crc32_be`, seeded with `!0` and not inverted at the end, over the
/// transaction's descriptor blocks and data blocks, in log order.
pub(super) struct ChecksumV1 {
    digest: crc::Digest<'static, u32>,
}

impl ChecksumV1 {
    /// Checksum type `JBD2_CRC32_CHKSUM`.
    const TYPE_CRC32: u8 = 1;

    /// A checksum over nothing yet.
    pub(super) fn new() -> Self {
        // CRC-32/BZIP2 is the MSB-first CRC-32 seeded with `!0`; its
        // final inversion is undone in `value`.
        const CRC32_BE: crc::Crc<u32> =
            crc::Crc::<u32>::new(&crc::CRC_32_BZIP2);
        Self {
            digest: CRC32_BE.digest(),
        }
    }

    /// Extend the checksum with a whole journal block.
    pub(super) fn update(&mut self, block: &[u8]) {
        self.digest.update(block);
    }

    /// The value the kernel's `crc32_be` gives.
    fn value(self) -> u32 {
        self.digest.finalize() ^ !0
    }
}

/// Origami patch: check a commit block against the transaction's
/// checksum v1, as the kernel's recovery does: the commit block holds
/// that checksum (type `JBD2_CRC32_CHKSUM`, size 4) or no checksum at
/// all (type, size and value zero).
pub(super) fn validate_commit_block_checksum_v1(
    checksum: ChecksumV1,
    block: &[u8],
) -> Result<(), Ext4Error> {
    let h_chksum_type = block[12];
    let h_chksum_size = block[13];
    let found = read_u32be(block, 16);
    let matches = h_chksum_type == ChecksumV1::TYPE_CRC32
        && h_chksum_size == 4
        && found == checksum.value();
    let unused = h_chksum_type == 0 && h_chksum_size == 0 && found == 0;
    if matches || unused {
        Ok(())
    } else {
        Err(CorruptKind::JournalCommitBlockChecksum.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::superblock::{
        JournalIncompatibleFeatures, test_superblock,
    };

    /// Test success and failure cases of `validate_commit_block_checksum`.
    #[test]
    fn test_validate_commit_block_checksum() {
        let superblock = test_superblock(
            JournalIncompatibleFeatures::IS_64BIT
                | JournalIncompatibleFeatures::CHECKSUM_V3,
        );

        // Valid checksum.
        let mut block = vec![0xab; 1024];
        block[16..20].copy_from_slice(&[0x66, 0x51, 0x5e, 0x6f]);
        assert!(validate_commit_block_checksum(&superblock, &block).is_ok());

        // Change a single byte at the end, verify checksum becomes invalid.
        block[1023] = 1;
        assert_eq!(
            validate_commit_block_checksum(&superblock, &block).unwrap_err(),
            CorruptKind::JournalCommitBlockChecksum
        );
    }

    /// Origami patch: checksum v1 is the kernel's `crc32_be` seeded
    /// with !0 (0x0376e6e7 for "123456789", computed bit by bit from
    /// the polynomial 0x04c11db7 in Python; the CRC-32/BZIP2 check
    /// value 0xfc891918 inverted).
    #[test]
    fn test_checksum_v1() {
        let mut checksum = ChecksumV1::new();
        checksum.update(b"123456789");
        assert_eq!(checksum.value(), 0x0376_e6e7);

        let mut block = vec![0; 1024];
        let mut checksum = ChecksumV1::new();
        checksum.update(b"123456789");
        // No checksum in the commit block: accepted.
        validate_commit_block_checksum_v1(checksum, &block).unwrap();

        block[12] = 1;
        block[13] = 4;
        block[16..20].copy_from_slice(&0x0376_e6e7u32.to_be_bytes());
        let mut checksum = ChecksumV1::new();
        checksum.update(b"123456789");
        validate_commit_block_checksum_v1(checksum, &block).unwrap();

        let mut checksum = ChecksumV1::new();
        checksum.update(b"123456780");
        assert_eq!(
            validate_commit_block_checksum_v1(checksum, &block).unwrap_err(),
            CorruptKind::JournalCommitBlockChecksum
        );
    }
}
