//! Fixed-width integers read out of on-disk headers at byte offsets.
//!
//! The callers have already checked that the header buffer is as long as the format says;
//! a field that would still fall outside the buffer (`at + N` past its end, or overflowing)
//! reads as 0 instead of panicking, and the format's own checks then reject the header.

fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = at.checked_add(N).and_then(|end| b.get(at..end)) {
        a.copy_from_slice(s);
    }
    a
}

/// Little-endian `u16` at `at` (0 when out of range).
pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(array(b, at))
}

/// Little-endian `u32` at `at` (0 when out of range).
pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(b, at))
}

/// Little-endian `u64` at `at` (0 when out of range).
pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array(b, at))
}

/// Big-endian `u32` at `at` (0 when out of range).
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array(b, at))
}

/// Big-endian `u64` at `at` (0 when out of range).
pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(array(b, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_range_and_zero_outside() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(le16(&b, 0), 0x0201);
        assert_eq!(le32(&b, 1), 0x0504_0302);
        assert_eq!(be32(&b, 0), 0x0102_0304);
        assert_eq!(le64(&b, 1), 0x0908_0706_0504_0302);
        assert_eq!(be64(&b, 2), 0);
        assert_eq!(le32(&b, usize::MAX - 1), 0);
    }
}
