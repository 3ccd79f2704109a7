//! The `os` section from disk: os-release fields, the host name, the installed kernel
//! release(s) and the architecture.
//!
//! os-release is read from `/etc/os-release`, else `/usr/lib/os-release` (as
//! `os-release(5)` says); a guest with neither (CentOS and RHEL 6, SLES 11, old Alpine) is
//! named by the first release file it has of [`RELEASE_FILES`] ([`parse_release_line`]:
//! `CentOS Linux release 7.9.2009 (Core)` is name `CentOS Linux`, version `7.9.2009`, id
//! `centos`), the file read recorded as the item's `release_file`; the host name from `/etc/hostname` (else `/etc/HOSTNAME`); kernels
//! from the directory names under `/lib/modules` and the `vmlinuz-*` / `vmlinux-*` files of
//! `/boot`; the architecture from the ELF header of the guest's `/bin/sh`. Each file is
//! read with a size bound.

use std::collections::{BTreeMap, BTreeSet};

use origami_frame::{FileType, Os};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::fs::GuestTree;

/// The largest os-release file read (the default of [`crate::Limits::os_release`]).
pub const MAX_OS_RELEASE: u64 = crate::Limits::DEFAULT.os_release;
/// The largest hostname file read.
const MAX_HOSTNAME: u64 = 4 << 10;
/// The most kernel releases listed.
const MAX_KERNELS: usize = 256;

/// The release files read when a guest has no os-release, in this order: the generic
/// `system-release` (a link to the distribution's own file on the RHEL family), then each
/// distribution's.
pub const RELEASE_FILES: [&str; 7] = crate::fs::fstab::RELEASE_FILES;

/// What an old-style release file says, as os-release keys (`NAME`, `VERSION_ID`, `ID`,
/// `ID_LIKE`, `PRETTY_NAME`, `VERSION_CODENAME`): the RHEL family's one line
/// `NAME release VERSION (CODENAME)`, SUSE's `NAME VERSION (ARCH)` line followed by
/// `VERSION = ` and `PATCHLEVEL = ` lines, Alpine's and Debian's bare version. `file` is
/// the release file's path (it names the distribution for the bare versions); `None`
/// when the text says nothing usable.
pub fn parse_release_line(file: &str, text: &[u8]) -> Option<BTreeMap<String, String>> {
    let text = String::from_utf8_lossy(text);
    let first = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut out = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            out.insert(k.to_string(), v.to_string());
        }
    };
    if file.ends_with("alpine-release") || file.ends_with("debian_version") {
        let (name, id) = if file.ends_with("alpine-release") {
            ("Alpine Linux", "alpine")
        } else {
            ("Debian GNU/Linux", "debian")
        };
        put("NAME", name);
        put("ID", id);
        put("VERSION_ID", first);
        put("PRETTY_NAME", &format!("{name} {first}"));
        return Some(out);
    }
    put("PRETTY_NAME", first);
    if let Some((name, rest)) = first.split_once(" release ") {
        put("NAME", name.trim());
        let (version, codename) = match rest.split_once('(') {
            Some((v, c)) => (v.trim(), c.trim_end_matches(')').trim()),
            None => (rest.trim(), ""),
        };
        put(
            "VERSION_ID",
            version.split_whitespace().next().unwrap_or(""),
        );
        put("VERSION_CODENAME", codename);
    } else if file.ends_with("SuSE-release") {
        // "SUSE Linux Enterprise Server 11 (x86_64)" / "VERSION = 11" / "PATCHLEVEL = 4"
        let name = first.split('(').next().unwrap_or(first).trim();
        let name = name
            .rsplit_once(' ')
            .filter(|(_, v)| v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
            .map_or(name, |(n, _)| n);
        put("NAME", name);
        let field = |key: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
        };
        match (field("VERSION"), field("PATCHLEVEL")) {
            (Some(v), Some(p)) if p != "0" => put("VERSION_ID", &format!("{v}.{p}")),
            (Some(v), _) => put("VERSION_ID", &v),
            _ => {}
        }
    } else {
        return None;
    }
    let name = out.get("NAME").map(|n| n.to_ascii_lowercase());
    if let Some((id, like)) = name.as_deref().and_then(distribution_id) {
        out.insert("ID".into(), id.into());
        if !like.is_empty() {
            out.insert("ID_LIKE".into(), like.into());
        }
    }
    Some(out)
}

