//! `origami_fuzz_harness::ntfs_lznt1` (fuzz-harness/src/), replayed by `cargo test` over the
//! committed inputs.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| origami_fuzz_harness::ntfs_lznt1(data));
