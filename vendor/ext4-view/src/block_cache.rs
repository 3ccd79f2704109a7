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
use crate::sync::Lock;
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
    /// The sets, a power of two of them, each behind its own lock
    /// (origami patch: `Ext4` is shared between threads; threads reading
    /// groups of different sets do not wait for each other).
    sets: Vec<Lock<CacheSet>>,

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
    /// Slot data, `group_bytes` bytes per way. Each way is allocated on
    /// the first miss that fills it (origami: a re-crawl that touches a
    /// few scattered blocks zeroes what it reads, not four slots per set).
    data: [Vec<u8>; WAYS],

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
            sets: (0..num_sets)
                .map(|_| Lock::new(CacheSet::empty()))
                .collect(),
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

    /// Copy bytes `offset..offset + dst.len()` of block `block_index`
    /// into `dst`, reading the block's whole group with
    /// `f(first_block, buf)` on a miss. `f` is called at most once, with
    /// the lock of the block's set held (so two threads missing the same
    /// group read it once).
    ///
    /// # Preconditions
    ///
    /// `block_index` must be less than `num_fs_blocks`, and
    /// `offset + dst.len()` at most the block size.
    pub(crate) fn read<F>(
        &self,
        block_index: FsBlockIndex,
        offset: usize,
        dst: &mut [u8],
        f: F,
    ) -> Result<(), Ext4Error>
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
        let mut set = self.sets[set].lock();
        let slot = set.lookup_or_fill(group, group_bytes, |buf| {
            // The last group stops at the end of the file system.
            let len = usize::try_from(group_blocks)
                .map_or(buf.len(), |blocks| {
                    blocks.saturating_mul(block_size).min(buf.len())
                });
            f(group_start, &mut buf[..len])
        })?;
        // OK to index: `within_group` is below `blocks_per_group`, so the
        // block lies inside the slot, and the caller keeps the read inside
        // the block.
        let start = usize::try_from(within_group)
            .unwrap_or(usize::MAX)
            .saturating_mul(block_size)
            .saturating_add(offset);
        dst.copy_from_slice(&slot[start..][..dst.len()]);
        Ok(())
    }
}

