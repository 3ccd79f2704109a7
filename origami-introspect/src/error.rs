//! The crate's one error type. Every error names the guest file (or kernel structure) and the
//! offset, line or address where the problem was found.

/// What went wrong understanding a guest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the guest's bytes failed (image, partition or memory).
    #[error(transparent)]
    Core(#[from] origami_core::Error),
    /// A guest file's content is malformed.
    #[error("{file}: {what} (at {location})")]
    Malformed {
        /// The guest path (or structure) being parsed.
        file: String,
        /// Where: `line 12`, `offset 0x1000`, `address 0xffff...`.
        location: String,
        /// What is wrong with it.
        what: String,
    },
    /// A guest object is larger than the bound the crawler allows for it.
    #[error("{file}: {size} bytes is over the {limit}-byte bound")]
    TooLarge {
        /// The guest path (or structure).
        file: String,
        /// Its claimed or real size.
        size: u64,
        /// The bound in force.
        limit: u64,
    },
    /// A guest file system could not be read: bad superblock, corrupt metadata, an
    /// unsupported feature, or a panic inside the file-system library caught at its edge.
    #[error("{source_name}: {fs} file system: {what}{}", path_suffix(path))]
    FileSystem {
        /// The partition or image holding the file system.
        source_name: String,
        /// `ext4`, `fat`, ...
        fs: &'static str,
        /// The path inside the file system being read, when there is one.
        path: Option<String>,
        /// What is wrong.
        what: String,
    },
    /// A guest path does not exist.
    #[error("{path}: no such file or directory in the guest")]
    NotFound {
        /// The guest path.
        path: String,
    },
    /// A guest path has a non-directory where a directory is needed.
    #[error("{path}: not a directory in the guest")]
    NotADirectory {
        /// The guest path.
        path: String,
    },
    /// Resolving a guest path met too many symbolic links (a loop, or a chain too long).
    #[error("{path}: more than {limit} symbolic links while resolving (a loop?)")]
    SymlinkLoop {
        /// The guest path being resolved.
        path: String,
        /// The bound on links followed.
        limit: u32,
    },
    /// No file system of the target looks like a guest root (no `/etc/os-release` or
    /// `/usr/lib/os-release`).
    #[error("no root file system found among: {looked_at}")]
    NoRoot {
        /// The file systems examined.
        looked_at: String,
    },
    /// A walk or list exceeded a bound (entries, depth).
    #[error("{what}: over the bound of {limit}")]
    LimitExceeded {
        /// What was counted, naming the guest path.
        what: String,
        /// The bound in force.
        limit: u64,
    },
    /// Reading `bytes` more would take the crawl past its memory budget
    /// ([`crate::Limits::memory`]).
    #[error(
        "{what}: reading {bytes} bytes would take the crawl to {} bytes held, over its \
         memory budget of {limit} bytes",
        held.saturating_add(*bytes)
    )]
    OverBudget {
        /// What was about to be read (a guest path or kernel structure).
        what: String,
        /// The bytes it needed.
        bytes: u64,
        /// The bytes the crawl held already.
        held: u64,
        /// The budget.
        limit: u64,
    },
    /// A section ran past its time ([`crate::Limits::section_time`]) and stopped, keeping
    /// what it had found.
    #[error(
        "section {section}: stopped after {elapsed_ms} ms, over its time bound of {limit_ms} ms"
    )]
    OverTime {
        /// The section (`process`, `file`, `kernel`, ...).
        section: String,
        /// The bound, in milliseconds.
        limit_ms: u64,
        /// The time it had run, in milliseconds.
        elapsed_ms: u64,
    },
}

fn path_suffix(path: &Option<String>) -> String {
    match path {
        Some(p) => format!(" (at {p})"),
        None => String::new(),
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
