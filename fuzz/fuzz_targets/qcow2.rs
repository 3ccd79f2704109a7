//! Any bytes as a qcow2 file (header, extensions, L1/L2 tables, compressed clusters), over a
//! small backing image: typed errors, never a panic, an unbounded allocation or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origami_core::{Qcow2Image, ReadAt};

fuzz_target!(|data: &[u8]| {
    let Ok(img) = Qcow2Image::from_source(data.to_vec()) else {
        return;
    };
    let img = img
        .with_backing(Box::new(vec![0x5au8; 3 << 16]))
        .with_decompress_threads(2);
    let len = img.len();
    let mut buf = vec![0u8; 1 << 20];
    // The start of the device in one large read, then small unaligned reads at offsets
    // spread over the whole virtual size (which may be huge).
    let n = len.min(buf.len() as u64) as usize;
    let _ = img.read_at(0, &mut buf[..n]);
    for i in 0..64u64 {
        let off = (len / 64).saturating_mul(i).saturating_add(i * 4097);
        let n = len.saturating_sub(off).min(5000) as usize;
        let _ = img.read_at(off, &mut buf[..n]);
    }
});
