//! Fixed-width integers read out of byte buffers at offsets: the one little- and big-endian
//! reader layer of origami, for disk headers here and guest structures above (kallsyms
//! tables, BTF, kernel memory).
//!
//! Two forms, for two kinds of caller. The `try_` readers return `None` when `at + N` falls
//! outside the buffer (or overflows): parsers of hostile data turn that into their own
//! error naming the structure. The plain readers return 0 instead, for callers that have
//! already checked that the buffer is as long as the format says and let the format's own
//! checks reject a zero; they never panic either.
//!
//! ```
//! use origami_core::bytes::{le32, try_le16};
//!
//! let b = [0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
//! assert_eq!(try_le16(&b, 0), Some(0xeb9f));
//! assert_eq!(le32(&b, 4), 24);
//! assert_eq!(try_le16(&b, 7), None); // one byte short
//! assert_eq!(le32(&b, usize::MAX), 0);
//! ```

/// The `N` bytes at `at`, when they are all inside `b`.
fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Little-endian `u16` at `at`, or `None` when it does not fit in `b`.
pub fn try_le16(b: &[u8], at: usize) -> Option<u16> {
    array(b, at).map(u16::from_le_bytes)
}

/// Little-endian `u32` at `at`, or `None` when it does not fit in `b`.
pub fn try_le32(b: &[u8], at: usize) -> Option<u32> {
    array(b, at).map(u32::from_le_bytes)
}

/// Little-endian `u64` at `at`, or `None` when it does not fit in `b`.
pub fn try_le64(b: &[u8], at: usize) -> Option<u64> {
    array(b, at).map(u64::from_le_bytes)
}

/// Little-endian unsigned integer of `width` bytes (1 to 8) at `at`, or `None` when it
/// does not fit in `b` or `width` is not 1 to 8. Reads fields whose width a type
/// description gives (a BTF member of 1, 2, 4 or 8 bytes).
pub fn try_le_uint(b: &[u8], at: usize, width: usize) -> Option<u64> {
    if !(1..=8).contains(&width) {
        return None;
    }
    let src = b.get(at..at.checked_add(width)?)?;
    let mut a = [0u8; 8];
    a.get_mut(..width)?.copy_from_slice(src);
    Some(u64::from_le_bytes(a))
}

/// Little-endian `u16` at `at` (0 when out of range).
pub fn le16(b: &[u8], at: usize) -> u16 {
    try_le16(b, at).unwrap_or(0)
}

/// Little-endian `u32` at `at` (0 when out of range).
pub fn le32(b: &[u8], at: usize) -> u32 {
    try_le32(b, at).unwrap_or(0)
}

/// Little-endian `u64` at `at` (0 when out of range).
pub fn le64(b: &[u8], at: usize) -> u64 {
    try_le64(b, at).unwrap_or(0)
}

/// Big-endian `u32` at `at` (0 when out of range).
pub fn be32(b: &[u8], at: usize) -> u32 {
    array(b, at).map_or(0, u32::from_be_bytes)
}

/// Big-endian `u64` at `at` (0 when out of range).
pub fn be64(b: &[u8], at: usize) -> u64 {
    array(b, at).map_or(0, u64::from_be_bytes)
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

    #[test]
    fn checked_reads_say_none_outside() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(try_le16(&b, 7), Some(0x0908));
        assert_eq!(try_le16(&b, 8), None);
        assert_eq!(try_le32(&b, 6), None);
        assert_eq!(try_le64(&b, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(try_le64(&b, usize::MAX), None);
        assert_eq!(try_le_uint(&b, 0, 3), Some(0x0003_0201));
        assert_eq!(try_le_uint(&b, 8, 1), Some(9));
        assert_eq!(try_le_uint(&b, 8, 2), None);
        assert_eq!(try_le_uint(&b, 0, 0), None);
        assert_eq!(try_le_uint(&b, 0, 9), None);
    }
}
