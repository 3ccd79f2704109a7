//! The two-level lookup from a guest offset to where its bytes are: the L1 table (read
//! whole at open) and L2 tables (a bounded cache), including extended L2 entries with their
//! subcluster bitmaps, and runs of clusters that continue one another.

use std::sync::Arc;

use crate::bytes::be64;
use crate::error::Result;

use super::{lock, Qcow2Image};

pub(super) const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const OFLAG_COMPRESSED: u64 = 1 << 62;
const OFLAG_ZERO: u64 = 1;
const SUBCLUSTERS: u32 = 32;

/// Where a run of guest bytes comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Extent {
    /// Stored in the file at this offset.
    Data(u64),
    /// Reads as zeros.
    Zero,
    /// Not allocated here: the backing image's bytes, or zeros.
    Unallocated,
    /// A compressed cluster: its L2 entry.
    Compressed(u64),
}

/// A bounded cache of L2 tables, keyed by their file offset.
pub(super) struct L2Cache {
    tables: Vec<(u64, Arc<[u64]>)>,
    next: usize,
    capacity: usize,
}

impl L2Cache {
    pub(super) fn new(capacity: usize) -> L2Cache {
        L2Cache {
            tables: Vec::new(),
            next: 0,
            capacity,
        }
    }
}

impl Qcow2Image {
    /// The L2 table at `offset`, from the cache or the file.
    fn l2_table(&self, offset: u64) -> Result<Arc<[u64]>> {
        {
            let cache = lock(&self.l2);
            if let Some((_, t)) = cache.tables.iter().find(|(o, _)| *o == offset) {
                return Ok(Arc::clone(t));
            }
        }
        // Read outside the lock, so other threads keep reading cached tables.
        let mut raw = vec![0u8; self.cluster_size as usize];
        self.file.read_at(offset, &mut raw)?;
        self.seen_l2(offset, &raw)?;
        let table: Arc<[u64]> = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
        let mut cache = lock(&self.l2);
        if cache.tables.len() < cache.capacity {
            cache.tables.push((offset, Arc::clone(&table)));
        } else {
            let slot = cache.next;
            cache.next = (slot + 1) % cache.capacity;
            if let Some(s) = cache.tables.get_mut(slot) {
                *s = (offset, Arc::clone(&table));
            }
        }
        Ok(table)
    }

    /// The L2 entry (and its subcluster bitmap, 0 without extended L2) of guest cluster `gc`.
    fn l2_entry(&self, gc: u64, table: &mut Option<(u64, Arc<[u64]>)>) -> Result<(u64, u64)> {
        let l1_index = gc >> self.l2_bits;
        let l1e = usize::try_from(l1_index)
            .ok()
            .and_then(|i| self.l1.get(i))
            .copied()
            .ok_or_else(|| {
                self.corrupt(
                    self.header.l1_table_offset,
                    format!("no L1 entry {l1_index}"),
                )
            })?;
        let l2_offset = l1e & OFFSET_MASK;
        if l2_offset == 0 {
            return Ok((0, 0));
        }
        if !l2_offset.is_multiple_of(self.cluster_size) {
            return Err(self.corrupt(
                self.header.l1_table_offset + l1_index * 8,
                format!("L2 table offset {l2_offset:#x} is not cluster-aligned"),
            ));
        }
        let t = match table {
            Some((o, t)) if *o == l2_offset => Arc::clone(t),
            _ => {
                let t = self.l2_table(l2_offset)?;
                *table = Some((l2_offset, Arc::clone(&t)));
                t
            }
        };
        let index = (gc & ((1u64 << self.l2_bits) - 1)) as usize;
        if self.header.extended_l2 {
            let e = t.get(index * 2).copied().unwrap_or(0);
            let b = t.get(index * 2 + 1).copied().unwrap_or(0);
            Ok((e, b))
        } else {
            Ok((t.get(index).copied().unwrap_or(0), 0))
        }
    }

    /// Where guest offset `g` comes from, and how many bytes from `g` share that source
    /// within its cluster (or subcluster run).
    fn classify(&self, g: u64, table: &mut Option<(u64, Arc<[u64]>)>) -> Result<(Extent, u64)> {
        let gc = g >> self.cluster_bits;
        let within = g & (self.cluster_size - 1);
        let to_cluster_end = self.cluster_size - within;
        let (entry, bitmap) = self.l2_entry(gc, table)?;
        if entry & OFLAG_COMPRESSED != 0 {
            return Ok((Extent::Compressed(entry), to_cluster_end));
        }
        let host = entry & OFFSET_MASK;
        let entry_at = || {
            // For error messages: the L1 entry's place is exact; the L2 entry is named by cluster.
            self.header.l1_table_offset + (gc >> self.l2_bits) * 8
        };
        if host != 0 && !host.is_multiple_of(self.cluster_size) {
            return Err(self.corrupt(
                entry_at(),
                format!("guest cluster {gc}: data offset {host:#x} is not cluster-aligned"),
            ));
        }
        if !self.header.extended_l2 {
            let extent = if self.header.version >= 3 && entry & OFLAG_ZERO != 0 {
                Extent::Zero
            } else if host == 0 {
                Extent::Unallocated
            } else {
                Extent::Data(host + within)
            };
            return Ok((extent, to_cluster_end));
        }
        // Extended L2: 32 subclusters; bit i allocated, bit 32 + i reads as zeros.
        let sc_bits = self.cluster_bits - 5;
        let sc_of = |x: u64| (x >> sc_bits) as u32;
        let status = |i: u32| -> Result<Extent> {
            let alloc = bitmap >> i & 1 != 0;
            let zero = bitmap >> (32 + i) & 1 != 0;
            match (alloc, zero) {
                (true, true) => Err(self.corrupt(
                    entry_at(),
                    format!("guest cluster {gc}: subcluster {i} both allocated and zero"),
                )),
                (true, false) if host == 0 => Err(self.corrupt(
                    entry_at(),
                    format!(
                        "guest cluster {gc}: subcluster {i} allocated in an unallocated cluster"
                    ),
                )),
                (true, false) => Ok(Extent::Data(host)),
                (false, true) => Ok(Extent::Zero),
                (false, false) => Ok(Extent::Unallocated),
            }
        };
        let first = sc_of(within);
        let kind = status(first)?;
        let mut last = first;
        while last + 1 < SUBCLUSTERS && status(last + 1)? == kind {
            last += 1;
        }
        let run_end = u64::from(last + 1) << sc_bits;
        let extent = match kind {
            Extent::Data(h) => Extent::Data(h + within),
            k => k,
        };
        Ok((extent, run_end - within))
    }

    /// The extent at `g`, extended over following clusters of the same kind (contiguous in
    /// the file for data), up to `max` bytes.
    pub(super) fn extent(
        &self,
        g: u64,
        max: u64,
        table: &mut Option<(u64, Arc<[u64]>)>,
    ) -> Result<(Extent, u64)> {
        let (kind, mut run) = self.classify(g, table)?;
        if matches!(kind, Extent::Compressed(_)) {
            return Ok((kind, run.min(max)));
        }
        while run < max {
            let (next, more) = self.classify(g + run, table)?;
            let same = match (kind, next) {
                (Extent::Data(a), Extent::Data(b)) => b == a + run,
                (Extent::Zero, Extent::Zero) | (Extent::Unallocated, Extent::Unallocated) => true,
                _ => false,
            };
            if !same {
                break;
            }
            run += more;
        }
        Ok((kind, run.min(max)))
    }
}
