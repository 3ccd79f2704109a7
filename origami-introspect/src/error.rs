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
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
