//! Any bytes as os-release: a map of well-formed keys, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fields = origami_introspect::disk::os::parse_os_release(data);
    for key in fields.keys() {
        assert!(!key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    }
    let _ = origami_introspect::disk::os::elf_arch(data);
});
