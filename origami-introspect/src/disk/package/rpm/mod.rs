//! rpm's package database, in each of its three formats:
//!
//! - [`sqlite`]: `rpmdb.sqlite` (rpm 4.16+: Fedora 33+, RHEL/Rocky/Alma 9, CBL-Mariner,
//!   Amazon Linux 2023);
//! - [`ndb`]: `Packages.db` (SUSE's own format: SLE 15, openSUSE);
//! - [`bdb`]: `Packages`, a Berkeley DB hash (RHEL/CentOS 5 to 8, Amazon Linux 2).
//!
//! Each holds one [`header`] blob per installed package. The database is looked for in
//! `/usr/lib/sysimage/rpm` (where newer distributions keep it) and then `/var/lib/rpm`,
//! sqlite first, then NDB, then Berkeley DB; the first found is read. The directories are
//! resolved in the guest (a `/var/lib/rpm` symlink to the other stays inside the guest).
//!
//! Each package becomes a frame [`Package`]: `version` is rpm's `[epoch:]version-release`
//! (the epoch left out when it is absent or 0, as rpm and dpkg print it), `source` the source
//! package's name, `size` the installed size, and in the item's extra fields:
//! `epoch` (a number, when the header has one), `release`, `source_rpm` (the source rpm's file
//! name), `license` and `vendor` (when the header has them), and `files`: the package's
//! files and directories as `rpm -ql` lists them (an array of paths, left out when empty).

use origami_frame::Package;
use serde_json::Value;

use super::PackageDb;
use crate::error::Error;
use crate::fs::GuestTree;

pub mod bdb;
pub mod header;
pub mod ndb;
pub mod sqlite;

pub use header::{parse_package, HeaderError, RpmPackage};

/// The directories rpm keeps its database in, newest convention first.
pub const DB_DIRS: [&str; 2] = ["/usr/lib/sysimage/rpm", "/var/lib/rpm"];
/// The default bound on the database file's size (a large Fedora rpmdb.sqlite is ~200 MiB).
pub const DEFAULT_MAX_DB: u64 = 512 << 20;
/// The most packages read from one database.
pub const MAX_PACKAGES: usize = 200_000;

/// The three on-disk formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `rpmdb.sqlite`.
    Sqlite,
    /// SUSE's `Packages.db`.
    Ndb,
    /// Berkeley DB `Packages`.
    Bdb,
}

impl Format {
    /// The database's file name.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Sqlite => "rpmdb.sqlite",
            Format::Ndb => "Packages.db",
            Format::Bdb => "Packages",
        }
    }
}

/// One header blob read from a database, and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Where in the database (`Packages row hnum 12`, `package index 3 at offset 0x1000`).
    pub location: String,
    /// The header blob.
    pub bytes: Vec<u8>,
}

/// What is wrong with a database file (its records' headers aside).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// A structure of the file is malformed.
    #[error("{what} (at {location})")]
    Malformed {
        /// Where: `offset 0x1000`, `overflow page 7`, ...
        location: String,
        /// What is wrong.
        what: String,
    },
    /// SQLite refused the file or the query.
    #[error("sqlite: {0}")]
    Sqlite(String),
    /// More packages than the bound.
    #[error("more than {limit} packages")]
    TooManyPackages {
        /// The bound.
        limit: usize,
    },
}

/// The rpm database reader.
#[derive(Debug, Clone)]
pub struct Rpm {
    /// The largest database file read.
    pub max_db: u64,
}

impl Default for Rpm {
    fn default() -> Self {
        Rpm {
            max_db: DEFAULT_MAX_DB,
        }
    }
}

/// The guest path and format of the rpm database, when the guest has one.
pub fn find_db(tree: &GuestTree) -> Option<(String, Format)> {
    for format in [Format::Sqlite, Format::Ndb, Format::Bdb] {
        for dir in DB_DIRS {
            let path = format!("{dir}/{}", format.file_name());
            if tree.stat(path.as_bytes()).is_ok() {
                return Some((path, format));
            }
        }
    }
    None
}

impl PackageDb for Rpm {
    fn manager(&self) -> &'static str {
        "rpm"
    }

    fn present(&self, tree: &GuestTree) -> bool {
        find_db(tree).is_some()
    }

    fn installed(&self, tree: &GuestTree) -> (Vec<Package>, Vec<Error>) {
        let Some((path, format)) = find_db(tree) else {
            return (Vec::new(), Vec::new());
        };
        let read = match format {
            Format::Sqlite => read_sqlite_in(tree, &path, self.max_db),
            _ => match tree.read_file(path.as_bytes(), self.max_db) {
                Ok(data) => Ok(read_blobs(format, &data)),
                Err(e) => Err(e),
            },
        };
        match read {
            Ok((blobs, errors)) => {
                let mut errors: Vec<Error> =
                    errors.into_iter().map(|e| db_error(&path, e)).collect();
                let (packages, bad) = packages(&blobs, &path);
                errors.extend(bad);
                (packages, errors)
            }
            Err(e) => (Vec::new(), vec![e]),
        }
    }
}

