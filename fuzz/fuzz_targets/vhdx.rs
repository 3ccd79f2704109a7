//! A real (qemu-written, 3 MiB) VHDX patched by the input: headers, region tables, metadata
//! and BAT; typed errors, never a panic, an unbounded allocation or a hang.
//!
//! The input is a flag byte, then records `[offset: 3 bytes LE][n: 1 byte][n bytes]` written
//! over the template. When the flag's low bit is set, the CRC-32C checksums of both headers
//! and both region tables are fixed up afterwards, so the fuzzer gets past them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origami_core::{ReadAt, VhdxImage};

static TEMPLATE: &[u8] = include_bytes!("../templates/small.vhdx");

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

fn fix(img: &mut [u8], at: usize, len: usize) {
    img[at + 4..at + 8].fill(0);
    let c = crc32c(&img[at..at + len]);
    img[at + 4..at + 8].copy_from_slice(&c.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    let Some((&flag, mut rest)) = data.split_first() else {
        return;
    };
    let mut img = TEMPLATE.to_vec();
    while rest.len() >= 4 {
        let off = (usize::from(rest[0]) | usize::from(rest[1]) << 8 | usize::from(rest[2]) << 16) % img.len();
        let n = usize::from(rest[3]).min(rest.len() - 4).min(img.len() - off);
        img[off..off + n].copy_from_slice(&rest[4..4 + n]);
        rest = &rest[4 + n..];
    }
    if flag & 1 == 1 {
        fix(&mut img, 64 << 10, 4096);
        fix(&mut img, 128 << 10, 4096);
        fix(&mut img, 192 << 10, 64 << 10);
        fix(&mut img, 256 << 10, 64 << 10);
    }
    let Ok(v) = VhdxImage::from_source(img) else {
        return;
    };
    let len = v.len();
    let mut buf = vec![0u8; 1 << 20];
    let n = len.min(buf.len() as u64) as usize;
    let _ = v.read_at(0, &mut buf[..n]);
    for i in 0..64u64 {
        let off = (len / 64).saturating_mul(i).saturating_add(i * 4097);
        let n = len.saturating_sub(off).min(5000) as usize;
        let _ = v.read_at(off, &mut buf[..n]);
    }
});
