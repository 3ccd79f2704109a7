//! dpkg's status database (`/var/lib/dpkg/status`): RFC 822-style paragraphs, one per
//! package, of `Field: value` lines with indented continuation lines.
//!
//! Only packages whose `Status` says `installed` are kept (not `config-files`,
//! `half-installed`, `not-installed`). A malformed line is reported with its line number and
//! skipped, as is a paragraph without `Package`; the file is read whole only when it is
//! under a bound (64 MiB by default), so a hostile status file cannot exhaust memory.

use origami_frame::Package;
use serde_json::Value;

use super::PackageDb;
use crate::error::{Error, Result};
use crate::fs::GuestTree;

/// Where dpkg keeps its status database.
pub const STATUS_PATH: &str = "/var/lib/dpkg/status";
/// The default bound on the status file's size.
pub const DEFAULT_MAX_STATUS: u64 = crate::Limits::DEFAULT.dpkg_status;
/// The most parse errors reported for one file (the rest are counted in the last one).
const MAX_REPORTED: usize = 10;

/// The dpkg database reader.
#[derive(Debug, Clone)]
pub struct Dpkg {
    /// The largest status file read.
    pub max_status: u64,
    /// The crawl's memory budget, on which the status file's bytes are reserved while
    /// they are parsed.
    pub budget: crate::Budget,
}

impl Default for Dpkg {
    fn default() -> Self {
        Dpkg {
            max_status: DEFAULT_MAX_STATUS,
            budget: crate::Budget::unlimited(),
        }
    }
}

impl PackageDb for Dpkg {
    fn manager(&self) -> &'static str {
        "dpkg"
    }

    fn present(&self, tree: &GuestTree) -> bool {
        tree.lstat(STATUS_PATH.as_bytes()).is_ok()
    }

    fn installed(&self, tree: &GuestTree) -> (Vec<Package>, Vec<Error>) {
        match crate::disk::read_whole(tree, STATUS_PATH.as_bytes(), self.max_status, &self.budget) {
            Ok((data, _held)) => parse_status(&data, STATUS_PATH),
            Err(e) => (Vec::new(), vec![e]),
        }
    }
}

/// One paragraph's fields of interest.
#[derive(Default)]
struct Record {
    first_line: usize,
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    source: Option<String>,
    installed_size: Option<String>,
    status: Option<String>,
    last_field: Option<&'static str>,
}

/// Parses a dpkg status file into its installed packages, with the problems met.
pub fn parse_status(data: &[u8], file: &str) -> (Vec<Package>, Vec<Error>) {
    let mut packages = Vec::new();
    let mut errors = Errors::default();
    let mut rec = Record::default();
    for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            finish(&mut rec, &mut packages, &mut errors, file);
            continue;
        }
        if rec.first_line == 0 {
            rec.first_line = line_no;
        }
        if raw[0] == b' ' || raw[0] == b'\t' {
            // A continuation line: only multi-line fields (Description, Conffiles) have
            // them, and none of those is kept.
            if rec.last_field.is_none() {
                errors.push(malformed(
                    file,
                    line_no,
                    "continuation line before any field",
                ));
            }
            continue;
        }
        let Some(colon) = raw.iter().position(|&b| b == b':') else {
            errors.push(malformed(file, line_no, "line not in 'Field: value' form"));
            continue;
        };
        let (key, value) = (&raw[..colon], &raw[colon + 1..]);
        let value = String::from_utf8_lossy(value).trim().to_string();
        let slot = match key {
            b"Package" => Some(("Package", &mut rec.name)),
            b"Version" => Some(("Version", &mut rec.version)),
            b"Architecture" => Some(("Architecture", &mut rec.arch)),
            b"Source" => Some(("Source", &mut rec.source)),
            b"Installed-Size" => Some(("Installed-Size", &mut rec.installed_size)),
            b"Status" => Some(("Status", &mut rec.status)),
            _ => None,
        };
        match slot {
            Some((name, field)) => {
                *field = Some(value);
                rec.last_field = Some(name);
            }
            None => rec.last_field = Some("other"),
        }
    }
    finish(&mut rec, &mut packages, &mut errors, file);
    let mut list = errors.list;
    if errors.skipped > 0 {
        list.push(malformed(
            file,
            0,
            &format!("{} further problems not listed", errors.skipped),
        ));
    }
    (packages, list)
}

