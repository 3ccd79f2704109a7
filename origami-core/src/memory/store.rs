//! The bytes under a memory source: a read-only map of a dump file, a shared map of a
//! running VM's RAM file, or an owned buffer (snapshots, in-memory parsing).
//!
//! A dump file is parsed through a `&[u8]` of its mapping, which is sound only while no
//! process modifies the file (see [`Store::map_file`]). A live RAM file is never seen
//! through a reference: reads copy out with volatile loads (`crate::shared`), and may be
//! torn by the guest's writes, which the owning [`super::MemoryDump`] reports through
//! `is_live`.
//!
//! Limits: a mapped file that another process truncates raises `SIGBUS` on access (this
//! process ends); QEMU never shrinks a RAM file while the VM runs.

use std::fs::File;
use std::path::Path;

use memmap2::{Mmap, MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::read::check_range;

/// Where a memory source's bytes live.
pub(crate) enum Store {
    /// A private read-only mapping of a dump file that does not change.
    Mapped(Mmap),
    /// A shared mapping of a file another process (QEMU) writes while we read.
    Live(MmapRaw),
    /// Bytes held in memory.
    Owned(Vec<u8>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Store::Mapped(_) => "Mapped",
            Store::Live(_) => "Live",
            Store::Owned(_) => "Owned",
        };
        write!(f, "Store::{kind}({} bytes)", self.len())
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        offset: 0,
        source,
    }
}

impl Store {
    /// Maps a dump file read-only. An empty file is held as an empty buffer (mapping zero
    /// bytes is not portable).
    pub(crate) fn map_file(path: &Path) -> Result<Store> {
        let file = File::open(path).map_err(|e| io(path, e))?;
        let len = file.metadata().map_err(|e| io(path, e))?.len();
        if len == 0 {
            return Ok(Store::Owned(Vec::new()));
        }
        // SAFETY: `Mmap` derefs to a `&[u8]` of the file, and Rust lets the compiler assume
        // the bytes behind a shared reference do not change while it lives. That holds only
        // if no process writes or truncates the file while it is mapped: a precondition of
        // `MemoryDump::open` (documented there) that cannot be checked here. It is the
        // usual contract of mapping a file; a dump file is written once and then only read.
        // A caller that cannot promise it reads the file into memory (`from_bytes`), or
        // opens a running VM's RAM with `open_live`, which forms no reference.
        let map = unsafe { MmapOptions::new().map(&file) }.map_err(|e| io(path, e))?;
        Ok(Store::Mapped(map))
    }

    /// Maps a running VM's RAM file shared, read-only, so the guest's writes show through.
    pub(crate) fn map_live(path: &Path) -> Result<Store> {
        let file = File::open(path).map_err(|e| io(path, e))?;
        let len = file.metadata().map_err(|e| io(path, e))?.len();
        if len == 0 {
            return Err(Error::BadDump {
                source_name: path.display().to_string(),
                offset: 0,
                reason: "the live memory file is empty".into(),
            });
        }
        let map = MmapOptions::new()
            .map_raw_read_only(&file)
            .map_err(|e| io(path, e))?;
        Ok(Store::Live(map))
    }

    /// The number of bytes.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Store::Mapped(m) => m.len() as u64,
            Store::Live(m) => m.len() as u64,
            Store::Owned(v) => v.len() as u64,
        }
    }

    /// True for a live (shared, guest-written) mapping.
    pub(crate) fn is_live(&self) -> bool {
        matches!(self, Store::Live(_))
    }

    /// The bytes as a slice, for the immutable stores (parsing headers). `None` when live:
    /// a `&[u8]` over memory another process writes would break Rust's aliasing rules.
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        match self {
            Store::Mapped(m) => Some(m),
            Store::Owned(v) => Some(v),
            Store::Live(_) => None,
        }
    }

    /// Copies `offset..offset + buf.len()` into `buf`; `name` names the source in errors.
    pub(crate) fn read(
        &self,
        name: &dyn Fn() -> String,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        check_range(name, offset, buf.len(), self.len())?;
        // In range and the store is addressable, so `offset` fits in usize.
        let start = usize::try_from(offset).map_err(|_| Error::OutOfBounds {
            source_name: name(),
            offset,
            len: buf.len(),
            size: self.len(),
        })?;
        match self {
            Store::Mapped(m) => copy_from(m, start, buf, name),
            Store::Owned(v) => copy_from(v, start, buf, name),
            Store::Live(m) => {
                // SAFETY: `start + buf.len() <= m.len()` was checked above, so the source range
                // lies inside the mapping, which lives as long as `self`; `buf` is our own
                // allocation, so they do not overlap. QEMU writes these bytes meanwhile; that
                // is sound because no reference to the mapping ever exists (`bytes()` gives
                // none for a live store) and the copy is made with volatile loads the
                // compiler cannot assume stable (see `crate::shared`). The copy may be torn.
                unsafe { crate::shared::copy_from_shared(m.as_ptr().add(start), buf) };
                Ok(())
            }
        }
    }
}

fn copy_from(src: &[u8], start: usize, buf: &mut [u8], name: &dyn Fn() -> String) -> Result<()> {
    match start
        .checked_add(buf.len())
        .and_then(|end| src.get(start..end))
    {
        Some(bytes) => {
            buf.copy_from_slice(bytes);
            Ok(())
        }
        None => Err(Error::OutOfBounds {
            source_name: name(),
            offset: start as u64,
            len: buf.len(),
            size: src.len() as u64,
        }),
    }
}
