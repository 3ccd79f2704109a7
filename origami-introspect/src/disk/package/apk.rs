//! Alpine's apk database (`/lib/apk/db/installed`): one paragraph per installed package,
//! paragraphs separated by blank lines, each line `K:value` with a one-letter key:
//! `P` name, `V` version, `A` arch, `I` installed size in bytes, `o` origin (the source
//! package), `L` license, `m` maintainer, and per-file lines: `F` a directory, `R` a file
//! in the last `F` directory (the item's extra `files`, whole paths, as `apk info -L`
//! lists them but from `/`), `Z`, `a`, `M` (checksums, modes) skipped.
//!
//! A line not in `K:value` form is reported with its number and skipped, as is a
//! paragraph without `P` or `V`; the file is read whole only under a bound (64 MiB by
//! default), and at most [`MAX_PACKAGES`] packages are kept. Items carry `license` and
//! `maintainer` as extra fields when the paragraph has them.

use origami_frame::Package;
use serde_json::Value;

use super::PackageDb;
use crate::error::Error;
use crate::fs::GuestTree;

/// Where apk keeps its database.
pub const INSTALLED_PATH: &str = "/lib/apk/db/installed";
/// The most packages read from one database.
pub const MAX_PACKAGES: usize = 200_000;
/// The most parse errors reported for one file (the rest are counted in the last one).
const MAX_REPORTED: usize = 10;

/// The apk database reader.
#[derive(Debug, Clone)]
pub struct Apk {
    /// The largest database file read.
    pub max_db: u64,
}

impl Default for Apk {
    fn default() -> Self {
        Apk {
            max_db: crate::Limits::DEFAULT.dpkg_status,
        }
    }
}

impl PackageDb for Apk {
    fn manager(&self) -> &'static str {
        "apk"
    }

    fn present(&self, tree: &GuestTree) -> bool {
        tree.stat(INSTALLED_PATH.as_bytes()).is_ok()
    }

    fn installed(&self, tree: &GuestTree) -> (Vec<Package>, Vec<Error>) {
        match tree.read_file(INSTALLED_PATH.as_bytes(), self.max_db) {
            Ok(data) => parse_installed(&data, INSTALLED_PATH),
            Err(e) => (Vec::new(), vec![e]),
        }
    }
}

#[derive(Default)]
struct Record {
    first_line: usize,
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    size: Option<String>,
    origin: Option<String>,
    license: Option<String>,
    maintainer: Option<String>,
    dir: Vec<u8>,
    files: Vec<String>,
}

fn malformed(file: &str, line: usize, what: String) -> Error {
    Error::Malformed {
        file: file.to_string(),
        location: format!("line {line}"),
        what,
    }
}