/// The sqlite database at `path`, streamed from the guest into SQLite (one copy).
fn read_sqlite_in(
    tree: &GuestTree,
    path: &str,
    max_db: u64,
) -> crate::Result<(Vec<Blob>, Vec<DbError>)> {
    let r = tree.resolve(path.as_bytes(), true)?;
    if r.stat.size > max_db {
        return Err(Error::TooLarge {
            file: path.to_string(),
            size: r.stat.size,
            limit: max_db,
        });
    }
    let reader = tree.open_canonical(&r.path)?;
    let len = usize::try_from(r.stat.size).unwrap_or(usize::MAX);
    Ok(match sqlite::read(reader, len, MAX_PACKAGES) {
        Ok(b) => (b, Vec::new()),
        Err(e) => (Vec::new(), vec![e]),
    })
}

/// The header blobs of a database file's bytes in the given format.
pub fn read_blobs(format: Format, data: &[u8]) -> (Vec<Blob>, Vec<DbError>) {
    match format {
        Format::Sqlite => match sqlite::read(data, data.len(), MAX_PACKAGES) {
            Ok(b) => (b, Vec::new()),
            Err(e) => (Vec::new(), vec![e]),
        },
        Format::Ndb => ndb::read(data, MAX_PACKAGES),
        Format::Bdb => bdb::read(
            data,
            MAX_PACKAGES,
            header::MAX_DATA_LEN as usize + 0x10_0000,
        ),
    }
}

/// The packages of a database file's bytes, with the problems met (`file` names it in
/// errors).
pub fn read_database(format: Format, data: &[u8], file: &str) -> (Vec<Package>, Vec<Error>) {
    let (blobs, errors) = read_blobs(format, data);
    let mut errors: Vec<Error> = errors.into_iter().map(|e| db_error(file, e)).collect();
    let (packages, bad) = packages(&blobs, file);
    errors.extend(bad);
    (packages, errors)
}

fn db_error(file: &str, e: DbError) -> Error {
    match e {
        DbError::Malformed { location, what } => Error::Malformed {
            file: file.to_string(),
            location,
            what,
        },
        DbError::TooManyPackages { limit } => Error::LimitExceeded {
            what: format!("{file}: packages"),
            limit: limit as u64,
        },
        e @ DbError::Sqlite(_) => Error::Malformed {
            file: file.to_string(),
            location: "database".into(),
            what: e.to_string(),
        },
    }
}

/// The frame packages of header blobs; a blob that does not parse is reported and skipped.
pub fn packages(blobs: &[Blob], file: &str) -> (Vec<Package>, Vec<Error>) {
    let mut out = Vec::with_capacity(blobs.len());
    let mut errors = Vec::new();
    for b in blobs {
        match parse_package(&b.bytes) {
            Ok(p) => out.push(to_package(p)),
            Err(e) => errors.push(Error::Malformed {
                file: file.to_string(),
                location: b.location.clone(),
                what: format!("rpm header: {e}"),
            }),
        }
    }
    (out, errors)
}

/// The frame item of an rpm package.
pub fn to_package(p: RpmPackage) -> Package {
    let mut extra = serde_json::Map::new();
    let version = match p.epoch {
        Some(e) if e != 0 => format!("{e}:{}-{}", p.version, p.release),
        _ => format!("{}-{}", p.version, p.release),
    };
    if let Some(e) = p.epoch {
        extra.insert("epoch".into(), Value::from(e));
    }
    extra.insert("release".into(), Value::String(p.release));
    let source = p
        .source_rpm
        .as_deref()
        .and_then(header::source_name)
        .map(str::to_string);
    for (k, v) in [
        ("source_rpm", p.source_rpm),
        ("license", p.license),
        ("vendor", p.vendor),
    ] {
        if let Some(v) = v {
            extra.insert(k.into(), Value::String(v));
        }
    }
    if !p.files.is_empty() {
        extra.insert(
            "files".into(),
            Value::Array(p.files.into_iter().map(Value::String).collect()),
        );
    }
    Package {
        name: p.name,
        version,
        arch: p.arch.unwrap_or_default(),
        source,
        size: p.size,
        manager: "rpm".into(),
        status: None,
        extra,
    }
}
