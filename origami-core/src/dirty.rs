//! Changed blocks of a virtual disk: a [`DirtyMap`], the sorted, merged byte ranges of the
//! disk that may have been written since some earlier moment, at a granularity.
//!
//! It is the one input of an incremental crawl that says *where* to look, whatever told us:
//! a qcow2 persistent dirty bitmap ([`crate::Qcow2Image::persistent_bitmap`]), the clusters
//! allocated in the overlay of an external snapshot ([`crate::Qcow2Image::allocated_ranges`]),
//! or an NBD export's `qemu:dirty-bitmap:NAME` block status (built with
//! [`DirtyMap::from_ranges`]). A map may say more than what changed (a whole cluster for a
//! written byte) but never less: a reader that trusts it skips what it does not name.
//!
//! ```
//! use origami_core::dirty::DirtyMap;
//!
//! let map = DirtyMap::from_ranges(1 << 20, 65536, vec![70_000..70_001, 0..10])?;
//! assert_eq!(map.ranges(), &[0..131072]); // adjacent granules merge
//! assert!(map.intersects(100_000..100_512));
//! assert!(!map.intersects(131_072..200_000));
//! # Ok::<(), origami_core::Error>(())
//! ```

use std::ops::Range;

use crate::error::{Error, Result};

/// The most ranges a map holds after merging (64 Ki granules of a 2 TiB disk alternating
/// would need more; such a map is widened instead, see [`DirtyMap::from_ranges`]).
pub const MAX_RANGES: usize = 1 << 20;

/// Byte ranges of a virtual disk that may have changed, sorted, merged and aligned to the
/// granularity; every range lies inside `0..disk_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyMap {
    disk_size: u64,
    granularity: u64,
    ranges: Vec<Range<u64>>,
}

impl DirtyMap {
    /// A map with nothing dirty.
    pub fn clean(disk_size: u64, granularity: u64) -> Result<DirtyMap> {
        Self::from_ranges(disk_size, granularity, Vec::new())
    }

    /// A map of the whole disk dirty (nothing may be trusted).
    pub fn all(disk_size: u64, granularity: u64) -> Result<DirtyMap> {
        Self::from_ranges(
            disk_size,
            granularity,
            std::iter::once(0..disk_size).collect(),
        )
    }

    /// The map of `ranges` (in any order, overlapping or not) widened to `granularity` (a
    /// power of two; 512 B to 2 GiB) and clipped to the disk. A range reaching past the
    /// disk is an error (the source describes another disk). More than [`MAX_RANGES`]
    /// ranges after merging are widened to the whole disk: still never less than what
    /// changed.
    pub fn from_ranges(
        disk_size: u64,
        granularity: u64,
        mut ranges: Vec<Range<u64>>,
    ) -> Result<DirtyMap> {
        let bad = |offset: u64, reason: String| Error::Corrupt {
            source_name: "dirty map".into(),
            offset,
            reason,
        };
        if !granularity.is_power_of_two() || !(512..=(1 << 31)).contains(&granularity) {
            return Err(bad(
                0,
                format!("granularity {granularity} is not a power of two from 512 B to 2 GiB"),
            ));
        }
        ranges.retain(|r| r.start < r.end);
        ranges.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<u64>> = Vec::new();
        for r in ranges {
            if r.end > disk_size {
                return Err(bad(
                    r.start,
                    format!(
                        "changed range {:#x}..{:#x} reaches past the disk's {disk_size:#x} bytes",
                        r.start, r.end
                    ),
                ));
            }
            let start = r.start & !(granularity - 1);
            let end = r
                .end
                .checked_next_multiple_of(granularity)
                .unwrap_or(u64::MAX)
                .min(disk_size);
            match merged.last_mut() {
                Some(last) if start <= last.end => last.end = last.end.max(end),
                _ => {
                    if merged.len() >= MAX_RANGES {
                        merged = std::iter::once(0..disk_size).collect();
                        break;
                    }
                    merged.push(start..end);
                }
            }
        }
        Ok(DirtyMap {
            disk_size,
            granularity,
            ranges: merged,
        })
    }

    /// The dirty ranges, sorted and disjoint.
    pub fn ranges(&self) -> &[Range<u64>] {
        &self.ranges
    }

    /// The size of the disk the map describes.
    pub fn disk_size(&self) -> u64 {
        self.disk_size
    }

    /// The granularity (bytes one bit of a bitmap stands for).
    pub fn granularity(&self) -> u64 {
        self.granularity
    }

    /// Bytes marked dirty.
    pub fn dirty_bytes(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }

    /// Whether any byte of `range` may have changed.
    pub fn intersects(&self, range: Range<u64>) -> bool {
        if range.start >= range.end {
            return false;
        }
        // The first dirty range ending after `range.start`.
        let i = self.ranges.partition_point(|r| r.end <= range.start);
        self.ranges.get(i).is_some_and(|r| r.start < range.end)
    }

    /// The map of one part of the disk (a partition at `offset`, `len` bytes long), with
    /// offsets relative to that part.
    pub fn slice(&self, offset: u64, len: u64) -> DirtyMap {
        let end = offset.saturating_add(len);
        let i = self.ranges.partition_point(|r| r.end <= offset);
        let ranges = self.ranges[i..]
            .iter()
            .take_while(|r| r.start < end)
            .map(|r| r.start.max(offset) - offset..r.end.min(end) - offset)
            .collect();
        DirtyMap {
            disk_size: len,
            granularity: self.granularity,
            ranges,
        }
    }

    /// The union of two maps of the same disk (the coarser granularity kept).
    pub fn union(&self, other: &DirtyMap) -> Result<DirtyMap> {
        let ranges = self.ranges.iter().chain(&other.ranges).cloned().collect();
        Self::from_ranges(
            self.disk_size.max(other.disk_size),
            self.granularity.max(other.granularity),
            ranges,
        )
    }
}

#[cfg(test)]
// One-range lists are what these tests mean.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    #[test]
    fn merges_aligns_and_clips() {
        let m = DirtyMap::from_ranges(10_000, 512, vec![600..700, 0..1, 1000..1100, 9999..10_000])
            .unwrap();
        assert_eq!(m.ranges(), &[0..1536, 9728..10_000]);
        assert_eq!(m.dirty_bytes(), 1536 + 272);
        assert!(m.intersects(1535..1536));
        assert!(!m.intersects(1536..9728));
        assert!(!m.intersects(5..5));
    }

    #[test]
    fn refuses_ranges_past_the_disk_and_bad_granularity() {
        assert!(DirtyMap::from_ranges(4096, 512, vec![4000..4097]).is_err());
        assert!(DirtyMap::from_ranges(4096, 513, vec![]).is_err());
        assert!(DirtyMap::from_ranges(4096, 256, vec![]).is_err());
    }

    #[test]
    fn slices_relative_to_a_partition() {
        let m = DirtyMap::from_ranges(1 << 20, 4096, vec![0..4096, 65536..70000]).unwrap();
        let s = m.slice(61440, 8192);
        assert_eq!(s.ranges(), &[4096..8192]);
        assert_eq!(m.slice(8192, 4096).ranges(), &[] as &[Range<u64>]);
    }

    #[test]
    fn union_keeps_both() {
        let a = DirtyMap::from_ranges(1 << 16, 512, vec![0..512]).unwrap();
        let b = DirtyMap::from_ranges(1 << 16, 4096, vec![8192..8193]).unwrap();
        assert_eq!(a.union(&b).unwrap().ranges(), &[0..4096, 8192..12288]);
    }
}
