//! SUSE's NDB package database (`Packages.db`, rpm's `ndb` backend, SLE 15 / openSUSE):
//!
//! ```text
//! 0   header, 32 bytes LE: "RpmP", version 0, generation, slot page count
//! 32  slots of 16 bytes LE, to the end of the slot pages (4096 bytes each; the header
//!     takes the first two): "Slot", package index (0: free), block offset, block count
//! blocks of 16 bytes: a blob at (block offset * 16) is
//!     "BlbS", package index, timestamp, length; the header blob; padding; and a 12-byte
//!     tail at the end of its blocks: Adler-32 of everything before it, length, "BlbE"
//! ```
//!
//! Every slot and blob is checked against the file's length; a blob whose magic, index,
//! length or checksum is wrong is reported and skipped.

use super::{Blob, DbError};

const PAGE: u64 = 4096;
const SLOT: u64 = 16;
const BLOCK: u64 = 16;
const BLOB_HEAD: u64 = 16;
const BLOB_TAIL: u64 = 12;

fn le32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// Adler-32 (RFC 1950).
pub fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the longest run before b can overflow u32.
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

fn bad(offset: u64, what: impl Into<String>) -> DbError {
    DbError::Malformed {
        location: format!("offset {offset:#x}"),
        what: what.into(),
    }
}

/// The header blobs of a `Packages.db`, with the problems of the blobs skipped; at most
/// `max_packages` blobs.
pub fn read(data: &[u8], max_packages: usize) -> (Vec<Blob>, Vec<DbError>) {
    let mut blobs = Vec::new();
    let mut errors = Vec::new();
    if data.len() < 32 || &data[0..4] != b"RpmP" {
        errors.push(bad(0, "no NDB header (magic \"RpmP\")"));
        return (blobs, errors);
    }
    let version = le32(data, 4);
    let npages = u64::from(le32(data, 12));
    if version != 0 {
        errors.push(bad(4, format!("NDB version {version} (0 is known)")));
        return (blobs, errors);
    }
    let slots_end = npages * PAGE;
    if npages == 0 || slots_end > data.len() as u64 {
        errors.push(bad(
            12,
            format!(
                "{npages} slot pages do not fit the {}-byte file",
                data.len()
            ),
        ));
        return (blobs, errors);
    }
    let mut at = 2 * SLOT;
    while at < slots_end {
        let s = &data[at as usize..(at + SLOT) as usize];
        let slot_at = at;
        at += SLOT;
        if &s[0..4] != b"Slot" {
            errors.push(bad(slot_at, "slot without its \"Slot\" magic"));
            break;
        }
        let pkgidx = le32(s, 4);
        if pkgidx == 0 {
            continue;
        }
        if blobs.len() >= max_packages {
            errors.push(DbError::TooManyPackages {
                limit: max_packages,
            });
            break;
        }
        let blk_off = u64::from(le32(s, 8)) * BLOCK;
        let blk_len = u64::from(le32(s, 12)) * BLOCK;
        match blob_at(data, pkgidx, blk_off, blk_len, slots_end) {
            Ok(bytes) => blobs.push(Blob {
                location: format!("package index {pkgidx} at offset {blk_off:#x}"),
                bytes: bytes.to_vec(),
            }),
            Err(e) => errors.push(e),
        }
    }
    (blobs, errors)
}

/// The header blob in the blocks `[off, off + len)`, checked.
fn blob_at(data: &[u8], pkgidx: u32, off: u64, len: u64, slots_end: u64) -> Result<&[u8], DbError> {
    let end = off + len;
    if off < slots_end || len < BLOB_HEAD + BLOB_TAIL || end > data.len() as u64 {
        return Err(bad(
            off,
            format!(
                "package {pkgidx}: blocks [{off:#x}, {end:#x}) are outside the blob area of the {}-byte file",
                data.len()
            ),
        ));
    }
    let b = &data[off as usize..end as usize];
    if &b[0..4] != b"BlbS" || le32(b, 4) != pkgidx {
        return Err(bad(
            off,
            format!("package {pkgidx}: no blob header for it here"),
        ));
    }
    let blob_len = u64::from(le32(b, 12));
    if BLOB_HEAD + blob_len + BLOB_TAIL > len {
        return Err(bad(
            off,
            format!(
                "package {pkgidx}: blob of {blob_len} bytes overruns its {len} bytes of blocks"
            ),
        ));
    }
    let tail = (len - BLOB_TAIL) as usize;
    if &b[tail + 8..tail + 12] != b"BlbE" || u64::from(le32(b, tail + 4)) != blob_len {
        return Err(bad(
            off + tail as u64,
            format!("package {pkgidx}: bad blob tail"),
        ));
    }
    let want = le32(b, tail);
    let got = adler32(&b[..tail]);
    if want != got {
        return Err(bad(
            off + tail as u64,
            format!("package {pkgidx}: blob checksum {got:#010x}, tail says {want:#010x}"),
        ));
    }
    Ok(&b[BLOB_HEAD as usize..(BLOB_HEAD + blob_len) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_known_value() {
        // RFC 1950's example value for "Wikipedia".
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(&[0xff; 100_000]), {
            let (mut a, mut b) = (1u64, 0u64);
            for _ in 0..100_000 {
                a = (a + 255) % 65521;
                b = (b + a) % 65521;
            }
            ((b << 16) | a) as u32
        });
    }

    /// A one-page NDB file with one package whose blob is `blob`.
    fn ndb(blob: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 4096];
        d[0..4].copy_from_slice(b"RpmP");
        d[12..16].copy_from_slice(&1u32.to_le_bytes());
        for s in (32..4096).step_by(16) {
            d[s..s + 4].copy_from_slice(b"Slot");
        }
        let blocks = (16 + blob.len() as u32 + 12).div_ceil(16);
        d[36..40].copy_from_slice(&7u32.to_le_bytes());
        d[40..44].copy_from_slice(&256u32.to_le_bytes());
        d[44..48].copy_from_slice(&blocks.to_le_bytes());
        let mut b = vec![0u8; blocks as usize * 16];
        b[0..4].copy_from_slice(b"BlbS");
        b[4..8].copy_from_slice(&7u32.to_le_bytes());
        b[12..16].copy_from_slice(&(blob.len() as u32).to_le_bytes());
        b[16..16 + blob.len()].copy_from_slice(blob);
        let t = b.len() - 12;
        let sum = adler32(&b[..t]);
        b[t..t + 4].copy_from_slice(&sum.to_le_bytes());
        b[t + 4..t + 8].copy_from_slice(&(blob.len() as u32).to_le_bytes());
        b[t + 8..].copy_from_slice(b"BlbE");
        d.extend_from_slice(&b);
        d
    }

    #[test]
    fn reads_and_checks_blobs() {
        let d = ndb(b"hello header");
        let (blobs, errors) = read(&d, 10);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(blobs.len(), 1);
        assert_eq!(blobs[0].bytes, b"hello header");
        // a flipped byte: the checksum catches it
        let mut bad = d.clone();
        bad[4096 + 17] ^= 1;
        let (blobs, errors) = read(&bad, 10);
        assert!(blobs.is_empty());
        assert!(errors[0].to_string().contains("checksum"), "{errors:?}");
        // a slot whose blocks point past the file
        let mut bad = d.clone();
        bad[40..44].copy_from_slice(&0x1000_0000u32.to_le_bytes());
        let (blobs, errors) = read(&bad, 10);
        assert!(blobs.is_empty());
        assert!(errors[0].to_string().contains("outside"), "{errors:?}");
        // a slot-page count past the file
        let mut bad = d;
        bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read(&bad, 10).0.is_empty());
    }
}
