//! CRC-32C (Castagnoli), the checksum of XFS v5 and btrfs metadata: initial value and
//! final xor `!0`, reflected, stored little-endian.

const fn table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static TABLE: [u32; 256] = table();

fn update(mut c: u32, data: &[u8]) -> u32 {
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    c
}

/// The CRC-32C register after `data`, from `seed`, without the final xor (as Linux's
/// `crc32c()`, which btrfs's directory name hash uses with seed `!1`).
pub(crate) fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    update(seed, data)
}

/// CRC-32C of `data`.
#[cfg(test)]
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    !update(!0, data)
}

/// CRC-32C of `data` with the four bytes at `hole` taken as zeros (the checksum field of
/// the structure being checked).
pub(crate) fn crc32c_with_hole(data: &[u8], hole: usize) -> u32 {
    let hole = hole.min(data.len());
    let end = (hole + 4).min(data.len());
    let c = update(!0, &data[..hole]);
    let c = update(c, &[0u8; 4][..end - hole]);
    !update(c, &data[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_value() {
        // The CRC-32C check value (RFC 3720's catalogue).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(
            crc32c_with_hole(b"12345678\0\0\0\09", 8),
            crc32c(b"12345678\0\0\0\09")
        );
        assert_eq!(
            crc32c_with_hole(b"12345678abcd9", 8),
            crc32c(b"12345678\0\0\0\09")
        );
    }
}
