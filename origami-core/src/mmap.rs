//! A host file read through a memory map: a copy per read, no system call.
//!
//! It pays for many small reads of a raw image (4 KiB random reads); `pread`
//! ([`crate::FileSource`]) is as fast for large reads and safer for files that may shrink.
//!
//! No reference to the mapped bytes is ever formed: each read copies them out with volatile
//! loads (`crate::shared`), so another process writing the file while it is mapped gives
//! reads that mix old and new bytes, never undefined behaviour.
//!
//! Limits: if another process truncates the file while it is mapped, touching the lost pages
//! raises SIGBUS, which ends this process. Map only files nothing else shortens (images of
//! stopped guests, snapshots).

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::read::{check_range, ReadAt};

/// A read-only memory map of a host file, sized when opened.
#[derive(Debug)]
pub struct MmapSource {
    map: Option<MmapRaw>,
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
            // A raw map: no `&[u8]` of it exists, reads copy out through a pointer.
            Some(MmapOptions::new().map_raw_read_only(&file).map_err(io)?)
        };
        Ok(MmapSource { map, path })
    }
}

impl ReadAt for MmapSource {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(|| self.name(), offset, buf.len(), self.len())?;
        let Some(map) = &self.map else {
            return Ok(()); // an empty file: only empty reads pass the check
        };
        // In range of a mapping that fits in memory, so `offset` fits in usize.
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(map.len());
        // SAFETY: `offset + buf.len() <= map.len()` (checked above), so the source range lies
        // in the mapping, which lives as long as `self`; `buf` is our own allocation, so they
        // do not overlap. What makes the read sound although another process may write the
        // file meanwhile is that no reference to the mapping is formed (see `crate::shared`).
        unsafe { crate::shared::copy_from_shared(map.as_ptr().add(start), buf) };
        Ok(())
    }
    fn len(&self) -> u64 {
        self.map.as_ref().map_or(0, |m| m.len() as u64)
    }
    fn name(&self) -> String {
        self.path.display().to_string()
    }
}
