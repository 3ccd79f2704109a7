//! LZNT1 decompression ([MS-XCA] section 2.5), as NTFS uses it for compressed files.
//!
//! An LZNT1 buffer is a run of chunks, each with a 16-bit little-endian header: bits 0 to
//! 11 are the chunk's stored size minus 3 (header included), bit 15 says whether the chunk
//! is compressed. A header of 0 ends the buffer (NTFS leaves the rest of a compression
//! unit's last cluster zeroed). A stored chunk is copied as it is; a compressed one is a
//! series of groups: a flag byte, then eight items, each a literal byte (flag bit clear)
//! or a 16-bit copy token (bit set) whose split between back-distance and length depends
//! on how far into the chunk's 4096 decompressed bytes the token stands: at position `p`
//! the distance takes `max(4, ceil(log2(p)))` bits, the length the rest, plus 3.
//!
//! Every chunk decompresses to at most 4096 bytes and the whole buffer to at most the
//! caller's limit (an NTFS compression unit): hostile input ends with an
//! [`Lznt1Error`] naming the input offset, never with a panic or an allocation beyond the
//! limit. In NTFS a compressed chunk that decodes to fewer than 4096 bytes is followed by
//! zeros up to the chunk's end (the Linux and ntfs-3g drivers do the same), which
//! [`decompress`] does when asked to.

/// The decompressed size of an LZNT1 chunk.
pub const CHUNK: usize = 4096;

/// A malformed LZNT1 buffer: where (the offset in the input) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("LZNT1 data at input offset {offset}: {what}")]
pub struct Lznt1Error {
    /// The input offset of the chunk header or token that is wrong.
    pub offset: usize,
    /// What is wrong.
    pub what: String,
}

fn err(offset: usize, what: impl Into<String>) -> Lznt1Error {
    Lznt1Error {
        offset,
        what: what.into(),
    }
}

/// Decompresses the LZNT1 buffer `input`, appending to `out` at most `limit` bytes in all
/// (counting what `out` holds already is the caller's business: `limit` bounds only what
/// this call appends). With `pad_chunks`, every chunk but one that ends the output early
/// is padded with zeros to [`CHUNK`] bytes, as in an NTFS compression unit.
///
/// Stops at a zero chunk header, at the end of `input` (a lone trailing byte is ignored)
/// or when `limit` bytes have been appended; a chunk that would go past `limit` is an
/// error.
pub fn decompress(
    input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
    pad_chunks: bool,
) -> Result<(), Lznt1Error> {
    let base = out.len();
    let end = base.saturating_add(limit);
    let mut pos = 0usize;
    while pos + 2 <= input.len() && out.len() < end {
        let header = u16::from_le_bytes([input[pos], input[pos + 1]]);
        if header == 0 {
            break;
        }
        let size = usize::from(header & 0x0FFF) + 1;
        let data = input.get(pos + 2..pos + 2 + size).ok_or_else(|| {
            err(
                pos,
                format!(
                    "chunk header {header:#06x} claims {size} bytes, {} left",
                    input.len() - pos - 2
                ),
            )
        })?;
        let chunk_start = out.len();
        let chunk_end = chunk_start.saturating_add(CHUNK).min(end);
        if header & 0x8000 == 0 {
            if size > chunk_end - chunk_start {
                return Err(err(
                    pos,
                    format!(
                        "stored chunk of {size} bytes goes past the {} bytes left",
                        chunk_end - chunk_start
                    ),
                ));
            }
            out.extend_from_slice(data);
        } else {
            decompress_chunk(data, pos + 2, out, chunk_start, chunk_end)?;
        }
        if pad_chunks {
            out.resize(chunk_end, 0);
        }
        pos += 2 + size;
    }
    Ok(())
}

