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
    /// A disk structure is malformed: a bad magic or checksum, a size out of range, a table
    /// pointing outside its file, a loop in a chain of tables.
    #[error("{source_name}: corrupt at offset {offset:#x}: {reason}")]
    Corrupt {
        /// The source (file, image, disk).
        source_name: String,
        /// Where the bad structure (or the bad field) lies.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The input uses a feature this crate does not read (an encrypted qcow2, an external
    /// data file, unknown incompatible feature bits, ...).
    #[error("{source_name}: unsupported at offset {offset:#x}: {feature}")]
    Unsupported {
        /// The source (file, image).
        source_name: String,
        /// Where the field that asks for the feature lies.
        offset: u64,
        /// The feature.
        feature: String,
    },
    /// A disk image format recognised by its magic but not read by this crate (VMDK, VHDX, ...).
    #[error("{}: unsupported image format: {format}", path.display())]
    UnsupportedFormat {
        /// The image file.
        path: PathBuf,
        /// The format its magic names.
        format: String,
    },
    /// A qcow2 backing chain cannot be followed: it loops, is too deep, or names a file that
    /// cannot be used.
    #[error("{}: backing chain: {reason}", path.display())]
    BackingChain {
        /// The image whose backing file is at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
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