/// The first problems of a file, and a count of the rest.
#[derive(Default)]
struct Errors {
    list: Vec<Error>,
    skipped: usize,
}

impl Errors {
    fn push(&mut self, e: Error) {
        if self.list.len() < MAX_REPORTED {
            self.list.push(e);
        } else {
            self.skipped += 1;
        }
    }
}

fn finish(rec: &mut Record, packages: &mut Vec<Package>, errors: &mut Errors, file: &str) {
    let r = std::mem::take(rec);
    if r.first_line == 0 {
        return;
    }
    match to_package(r, file) {
        Ok(Some(p)) => packages.push(p),
        Ok(None) => {}
        Err(e) => errors.push(e),
    }
}

fn malformed(file: &str, line: usize, what: &str) -> Error {
    Error::Malformed {
        file: file.to_string(),
        location: format!("line {line}"),
        what: what.to_string(),
    }
}

/// The package of a paragraph, `None` when it is not installed.
fn to_package(r: Record, file: &str) -> Result<Option<Package>> {
    let line = r.first_line;
    let Some(name) = r.name.filter(|n| !n.is_empty()) else {
        return Err(malformed(file, line, "paragraph without a Package field"));
    };
    let status = r.status.unwrap_or_default();
    // "want flag state": the state is the last word.
    if status.split_whitespace().last() != Some("installed") {
        return Ok(None);
    }
    let Some(version) = r.version else {
        return Err(malformed(
            file,
            line,
            &format!("installed package {name} has no Version"),
        ));
    };
    let size = match r.installed_size {
        Some(s) => Some(
            s.parse::<u64>()
                .ok()
                .and_then(|kib| kib.checked_mul(1024))
                .ok_or_else(|| malformed(file, line, &format!("Installed-Size {s:?} of {name}")))?,
        ),
        None => None,
    };
    let mut source = None;
    let mut extra = serde_json::Map::new();
    if let Some(s) = r.source {
        // "Source: name (version)" when the source version differs.
        let mut parts = s.splitn(2, ' ');
        let src = parts.next().unwrap_or_default().to_string();
        if let Some(v) = parts.next() {
            let v = v.trim().trim_start_matches('(').trim_end_matches(')');
            extra.insert("source_version".into(), Value::String(v.to_string()));
        }
        source = Some(src);
    }
    Ok(Some(Package {
        name,
        version,
        arch: r.arch.unwrap_or_default(),
        source,
        size,
        manager: "dpkg".into(),
        status: Some(status),
        extra,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_installed_packages_only() {
        let text = b"Package: a\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\nInstalled-Size: 10\nSource: asrc (0.9)\nDescription: x\n more\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 2\n\nPackage: c\nStatus: install ok installed\nVersion: 3\nArchitecture: all\n";
        let (p, e) = parse_status(text, "status");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "a");
        assert_eq!(p[0].size, Some(10240));
        assert_eq!(p[0].source.as_deref(), Some("asrc"));
        assert_eq!(p[1].arch, "all");
    }

    #[test]
    fn reports_bad_lines_and_goes_on() {
        let text = b"garbage\nPackage: a\nStatus: install ok installed\nVersion: 1\n\nStatus: install ok installed\n";
        let (p, e) = parse_status(text, "status");
        assert_eq!(p.len(), 1);
        assert_eq!(e.len(), 2);
        assert!(e[0].to_string().contains("line 1"));
    }
}
