//! The crate's one error type: every error names what was being read and where.

use std::path::PathBuf;

/// What went wrong reading a guest's bytes, with the file and offset or address.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The host failed to read or open a file.
    #[error("{}: I/O error at offset {offset:#x}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Where the read started.
        offset: u64,
        /// The host's error.
        source: std::io::Error,
    },
    /// A read reached past the end of a source.
    #[error("{source_name}: read of {len} bytes at offset {offset:#x} is past the end ({size:#x} bytes)")]
    OutOfBounds {
        /// The source (file, partition, image).
        source_name: String,
        /// Where the read started.
        offset: u64,
        /// How many bytes were asked for.
        len: usize,
        /// The size of the source.
        size: u64,
    },
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
