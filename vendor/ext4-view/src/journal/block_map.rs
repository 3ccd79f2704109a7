// Copyright 2024 Google LLC
//
// Licensed under the Apache License, Version 2.0 <LICENSE-APACHE or
// https://www.apache.org/licenses/LICENSE-2.0> or the MIT license
// <LICENSE-MIT or https://opensource.org/licenses/MIT>, at your
// option. This file may not be copied, modified, or distributed
// except according to those terms.

use crate::Ext4;
use crate::block_index::FsBlockIndex;
use crate::checksum::Checksum;
use crate::error::{CorruptKind, Ext4Error};
use crate::inode::Inode;
use crate::iters::file_blocks::FileBlocks;
use crate::journal::block_header::{JournalBlockHeader, JournalBlockType};
use crate::journal::commit_block::{
    ChecksumV1, validate_commit_block_checksum,
    validate_commit_block_checksum_v1,
};
use crate::journal::descriptor_block::{
    DescriptorBlockTagIter, validate_descriptor_block_checksum,
};
use crate::journal::revocation_block::{
    read_revocation_block_table, validate_revocation_block_checksum,
};
use crate::journal::superblock::JournalSuperblock;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

/// Origami patch: where the current content of a filesystem block
/// lives in the journal.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct JournalBlock {
    /// Absolute block index of the data block in the journal.
    pub(crate) block_index: FsBlockIndex,

    /// Whether the data block was escaped (its first four bytes, the
    /// journal magic number, were written as zeros): a reader restores
    /// the magic number.
    pub(crate) escaped: bool,
}

/// Map from a block somewhere in the filesystem to a block in the
/// journal. The key is an absolute block index.
pub(super) type BlockMap = BTreeMap<FsBlockIndex, JournalBlock>;

/// Read the block map from the journal.
///
/// Origami patch: this follows the kernel's recovery
/// (`fs/jbd2/recovery.c`, also `e2fsck/recovery.c`) for every journal
/// format it replays: 32- or 64-bit block numbers, no checksums or
/// checksums v1, v2 or v3 (upstream read only 64-bit journals with
/// checksum v3). The log starts at `s_start` and wraps around from the
/// last journal block to `s_first`; it ends at the first block that
/// is not a journal block of the expected sequence, or of an unknown
/// type. A transaction counts only once its commit block is read and
/// every checksum of it holds (descriptor, revoke and commit blocks,
/// and each data block's tag): the first transaction that fails one
/// ends the replay, it and all after it are ignored. (The kernel then
/// refuses to mount, or, for a data block's checksum, skips that
/// block but replays the rest; a reader shows the last state the
/// journal proves.) A revoke record of transaction T cancels the
/// replay of its block from every transaction up to T, as
/// `jbd2_journal_test_revoke` does. Escaped data blocks get their
/// magic number back when read.
///
/// At most one lap of the log is read: at most `s_maxlen - s_first`
/// blocks, so a hostile journal ends.
pub(super) fn load_block_map(
    fs: &Ext4,
    superblock: &JournalSuperblock,
    journal_inode: &Inode,
) -> Result<BlockMap, Ext4Error> {
    // A start of zero means that the journal is clean: nothing to
    // replay (the kernel's `jbd2_journal_recover`).
    if superblock.start_block == 0 {
        return Ok(BlockMap::new());
    }

    let mut loader = BlockMapLoader::new(fs, superblock, journal_inode)?;

    loop {
        match loader.process_next() {
            Ok(true) => {}
            Ok(false) => break,
            // If a corruption error occurred, stop reading the
            // journal. Any uncommitted changes are discarded.
            Err(Ext4Error::Corrupt(_)) => break,
            // Propagate any other type of error.
            Err(err) => return Err(err),
        }
    }

    Ok(loader.block_map)
}

/// Origami patch: the journal's blocks in log order, from `s_start`,
/// wrapping around from `s_maxlen - 1` to `s_first` (the kernel's
/// `wrap`), at most one lap.
struct LogBlocks<'a> {
    fs: &'a Ext4,
    journal_inode: &'a Inode,

    /// The journal inode's blocks from `next`.
    iter: FileBlocks,

    /// Index (within the journal) of the block `iter` gives next.
    next: u32,

    /// First log block (`s_first`).
    first: u32,

    /// Number of journal blocks (`s_maxlen`).
    max_len: u32,

    /// Blocks that may still be read in this lap.
    remaining: u32,
}

