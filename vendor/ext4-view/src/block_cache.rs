// Copyright 2025 Google LLC
//
// Licensed under the Apache License, Version 2.0 <LICENSE-APACHE or
// https://www.apache.org/licenses/LICENSE-2.0> or the MIT license
// <LICENSE-MIT or https://opensource.org/licenses/MIT>, at your
// option. This file may not be copied, modified, or distributed
// except according to those terms.

use crate::block_index::FsBlockIndex;
use crate::block_size::BlockSize;
use crate::error::CorruptKind;
use crate::error::Ext4Error;
use crate::util::usize_from_u32;
use alloc::vec;
use alloc::vec::Vec;

/// Number of ways of the set-associative cache.
const WAYS: usize = 4;

/// Bytes read (and cached) per miss: an aligned group of blocks.
const GROUP_BYTES: u32 = 32 * 1024;

/// Total bytes the cache may hold (origami: 8 MiB, the original held 256 KiB).
const CACHE_BYTES: usize = 8 * 1024 * 1024;

/// Block cache (origami patch: replaces the 64-entry LRU `VecDeque`).
///
/// The original cache held 64 blocks in a deque searched linearly and
/// copied each of the 8 blocks of every read into its own entry: on a
/// full walk of a small root file system that was half of all the
/// instructions executed. This one is set-associative (4 ways, LRU within
/// a set) over aligned groups of blocks: a miss reads one whole group
/// straight into its slot, a hit is a hash and at most four compares,
/// and nothing is copied inside the cache. Memory is bounded by
/// `CACHE_BYTES` (and by the file system's size for small ones),
/// whatever the file system says.
pub(crate) struct BlockCache {
    /// Slot data, `num_slots * group_bytes` bytes. Allocated on first miss.
    data: Vec<u8>,

    /// Tag of each slot: group index + 1, or 0 when empty.
    tags: Vec<u64>,

    /// Last-use stamp of each slot, for LRU within a set.
    stamps: Vec<u64>,

    /// Clock for `stamps`.
    clock: u64,

    /// Number of sets (a power of two); `num_sets * WAYS` slots.
    num_sets: usize,

    /// Blocks per group (at least 1).
    blocks_per_group: u32,

    /// File system block size.
    block_size: BlockSize,

    /// Total number of blocks in the filesystem.
    ///
    /// This is used to ensure that when reading multiple blocks we
    /// don't go past the end of the filesystem.
    num_fs_blocks: u64,
}

impl BlockCache {
    /// Create a block cache with sensible defaults.
    pub(crate) fn new(
        block_size: BlockSize,
        num_fs_blocks: u64,
    ) -> Result<Self, Ext4Error> {
        let blocks_per_group = 1.max(GROUP_BYTES / block_size.to_nz_u32());
        let group_bytes = usize_from_u32(blocks_per_group)
            .checked_mul(block_size.to_usize())
            .ok_or(CorruptKind::BlockCacheReadTooLarge {
                num_blocks: blocks_per_group,
                block_size,
            })?;
        // No more slots than the file system has groups, nor than fit in
        // CACHE_BYTES; a power of two number of sets.
        let fs_groups = num_fs_blocks.div_ceil(u64::from(blocks_per_group));
        let max_sets = (CACHE_BYTES / group_bytes / WAYS).max(1);
        let want_sets =
            usize::try_from(fs_groups.div_ceil(WAYS as u64)).unwrap_or(max_sets);
        let mut num_sets = 1;
        while num_sets < want_sets.min(max_sets) {
            num_sets *= 2;
        }
        if num_sets > max_sets {
            num_sets /= 2;
        }
        Ok(Self {
            data: Vec::new(),
            tags: Vec::new(),
            stamps: Vec::new(),
            clock: 0,
            num_sets,
            blocks_per_group,
            block_size,
            num_fs_blocks,
        })
    }

    fn group_bytes(&self) -> usize {
        usize_from_u32(self.blocks_per_group) * self.block_size.to_usize()
    }

    /// Get the cached data of block `block_index`, reading its whole
    /// group with `f(first_block, buf)` on a miss. `f` is called at most
    /// once.
    ///
    /// # Preconditions
    ///
    /// `block_index` must be less than `num_fs_blocks`.
    pub(crate) fn get_or_insert_blocks<F>(
        &mut self,
        block_index: FsBlockIndex,
        f: F,
    ) -> Result<&[u8], Ext4Error>
    where
        F: FnOnce(FsBlockIndex, &mut [u8]) -> Result<(), Ext4Error>,
    {
        assert!(block_index < self.num_fs_blocks);
        if self.tags.is_empty() {
            let slots = self.num_sets * WAYS;
            self.tags = vec![0; slots];
            self.stamps = vec![0; slots];
            self.data = vec![0; slots * self.group_bytes()];
        }
        let bpg = u64::from(self.blocks_per_group);
        let group = block_index / bpg;
        let tag = group + 1;
        // Fibonacci hashing spreads neighbouring groups over the sets.
        let set = (group.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize
            & (self.num_sets - 1);
        let first = set * WAYS;
        self.clock += 1;

        let mut slot = None;
        for way in first..first + WAYS {
            if self.tags[way] == tag {
                slot = Some(way);
                break;
            }
        }
        let slot = match slot {
            Some(s) => s,
            None => {
                // Least recently used way of the set.
                let mut victim = first;
                for way in first..first + WAYS {
                    if self.stamps[way] < self.stamps[victim] {
                        victim = way;
                    }
                }
                let group_start = group * bpg;
                let end_block =
                    group_start.saturating_add(bpg).min(self.num_fs_blocks);
                // At most `blocks_per_group` blocks, so this fits.
                let num_blocks = (end_block - group_start) as usize;
                let num_bytes = num_blocks * self.block_size.to_usize();
                let gb = self.group_bytes();
                let buf = &mut self.data[victim * gb..victim * gb + num_bytes];
                // Mark the slot empty until the read succeeds.
                self.tags[victim] = 0;
                f(group_start, buf)?;
                self.tags[victim] = tag;
                victim
            }
        };
        self.stamps[slot] = self.clock;
        let gb = self.group_bytes();
        let bs = self.block_size.to_usize();
        let within = (block_index - group * bpg) as usize * bs;
        let start = slot * gb + within;
        Ok(&self.data[start..start + bs])
    }
}

