//! A sorted map from guest-physical ranges to offsets in a [`Store`]: the shape shared by
//! ELF cores (PT_LOAD), LiME (one range per header), raw images and live RAM files.
//!
//! Limits: ranges must not overlap (a hostile dump that overlaps is rejected, because the
//! answer to "which bytes are at X" would be ambiguous); reads across a gap fail with the
//! first missing address.

use super::store::Store;
use super::PhysRange;
use crate::error::{Error, Result};

/// One contiguous run of guest-physical memory stored contiguously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    /// First guest-physical address.
    pub(crate) start: u64,
    /// Length in bytes (non-zero).
    pub(crate) len: u64,
    /// Offset of `start`'s byte in the store.
    pub(crate) offset: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        // `new` checked that this does not overflow.
        self.start.saturating_add(self.len)
    }
}

/// Guest-physical segments over one store, sorted by address, non-overlapping.
#[derive(Debug)]
pub(crate) struct SegmentMap {
    segs: Vec<Segment>,
}

impl SegmentMap {
    /// Sorts and checks `segs`: each must lie inside `store_len` and in the 64-bit address
    /// space, and none may overlap. Empty segments are dropped. `at` gives the file offset
    /// to name in an error about segment `i` (its header's offset).
    pub(crate) fn new(
        mut segs: Vec<Segment>,
        store_len: u64,
        name: &dyn Fn() -> String,
    ) -> Result<SegmentMap> {
        segs.retain(|s| s.len != 0);
        for s in &segs {
            let bad = |reason: String| Error::BadDump {
                source_name: name(),
                offset: s.offset,
                reason,
            };
            if s.start.checked_add(s.len).is_none() {
                return Err(bad(format!(
                    "segment at physical {:#x} of {:#x} bytes passes the end of the address space",
                    s.start, s.len
                )));
            }
            match s.offset.checked_add(s.len) {
                Some(end) if end <= store_len => {}
                _ => {
                    return Err(bad(format!(
                        "segment at physical {:#x} of {:#x} bytes at file offset {:#x} passes the end of the file ({store_len:#x} bytes)",
                        s.start, s.len, s.offset
                    )))
                }
            }
        }
        segs.sort_by_key(|s| s.start);
        for pair in segs.windows(2) {
            if let [a, b] = pair {
                if b.start < a.end() {
                    return Err(Error::BadDump {
                        source_name: name(),
                        offset: b.offset,
                        reason: format!(
                            "segment at physical {:#x} overlaps the one at {:#x}..{:#x}",
                            b.start,
                            a.start,
                            a.end()
                        ),
                    });
                }
            }
        }
        Ok(SegmentMap { segs })
    }

    /// The segments, sorted.
    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segs
    }

    /// The covered ranges, with adjacent segments merged.
    pub(crate) fn ranges(&self) -> Vec<PhysRange> {
        let mut out: Vec<PhysRange> = Vec::with_capacity(self.segs.len());
        for s in &self.segs {
            match out.last_mut() {
                Some(last) if last.end == s.start => last.end = s.end(),
                _ => out.push(PhysRange {
                    start: s.start,
                    end: s.end(),
                }),
            }
        }
        out
    }

    /// The segment holding `addr`, if any.
    fn find(&self, addr: u64) -> Option<&Segment> {
        let i = self.segs.partition_point(|s| s.start <= addr);
        let s = self.segs.get(i.checked_sub(1)?)?;
        (addr < s.end()).then_some(s)
    }

    /// Reads guest-physical `addr..addr + buf.len()`, failing at the first missing byte.
    pub(crate) fn read(
        &self,
        store: &Store,
        name: &dyn Fn() -> String,
        addr: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        // Each piece is the rest of one segment, so the loop runs once per segment touched.
        read_pieces(name, addr, buf, |cur, dst| {
            let Some(seg) = self.find(cur) else {
                return Ok(0);
            };
            let n = usize::try_from(seg.end() - cur)
                .unwrap_or(usize::MAX)
                .min(dst.len());
            store.read(name, seg.offset + (cur - seg.start), &mut dst[..n])?;
            Ok(n)
        })
    }
}

/// Fills `buf` with guest-physical `addr..addr + buf.len()` piece by piece: `piece(cur,
/// dst)` fills the start of `dst` (the bytes from `cur` on) and says how many it filled,
/// 0 when `cur` is in a hole, which ends the read with [`Error::PhysicalHole`] naming it.
pub(crate) fn read_pieces(
    name: &dyn Fn() -> String,
    addr: u64,
    buf: &mut [u8],
    mut piece: impl FnMut(u64, &mut [u8]) -> Result<usize>,
) -> Result<()> {
    let len = buf.len();
    let hole = |at: u64| Error::PhysicalHole {
        source_name: name(),
        addr: at,
        start: addr,
        len,
    };
    if addr.checked_add(len as u64).is_none() {
        return Err(hole(u64::MAX));
    }
    let mut done = 0usize;
    while done < len {
        let cur = addr + done as u64;
        match piece(cur, &mut buf[done..])? {
            0 => return Err(hole(cur)),
            n => done += n.min(len - done),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> String {
        "t".into()
    }

    #[test]
    fn reads_across_adjacent_segments_and_fails_at_holes() {
        let store = Store::Owned((0..=255u8).collect());
        let map = SegmentMap::new(
            vec![
                Segment {
                    start: 0x2000,
                    len: 16,
                    offset: 16,
                },
                Segment {
                    start: 0x1000,
                    len: 16,
                    offset: 0,
                },
                Segment {
                    start: 0x1010,
                    len: 16,
                    offset: 100,
                },
            ],
            256,
            &name,
        )
        .unwrap();
        assert_eq!(
            map.ranges(),
            vec![
                PhysRange {
                    start: 0x1000,
                    end: 0x1020
                },
                PhysRange {
                    start: 0x2000,
                    end: 0x2010
                }
            ]
        );
        let mut b = [0u8; 4];
        map.read(&store, &name, 0x100e, &mut b).unwrap();
        assert_eq!(b, [14, 15, 100, 101]);
        match map.read(&store, &name, 0x101e, &mut b) {
            Err(Error::PhysicalHole { addr, .. }) => assert_eq!(addr, 0x1020),
            other => panic!("{other:?}"),
        }
        assert!(map.read(&store, &name, 0xfff, &mut b).is_err());
        assert!(map.read(&store, &name, u64::MAX - 1, &mut b).is_err());
    }

    #[test]
    fn rejects_overlaps_and_out_of_file_segments() {
        let overlap = vec![
            Segment {
                start: 0,
                len: 16,
                offset: 0,
            },
            Segment {
                start: 8,
                len: 16,
                offset: 0,
            },
        ];
        assert!(SegmentMap::new(overlap, 64, &name).is_err());
        let past = vec![Segment {
            start: 0,
            len: 65,
            offset: 0,
        }];
        assert!(SegmentMap::new(past, 64, &name).is_err());
        let wrap = vec![Segment {
            start: u64::MAX,
            len: 2,
            offset: 0,
        }];
        assert!(SegmentMap::new(wrap, 64, &name).is_err());
    }
}
