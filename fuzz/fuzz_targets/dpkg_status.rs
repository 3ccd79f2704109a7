//! Any bytes as a dpkg status database: packages or errors, never a panic, and every
//! package returned is an installed one with a name and version.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (packages, errors) =
        origami_introspect::disk::package::dpkg::parse_status(data, "/var/lib/dpkg/status");
    assert!(errors.len() <= 11);
    for p in packages {
        assert!(!p.name.is_empty());
        assert!(p.status.as_deref().is_some_and(|s| s.ends_with("installed")));
    }
});