impl CacheSet {
    fn empty() -> Self {
        Self {
            data: Default::default(),
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

/// Slot `way` of a set's data (`way` < WAYS), allocated when still empty.
fn slot_mut(
    data: &mut [Vec<u8>; WAYS],
    way: usize,
    group_bytes: usize,
) -> &mut [u8] {
    let slot = &mut data[way];
    if slot.len() != group_bytes {
        *slot = vec![0; group_bytes];
    }
    slot
}

/// Origami tests of the set-associative cache, against plain bytes: block
/// `b` of the simulated file system holds `truth(b, i)` at byte `i`,
/// computed independently of the cache.
#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Byte `i` of block `block` of the simulated file system.
    fn truth(block: u64, i: usize) -> u8 {
        let x = block
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(i as u64)
            .wrapping_mul(0xBF58_476D_1CE4_E5B9);
        (x >> 56) as u8
    }

    fn truth_block(block: u64, block_size: usize) -> Vec<u8> {
        (0..block_size).map(|i| truth(block, i)).collect()
    }

    fn block_size(bytes: u32) -> BlockSize {
        BlockSize::from_superblock_value(bytes.trailing_zeros() - 10).unwrap()
    }

    /// Every read the cache asked for: (first block, length in bytes).
    type Log = Vec<(u64, usize)>;

    /// Block `block` through the cache, filling misses from the
    /// simulated file system and logging them.
    fn get(cache: &BlockCache, block: u64, log: &mut Log) -> Vec<u8> {
        let bs = cache.block_size.to_usize();
        let mut out = vec![0; bs];
        cache
            .read(block, 0, &mut out, |first, buf: &mut [u8]| {
                log.push((first, buf.len()));
                for (n, chunk) in buf.chunks_mut(bs).enumerate() {
                    for (i, b) in chunk.iter_mut().enumerate() {
                        *b = truth(first + n as u64, i);
                    }
                }
                Ok(())
            })
            .unwrap();
        out
    }

    /// Bytes the cache holds in slots (each set's on its first miss).
    fn allocated(cache: &BlockCache) -> usize {
        cache
            .sets
            .iter()
            .map(|set| set.lock().data.iter().map(Vec::len).sum::<usize>())
            .sum()
    }

    /// The set of group `group`, as the cache computes it.
    fn set_of(cache: &BlockCache, group: u64) -> usize {
        cache.set_index(group)
    }

    #[test]
    fn a_miss_reads_the_aligned_group_then_its_blocks_hit() {
        // 1 KiB blocks: 32 blocks per 32 KiB group.
        let cache = BlockCache::new(block_size(1024), 10_000).unwrap();
        let mut log = Log::new();
        assert_eq!(get(&cache, 70, &mut log), truth_block(70, 1024));
        assert_eq!(log, [(64, 32 * 1024)]);
        for b in 64..96 {
            assert_eq!(get(&cache, b, &mut log), truth_block(b, 1024));
        }
        assert_eq!(log.len(), 1, "blocks of a cached group are hits");
        assert_eq!(get(&cache, 96, &mut log), truth_block(96, 1024));
        assert_eq!(log[1], (96, 32 * 1024));
    }

    #[test]
    fn groups_are_aligned_for_every_block_size() {
        for bytes in [1024u32, 2048, 4096, 8192, 65536] {
            let bs = block_size(bytes);
            let bpg = u64::from((GROUP_BYTES / bytes).max(1));
            let cache = BlockCache::new(bs, 1 << 20).unwrap();
            let mut log = Log::new();
            for block in [1u64, bpg, 3 * bpg + 1, 1000, (1 << 20) - 1] {
                assert_eq!(
                    get(&cache, block, &mut log),
                    truth_block(block, bs.to_usize())
                );
                let &(first, len) = log.last().unwrap();
                assert_eq!(first % bpg, 0, "block size {bytes}");
                assert!(first <= block && block < first + bpg);
                assert_eq!(len, (bpg * u64::from(bytes)) as usize);
            }
        }
    }

    #[test]
    fn the_last_group_stops_at_the_end_of_the_file_system() {
        let cache = BlockCache::new(block_size(1024), 100).unwrap();
        let mut log = Log::new();
        assert_eq!(get(&cache, 99, &mut log), truth_block(99, 1024));
        assert_eq!(log, [(96, 4 * 1024)]);
        assert_eq!(get(&cache, 97, &mut log), truth_block(97, 1024));
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn lru_eviction_within_a_set() {
        let bs = block_size(4096);
        let cache = BlockCache::new(bs, 1 << 30).unwrap();
        assert!(cache.sets.len() > 1);
        // Five groups of the same set (group g starts at block 8 * g).
        let set = set_of(&cache, 3);
        let groups: Vec<u64> = (3..)
            .filter(|&g| set_of(&cache, g) == set)
            .take(5)
            .collect();
        let block = |g: u64| g * 8 + 5;
        let mut log = Log::new();
        let mut touch = |cache: &BlockCache, g: u64| {
            let before = log.len();
            assert_eq!(
                get(cache, block(g), &mut log),
                truth_block(block(g), 4096)
            );
            log.len() > before
        };
        for &g in &groups[..4] {
            assert!(touch(&cache, g), "first access is a miss");
        }
        // All four ways hold their group; the first becomes most recent.
        for &g in &groups[..4] {
            assert!(!touch(&cache, g), "a cached group is a hit");
        }
        assert!(!touch(&cache, groups[0]));
        // A fifth group of the set evicts the least recently used: the
        // second.
        assert!(touch(&cache, groups[4]));
        assert!(!touch(&cache, groups[0]));
        assert!(!touch(&cache, groups[2]));
        assert!(!touch(&cache, groups[3]));
        assert!(!touch(&cache, groups[4]));
        assert!(touch(&cache, groups[1]), "the evicted group is re-read");
        // Groups of other sets never evict these.
        let others: Vec<u64> =
            (0..2000).filter(|&g| set_of(&cache, g) != set).collect();
        for &g in &others {
            touch(&cache, g);
        }
        // Group 1 replaced the least recently used of the set, group 0;
        // the other three stayed.
        assert!(!touch(&cache, groups[1]));
        assert!(!touch(&cache, groups[2]));
        assert!(!touch(&cache, groups[3]));
        assert!(!touch(&cache, groups[4]));
        assert!(touch(&cache, groups[0]));
    }

    #[test]
    fn memory_is_bounded_by_8_mib() {
        // A file system claiming 2^40 blocks of 4 KiB: at most 8 MiB of
        // slots, whatever the walk touches.
        let cache = BlockCache::new(block_size(4096), 1 << 40).unwrap();
        let mut log = Log::new();
        for i in 0..5000u64 {
            let block = i.wrapping_mul(0x2545_F491_4F6C_DD1D) % (1 << 40);
            assert_eq!(get(&cache, block, &mut log), truth_block(block, 4096));
        }
        assert_eq!(allocated(&cache), CACHE_BYTES);
        assert_eq!(cache.sets.len() * WAYS * cache.group_bytes, CACHE_BYTES);
        // Blocks of 64 KiB: one block per group, still 8 MiB.
        let cache = BlockCache::new(block_size(65536), 1 << 40).unwrap();
        for i in 0..500u64 {
            get(&cache, i * 977, &mut log);
        }
        assert_eq!(allocated(&cache), CACHE_BYTES);
    }

    #[test]
    fn a_small_file_system_gets_fewer_slots() {
        // 100 KiB of 1 KiB blocks: 4 groups, one set of 4 ways.
        let cache = BlockCache::new(block_size(1024), 100).unwrap();
        assert_eq!(cache.sets.len(), 1);
        let mut log = Log::new();
        for b in 1..100 {
            assert_eq!(get(&cache, b, &mut log), truth_block(b, 1024));
        }
        assert_eq!(allocated(&cache), WAYS * 32 * 1024);
        // The whole file system fits: each group was read once.
        assert_eq!(log.len(), 4);
        for b in 1..100 {
            get(&cache, b, &mut log);
        }
        assert_eq!(log.len(), 4);
        // Nothing is allocated before the first miss.
        let cache = BlockCache::new(block_size(4096), 1 << 30).unwrap();
        assert_eq!(allocated(&cache), 0);
        // A miss allocates the one slot it fills.
        assert_eq!(get(&cache, 12345, &mut log), truth_block(12345, 4096));
        assert_eq!(allocated(&cache), 32 * 1024);
    }

    #[test]
    fn a_failed_read_caches_nothing() {
        let cache = BlockCache::new(block_size(1024), 1000).unwrap();
        let err = cache
            .read(40, 0, &mut [0; 1024], |_, buf: &mut [u8]| {
                buf.fill(0xee);
                Err(Ext4Error::NotFound)
            })
            .unwrap_err();
        assert!(matches!(err, Ext4Error::NotFound));
        // The group is read again, and its real content returned.
        let mut log = Log::new();
        assert_eq!(get(&cache, 40, &mut log), truth_block(40, 1024));
        assert_eq!(log, [(32, 32 * 1024)]);
    }
}
