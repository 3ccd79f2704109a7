//! Any bytes as a VMDK sparse extent (header, footer, descriptor, grain directory and
//! tables, compressed grains): typed errors, never a panic, an unbounded allocation or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origami_core::{ReadAt, VmdkImage};

fuzz_target!(|data: &[u8]| {
    let Ok(img) = VmdkImage::from_source(data.to_vec()) else {
        return;
    };
    let len = img.len();
    let mut buf = vec![0u8; 1 << 20];
    let n = len.min(buf.len() as u64) as usize;
    let _ = img.read_at(0, &mut buf[..n]);
    for i in 0..64u64 {
        let off = (len / 64).saturating_mul(i).saturating_add(i * 4097);
        let n = len.saturating_sub(off).min(5000) as usize;
        let _ = img.read_at(off, &mut buf[..n]);
    }
});
