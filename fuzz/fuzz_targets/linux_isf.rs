//! `origami_fuzz_harness::linux_isf` (fuzz-harness/src/), replayed by `cargo test` over the
//! committed inputs.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| origami_fuzz_harness::linux_isf(data));
