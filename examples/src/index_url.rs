//! Where `--index` points: a tantivy folder, or a PostgreSQL database given as a URL
//! (`postgres://USER@HOST:PORT/DB`, feature `postgres`, on by default), for every command
//! that takes `--index` (`crawl-fleet`, `index`, `search`, `history`, `serve`).
//!
//! A URL is checked by [`origami_index::postgres::url::config`]: this build connects without
//! TLS, so a host other than loopback (or a unix socket) is refused unless the URL says
//! `sslmode=disable`; a password is taken from the URL or from `PGPASSWORD` (which keeps it
//! out of `ps`), and every message shows the URL with its password masked ([`shown`]).
//!
//! ```
//! use std::path::Path;
//! use origami_examples::index_url::shown;
//! assert_eq!(shown(Path::new("postgres://ops:pw@127.0.0.1:5432/fleet")),
//!            "postgres://ops:***@127.0.0.1:5432/fleet");
//! assert_eq!(shown(Path::new("idx")), "idx");
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use origami_index::{Index, ReadOnlyIndex, TantivyIndex};

use crate::serve::{ServeError, ServedIndex};

/// An index the command writes: frames in, commits (now, or when the commit interval has
/// passed), and what the server shows of it.
pub trait WriteIndex: Index + ServedIndex {
    /// Commits when frames wait and the commit interval has passed; returns whether it did.
    fn commit_due(&self) -> origami_index::Result<bool>;
}

impl WriteIndex for TantivyIndex {
    fn commit_due(&self) -> origami_index::Result<bool> {
        TantivyIndex::commit_due(self)
    }
}

#[cfg(feature = "postgres")]
impl ServedIndex for origami_index::PostgresIndex {
    fn systems(&self) -> origami_index::Result<Vec<(String, time::OffsetDateTime)>> {
        origami_index::PostgresIndex::systems(self)
    }
}

#[cfg(feature = "postgres")]
impl WriteIndex for origami_index::PostgresIndex {
    fn commit_due(&self) -> origami_index::Result<bool> {
        origami_index::PostgresIndex::commit_due(self)
    }
}

/// Why `--index` could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenIndexError {
    /// Nothing to search there yet.
    #[error("no index at {0} (build one with `origami crawl-fleet MANIFEST --index {0}` or `origami index --index {0} FRAMES.jsonl`)")]
    NoIndex(String),
    /// The folder or database could not be opened.
    #[error("opening the index at {location}: {source}")]
    Open {
        /// The folder, or the URL with its password masked.
        location: String,
        /// The cause.
        source: origami_index::Error,
    },
}

impl From<OpenIndexError> for ServeError {
    fn from(e: OpenIndexError) -> ServeError {
        match e {
            OpenIndexError::NoIndex(l) => ServeError::NoIndex(PathBuf::from(l)),
            OpenIndexError::Open { location, source } => ServeError::Index {
                path: PathBuf::from(location),
                source,
            },
        }
    }
}

/// The PostgreSQL URL `index` holds, if it is one.
pub fn postgres_url(index: &Path) -> Option<&str> {
    index
        .to_str()
        .filter(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

/// `index` for messages: a folder as it is, a URL with its password masked.
pub fn shown(index: &Path) -> String {
    match postgres_url(index) {
        Some(u) => mask(u),
        None => index.display().to_string(),
    }
}

#[cfg(feature = "postgres")]
fn mask(url: &str) -> String {
    origami_index::postgres::url::redact(url)
}

/// Without the PostgreSQL backend, everything after the scheme is hidden (it may hold a
/// password).
#[cfg(not(feature = "postgres"))]
fn mask(url: &str) -> String {
    let scheme = url.split("://").next().unwrap_or("postgres");
    format!("{scheme}://***")
}

fn open_error(index: &Path, source: origami_index::Error) -> OpenIndexError {
    match source {
        origami_index::Error::NoIndex { .. } => OpenIndexError::NoIndex(shown(index)),
        source => OpenIndexError::Open {
            location: shown(index),
            source,
        },
    }
}

#[cfg(not(feature = "postgres"))]
fn no_postgres(index: &Path) -> OpenIndexError {
    OpenIndexError::Open {
        location: shown(index),
        source: origami_index::Error::Io {
            path: PathBuf::from(shown(index)),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this origami was built without the `postgres` feature",
            ),
        },
    }
}

/// Opens `index` to write it: a tantivy folder (created when missing) or a PostgreSQL
/// database (its schema created or migrated).
pub fn open_writer(index: &Path) -> Result<Arc<dyn WriteIndex>, OpenIndexError> {
    match postgres_url(index) {
        #[cfg(feature = "postgres")]
        Some(url) => match origami_index::PostgresIndex::open(url) {
            Ok(i) => Ok(Arc::new(i)),
            Err(e) => Err(open_error(index, e)),
        },
        #[cfg(not(feature = "postgres"))]
        Some(_) => Err(no_postgres(index)),
        None => match TantivyIndex::open_or_create(index) {
            Ok(i) => Ok(Arc::new(i)),
            Err(e) => Err(open_error(index, e)),
        },
    }
}

/// Opens `index` to search it, changing nothing: a tantivy folder without a lock (so it works
/// while a writer feeds it), or a PostgreSQL database (other processes may write it at the
/// same time). Nothing there yet is [`OpenIndexError::NoIndex`].
pub fn open_reader(index: &Path) -> Result<Arc<dyn ServedIndex>, OpenIndexError> {
    match postgres_url(index) {
        #[cfg(feature = "postgres")]
        Some(url) => match origami_index::PostgresIndex::open_read_only(url) {
            Ok(i) => Ok(Arc::new(i)),
            Err(e) => Err(open_error(index, e)),
        },
        #[cfg(not(feature = "postgres"))]
        Some(_) => Err(no_postgres(index)),
        None => match ReadOnlyIndex::open(index) {
            Ok(i) => Ok(Arc::new(i)),
            Err(e) => Err(open_error(index, e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_told_from_a_folder_and_shown_without_its_password() {
        assert_eq!(
            postgres_url(Path::new("postgresql://u@localhost/db")),
            Some("postgresql://u@localhost/db")
        );
        assert_eq!(postgres_url(Path::new("./postgres://x")), None);
        assert_eq!(postgres_url(Path::new("/var/idx")), None);
        let s = shown(Path::new("postgres://u:topsecret@127.0.0.1:1/db"));
        assert!(!s.contains("topsecret"), "{s}");
    }

    #[test]
    fn errors_name_the_url_without_its_password() {
        // A loopback port nobody listens on: the connection fails, the message is clean.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let url = format!("postgres://u:topsecret@127.0.0.1:{port}/db");
        for e in [
            open_writer(Path::new(&url)).err().unwrap().to_string(),
            open_reader(Path::new(&url)).err().unwrap().to_string(),
            open_writer(Path::new("postgres://u:topsecret@db.example/x"))
                .err()
                .unwrap()
                .to_string(),
        ] {
            assert!(e.contains("u:***@"), "{e}");
            assert!(!e.contains("topsecret"), "{e}");
        }
    }
}