impl<'a> LogBlocks<'a> {
    fn new(
        fs: &'a Ext4,
        superblock: &JournalSuperblock,
        journal_inode: &'a Inode,
    ) -> Result<Self, Ext4Error> {
        let mut log = Self {
            fs,
            journal_inode,
            iter: FileBlocks::new(fs.clone(), journal_inode)?,
            next: 0,
            first: superblock.first,
            max_len: superblock.max_len,
            // `JournalSuperblock::load` checked 0 < first < max_len.
            remaining: superblock.max_len.saturating_sub(superblock.first),
        };
        log.skip_to(superblock.start_block)?;
        Ok(log)
    }

    /// Advance `iter` (from `next`) to the journal block `index`.
    fn skip_to(&mut self, index: u32) -> Result<(), Ext4Error> {
        while self.next < index {
            self.iter.next().ok_or(CorruptKind::JournalTruncated)??;
            self.next = self.next.saturating_add(1);
        }
        Ok(())
    }

    /// The absolute block index of the next log block, or `None` after
    /// one lap of the log.
    fn next_block(&mut self) -> Result<Option<FsBlockIndex>, Ext4Error> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining = self.remaining.saturating_sub(1);

        let block_index =
            self.iter.next().ok_or(CorruptKind::JournalTruncated)??;
        self.next = self.next.saturating_add(1);
        if self.next >= self.max_len {
            // Wrap around to the first log block.
            self.iter = FileBlocks::new(self.fs.clone(), self.journal_inode)?;
            self.next = 0;
            self.skip_to(self.first)?;
        }
        Ok(Some(block_index))
    }
}

/// Private struct to help create a `BlockMap` from the journal. This is
/// essentially an iterator, although it does not implement the actual
/// iterator trait.
struct BlockMapLoader<'a> {
    fs: &'a Ext4,
    superblock: &'a JournalSuperblock,

    /// This block map is the output of the loader. When a commit block
    /// is reached, the `uncommitted_block_map` entries are moved to
    /// `block_map`.
    block_map: BlockMap,

    /// In-process updates to the block map. When a commit block is
    /// reached, the contents of this map are moved to `block_map`.
    uncommitted_block_map: BlockMap,

    /// Revoked blocks in the current transaction. When a commit block
    /// is reached, any keys in `uncommitted_block_map` or (origami
    /// patch) in `block_map`, from earlier transactions, that are in
    /// this revoked list will be deleted.
    revoked_blocks: Vec<FsBlockIndex>,

    /// The journal's blocks in log order.
    log: LogBlocks<'a>,

    /// Buffer to hold the current block's data.
    block: Vec<u8>,

    /// Buffer to hold a data block's data. This is separate from
    /// `block` because when processing a data block, we still need the
    /// associated descriptor block in memory, so the descriptor is
    /// stored in `block`.
    data_block: Vec<u8>,

    /// Checksum v1 of the current transaction, if the journal has
    /// that feature.
    checksum_v1: Option<ChecksumV1>,

    /// Current commit sequence number. The initial value comes from the
    /// superblock, and is incremented when a commit block is
    /// reached. Each journal block also contains the sequence number;
    /// a block with another one ends the log.
    sequence: u32,
}

impl<'a> BlockMapLoader<'a> {
    fn new(
        fs: &'a Ext4,
        superblock: &'a JournalSuperblock,
        journal_inode: &'a Inode,
    ) -> Result<Self, Ext4Error> {
        Ok(Self {
            fs,
            superblock,
            block_map: BlockMap::new(),
            uncommitted_block_map: BlockMap::new(),
            revoked_blocks: Vec::new(),
            log: LogBlocks::new(fs, superblock, journal_inode)?,
            block: vec![0; fs.0.superblock.block_size.to_usize()],
            data_block: vec![0; fs.0.superblock.block_size.to_usize()],
            checksum_v1: superblock.checksum_v1.then(ChecksumV1::new),
            sequence: superblock.sequence,
        })
    }

