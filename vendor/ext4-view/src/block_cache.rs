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
use core::num::NonZeroU64;

/// Number of ways of the set-associative cache.
const WAYS: usize = 4;

/// Bytes read (and cached) per miss: an aligned group of blocks.
const GROUP_BYTES: u32 = 32 * 1024;

/// Total bytes the cache may hold (origami: 8 MiB, the original held 256 KiB).
const CACHE_BYTES: usize = 8 * 1024 * 1024;

/// Multiplier of the Fibonacci hashing that spreads groups over the sets
/// (2^64 divided by the golden ratio).
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

/// Block cache (origami patch: replaces the 64-entry LRU `VecDeque`).
///
/// The original cache held 64 blocks in a deque searched linearly and
/// copied each of the 8 blocks of every read into its own entry: on a
/// full walk of a small root file system that was half of all the
/// instructions executed. This one is set-associative (4 ways, LRU within
/// a set) over aligned groups of blocks: a miss reads one whole group
/// straight into its slot, a hit is a hash and at most four compares,
/// and nothing is copied inside the cache. Memory is bounded by
/// `CACHE_BYTES` (and by the file system's size for small ones; blocks
/// larger than 2 MiB, which Linux never makes, get one set of four),
/// whatever the file system says.
pub(crate) struct BlockCache {
    /// The sets, a power of two of them.
    sets: Vec<CacheSet>,

    /// Right shift taking a group's hash to its set: the top bits of the
    /// product are the best mixed (64 - log2 of the number of sets).
    set_shift: u32,

    /// Blocks per group (at least 1).
    blocks_per_group: NonZeroU64,

    /// Bytes per group: `blocks_per_group * block_size`.
    group_bytes: usize,

    /// File system block size.
    block_size: BlockSize,

    /// Total number of blocks in the filesystem.
    ///
    /// This is used to ensure that when reading multiple blocks we
    /// don't go past the end of the filesystem.
    num_fs_blocks: u64,
}

/// One set: `WAYS` slots of a group each.
struct CacheSet {
    /// Slot data, `WAYS * group_bytes` bytes. Allocated on the set's
    /// first miss.
    data: Vec<u8>,

    /// Tag of each way: group index + 1, or 0 when empty.
    tags: [u64; WAYS],

    /// Last-use stamp of each way, for LRU within the set.
    stamps: [u64; WAYS],

    /// Clock for `stamps`.
    clock: u64,
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
        // At least 1 (`max` above).
        let blocks_per_group = NonZeroU64::new(u64::from(blocks_per_group))
            .unwrap_or(NonZeroU64::MIN);
        // No more slots than the file system has groups, nor than fit in
        // CACHE_BYTES; a power of two number of sets.
        let fs_groups =
            usize::try_from(num_fs_blocks.div_ceil(blocks_per_group.get()))
                .unwrap_or(usize::MAX);
        let max_sets = CACHE_BYTES
            .checked_div(group_bytes.saturating_mul(WAYS))
            .unwrap_or(0)
            .max(1);
        let want_sets = fs_groups.div_ceil(WAYS).min(max_sets);
        // The largest power of two at most `want_sets` (at least 1), so
        // that the cache never holds more than `max_sets` sets.
        let log_sets = want_sets.checked_ilog2().unwrap_or(0);
        let num_sets = 1usize.checked_shl(log_sets).unwrap_or(1);
        let set_shift = u64::BITS.saturating_sub(log_sets);
        Ok(Self {
            sets: (0..num_sets).map(|_| CacheSet::empty()).collect(),
            set_shift,
            blocks_per_group,
            group_bytes,
            block_size,
            num_fs_blocks,
        })
    }

    /// The set holding group `group`.
    fn set_index(&self, group: u64) -> usize {
        // `checked_shr` is `None` only for a shift of 64: one set.
        let hash = group.wrapping_mul(FIBONACCI).checked_shr(self.set_shift);
        // Below the number of sets, so it fits.
        usize::try_from(hash.unwrap_or(0)).unwrap_or(0)
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
        let group = block_index / self.blocks_per_group;
        let within_group = block_index % self.blocks_per_group;
        let set = self.set_index(group);
        let (group_bytes, block_size) =
            (self.group_bytes, self.block_size.to_usize());
        let group_start = group.saturating_mul(self.blocks_per_group.get());
        let group_blocks = self.num_fs_blocks.saturating_sub(group_start);
        let set = &mut self.sets[set];
        let slot = set.lookup_or_fill(group, group_bytes, |buf| {
            // The last group stops at the end of the file system.
            let len = usize::try_from(group_blocks)
                .map_or(buf.len(), |blocks| {
                    blocks.saturating_mul(block_size).min(buf.len())
                });
            f(group_start, &mut buf[..len])
        })?;
        // OK to index: `within_group` is below `blocks_per_group`, so the
        // block lies inside the slot.
        let start = usize::try_from(within_group)
            .unwrap_or(usize::MAX)
            .saturating_mul(block_size);
        Ok(&slot[start..][..block_size])
    }
}

impl CacheSet {
    fn empty() -> Self {
        Self {
            data: Vec::new(),
            tags: [0; WAYS],
            stamps: [0; WAYS],
            clock: 0,
        }
    }

    /// The slot (`group_bytes` bytes) holding `group`: a hit, or on a miss
    /// the least recently used way, filled by `fill`. After a failed fill
    /// the way is empty.
    fn lookup_or_fill(
        &mut self,
        group: u64,
        group_bytes: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), Ext4Error>,
    ) -> Result<&[u8], Ext4Error> {
        // Tags are group + 1, so that 0 marks an empty way. (A group of
        // u64::MAX wraps to 0: never a hit, still correct.)
        let tag = group.wrapping_add(1);
        self.clock = self.clock.wrapping_add(1);
        let way = match self.tags.iter().position(|&t| t == tag) {
            Some(way) => way,
            None => {
                if self.data.is_empty() {
                    self.data = vec![0; WAYS.saturating_mul(group_bytes)];
                }
                // Least recently used way.
                let mut victim = 0;
                for way in 1..WAYS {
                    if self.stamps[way] < self.stamps[victim] {
                        victim = way;
                    }
                }
                // Empty until the read succeeds.
                self.tags[victim] = 0;
                fill(slot_mut(&mut self.data, victim, group_bytes))?;
                self.tags[victim] = tag;
                victim
            }
        };
        self.stamps[way] = self.clock;
        Ok(slot_mut(&mut self.data, way, group_bytes))
    }
}

/// Slot `way` of a set's data.
fn slot_mut(data: &mut [u8], way: usize, group_bytes: usize) -> &mut [u8] {
    // `data` holds WAYS slots and `way` < WAYS.
    let start = way.saturating_mul(group_bytes);
    &mut data[start..start.saturating_add(group_bytes)]
}
