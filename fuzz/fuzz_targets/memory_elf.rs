//! Any bytes, given the elf magic, through MemoryDump: errors, never panics, and reads of
//! whatever opens stay in bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;

mod memory_common;

const MAGIC: &[u8] = b"\x7fELF";

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    if bytes.len() >= MAGIC.len() {
        bytes[..MAGIC.len()].copy_from_slice(MAGIC);
    }
    if let Ok(dump) = origami_core::memory::MemoryDump::from_bytes(bytes, "fuzz") {
        memory_common::exercise(&dump);
    }
});