/// os-release's `ID` and `ID_LIKE` for a distribution name (lowercase), as those
/// distributions' own os-release files spell them.
fn distribution_id(name: &str) -> Option<(&'static str, &'static str)> {
    const IDS: [(&str, &str, &str); 10] = [
        ("centos", "centos", "rhel fedora"),
        ("red hat", "rhel", "fedora"),
        ("rocky", "rocky", "rhel centos fedora"),
        ("alma", "almalinux", "rhel centos fedora"),
        ("oracle", "ol", "fedora"),
        ("amazon", "amzn", "centos rhel fedora"),
        ("scientific", "scientific", "rhel fedora"),
        ("fedora", "fedora", ""),
        ("opensuse", "opensuse", "suse"),
        ("suse", "sles", "suse"),
    ];
    IDS.iter()
        .find(|(key, _, _)| name.contains(key))
        .map(|&(_, id, like)| (id, like))
}

/// Parses os-release text (`KEY=value` lines, values optionally in double or single
/// quotes with shell-style backslash escapes inside double quotes). Lines that are not
/// assignments are skipped, as systemd does; a key that is not `[A-Za-z0-9_]+` is
/// skipped too.
pub fn parse_os_release(text: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(text);
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        out.insert(key.to_string(), unquote(raw.trim()));
    }
    out
}

fn unquote(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            (None, '#') if out.is_empty() => break,
            (_, c) => out.push(c),
        }
    }
    out
}

/// The architecture named by an ELF header's `e_machine` (`uname -m` spelling).
pub fn elf_arch(header: &[u8]) -> Option<&'static str> {
    if header.get(..4)? != b"\x7fELF" {
        return None;
    }
    let little = *header.get(5)? == 1;
    let m = header.get(18..20)?;
    let machine = if little {
        u16::from_le_bytes([m[0], m[1]])
    } else {
        u16::from_be_bytes([m[0], m[1]])
    };
    Some(match machine {
        0x03 => "i686",
        0x08 => "mips",
        0x14 => "ppc",
        0x15 if little => "ppc64le",
        0x15 => "ppc64",
        0x16 => "s390x",
        0x28 => "armv7l",
        0x3E => "x86_64",
        0xB7 => "aarch64",
        0xF3 => "riscv64",
        0x102 => "loongarch64",
        _ => return None,
    })
}

fn kernel_releases(tree: &GuestTree) -> Vec<String> {
    let mut found = BTreeSet::new();
    for dir in [&b"/lib/modules"[..], b"/usr/lib/modules"] {
        if let Ok(entries) = tree.read_dir(dir, 4096) {
            for e in entries {
                if e.stat.file_type == FileType::Dir {
                    found.insert(String::from_utf8_lossy(&e.name).into_owned());
                }
            }
        }
    }
    if let Ok(entries) = tree.read_dir(b"/boot", 4096) {
        for e in entries {
            let name = String::from_utf8_lossy(&e.name);
            for prefix in ["vmlinuz-", "vmlinux-", "kernel-"] {
                if let Some(release) = name.strip_prefix(prefix) {
                    if !release.is_empty() && release != "rescue" {
                        found.insert(release.to_string());
                    }
                }
            }
        }
    }
    found.into_iter().take(MAX_KERNELS).collect()
}

