//! The three compressions of btrfs extents, each bounded by the extent's declared
//! uncompressed size (at most [`MAX_RAM`]): zlib (a zlib stream), zstd (one frame), and
//! LZO in btrfs's framing (a 4-byte total length, then segments of a 4-byte length and
//! LZO1X data, a segment header never straddling a sector), decoded by a safe LZO1X
//! decompressor written here.

use std::io::Read;

/// The largest uncompressed size of a compressed extent accepted (btrfs writes at most
/// 128 KiB per compressed extent).
pub(crate) const MAX_RAM: u64 = 1 << 20;

/// Decompresses `data` (compression type `kind`: 1 zlib, 2 lzo, 3 zstd) into at most
/// `ram` bytes; a shorter result is padded with zeros, as the kernel does.
pub(crate) fn decompress(kind: u8, data: &[u8], ram: u64, sector: u64) -> Result<Vec<u8>, String> {
    if ram > MAX_RAM {
        return Err(format!("compressed extent of {ram} bytes uncompressed"));
    }
    let ram = ram as usize;
    let mut out = match kind {
        1 => {
            let mut out = Vec::with_capacity(ram);
            flate2::read::ZlibDecoder::new(data)
                .take(ram as u64)
                .read_to_end(&mut out)
                .map_err(|e| format!("zlib: {e}"))?;
            out
        }
        3 => {
            let mut out = Vec::with_capacity(ram);
            let d = zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|e| format!("zstd: {e}"))?
                .single_frame();
            d.take(ram as u64)
                .read_to_end(&mut out)
                .map_err(|e| format!("zstd: {e}"))?;
            out
        }
        2 => lzo_btrfs(data, ram, sector as usize)?,
        k => return Err(format!("compression type {k}")),
    };
    out.resize(ram, 0);
    Ok(out)
}

fn le32(b: &[u8], at: usize) -> Option<usize> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// btrfs's LZO framing around LZO1X segments.
fn lzo_btrfs(data: &[u8], ram: usize, sector: usize) -> Result<Vec<u8>, String> {
    let sector = sector.max(4096);
    let total = le32(data, 0).ok_or("lzo: no header")?;
    if total > data.len() || total < 4 {
        return Err(format!("lzo: total length {total} of {} bytes", data.len()));
    }
    let mut out = Vec::with_capacity(ram);
    let mut pos = 4usize;
    while pos < total && out.len() < ram {
        if sector - pos % sector < 4 {
            pos += sector - pos % sector;
            if pos >= total {
                break;
            }
        }
        let len = le32(data, pos).ok_or("lzo: segment header past the data")?;
        pos += 4;
        let seg = data
            .get(pos..pos.saturating_add(len))
            .filter(|_| pos + len <= total)
            .ok_or_else(|| format!("lzo: segment of {len} bytes at {pos} past the data"))?;
        let room = (ram - out.len()).min(sector.max(4096) * 2);
        lzo1x_decompress(seg, &mut out, room)?;
        pos += len;
    }
    Ok(out)
}

