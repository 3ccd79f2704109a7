//! A host file read through a memory map: a copy per read, no system call.
//!
//! It pays for many small reads of a raw image (4 KiB random reads); `pread`
//! ([`crate::FileSource`]) is as fast for large reads and safer for files that may shrink.
//!
//! Limits: if another process truncates the file while it is mapped, touching the lost pages
//! raises SIGBUS. Map only files nothing else shortens (images of stopped guests, snapshots).

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::read::{check_range, ReadAt};

/// A read-only memory map of a host file, sized when opened.
#[derive(Debug)]
pub struct MmapSource {
    map: Option<Mmap>,
    path: PathBuf,
}

impl MmapSource {
    /// Maps `path` read-only. See the module's note on truncation.
    pub fn open(path: impl AsRef<Path>) -> Result<MmapSource> {
        let path = path.as_ref().to_path_buf();
        let io = |source| Error::Io {
            path: path.clone(),
            offset: 0,
            source,
        };
        let file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the map is read-only and private to this value; the one hazard, another
            // process truncating the file, is documented on the type.
            Some(unsafe { Mmap::map(&file) }.map_err(io)?)
        };
        Ok(MmapSource { map, path })
    }
}

impl ReadAt for MmapSource {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let bytes: &[u8] = self.map.as_deref().unwrap_or(&[]);
        check_range(|| self.name(), offset, buf.len(), bytes.len() as u64)?;
        let start = offset as usize;
        buf.copy_from_slice(&bytes[start..start + buf.len()]);
        Ok(())
    }
    fn len(&self) -> u64 {
        self.map.as_ref().map_or(0, |m| m.len() as u64)
    }
    fn name(&self) -> String {
        self.path.display().to_string()
    }
}
