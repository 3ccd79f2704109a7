//! LiME memory images: a sequence of 32-byte headers (`EMiL` magic, version 1, first and
//! last physical address, inclusive), each followed by that range's bytes.
//!
//! Limits: version 1 only (the only one LiME writes); the walk ends exactly at the end of
//! the file, and a header that does not fit or promises more bytes than the file holds is
//! an error naming its offset. Each header consumes at least 33 bytes, so the walk is
//! bounded by the file size.

use super::segments::Segment;
use crate::error::{Error, Result};

/// The magic, `0x4C694D45` little-endian.
pub(crate) const MAGIC: &[u8] = b"EMiL";
const HEADER: u64 = 32;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The ranges of a LiME file held in `bytes`.
pub(crate) fn parse(bytes: &[u8], name: &dyn Fn() -> String) -> Result<Vec<Segment>> {
    let size = bytes.len() as u64;
    let bad = |offset: u64, reason: String| Error::BadDump {
        source_name: name(),
        offset,
        reason,
    };
    let mut segs = Vec::new();
    let mut at = 0u64;
    while at < size {
        let i = at as usize; // at < size, which came from a usize
        let (Some(magic), Some(version), Some(first), Some(last)) = (
            bytes.get(i..i.saturating_add(4)),
            u32_at(bytes, i + 4),
            u64_at(bytes, i + 8),
            u64_at(bytes, i + 16),
        ) else {
            return Err(bad(at, "truncated LiME header".into()));
        };
        if magic != MAGIC {
            return Err(bad(at, "LiME header without the EMiL magic".into()));
        }
        if version != 1 {
            return Err(bad(at, format!("LiME version {version} (only 1 is known)")));
        }
        let len = last
            .checked_sub(first)
            .and_then(|d| d.checked_add(1))
            .ok_or_else(|| bad(at, format!("LiME range {first:#x}..={last:#x} is inverted")))?;
        let data = at + HEADER;
        let next = data
            .checked_add(len)
            .filter(|&n| n <= size)
            .ok_or_else(|| {
                bad(
                    at,
                    format!("LiME range {first:#x}..={last:#x} ({len:#x} bytes) passes the end of the file"),
                )
            })?;
        segs.push(Segment {
            start: first,
            len,
            offset: data,
        });
        at = next;
    }
    Ok(segs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(first: u64, last: u64) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&1u32.to_le_bytes());
        h.extend_from_slice(&first.to_le_bytes());
        h.extend_from_slice(&last.to_le_bytes());
        h.extend_from_slice(&[0u8; 8]);
        h
    }

    #[test]
    fn reads_ranges_and_rejects_lies() {
        let name = || String::from("t");
        let mut f = header(0x1000, 0x1003);
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend(header(0x3000, 0x3000));
        f.push(9);
        let segs = parse(&f, &name).unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!(
            segs[1],
            Segment {
                start: 0x3000,
                len: 1,
                offset: 68
            }
        );
        let mut short = f.clone();
        short.pop();
        assert!(parse(&short, &name).is_err());
        assert!(parse(&header(5, 4), &name).is_err());
        assert!(parse(&header(0, u64::MAX), &name).is_err());
        assert!(parse(&f[..10], &name).is_err());
    }
}
