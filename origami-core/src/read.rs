//! Positional reads: the one seam every image, partition and parser reads through.
//!
//! [`ReadAt`] takes `&self`, so many threads read one source at once; it reads exactly the
//! bytes asked for or fails with an error naming the source and offset (a short read past
//! the end is an error, never silently zero-filled).

use std::fs::File;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Positional, shared reads of a fixed-size byte source.
pub trait ReadAt: Send + Sync {
    /// Fills `buf` with the bytes at `offset..offset + buf.len()`.
    ///
    /// Fails with [`Error::OutOfBounds`] when the range reaches past [`ReadAt::len`].
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// The size of the source in bytes.
    fn len(&self) -> u64;

    /// True when the source holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A short name for error messages (a file path, `disk.qcow2 p2`, ...).
    fn name(&self) -> String {
        String::from("<source>")
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(offset, buf)
    }
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn name(&self) -> String {
        (**self).name()
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(offset, buf)
    }
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn name(&self) -> String {
        (**self).name()
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Box<T> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(offset, buf)
    }
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn name(&self) -> String {
        (**self).name()
    }
}

/// Checks that `offset..offset + len` lies within `size`.
pub fn check_range(
    name: impl FnOnce() -> String,
    offset: u64,
    len: usize,
    size: u64,
) -> Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfBounds {
            source_name: name(),
            offset,
            len,
            size,
        }),
    }
}

/// In-memory bytes as a source (tests, small images, snapshot copies).
impl ReadAt for [u8] {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(|| "<memory>".into(), offset, buf.len(), self.len() as u64)?;
        let start = offset as usize;
        buf.copy_from_slice(&self[start..start + buf.len()]);
        Ok(())
    }
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn name(&self) -> String {
        "<memory>".into()
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.as_slice().read_at(offset, buf)
    }
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn name(&self) -> String {
        "<memory>".into()
    }
}

/// A host file read with `pread`; its size is fixed when opened.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    path: PathBuf,
    len: u64,
}

impl FileSource {
    /// Opens `path` read-only.
    pub fn open(path: impl AsRef<Path>) -> Result<FileSource> {
        let path = path.as_ref();
        Self::open_named(path, path)
    }

    /// Opens `open` (a resolved path) read-only, naming it `path` in errors.
    pub(crate) fn open_named(open: &Path, path: &Path) -> Result<FileSource> {
        let path = path.to_path_buf();
        let io = |source| Error::Io {
            path: path.clone(),
            offset: 0,
            source,
        };
        let mut file = File::open(open).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        let len = if meta.file_type().is_block_device() {
            // A block device (a VM's LVM volume, say) reports 0 in its metadata; its size is
            // where a seek to the end lands.
            std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(io)?
        } else {
            meta.len()
        };
        Ok(FileSource { file, path, len })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ReadAt for FileSource {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(|| self.name(), offset, buf.len(), self.len)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                offset,
                source,
            })
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// A sub-range of another source (a partition of a disk, a file system in an image).
#[derive(Debug, Clone)]
pub struct Slice<R> {
    inner: R,
    start: u64,
    len: u64,
    label: String,
}

impl<R: ReadAt> Slice<R> {
    /// The bytes `start..start + len` of `inner`; fails when that range is not inside it.
    pub fn new(inner: R, start: u64, len: u64, label: impl Into<String>) -> Result<Slice<R>> {
        let label = label.into();
        match start.checked_add(len) {
            Some(end) if end <= inner.len() => Ok(Slice {
                inner,
                start,
                len,
                label,
            }),
            _ => Err(Error::OutOfBounds {
                source_name: format!("{} ({label})", inner.name()),
                offset: start,
                len: usize::try_from(len).unwrap_or(usize::MAX),
                size: inner.len(),
            }),
        }
    }

    /// Where the slice starts in its source.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The source it slices.
    pub fn inner(&self) -> &R {
        &self.inner
    }
}

impl<R: ReadAt> ReadAt for Slice<R> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(|| self.name(), offset, buf.len(), self.len)?;
        self.inner.read_at(self.start + offset, buf)
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn name(&self) -> String {
        format!("{} ({})", self.inner.name(), self.label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_bound_reads() {
        let data: Vec<u8> = (0..=255u8).collect();
        let s = Slice::new(data, 16, 32, "p1").unwrap();
        let mut b = [0u8; 4];
        s.read_at(0, &mut b).unwrap();
        assert_eq!(b, [16, 17, 18, 19]);
        assert!(s.read_at(30, &mut b).is_err());
        assert!(s.read_at(u64::MAX - 1, &mut b).is_err());
        assert!(Slice::new(vec![0u8; 10], 5, 6, "x").is_err());
        assert!(Slice::new(vec![0u8; 10], u64::MAX, 2, "x").is_err());
    }
}
