//! Origami's index: the frames of a fleet, searchable like the Web.
//!
//! Queries are answered from the index, never from the machines, so a slow or wedged host
//! never holds up a search. Two traits are the seams: [`Search`] (search with facets,
//! history, what changed) and [`Index`] (a `Search` that also adds frames and commits).
//! [`TantivyIndex`] is the embedded default, in a folder or in RAM: one writer of a folder,
//! and any number of [`ReadOnlyIndex`] readers beside it, which take no lock, never wait on
//! the writer, and see each commit shortly after it lands.
//!
//! Each frame item (process, connection, file, config, package, user, module, os) is one
//! document *version*, valid from the frame that brought it until the frame that changed or
//! removed it, so the latest state, any earlier state (`as_of:`) and the changes between two
//! instants are all queries, and re-indexing an unchanged frame writes next to nothing.
//!
//! ```
//! use origami_index::frame::{Connection, Frame, Process};
//! use origami_index::{Index, Search, SearchOptions, TantivyIndex};
//!
//! let index = TantivyIndex::in_ram()?;
//! let mut f = Frame::new("web-01");
//! f.meta.hostname = Some("web-01.example.com".into());
//! f.process.push(Process { pid: 42, name: "nginx".into(), ..Default::default() });
//! f.connection.push(Connection {
//!     protocol: "tcp".into(), local_address: "10.0.0.5".into(), local_port: 443,
//!     remote_address: "10.20.30.40".into(), remote_port: 51000,
//!     state: "ESTABLISHED".into(), pid: Some(42), ..Default::default()
//! });
//! index.add_frame(&f)?;
//! index.commit()?;
//!
//! let found = index.search("10.20.30.40 name:nginx", &SearchOptions::default())?;
//! assert_eq!(found.machines[0].system, "web-01");
//! assert_eq!(found.machines[0].hits[0].key, "tcp/10.0.0.5:443/10.20.30.40:51000");
//!
//! // A malformed query says where.
//! let err = index.search("port:http", &SearchOptions::default()).unwrap_err();
//! assert!(err.to_string().contains("column 6"));
//! # Ok::<(), origami_index::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod collect;
mod compile;
mod content_hash;
mod diff;
mod item_doc;
mod key_query;
mod pending;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod query;
mod read;
mod schema;
mod snippet;
pub mod tokenizer;
mod versions;
mod writer;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

#[cfg(feature = "postgres")]
pub use crate::postgres::PostgresIndex;
/// The frame model, re-exported.
pub use origami_frame as frame;
pub use origami_frame::{FrameDiff, Section};
pub use query::{parse as parse_query, ParsedQuery, QueryError};
pub use read::ReadOnlyIndex;
pub use schema::IndexConfig;
pub use writer::TantivyIndex;

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query is malformed; the error points at the column.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The search engine failed (I/O, corrupt segment, lock held by another process...).
    #[error("tantivy: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The index folder could not be created or read.
    #[error("index folder {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A folder opened read-only holds no index.
    #[error("no index at {path}")]
    NoIndex {
        /// The folder.
        path: PathBuf,
    },
    /// Tantivy refused a document (its indexing threads died: an I/O error, a full disk):
    /// the writer went back to the last commit, and the frames added since are dropped.
    #[error("the index writer failed ({source}); rolled back to the last commit, dropping the {frames} frame(s) added since")]
    RolledBack {
        /// Frames dropped (the failed one included).
        frames: u64,
        /// The cause.
        source: tantivy::TantivyError,
    },
    /// A frame without `_frame.system` cannot be indexed: versions are kept per system.
    #[error("the frame has no system id (_frame.system is empty)")]
    NoSystem,
    /// A stored document could not be read back (a damaged or foreign index).
    #[error("stored document of system {system}: {message}")]
    Corrupt {
        /// The system the document belongs to, when known.
        system: String,
        /// What was wrong.
        message: String,
    },
    /// Another thread panicked while it held the writer.
    #[error("the index writer was poisoned by a panic in another thread")]
    Poisoned,
    /// The PostgreSQL server refused a statement or went away (feature `postgres`); a
    /// failed `add_frame` or `commit` loses the frames added since the last commit.
    #[cfg(feature = "postgres")]
    #[error("postgres: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// A PostgreSQL URL that is not used (feature `postgres`): malformed, or a plain-text
    /// connection to a host beyond loopback. `url` has its password masked.
    #[cfg(feature = "postgres")]
    #[error("postgres URL {url}: {reason}")]
    PostgresUrl {
        /// The URL, password masked.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// `changes(system, from, to)` with `from` after `to`.
    #[error("changes: from ({from}) is after to ({to})")]
    BadRange {
        /// The start.
        from: OffsetDateTime,
        /// The end.
        to: OffsetDateTime,
    },
}

/// The index's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Searches over frames: what a read-only handle ([`ReadOnlyIndex`]) and the writer
/// ([`TantivyIndex`]) both answer, from the last commit they loaded. Implementations are
/// shared between threads.
pub trait Search: Send + Sync {
    /// Runs a query (see [`query`] for the language), grouped by machine and ranked.
    fn search(&self, query: &str, options: &SearchOptions) -> Result<SearchResults>;
    /// Facet counts of a query's matching items, without loading any hit.
    fn facets(&self, query: &str, options: &SearchOptions) -> Result<Facets> {
        let options = SearchOptions {
            limit: 0,
            ..options.clone()
        };
        Ok(self.search(query, &options)?.facets)
    }
    /// The frames indexed for `system`, oldest first.
    fn history(&self, system: &str) -> Result<Vec<FrameVersion>>;
    /// What changed on `system` between the states at `from` and at `to`.
    fn changes(&self, system: &str, from: OffsetDateTime, to: OffsetDateTime) -> Result<FrameDiff>;
}

