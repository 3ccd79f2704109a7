//! Guest configuration files read by the disk crawlers.

/// Any bytes as a dpkg status database: packages or errors, never a panic, and every
/// package returned is an installed one with a name and version.
pub fn dpkg_status(data: &[u8]) {
    let (packages, errors) =
        origami_introspect::disk::package::dpkg::parse_status(data, "/var/lib/dpkg/status");
    assert!(errors.len() <= 11);
    for p in packages {
        assert!(!p.name.is_empty());
        assert!(p
            .status
            .as_deref()
            .is_some_and(|s| s.ends_with("installed")));
    }
}

/// Any bytes as /etc/passwd and as /etc/group: entries or errors, never a panic.
pub fn passwd_group(data: &[u8]) {
    use origami_introspect::disk::user::{parse_group, parse_passwd};
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
}

/// Any bytes as os-release: a map of well-formed keys, never a panic.
pub fn os_release(data: &[u8]) {
    let fields = origami_introspect::disk::os::parse_os_release(data);
    for key in fields.keys() {
        assert!(!key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    }
    let _ = origami_introspect::disk::os::elf_arch(data);
}