/// LZO1X decompression of `input`, appending at most `limit` bytes to `out`. Every
/// length and distance is checked; a bad stream is an error, never a panic.
pub(crate) fn lzo1x_decompress(
    input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), String> {
    let base = out.len();
    let max = base + limit;
    let err = |what: &str| Err(format!("lzo: {what}"));
    let mut ip = 0usize;
    let byte = |ip: usize| input.get(ip).copied();
    // Copies `n` literals from the input.
    let lit = |out: &mut Vec<u8>, ip: &mut usize, n: usize| -> Result<(), String> {
        let s = input
            .get(*ip..ip.saturating_add(n))
            .ok_or("lzo: literal run past the input")?;
        if out.len() + n > max {
            return Err("lzo: output past the extent".into());
        }
        out.extend_from_slice(s);
        *ip += n;
        Ok(())
    };
    // Copies a match of `len` bytes from `dist` back.
    let copy = |out: &mut Vec<u8>, dist: usize, len: usize| -> Result<(), String> {
        if dist == 0 || dist > out.len() - base {
            return Err("lzo: match distance before the output".into());
        }
        if out.len() + len > max {
            return Err("lzo: output past the extent".into());
        }
        let start = out.len() - dist;
        for i in 0..len {
            let b = out[start + i];
            out.push(b);
        }
        Ok(())
    };
    // The count of a zero-extended length: runs of 0 bytes add 255 each.
    let ext = |ip: &mut usize| -> Result<usize, String> {
        let mut n = 0usize;
        loop {
            match byte(*ip) {
                Some(0) => {
                    n += 255;
                    *ip += 1;
                    if n > 1 << 24 {
                        return Err("lzo: length run too long".into());
                    }
                }
                Some(b) => {
                    *ip += 1;
                    return Ok(n + usize::from(b));
                }
                None => return Err("lzo: length past the input".into()),
            }
        }
    };
    let mut state: usize;
    let first = byte(0).ok_or("lzo: empty segment")?;
    if first > 17 {
        ip = 1;
        let t = usize::from(first) - 17;
        lit(out, &mut ip, t)?;
        state = if t < 4 { t } else { 4 };
    } else {
        state = 0;
    }
    loop {
        let Some(t0) = byte(ip) else {
            return err("no end marker");
        };
        ip += 1;
        let t = usize::from(t0);
        let (dist, len);
        let next;
        if t < 16 {
            if state == 0 {
                let n = if t == 0 { 15 + ext(&mut ip)? } else { t };
                lit(out, &mut ip, n + 3)?;
                state = 4;
                continue;
            }
            let b = usize::from(byte(ip).ok_or("lzo: short match")?);
            ip += 1;
            next = t & 3;
            if state != 4 {
                dist = 1 + (t >> 2) + (b << 2);
                len = 2;
            } else {
                dist = 1 + 0x0800 + (t >> 2) + (b << 2);
                len = 3;
            }
        } else if t >= 64 {
            let b = usize::from(byte(ip).ok_or("lzo: short match")?);
            ip += 1;
            next = t & 3;
            dist = 1 + ((t >> 2) & 7) + (b << 3);
            len = (t >> 5) + 1;
        } else if t >= 32 {
            let mut l = t & 31;
            if l == 0 {
                l = 31 + ext(&mut ip)?;
            }
            let w = usize::from(byte(ip).ok_or("lzo: short match")?)
                | (usize::from(byte(ip + 1).ok_or("lzo: short match")?) << 8);
            ip += 2;
            next = w & 3;
            dist = 1 + (w >> 2);
            len = l + 2;
        } else {
            let mut l = t & 7;
            if l == 0 {
                l = 7 + ext(&mut ip)?;
            }
            let w = usize::from(byte(ip).ok_or("lzo: short match")?)
                | (usize::from(byte(ip + 1).ok_or("lzo: short match")?) << 8);
            ip += 2;
            next = w & 3;
            let d = ((t & 8) << 11) + (w >> 2);
            if d == 0 {
                // The end-of-stream marker.
                return if l == 1 {
                    Ok(())
                } else {
                    err("bad end marker")
                };
            }
            dist = d + 0x4000;
            len = l + 2;
        }
        copy(out, dist, len)?;
        lit(out, &mut ip, next)?;
        state = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lzo_literals_and_match() {
        // "abcabcabc": a first literal run of 3 (first byte 17 + 3), then an M2 match of
        // 6 bytes at distance 3, then the end marker 0x11 0x00 0x00.
        // M2: t >= 64: len = (t >> 5) + 1 = 6 -> t>>5 = 5; dist = 1 + ((t>>2)&7) + (b<<3) = 3
        // -> (t>>2)&7 = 2, b = 0; t = (5 << 5) | (2 << 2) = 0xA8.
        let input = [20u8, b'a', b'b', b'c', 0xA8, 0x00, 0x11, 0x00, 0x00];
        let mut out = Vec::new();
        lzo1x_decompress(&input, &mut out, 100).unwrap();
        assert_eq!(out, b"abcabcabc");
        // Bounded output and distances.
        let mut out = Vec::new();
        assert!(lzo1x_decompress(&input, &mut out, 5).is_err());
        let bad = [20u8, b'a', b'b', b'c', 0xFC, 0xFF, 0x11, 0x00, 0x00];
        assert!(lzo1x_decompress(&bad, &mut Vec::new(), 100).is_err());
        assert!(lzo1x_decompress(&[0, 0, 0, 0], &mut Vec::new(), 100).is_err());
    }
}