/// A store of frames that takes new ones: the one writer of an index.
pub trait Index: Search {
    /// Adds a frame: only the items that differ from the system's current state are written.
    /// Nothing is visible to searches, nor durable, before a commit: [`Index::commit`], or
    /// the near-real-time commit [`IndexConfig::commit_interval`] makes at the next
    /// `add_frame` (which never commits otherwise). When it fails, the index and the
    /// writer's state are as they were before the call (but see [`Error::RolledBack`]).
    fn add_frame(&self, frame: &origami_frame::Frame) -> Result<IndexStats>;
    /// Makes everything added so far durable and searchable. When it returns, a crash loses
    /// nothing added before the call.
    fn commit(&self) -> Result<()>;
}

/// How to run a search.
#[derive(Debug, Clone, Serialize)]
pub struct SearchOptions {
    /// How many machines to return (0: facets and counts only).
    pub limit: usize,
    /// How many machines to skip first (paging).
    pub offset: usize,
    /// How many matching items to show per machine.
    pub hits_per_machine: usize,
    /// How many values each facet lists.
    pub facet_limit: usize,
    /// See the fleet as it was at this instant (the query's `as_of:` wins over this).
    #[serde(with = "time::serde::rfc3339::option")]
    pub as_of: Option<OffsetDateTime>,
    /// The reference "now" of `changed:` and of recency ranking (default: the clock).
    #[serde(with = "time::serde::rfc3339::option")]
    pub now: Option<OffsetDateTime>,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            limit: 10,
            offset: 0,
            hits_per_machine: 3,
            facet_limit: 10,
            as_of: None,
            now: None,
        }
    }
}

/// One matching item.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// The item's section.
    pub kind: Section,
    /// The item's key (pid, path, package name:arch, connection tuple...).
    pub key: String,
    /// A one-line summary, or the matching line of a config file.
    pub snippet: String,
    /// The ranking score.
    pub score: f32,
    /// When this version of the item was first seen.
    #[serde(with = "time::serde::rfc3339")]
    pub valid_from: OffsetDateTime,
    /// When it was replaced or removed (`None` while it is current).
    #[serde(with = "time::serde::rfc3339::option")]
    pub valid_to: Option<OffsetDateTime>,
}

/// One machine of the results, with its best matching items.
#[derive(Debug, Clone, Serialize)]
pub struct MachineResult {
    /// The stable system id.
    pub system: String,
    /// The host name.
    pub hostname: String,
    /// The operating system, e.g. `debian 12`.
    pub os: String,
    /// The machine's ranking score.
    pub score: f32,
    /// How many of its items matched.
    pub matched: u64,
    /// Its best matching items, best first.
    pub hits: Vec<Hit>,
}

/// Facet counts of the matching items, largest first (ties by value): each facet lists at
/// most [`SearchOptions::facet_limit`] values with how many matching items hold each.
///
/// A tantivy index written before `port` and `user` were fast columns (before these two
/// facets existed) keeps its schema: `port:` and `user:` still filter it, but its `port`
/// and `user` facets are empty until it is rebuilt into a new folder (`origami index` of
/// the frames, or a new crawl). PostgreSQL databases need no migration.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facets {
    /// By item kind.
    pub kind: Vec<(String, u64)>,
    /// By host name.
    pub host: Vec<(String, u64)>,
    /// By operating system.
    pub os: Vec<(String, u64)>,
    /// By package name (package items only).
    pub package: Vec<(String, u64)>,
    /// By port (connections: the local port, and the remote one when it differs and is not
    /// 0): an item counts once under each of its ports.
    pub port: Vec<(String, u64)>,
    /// By user name (lowercased): a user entry's name, a process's, a file's owner, a
    /// connection's process's user.
    pub user: Vec<(String, u64)>,
}

/// The answer to a search.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    /// The query as parsed, normalised (empty when it held only time fields).
    pub query: String,
    /// The machines, best first.
    pub machines: Vec<MachineResult>,
    /// How many machines matched in all.
    pub total_machines: u64,
    /// How many items matched in all.
    pub total_hits: u64,
    /// Facet counts.
    pub facets: Facets,
    /// How long the search took.
    #[serde(serialize_with = "ser_duration_ms")]
    pub took: Duration,
}

fn ser_duration_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// What [`Index::add_frame`] did with one frame.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexStats {
    /// The system.
    pub system: String,
    /// Items in the frame.
    pub items: u64,
    /// Items new to the system.
    pub added: u64,
    /// Items whose content changed.
    pub changed: u64,
    /// Items gone since the previous frame.
    pub removed: u64,
    /// Items unchanged (nothing written for them).
    pub unchanged: u64,
    /// Items whose key repeated an earlier item of the same frame (the first was kept).
    pub duplicates: u64,
    /// Documents written (new versions, closed versions, the frame record).
    pub docs_written: u64,
    /// True when the frame was not newer than the system's latest and was skipped.
    pub stale: bool,
}

/// One indexed frame of a system.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FrameVersion {
    /// The system.
    pub system: String,
    /// The host name the frame reported.
    pub hostname: String,
    /// When the frame was taken.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// Items in the frame.
    pub items: u64,
    /// Items new in this frame.
    pub added: u64,
    /// Items changed in this frame.
    pub changed: u64,
    /// Items removed in this frame.
    pub removed: u64,
    /// How long the crawl took, in milliseconds (`_frame.duration_ms`; 0 in records
    /// written before this field).
    #[serde(default)]
    pub duration_ms: u64,
    /// What the crawl read (`_frame.source`: image and dump paths).
    #[serde(default)]
    pub source: Vec<String>,
    /// The errors the crawl's features met (`_frame.errors`).
    #[serde(default)]
    pub errors: Vec<origami_frame::FeatureError>,
}
