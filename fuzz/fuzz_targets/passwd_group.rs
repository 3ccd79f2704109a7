//! Any bytes as /etc/passwd and as /etc/group: entries or errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origami_introspect::disk::user::{parse_group, parse_passwd};

fuzz_target!(|data: &[u8]| {
    let (users, errors) = parse_passwd(data, "/etc/passwd");
    assert!(errors.len() <= 20);
    for u in users {
        assert!(!u.name.is_empty());
    }
    let (groups, errors) = parse_group(data, "/etc/group");
    assert!(errors.len() <= 20);
    for g in groups {
        assert!(!g.name.is_empty());
    }
});
