//! The `os` section from disk: os-release fields, the host name, the installed kernel
//! release(s) and the architecture.
//!
//! os-release is read from `/etc/os-release`, else `/usr/lib/os-release` (as
//! `os-release(5)` says); the host name from `/etc/hostname` (else `/etc/HOSTNAME`); kernels
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
    for path in [&b"/etc/os-release"[..], b"/usr/lib/os-release"] {
        match super::read_whole(tree, path, max_os_release, budget) {
            Ok((data, _held)) => {
                release = Some(parse_os_release(&data));
                break;
            }
            Err(Error::NotFound { .. }) => continue,
            Err(e) => {
                errors.push(e);
                break;
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
    fn reads_elf_machine() {
        let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1];
        h.resize(20, 0);
        h[18] = 0x3e;
        assert_eq!(elf_arch(&h), Some("x86_64"));
        assert_eq!(elf_arch(b"#!/bin/sh"), None);
        assert_eq!(elf_arch(b"\x7fELF"), None);
    }
}
