//! qcow2 (versions 2 and 3), read-only: the guest-visible bytes of a QEMU copy-on-write image.
//!
//! A guest offset is looked up through the L1 table (read whole at open, bounded by qemu's own
//! 32 MiB limit) and an L2 table (cached, a bounded number of tables); a cluster is then data
//! in the file, zeros, compressed (deflate, or zstd when the header's compression type says
//! so) or unallocated, which reads as the backing image's bytes or as zeros. Extended L2
//! entries (subclusters) are read. Runs of clusters that are contiguous in the file are read
//! with one `pread`, and decompressed clusters are kept in a small cache, so callers reading
//! 4 KiB at a time do not inflate a 64 KiB cluster sixteen times; a large read spanning many
//! compressed clusters inflates them on a few scoped threads, as qemu does in its pool.
//!
//! An image that something writes while it is read (a running VM's disk) is noticed when
//! its header, L1 or L2 tables change: reads fail with [`Error::ChangedWhileRead`], and
//! [`Qcow2Image::check_unchanged`] checks everything read so far (see `changes.rs` for what
//! it cannot see).
//!
//! Limits: snapshots are not read (only the active layer), nothing is written, and the
//! refcount tables are never consulted (a read-only reader does not need them). Encrypted
//! images, external data files and unknown incompatible feature bits are refused with
//! [`Error::Unsupported`]. Every header field is checked against the file before it sizes an
//! allocation or steers a read.

mod backing;
mod bitmap;
mod changes;
mod compressed;
mod header;
mod tables;

use std::sync::{Mutex, MutexGuard};

use crate::bytes::be64;
use crate::error::{Error, Result};
use crate::read::{check_range, ReadAt};

pub use bitmap::BitmapInfo;
use changes::Seen;
use compressed::{ClusterCache, Decompressor};
pub use header::{Compression, Qcow2Header};
use tables::{Extent, L2Cache};

/// The four bytes every qcow2 file starts with.
pub const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

/// qemu's own limit on the L1 table (`QCOW_MAX_L1_SIZE`): an image claiming more is refused
/// before anything is allocated.
const MAX_L1_BYTES: u64 = 32 << 20;

/// A qcow2 image read through any [`ReadAt`] (a file, or bytes in memory).
pub struct Qcow2Image {
    file: Box<dyn ReadAt>,
    header: Qcow2Header,
    backing: Option<Box<dyn ReadAt>>,
    l1: Vec<u64>,
    cluster_bits: u32,
    cluster_size: u64,
    /// log2 of the entries per L2 table.
    l2_bits: u32,
    l2: Mutex<L2Cache>,
    clusters: Mutex<ClusterCache>,
    pool: Mutex<Vec<Decompressor>>,
    threads: usize,
    /// The metadata as first read, to notice a writer (see `changes`).
    seen: Seen,
}