/// Parses an apk `installed` database into its packages, with the problems met (`file`
/// names it in errors).
pub fn parse_installed(data: &[u8], file: &str) -> (Vec<Package>, Vec<Error>) {
    let mut packages = Vec::new();
    let mut errors = Vec::new();
    let mut skipped = 0usize;
    let mut report = |errors: &mut Vec<Error>, e: Error| {
        if errors.len() < MAX_REPORTED {
            errors.push(e);
        } else {
            skipped += 1;
        }
    };
    let mut rec = Record::default();
    let mut lines = data.split(|&b| b == b'\n').enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let end = raw.is_empty() || lines.peek().is_none();
        if !raw.is_empty() {
            if rec.first_line == 0 {
                rec.first_line = line_no;
            }
            if raw.len() < 2 || raw[1] != b':' {
                report(
                    &mut errors,
                    malformed(file, line_no, "line not in 'K:value' form".into()),
                );
            } else {
                let value = || Some(String::from_utf8_lossy(&raw[2..]).into_owned());
                match raw[0] {
                    b'P' => rec.name = value(),
                    b'V' => rec.version = value(),
                    b'A' => rec.arch = value(),
                    b'I' => rec.size = value(),
                    b'o' => rec.origin = value(),
                    b'L' => rec.license = value(),
                    b'm' => rec.maintainer = value(),
                    b'F' => rec.dir = raw[2..].to_vec(),
                    b'R' => {
                        let mut path = Vec::with_capacity(rec.dir.len() + raw.len());
                        path.push(b'/');
                        if !rec.dir.is_empty() {
                            path.extend_from_slice(&rec.dir);
                            path.push(b'/');
                        }
                        path.extend_from_slice(&raw[2..]);
                        rec.files.push(String::from_utf8_lossy(&path).into_owned());
                    }
                    _ => {}
                }
            }
        }
        if end && rec.first_line != 0 {
            let r = std::mem::take(&mut rec);
            match to_package(r, file) {
                Ok(p) => {
                    if packages.len() >= MAX_PACKAGES {
                        report(
                            &mut errors,
                            Error::LimitExceeded {
                                what: format!("{file}: packages"),
                                limit: MAX_PACKAGES as u64,
                            },
                        );
                        break;
                    }
                    packages.push(p);
                }
                Err(e) => report(&mut errors, e),
            }
        }
    }
    if skipped > 0 {
        errors.push(malformed(
            file,
            0,
            format!("{skipped} further problems not listed"),
        ));
    }
    (packages, errors)
}

fn to_package(r: Record, file: &str) -> Result<Package, Error> {
    let line = r.first_line;
    let Some(name) = r.name.filter(|n| !n.is_empty()) else {
        return Err(malformed(
            file,
            line,
            "paragraph without a P: (name) line".into(),
        ));
    };
    let Some(version) = r.version.filter(|v| !v.is_empty()) else {
        return Err(malformed(
            file,
            line,
            format!("package {name} has no V: (version) line"),
        ));
    };
    let size =
        match r.size {
            Some(s) => Some(s.trim().parse::<u64>().map_err(|_| {
                malformed(file, line, format!("I: (installed size) {s:?} of {name}"))
            })?),
            None => None,
        };
    let mut extra = serde_json::Map::new();
    if let Some(l) = r.license {
        extra.insert("license".into(), Value::String(l));
    }
    if let Some(m) = r.maintainer {
        extra.insert("maintainer".into(), Value::String(m));
    }
    if !r.files.is_empty() {
        extra.insert(
            "files".into(),
            Value::Array(r.files.into_iter().map(Value::String).collect()),
        );
    }
    Ok(Package {
        name,
        version,
        arch: r.arch.unwrap_or_default(),
        source: r.origin,
        size,
        manager: "apk".into(),
        status: None,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_packages() {
        let text = b"C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nS:383152\nI:622592\nT:the C library\nL:MIT\no:musl\nm:Someone <a@b>\nF:lib\nR:libc.musl-x86_64.so.1\nZ:Q1xyz=\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\nI:950272\no:busybox\n";
        let (p, e) = parse_installed(text, "installed");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "musl");
        assert_eq!(p[0].version, "1.2.4-r2");
        assert_eq!(p[0].size, Some(622592));
        assert_eq!(p[0].source.as_deref(), Some("musl"));
        assert_eq!(p[0].extra["license"], "MIT");
        assert_eq!(
            p[0].extra["files"],
            serde_json::json!(["/lib/libc.musl-x86_64.so.1"])
        );
        assert!(!p[1].extra.contains_key("files"));
        assert_eq!(p[1].name, "busybox");
        assert_eq!(p[1].arch, "x86_64");
    }

    #[test]
    fn reports_bad_lines_and_paragraphs() {
        let text = b"garbage\nP:a\nV:1\n\nV:2\n\nP:b\nV:1\nI:lots\n\n\n\nP:c\n";
        let (p, e) = parse_installed(text, "installed");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].to_string().contains("line 1"));
        assert!(e[1].to_string().contains("line 5"));
        assert!(e[3].to_string().contains("c has no V"));
    }
}
