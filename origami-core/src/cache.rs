//! A block cache with read-ahead, for callers that read a source a few KiB at a time.
//!
//! File-system readers (ext4-view reads 4 KiB blocks) ask for the same metadata blocks again
//! and again and walk data blocks in order; below them, every miss costs a `pread` or a qcow2
//! lookup. [`BlockCache`] keeps `capacity_blocks` blocks in a direct-mapped table of slots,
//! each behind its own lock (threads reading different blocks rarely meet), and when misses
//! come in order it reads the next blocks in the same call to the source. Reads of many
//! blocks at once bypass it: a large reader gains nothing from a copy.
//!
//! Limits: the source is assumed not to change underneath (disk images opened read-only);
//! a live source's cached blocks may be stale.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::Result;
use crate::read::{check_range, ReadAt};

const EMPTY: u64 = u64::MAX;

struct Slot {
    block: u64,
    len: usize,
    data: Box<[u8]>,
}

/// A read-ahead block cache over any [`ReadAt`].
pub struct BlockCache<R> {
    inner: R,
    block_size: usize,
    slots: Box<[Mutex<Slot>]>,
    last_miss: AtomicU64,
    readahead: usize,
}

impl<R: ReadAt> std::fmt::Debug for BlockCache<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("inner", &self.inner.name())
            .field("block_size", &self.block_size)
            .field("capacity_blocks", &self.slots.len())
            .field("readahead", &self.readahead)
            .finish()
    }
}

fn lock(m: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // A slot is only ever replaced whole, so a poisoned one is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<R: ReadAt> BlockCache<R> {
    /// Caches `inner` in blocks of `block_size` bytes (at least 512), keeping
    /// `capacity_blocks` of them (at least 1). Slots are allocated when first filled.
    pub fn new(inner: R, block_size: usize, capacity_blocks: usize) -> Self {
        let block_size = block_size.max(512);
        let capacity = capacity_blocks.max(1);
        let slots = (0..capacity)
            .map(|_| {
                Mutex::new(Slot {
                    block: EMPTY,
                    len: 0,
                    data: Box::default(),
                })
            })
            .collect();
        BlockCache {
            inner,
            block_size,
            slots,
            last_miss: AtomicU64::new(EMPTY - 1),
            readahead: (capacity / 4).clamp(1, 32),
        }
    }

    /// Sets how many blocks a sequential miss reads at once (1 turns read-ahead off).
    pub fn with_readahead(mut self, blocks: usize) -> Self {
        self.readahead = blocks.clamp(1, self.slots.len());
        self
    }

    /// The cached source.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// The block size in bytes.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    fn slot(&self, block: u64) -> &Mutex<Slot> {
        let i = (block % self.slots.len() as u64) as usize;
        // `i` is below the length: the modulo guarantees it.
        &self.slots[i]
    }

    fn store(&self, block: u64, bytes: &[u8]) {
        let mut s = lock(self.slot(block));
        if <[u8]>::len(&s.data) != self.block_size {
            s.data = vec![0u8; self.block_size].into_boxed_slice();
        }
        s.data[..bytes.len()].copy_from_slice(bytes);
        s.len = bytes.len();
        s.block = block;
    }

    /// Copies `out.len()` bytes from `within` in `block` into `out`.
    fn read_block(&self, block: u64, within: usize, out: &mut [u8]) -> Result<()> {
        let range = within..within + out.len();
        {
            let s = lock(self.slot(block));
            if s.block == block {
                if let Some(src) = s.data.get(range.clone()).filter(|_| range.end <= s.len) {
                    out.copy_from_slice(src);
                    return Ok(());
                }
            }
        }
        let bs = self.block_size as u64;
        let prev = self.last_miss.swap(block, Ordering::Relaxed);
        let count = if prev.wrapping_add(1) == block {
            self.readahead as u64
        } else {
            1
        };
        let start = block * bs;
        let end = start
            .saturating_add(count * bs)
            .min(self.inner.len())
            .max(start);
        let mut tmp = vec![0u8; (end - start) as usize];
        self.inner.read_at(start, &mut tmp)?;
        if let Some(src) = tmp.get(range) {
            out.copy_from_slice(src);
        }
        for (i, chunk) in tmp.chunks(self.block_size).enumerate() {
            self.store(block + i as u64, chunk);
        }
        if count > 1 {
            // The read-ahead blocks count as missed: the next miss after them is in order.
            let last = block + tmp.len().div_ceil(self.block_size).max(1) as u64 - 1;
            self.last_miss.store(last, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl<R: ReadAt> ReadAt for BlockCache<R> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(|| self.name(), offset, buf.len(), self.inner.len())?;
        if buf.len() >= self.block_size * 8 {
            return self.inner.read_at(offset, buf);
        }
        let bs = self.block_size as u64;
        let mut pos = 0usize;
        while pos < buf.len() {
            let at = offset + pos as u64;
            let block = at / bs;
            let within = (at % bs) as usize;
            let n = (self.block_size - within).min(buf.len() - pos);
            self.read_block(block, within, &mut buf[pos..pos + n])?;
            pos += n;
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn name(&self) -> String {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_equal_the_source_in_any_pattern() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let cache = BlockCache::new(data.clone(), 512, 8);
        let mut b = vec![0u8; 1500];
        for off in [0u64, 511, 512, 1000, 98_000, 3, 4, 5, 600, 98_500] {
            let n = b.len().min(data.len() - off as usize);
            cache.read_at(off, &mut b[..n]).unwrap();
            assert_eq!(
                &b[..n],
                &data[off as usize..off as usize + n],
                "offset {off}"
            );
        }
        // In order, 100 bytes at a time: read-ahead kicks in.
        for off in (0..data.len()).step_by(100) {
            let n = 100.min(data.len() - off);
            cache.read_at(off as u64, &mut b[..n]).unwrap();
            assert_eq!(&b[..n], &data[off..off + n]);
        }
        assert!(cache.read_at(99_999, &mut b[..2]).is_err());
        let big = BlockCache::new(data.clone(), 512, 8);
        let mut all = vec![0u8; data.len()];
        big.read_at(0, &mut all).unwrap();
        assert_eq!(all, data);
    }
}
