//! Little-endian fields of file-system headers (the ext4 superblock, the FAT boot sector).
//!
//! A stand-in, with the same names and meaning, for origami-core's bytes layer
//! (`origami_core::bytes::{le16, le32}`), which origami-core does not export yet: once it
//! does, `use origami_core::bytes::{le16, le32};` replaces this module. A field that falls
//! outside the buffer reads as 0, and the header's own checks then reject it.

/// The `N` bytes at `at`, or zeros when they are not all inside `b`.
fn field<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    at.checked_add(N)
        .and_then(|end| b.get(at..end))
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; N])
}

/// Little-endian `u16` at `at` (0 when out of range).
pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(field(b, at))
}

/// Little-endian `u32` at `at` (0 when out of range).
pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(field(b, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_range_and_zero_outside() {
        let b = [0x53u8, 0xEF, 3, 4, 5];
        assert_eq!(le16(&b, 0), 0xEF53);
        assert_eq!(le32(&b, 1), 0x0504_03EF);
        assert_eq!(le32(&b, 2), 0);
        assert_eq!(le16(&b, usize::MAX), 0);
    }
}
