//! The error of the file-system readers written here (XFS, btrfs) before it is given the
//! image and the path, and how it becomes the crate's [`Error`].

use super::path::display_path;
use crate::error::Error;

/// Why a read failed, before it is given the image and path.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// No such name.
    NotFound,
    /// A path component is not a directory.
    NotDir,
    /// The image could not be read.
    Io(origami_core::Error),
    /// Malformed metadata (what, where).
    Bad(String),
    /// A bound met (what, the bound).
    Limit(String, u64),
}

impl From<origami_core::Error> for ReadError {
    fn from(e: origami_core::Error) -> Self {
        ReadError::Io(e)
    }
}

impl ReadError {
    /// The crate's error, naming the image `source`, the file system `fs` and `path`.
    pub(crate) fn into_error(self, source: &str, fs: &'static str, path: Option<&[u8]>) -> Error {
        match self {
            ReadError::NotFound => Error::NotFound {
                path: display_path(path.unwrap_or(b"/")),
            },
            ReadError::NotDir => Error::NotADirectory {
                path: display_path(path.unwrap_or(b"/")),
            },
            ReadError::Io(e) => Error::Core(e),
            ReadError::Limit(what, limit) => Error::LimitExceeded {
                what: format!(
                    "{what} ({source}{})",
                    path.map(|p| format!(" {}", display_path(p)))
                        .unwrap_or_default()
                ),
                limit,
            },
            ReadError::Bad(what) => Error::FileSystem {
                source_name: source.to_string(),
                fs,
                path: path.map(display_path),
                what,
            },
        }
    }
}