/// Decompresses one compressed chunk's body (`data`, found at `offset` in the input) onto
/// `out`, whose bytes from `start` are this chunk's output so far, never past `end`.
fn decompress_chunk(
    data: &[u8],
    offset: usize,
    out: &mut Vec<u8>,
    start: usize,
    end: usize,
) -> Result<(), Lznt1Error> {
    let mut i = 0usize;
    while i < data.len() {
        let flags = data[i];
        i += 1;
        for bit in 0..8 {
            if i >= data.len() {
                break;
            }
            if flags & (1 << bit) == 0 {
                if out.len() >= end {
                    return Err(err(offset + i, "literal past the chunk's 4096 bytes"));
                }
                out.push(data[i]);
                i += 1;
                continue;
            }
            let Some(token) = data.get(i..i + 2) else {
                return Err(err(offset + i, "copy token cut off by the chunk's end"));
            };
            let token = u16::from_le_bytes([token[0], token[1]]);
            let p = out.len() - start;
            if p == 0 {
                return Err(err(offset + i, "copy token at the chunk's first byte"));
            }
            // Bits of the distance: 4 up to position 16, one more per doubling after.
            let mut shift = 0u32;
            let mut k = p - 1;
            while k >= 0x10 {
                k >>= 1;
                shift += 1;
            }
            let shift = shift.min(12);
            let distance = usize::from(token >> (12 - shift)) + 1;
            let length = usize::from(token & (0x0FFF >> shift)) + 3;
            if distance > p {
                return Err(err(
                    offset + i,
                    format!("copy token reaches {distance} bytes back from chunk position {p}"),
                ));
            }
            if out.len() + length > end {
                return Err(err(
                    offset + i,
                    format!("copy of {length} bytes at chunk position {p} goes past the chunk"),
                ));
            }
            let from = out.len() - distance;
            // Byte by byte: a copy may overlap its own output (a run).
            for j in 0..length {
                let b = out[from + j];
                out.push(b);
            }
            i += 2;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compressed chunk: header for `body`, then `body`.
    fn chunk(body: &[u8]) -> Vec<u8> {
        let h = 0x8000u16 | 0x3000 | (body.len() as u16 - 1);
        let mut v = h.to_le_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    fn run(input: &[u8], limit: usize, pad: bool) -> Result<Vec<u8>, Lznt1Error> {
        let mut out = Vec::new();
        decompress(input, &mut out, limit, pad).map(|_| out)
    }

    #[test]
    fn literals_and_an_overlapping_copy() {
        // "abc" then a copy of 9 bytes from 3 back (distance 3 -> 2, length 9 -> 6): at
        // position 3 the distance has 4 bits, so the token is (2 << 12) | 6.
        let t = (2u16 << 12) | 6;
        let body = [0b1000, b'a', b'b', b'c', t as u8, (t >> 8) as u8];
        assert_eq!(run(&chunk(&body), 4096, false).unwrap(), b"abcabcabcabc");
    }

    #[test]
    fn distance_bits_grow_with_the_position() {
        // 32 literals (positions 0..32), then at position 32 the distance has 5 bits
        // (ceil(log2(32)) = 5): copy 4 bytes from 32 back -> distance 31, length 1.
        let lit: Vec<u8> = (0..32u8).map(|i| b'A' + i % 26).collect();
        let mut body = Vec::new();
        for group in lit.chunks(8) {
            body.push(0);
            body.extend_from_slice(group);
        }
        let t = (31u16 << 11) | 1;
        body.extend_from_slice(&[1, t as u8, (t >> 8) as u8]);
        let out = run(&chunk(&body), 4096, false).unwrap();
        assert_eq!(&out[..32], &lit[..]);
        assert_eq!(&out[32..], &lit[..4]);
    }

    #[test]
    fn stored_chunk_padding_and_end_marker() {
        let mut input = (0x3000u16 | 4).to_le_bytes().to_vec();
        input.extend_from_slice(b"hello");
        input.extend_from_slice(&chunk(&[0, b'x']));
        input.extend_from_slice(&[0, 0, 0xFF, 0xFF]); // end marker, then ignored bytes
        assert_eq!(run(&input, 1 << 20, false).unwrap(), b"hellox");
        let padded = run(&input, 1 << 20, true).unwrap();
        assert_eq!(padded.len(), 2 * CHUNK);
        assert_eq!(&padded[..5], b"hello");
        assert_eq!(padded[CHUNK], b'x');
        assert!(padded[5..CHUNK].iter().all(|&b| b == 0));
        // the limit bounds the padding too
        assert_eq!(run(&input, 5000, true).unwrap().len(), 5000);
    }

    #[test]
    fn hostile_input_is_an_error() {
        // a copy token first
        let e = run(&chunk(&[1, 0, 0]), 4096, false).unwrap_err();
        assert!(e.what.contains("first byte"), "{e}");
        // a distance past the chunk's start: at position 1, distance 16
        let t = 15u16 << 12;
        let e = run(&chunk(&[2, b'a', t as u8, (t >> 8) as u8]), 4096, false).unwrap_err();
        assert_eq!(e.offset, 4);
        assert!(e.what.contains("back"), "{e}");
        // a header claiming more than is there
        let e = run(&[0xFF, 0xBF, 1, 2, 3], 4096, false).unwrap_err();
        assert_eq!(e.offset, 0);
        // a cut token
        let e = run(&chunk(&[0b10, b'a', 7]), 4096, false).unwrap_err();
        assert!(e.what.contains("cut off"), "{e}");
        // output past the limit: a copy of 4098 bytes from position 1 would pass 4096
        let t = 0x0FFFu16;
        let e = run(&chunk(&[2, b'a', t as u8, (t >> 8) as u8]), 4096, false).unwrap_err();
        assert!(e.what.contains("past the chunk"), "{e}");
        // a stored chunk longer than the limit
        let mut input = (0x3000u16 | 99).to_le_bytes().to_vec();
        input.extend_from_slice(&[7; 100]);
        assert!(run(&input, 50, false).is_err());
    }

    #[test]
    fn a_long_run_fills_exactly_one_chunk() {
        // One literal, then copies of distance 1 until 4096 bytes: the largest copy at
        // position p has (0xFFF >> shift) + 3 bytes.
        let mut p = 1usize;
        let mut tokens = Vec::new();
        while p < CHUNK {
            let mut shift = 0;
            let mut k = p - 1;
            while k >= 0x10 {
                k >>= 1;
                shift += 1;
            }
            let max = (0x0FFF >> shift) + 3;
            let len = max.min(CHUNK - p);
            if len < 3 {
                break;
            }
            tokens.push((len - 3) as u16);
            p += len;
        }
        // Items: the literal, then the tokens; eight per flag byte.
        let items: Vec<Option<u16>> = std::iter::once(None)
            .chain(tokens.into_iter().map(Some))
            .collect();
        let mut body = Vec::new();
        for group in items.chunks(8) {
            let flags = group
                .iter()
                .enumerate()
                .filter(|(_, t)| t.is_some())
                .fold(0u8, |f, (i, _)| f | 1 << i);
            body.push(flags);
            for item in group {
                match item {
                    None => body.push(b'z'),
                    Some(t) => body.extend_from_slice(&t.to_le_bytes()),
                }
            }
        }
        let out = run(&chunk(&body), CHUNK, false).unwrap();
        assert_eq!(out.len(), p);
        assert!(out.iter().all(|&b| b == b'z'));
    }
}