fn hostname(tree: &GuestTree) -> Result<Option<String>> {
    for path in [&b"/etc/hostname"[..], b"/etc/HOSTNAME"] {
        match tree.read_file(path, MAX_HOSTNAME) {
            Ok(data) => {
                let text = String::from_utf8_lossy(&data);
                let name = text
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'));
                if let Some(name) = name {
                    return Ok(Some(name.to_string()));
                }
            }
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

fn arch(tree: &GuestTree) -> Option<&'static str> {
    for path in [
        &b"/bin/sh"[..],
        b"/usr/bin/env",
        b"/bin/busybox",
        b"/sbin/init",
    ] {
        let Ok(r) = tree.resolve(path, true) else {
            continue;
        };
        if r.stat.file_type != FileType::File {
            continue;
        }
        if let Ok((head, _)) = tree.read_prefix_canonical(&r.path, 64) {
            if let Some(a) = elf_arch(&head) {
                return Some(a);
            }
        }
    }
    None
}

/// Reads the `os` section from the guest tree. Missing files leave fields empty; a file
/// that exists but cannot be read (over its bound, a symlink loop, corrupt) is reported
/// and the other fields are still read.
pub fn crawl(tree: &GuestTree) -> (Os, Vec<Error>) {
    crawl_with(tree, MAX_OS_RELEASE, &crate::Budget::unlimited())
}

/// As [`crawl`], with a bound on os-release's size, its bytes reserved on the crawl's
/// memory `budget` while they are parsed.
pub fn crawl_with(
    tree: &GuestTree,
    max_os_release: u64,
    budget: &crate::Budget,
) -> (Os, Vec<Error>) {
    let mut errors = Vec::new();
    let mut release = None;
    let mut failed = false;
    for path in [&b"/etc/os-release"[..], b"/usr/lib/os-release"] {
        match super::read_whole(tree, path, max_os_release, budget) {
            Ok((data, _held)) => {
                release = Some(parse_os_release(&data));
                break;
            }
            Err(Error::NotFound { .. }) => continue,
            Err(e) => {
                errors.push(e);
                failed = true;
                break;
            }
        }
    }
    // The older release files only when there is no os-release at all (one that cannot be
    // read is reported, not replaced).
    let mut release_file = None;
    if release.is_none() && !failed {
        for path in RELEASE_FILES {
            match super::read_whole(tree, path.as_bytes(), MAX_HOSTNAME, budget) {
                Ok((data, _held)) => {
                    if let Some(r) = parse_release_line(path, &data) {
                        release = Some(r);
                        release_file = Some(path);
                        break;
                    }
                }
                Err(Error::NotFound { .. }) => continue,
                Err(e) => errors.push(e),
            }
        }
    }
    let release = release.unwrap_or_default();
    let kernels = kernel_releases(tree);
    let mut os = Os {
        name: release.get("NAME").cloned(),
        version: release.get("VERSION_ID").cloned(),
        id: release.get("ID").cloned(),
        id_like: release.get("ID_LIKE").cloned(),
        pretty_name: release.get("PRETTY_NAME").cloned(),
        kernel: (!kernels.is_empty()).then(|| kernels.join(" ")),
        arch: arch(tree).map(str::to_string),
        hostname: hostname(tree).unwrap_or_else(|e| {
            errors.push(e);
            None
        }),
        ..Os::default()
    };
    for (key, field) in [
        ("VERSION", "version_full"),
        ("VERSION_CODENAME", "codename"),
        ("BUILD_ID", "build_id"),
    ] {
        if let Some(v) = release.get(key) {
            os.extra.insert(field.into(), Value::String(v.clone()));
        }
    }
    if let Some(f) = release_file {
        os.extra
            .insert("release_file".into(), Value::String(f.to_string()));
    }
    if kernels.len() > 1 {
        os.extra.insert(
            "kernels".into(),
            Value::Array(kernels.into_iter().map(Value::String).collect()),
        );
    }
    (os, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quotes_and_escapes() {
        let m = parse_os_release(
            b"NAME=\"Debian GNU/Linux\"\nID=debian\n# c\nX='a b'\nY=\"say \\\"hi\\\"\"\nbad line\n=v\n",
        );
        assert_eq!(m["NAME"], "Debian GNU/Linux");
        assert_eq!(m["ID"], "debian");
        assert_eq!(m["X"], "a b");
        assert_eq!(m["Y"], "say \"hi\"");
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn parses_release_lines() {
        let m = parse_release_line(
            "/etc/redhat-release",
            b"CentOS Linux release 7.9.2009 (Core)\n",
        )
        .unwrap();
        assert_eq!(m["NAME"], "CentOS Linux");
        assert_eq!(m["VERSION_ID"], "7.9.2009");
        assert_eq!(m["VERSION_CODENAME"], "Core");
        assert_eq!(m["ID"], "centos");
        assert_eq!(m["ID_LIKE"], "rhel fedora");
        assert_eq!(m["PRETTY_NAME"], "CentOS Linux release 7.9.2009 (Core)");
        let m = parse_release_line(
            "/etc/system-release",
            b"Red Hat Enterprise Linux Server release 6.10 (Santiago)",
        )
        .unwrap();
        assert_eq!(
            (m["ID"].as_str(), m["VERSION_ID"].as_str()),
            ("rhel", "6.10")
        );
        let m =
            parse_release_line("/etc/system-release", b"Amazon Linux release 2 (Karoo)").unwrap();
        assert_eq!((m["ID"].as_str(), m["VERSION_ID"].as_str()), ("amzn", "2"));
        let m = parse_release_line(
            "/etc/SuSE-release",
            b"SUSE Linux Enterprise Server 11 (x86_64)\nVERSION = 11\nPATCHLEVEL = 4\n",
        )
        .unwrap();
        assert_eq!(m["NAME"], "SUSE Linux Enterprise Server");
        assert_eq!(
            (m["ID"].as_str(), m["VERSION_ID"].as_str()),
            ("sles", "11.4")
        );
        let m = parse_release_line("/etc/alpine-release", b"3.12.0\n").unwrap();
        assert_eq!(
            (m["ID"].as_str(), m["VERSION_ID"].as_str()),
            ("alpine", "3.12.0")
        );
        assert_eq!(parse_release_line("/etc/redhat-release", b"\n\n"), None);
        assert_eq!(parse_release_line("/etc/redhat-release", b"garbage"), None);
    }

    #[test]
    fn reads_elf_machine() {
        let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1];
        h.resize(20, 0);
        h[18] = 0x3e;
        assert_eq!(elf_arch(&h), Some("x86_64"));
        assert_eq!(elf_arch(b"#!/bin/sh"), None);
        assert_eq!(elf_arch(b"\x7fELF"), None);
    }
}
