// Copyright 2024 Google LLC
//
// Licensed under the Apache License, Version 2.0 <LICENSE-APACHE or
// https://www.apache.org/licenses/LICENSE-2.0> or the MIT license
// <LICENSE-MIT or https://opensource.org/licenses/MIT>, at your
// option. This file may not be copied, modified, or distributed
// except according to those terms.

mod block_header;
mod block_map;
mod commit_block;
mod descriptor_block;
mod revocation_block;
mod superblock;

use crate::Ext4;
use crate::block_index::FsBlockIndex;
use crate::error::Ext4Error;
use crate::inode::Inode;
use block_map::{BlockMap, load_block_map};
use superblock::JournalSuperblock;

#[derive(Debug)]
pub(crate) struct Journal {
    block_map: BlockMap,
}

impl Journal {
    /// Create an empty journal.
    pub(crate) fn empty() -> Self {
        Self {
            block_map: BlockMap::new(),
        }
    }

    /// Load a journal from the filesystem.
    ///
    /// If the filesystem has no journal, an empty journal is returned.
    ///
    /// Note: ext4 is all little-endian, except for the journal, which
    /// is all big-endian.
    pub(crate) fn load(fs: &Ext4) -> Result<Self, Ext4Error> {
        let Some(journal_inode) = fs.0.superblock.journal_inode else {
            // Return an empty journal if this filesystem does not have
            // a journal.
            return Ok(Self::empty());
        };

        let journal_inode = Inode::read(fs, journal_inode)?;
        let superblock = JournalSuperblock::load(fs, &journal_inode)?;
        let block_map = load_block_map(fs, &superblock, &journal_inode)?;

        Ok(Self { block_map })
    }

    /// Map from an absolute block index to a block in the journal.
    ///
    /// If the journal does not contain a replacement for the input
    /// block, the input block is returned.
    ///
    /// Origami patch: also says whether the journal's block is
    /// escaped: its first four bytes must then read as the journal
    /// magic number (see `restore_escaped_magic`).
    pub(crate) fn map_block_index(
        &self,
        block_index: FsBlockIndex,
    ) -> (FsBlockIndex, bool) {
        match self.block_map.get(&block_index) {
            Some(block) => (block.block_index, block.escaped),
            None => (block_index, false),
        }
    }
}

/// Origami patch: restore the journal magic number (big-endian) in the
/// first four bytes of an escaped block, of which `dst` holds the
/// bytes from `offset_within_block` on.
pub(crate) fn restore_escaped_magic(
    offset_within_block: usize,
    dst: &mut [u8],
) {
    let magic = block_header::JournalBlockHeader::MAGIC.to_be_bytes();
    let Some(magic_rest) = magic.get(offset_within_block..) else {
        return;
    };
    for (dst, magic) in dst.iter_mut().zip(magic_rest) {
        *dst = *magic;
    }
}

/// Origami patch: tests of `restore_escaped_magic`.
#[cfg(test)]
mod origami_tests {
    use super::*;

    #[test]
    fn test_restore_escaped_magic() {
        let mut block = [0u8; 8];
        restore_escaped_magic(0, &mut block);
        assert_eq!(block, [0xc0, 0x3b, 0x39, 0x98, 0, 0, 0, 0]);

        // A read from offset 2 of 3 bytes.
        let mut dst = [0u8; 3];
        restore_escaped_magic(2, &mut dst);
        assert_eq!(dst, [0x39, 0x98, 0]);

        // A read of 1 byte, and reads past the magic number.
        let mut dst = [0u8; 1];
        restore_escaped_magic(1, &mut dst);
        assert_eq!(dst, [0x3b]);
        let mut dst = [7u8; 4];
        restore_escaped_magic(4, &mut dst);
        restore_escaped_magic(1000, &mut dst);
        assert_eq!(dst, [7; 4]);
    }
}

#[cfg(all(test, feature = "std", ext4_view_upstream_test_data))]
mod tests {
    use crate::test_util::load_compressed_filesystem;
    use alloc::sync::Arc;

    #[test]
    fn test_journal() {
        let mut fs =
            load_compressed_filesystem("test_disk_4k_block_journal.bin.zst");

        let test_dir = "/dir500";

        // With the journal in place, this directory exists.
        assert!(fs.exists(test_dir).unwrap());

        // Clear the journal, and verify that the directory no longer exists.
        Arc::get_mut(&mut fs.0).unwrap().journal.block_map.clear();
        assert!(!fs.exists(test_dir).unwrap());
    }
}