    /// Process the next block. Returns `false` at the end of the log.
    ///
    /// Note that depending on the block type, multiple blocks may be
    /// processed.
    fn process_next(&mut self) -> Result<bool, Ext4Error> {
        let Some(block_index) = self.log.next_block()? else {
            return Ok(false);
        };
        self.fs.read_from_block(block_index, 0, &mut self.block)?;

        let Some(header) = JournalBlockHeader::read_bytes(&self.block) else {
            // Journal block magic is not present, so we've reached
            // the end of the journal.
            return Ok(false);
        };

        if header.sequence != self.sequence {
            // A block of an older lap of the log: the end.
            return Ok(false);
        }

        if header.block_type == JournalBlockType::DESCRIPTOR {
            self.process_descriptor_block()?;
        } else if header.block_type == JournalBlockType::REVOCATION {
            self.process_revocation_block()?;
        } else if header.block_type == JournalBlockType::COMMIT {
            self.process_commit_block()?;
        } else {
            // As the kernel: an unknown block type ends the log.
            return Ok(false);
        }
        Ok(true)
    }

    /// Process a descriptor block.
    ///
    /// Each descriptor block contains an array of tags, one for each
    /// data block following the descriptor block. Each data block will
    /// replace a block within the ext4 filesystem.
    ///
    /// Note that this will skip the log past the data blocks that
    /// follow the descriptor block.
    fn process_descriptor_block(&mut self) -> Result<(), Ext4Error> {
        let csum_v2_or_v3 = self.superblock.has_csum_v2_or_v3();
        if csum_v2_or_v3 {
            validate_descriptor_block_checksum(self.superblock, &self.block)?;
        }
        if let Some(checksum) = &mut self.checksum_v1 {
            checksum.update(&self.block);
        }

        for tag in DescriptorBlockTagIter::new(self.superblock, &self.block) {
            let block_index = self
                .log
                .next_block()?
                .ok_or(CorruptKind::JournalTruncated)?;

            // The data block is read only to check its checksum.
            if csum_v2_or_v3 || self.checksum_v1.is_some() {
                self.fs.read_from_block(
                    block_index,
                    0,
                    &mut self.data_block,
                )?;
            }
            if let Some(checksum) = &mut self.checksum_v1 {
                checksum.update(&self.data_block);
            }
            if csum_v2_or_v3 {
                // Check the data block checksum.
                let mut checksum = Checksum::new();
                checksum.update(self.superblock.uuid.as_bytes());
                checksum.update_u32_be(self.sequence);
                checksum.update(&self.data_block);
                if !tag.checksum_matches(self.superblock, checksum.finalize()) {
                    return Err(
                        CorruptKind::JournalDescriptorTagChecksum.into()
                    );
                }
            }

            self.uncommitted_block_map.insert(
                tag.block_index,
                JournalBlock {
                    block_index,
                    escaped: tag.is_escaped(),
                },
            );
        }

        Ok(())
    }

    fn process_revocation_block(&mut self) -> Result<(), Ext4Error> {
        if self.superblock.has_csum_v2_or_v3() {
            validate_revocation_block_checksum(self.superblock, &self.block)?;
        }
        read_revocation_block_table(
            self.superblock,
            &self.block,
            &mut self.revoked_blocks,
        )
    }

    /// Process a commit block.
    ///
    /// This indicates that a group of descriptor blocks have been
    /// successfully processed. The entries in `uncommitted_block_map`
    /// are moved to `block_map`, and the sequence number is
    /// incremented.
    fn process_commit_block(&mut self) -> Result<(), Ext4Error> {
        if self.superblock.has_csum_v2_or_v3() {
            validate_commit_block_checksum(self.superblock, &self.block)?;
        }
        if let Some(checksum) = self.checksum_v1.take() {
            validate_commit_block_checksum_v1(checksum, &self.block)?;
            self.checksum_v1 = Some(ChecksumV1::new());
        }

        // Remove any revoked blocks from uncommitted blocks, and
        // (origami patch) from earlier transactions: a revoke record
        // cancels the replay of its block from every transaction up
        // to its own (upstream kept the earlier ones).
        for block_index in &self.revoked_blocks {
            // Don't check the `remove` return value, as a revoked block
            // wasn't necessarily reused later in the transaction.
            self.uncommitted_block_map.remove(block_index);
            self.block_map.remove(block_index);
        }
        self.revoked_blocks.clear();

        // Commit the block map entries.
        self.block_map.append(&mut self.uncommitted_block_map);

        // Origami patch: transaction IDs wrap around, as in the kernel
        // (upstream failed at `u32::MAX`).
        self.sequence = self.sequence.wrapping_add(1);

        Ok(())
    }
}