impl std::fmt::Debug for Qcow2Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2Image")
            .field("file", &self.file.name())
            .field("header", &self.header)
            .field("backing", &self.backing.as_ref().map(|b| b.name()))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a cache lock cannot leave it inconsistent in a way that matters
    // (entries are replaced whole), so a poisoned lock is simply taken over.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Qcow2Image {
    /// Opens the qcow2 image held by `source`, reading its header and L1 table.
    ///
    /// A backing file named in the header is not opened here (this has no file system to
    /// look in): attach it with [`Qcow2Image::with_backing`], or reads of unallocated
    /// clusters fail with [`Error::BackingChain`]. [`crate::Image::open`] does this.
    pub fn from_source(source: impl ReadAt + 'static) -> Result<Qcow2Image> {
        Self::from_boxed(Box::new(source))
    }

    /// [`Qcow2Image::from_source`] for an already boxed source.
    pub fn from_boxed(file: Box<dyn ReadAt>) -> Result<Qcow2Image> {
        let header = Qcow2Header::read(&*file)?;
        let header_bytes = Seen::read_header(&*file)?;
        let corrupt = |offset: u64, reason: String| Error::Corrupt {
            source_name: file.name(),
            offset,
            reason,
        };
        let cluster_bits = header.cluster_bits;
        let cluster_size = 1u64 << cluster_bits;
        let entry_bits = if header.extended_l2 { 4 } else { 3 };
        let l2_bits = cluster_bits - entry_bits;
        // Bytes of guest space one L1 entry maps: at most 2^(21 + 18).
        let l1_span_bits = cluster_bits + l2_bits;
        let needed = header.size.div_ceil(1u64 << l1_span_bits);
        if needed.saturating_mul(8) > MAX_L1_BYTES {
            return Err(corrupt(
                24,
                format!(
                    "virtual size {} needs an L1 table of {needed} entries, over qemu's limit of {}",
                    header.size,
                    MAX_L1_BYTES / 8
                ),
            ));
        }
        if needed > u64::from(header.l1_size) {
            return Err(corrupt(
                36,
                format!(
                    "L1 table has {} entries, the virtual size needs {needed}",
                    header.l1_size
                ),
            ));
        }
        if !header.l1_table_offset.is_multiple_of(cluster_size) {
            return Err(corrupt(
                40,
                format!(
                    "L1 table offset {:#x} is not cluster-aligned",
                    header.l1_table_offset
                ),
            ));
        }
        let l1_bytes = needed * 8;
        match header.l1_table_offset.checked_add(l1_bytes) {
            Some(end) if end <= file.len() => {}
            _ => {
                return Err(corrupt(
                    40,
                    format!(
                        "L1 table of {needed} entries at {:#x} lies past the end of the file",
                        header.l1_table_offset
                    ),
                ))
            }
        }
        // `needed` is bounded by the file length and by MAX_L1_BYTES: safe to allocate.
        let mut raw = vec![0u8; l1_bytes as usize];
        file.read_at(header.l1_table_offset, &mut raw)?;
        let l1: Vec<u64> = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
        let seen = Seen::new(header_bytes, &raw);

        let l2_capacity = ((32u64 << 20) >> cluster_bits).clamp(4, 64) as usize;
        let cluster_capacity = ((8u64 << 20) >> cluster_bits).clamp(2, 64) as usize;
        Ok(Qcow2Image {
            file,
            l1,
            cluster_bits,
            cluster_size,
            l2_bits,
            l2: Mutex::new(L2Cache::new(l2_capacity)),
            clusters: Mutex::new(ClusterCache::new(cluster_capacity)),
            pool: Mutex::new(Vec::new()),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            backing: None,
            header,
            seen,
        })
    }

    /// Attaches the backing image that unallocated clusters read from.
    pub fn with_backing(mut self, backing: Box<dyn ReadAt>) -> Qcow2Image {
        self.backing = Some(backing);
        self
    }

    /// The checked header.
    pub fn header(&self) -> &Qcow2Header {
        &self.header
    }

    /// The cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        self.cluster_size
    }

    fn corrupt(&self, offset: u64, reason: String) -> Error {
        Error::Corrupt {
            source_name: self.file.name(),
            offset,
            reason,
        }
    }
}

impl ReadAt for Qcow2Image {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(|| self.name(), offset, buf.len(), self.header.size)?;
        let mut table = None;
        // Whole compressed clusters are inflated after the walk, several at a time.
        let mut whole: Vec<(u64, usize)> = Vec::new();
        let mut pos = 0usize;
        while pos < buf.len() {
            let g = offset + pos as u64;
            let remaining = (buf.len() - pos) as u64;
            let (kind, run) = self.extent(g, remaining, &mut table)?;
            // `run` is at least one byte (a cluster or subcluster always has one left).
            let run = run.max(1) as usize;
            let out = &mut buf[pos..pos + run];
            match kind {
                Extent::Data(host) => self.file.read_at(host, out)?,
                Extent::Zero => out.fill(0),
                Extent::Unallocated => self.read_backing(g, out)?,
                Extent::Compressed(entry) if run as u64 == self.cluster_size => {
                    whole.push((entry, pos))
                }
                Extent::Compressed(entry) => self.read_compressed(g, entry, out)?,
            }
            pos += run;
        }
        if !whole.is_empty() {
            self.inflate_whole_clusters(buf, &whole)?;
        }
        // A writer (a running QEMU) moves metadata: say so rather than mix two states.
        self.recheck_now_and_then()
    }

    fn len(&self) -> u64 {
        self.header.size
    }

    fn name(&self) -> String {
        self.file.name()
    }
}
