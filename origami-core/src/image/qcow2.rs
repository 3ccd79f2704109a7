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
//! Limits: snapshots are not read (only the active layer), nothing is written, and the
//! refcount tables are never consulted (a read-only reader does not need them). Encrypted
//! images, external data files and unknown incompatible feature bits are refused with
//! [`Error::Unsupported`]. Every header field is checked against the file before it sizes an
//! allocation or steers a read.

use std::sync::{Arc, Mutex, MutexGuard};

use flate2::{Decompress, FlushDecompress};
use zstd::stream::raw::{Decoder as ZstdDecoder, InBuffer, Operation, OutBuffer};

use crate::bytes::{be32, be64};
use crate::error::{Error, Result};
use crate::read::{check_range, ReadAt};

/// The four bytes every qcow2 file starts with.
pub const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

/// qemu's own limit on the L1 table (`QCOW_MAX_L1_SIZE`): an image claiming more is refused
/// before anything is allocated.
const MAX_L1_BYTES: u64 = 32 << 20;
/// The longest backing file name qemu writes.
const MAX_BACKING_NAME: u32 = 1023;
const MIN_CLUSTER_BITS: u32 = 9;
const MAX_CLUSTER_BITS: u32 = 21;

const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_EXTERNAL_DATA: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 = INCOMPAT_DIRTY
    | INCOMPAT_CORRUPT
    | INCOMPAT_EXTERNAL_DATA
    | INCOMPAT_COMPRESSION
    | INCOMPAT_EXTENDED_L2;

const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_FULL_DISK_ENCRYPTION: u32 = 0x0537_be77;
const EXT_DATA_FILE: u32 = 0x4441_5441;

const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const OFLAG_COMPRESSED: u64 = 1 << 62;
const OFLAG_ZERO: u64 = 1;
const SUBCLUSTERS: u32 = 32;

/// How compressed clusters are compressed (the v3 header's compression type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Raw deflate (RFC 1951), qemu's `zlib` type.
    Deflate,
    /// Zstandard, which sets the compression-type incompatible feature bit.
    Zstd,
}

/// The parts of a qcow2 header a reader needs, already checked against the file.
#[derive(Debug, Clone)]
pub struct Qcow2Header {
    /// 2 or 3.
    pub version: u32,
    /// log2 of the cluster size (9..=21).
    pub cluster_bits: u32,
    /// The guest-visible (virtual) size in bytes.
    pub size: u64,
    /// Entries in the L1 table, as the header states it.
    pub l1_size: u32,
    /// Where the L1 table starts in the file.
    pub l1_table_offset: u64,
    /// The incompatible feature bits (v3; 0 for v2).
    pub incompatible_features: u64,
    /// How compressed clusters are compressed.
    pub compression: Compression,
    /// L2 entries are 128-bit with a subcluster bitmap.
    pub extended_l2: bool,
    /// The backing file name as stored (relative names are relative to the image's folder).
    pub backing_file: Option<String>,
    /// The backing file's format, from the header extension, when present (`raw`, `qcow2`).
    pub backing_format: Option<String>,
}

impl Qcow2Header {
    /// Reads and checks the header (and its extensions) at the start of `src`.
    pub fn read(src: &dyn ReadAt) -> Result<Qcow2Header> {
        let corrupt = |offset: u64, reason: String| Error::Corrupt {
            source_name: src.name(),
            offset,
            reason,
        };
        let unsupported = |offset: u64, feature: String| Error::Unsupported {
            source_name: src.name(),
            offset,
            feature,
        };
        let file_len = src.len();
        if file_len < 72 {
            return Err(corrupt(
                0,
                format!("{file_len} bytes is too short for a qcow2 header"),
            ));
        }
        let mut h = [0u8; 112];
        let head_len = file_len.min(h.len() as u64) as usize;
        src.read_at(0, &mut h[..head_len])?;
        if h[..4] != QCOW2_MAGIC {
            return Err(corrupt(0, "not a qcow2 file (bad magic)".into()));
        }
        let version = be32(&h, 4);
        if version != 2 && version != 3 {
            return Err(unsupported(4, format!("qcow2 version {version}")));
        }
        let backing_file_offset = be64(&h, 8);
        let backing_file_size = be32(&h, 16);
        let cluster_bits = be32(&h, 20);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(corrupt(
                20,
                format!("cluster_bits {cluster_bits} out of 9..=21"),
            ));
        }
        let cluster_size = 1u64 << cluster_bits;
        let size = be64(&h, 24);
        let crypt_method = be32(&h, 32);
        if crypt_method != 0 {
            let kind = match crypt_method {
                1 => "AES",
                2 => "LUKS",
                _ => "unknown",
            };
            return Err(unsupported(
                32,
                format!("encrypted image ({kind} encryption, crypt_method {crypt_method})"),
            ));
        }
        let l1_size = be32(&h, 36);
        let l1_table_offset = be64(&h, 40);

        let (incompatible_features, header_length, compression_byte) = if version == 3 {
            if head_len < 104 {
                return Err(corrupt(0, "file too short for a version 3 header".into()));
            }
            let hl = be32(&h, 100);
            if hl < 104 || u64::from(hl) > cluster_size || !hl.is_multiple_of(8) {
                return Err(corrupt(100, format!("header_length {hl} invalid")));
            }
            let ct = if hl > 104 { h[104] } else { 0 };
            (be64(&h, 72), hl, ct)
        } else {
            (0, 72, 0)
        };
        let unknown = incompatible_features & !INCOMPAT_KNOWN;
        if unknown != 0 {
            return Err(unsupported(
                72,
                format!("unknown incompatible feature bits {unknown:#x}"),
            ));
        }
        if incompatible_features & INCOMPAT_EXTERNAL_DATA != 0 {
            return Err(unsupported(
                72,
                "external data file (incompatible feature bit 2)".into(),
            ));
        }
        let compression = match compression_byte {
            0 => Compression::Deflate,
            1 => Compression::Zstd,
            t => return Err(unsupported(104, format!("compression type {t}"))),
        };
        if (compression != Compression::Deflate)
            != (incompatible_features & INCOMPAT_COMPRESSION != 0)
        {
            return Err(corrupt(
                72,
                "compression type and its incompatible feature bit disagree".into(),
            ));
        }
        let extended_l2 = incompatible_features & INCOMPAT_EXTENDED_L2 != 0;
        if extended_l2 && cluster_bits < 14 {
            return Err(corrupt(
                20,
                "extended L2 entries need clusters of 16 KiB or more".into(),
            ));
        }

        // Header extensions and the backing file name live in the first cluster.
        let area_len = file_len.min(cluster_size);
        let mut backing_format = None;
        let ext_end = if backing_file_offset != 0 {
            backing_file_offset.min(area_len)
        } else {
            area_len
        };
        let mut at = u64::from(header_length);
        // Each extension is at least 8 bytes and `at` only grows: the walk ends within the
        // first cluster.
        while at + 8 <= ext_end {
            let mut eh = [0u8; 8];
            src.read_at(at, &mut eh)?;
            let ty = be32(&eh, 0);
            let len = be32(&eh, 4);
            if ty == EXT_END {
                break;
            }
            let data_at = at + 8;
            let data_end = data_at + u64::from(len);
            if data_end > ext_end {
                return Err(corrupt(
                    at,
                    format!("header extension {ty:#x} of {len} bytes runs past the header area"),
                ));
            }
            match ty {
                EXT_BACKING_FORMAT => {
                    let mut v = vec![0u8; len as usize];
                    src.read_at(data_at, &mut v)?;
                    backing_format = Some(String::from_utf8_lossy(&v).into_owned());
                }
                EXT_FULL_DISK_ENCRYPTION => {
                    return Err(unsupported(at, "full disk encryption header".into()));
                }
                EXT_DATA_FILE => {
                    return Err(unsupported(at, "external data file".into()));
                }
                _ => {}
            }
            at = data_end.div_ceil(8) * 8;
        }

        let backing_file = if backing_file_offset != 0 {
            if backing_file_size == 0 || backing_file_size > MAX_BACKING_NAME {
                return Err(corrupt(
                    16,
                    format!("backing file name of {backing_file_size} bytes"),
                ));
            }
            match backing_file_offset.checked_add(u64::from(backing_file_size)) {
                Some(end) if end <= area_len => {}
                _ => {
                    return Err(corrupt(
                        8,
                        "backing file name lies outside the first cluster".into(),
                    ))
                }
            }
            let mut v = vec![0u8; backing_file_size as usize];
            src.read_at(backing_file_offset, &mut v)?;
            Some(String::from_utf8(v).map_err(|_| {
                corrupt(backing_file_offset, "backing file name is not UTF-8".into())
            })?)
        } else {
            None
        };
        Ok(Qcow2Header {
            version,
            cluster_bits,
            size,
            l1_size,
            l1_table_offset,
            incompatible_features,
            compression,
            extended_l2,
            backing_file,
            backing_format,
        })
    }
}

/// Where a run of guest bytes comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extent {
    /// Stored in the file at this offset.
    Data(u64),
    /// Reads as zeros.
    Zero,
    /// Not allocated here: the backing image's bytes, or zeros.
    Unallocated,
    /// A compressed cluster: its L2 entry.
    Compressed(u64),
}

/// A bounded cache of L2 tables, keyed by their file offset.
struct L2Cache {
    tables: Vec<(u64, Arc<[u64]>)>,
    next: usize,
    capacity: usize,
}

/// A bounded cache of decompressed clusters, keyed by their L2 entry; slots are reused, so a
/// warm cache does not allocate.
struct ClusterCache {
    slots: Vec<(u64, Box<[u8]>)>,
    next: usize,
    capacity: usize,
}

/// Per-thread decompression state, pooled so reads do not allocate it each time.
struct Decompressor {
    input: Vec<u8>,
    cluster: Box<[u8]>,
    inflate: Decompress,
    zstd: Option<ZstdDecoder<'static>>,
}

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

        let l2_capacity = ((32u64 << 20) >> cluster_bits).clamp(4, 64) as usize;
        let cluster_capacity = ((8u64 << 20) >> cluster_bits).clamp(2, 64) as usize;
        Ok(Qcow2Image {
            file,
            l1,
            cluster_bits,
            cluster_size,
            l2_bits,
            l2: Mutex::new(L2Cache {
                tables: Vec::new(),
                next: 0,
                capacity: l2_capacity,
            }),
            clusters: Mutex::new(ClusterCache {
                slots: Vec::new(),
                next: 0,
                capacity: cluster_capacity,
            }),
            pool: Mutex::new(Vec::new()),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            backing: None,
            header,
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

    /// The L2 table at `offset`, from the cache or the file.
    fn l2_table(&self, offset: u64) -> Result<Arc<[u64]>> {
        {
            let cache = lock(&self.l2);
            if let Some((_, t)) = cache.tables.iter().find(|(o, _)| *o == offset) {
                return Ok(Arc::clone(t));
            }
        }
        // Read outside the lock, so other threads keep reading cached tables.
        let mut raw = vec![0u8; self.cluster_size as usize];
        self.file.read_at(offset, &mut raw)?;
        let table: Arc<[u64]> = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
        let mut cache = lock(&self.l2);
        if cache.tables.len() < cache.capacity {
            cache.tables.push((offset, Arc::clone(&table)));
        } else {
            let slot = cache.next;
            cache.next = (slot + 1) % cache.capacity;
            if let Some(s) = cache.tables.get_mut(slot) {
                *s = (offset, Arc::clone(&table));
            }
        }
        Ok(table)
    }

    /// The L2 entry (and its subcluster bitmap, 0 without extended L2) of guest cluster `gc`.
    fn l2_entry(&self, gc: u64, table: &mut Option<(u64, Arc<[u64]>)>) -> Result<(u64, u64)> {
        let l1_index = gc >> self.l2_bits;
        let l1e = usize::try_from(l1_index)
            .ok()
            .and_then(|i| self.l1.get(i))
            .copied()
            .ok_or_else(|| {
                self.corrupt(
                    self.header.l1_table_offset,
                    format!("no L1 entry {l1_index}"),
                )
            })?;
        let l2_offset = l1e & OFFSET_MASK;
        if l2_offset == 0 {
            return Ok((0, 0));
        }
        if !l2_offset.is_multiple_of(self.cluster_size) {
            return Err(self.corrupt(
                self.header.l1_table_offset + l1_index * 8,
                format!("L2 table offset {l2_offset:#x} is not cluster-aligned"),
            ));
        }
        let t = match table {
            Some((o, t)) if *o == l2_offset => Arc::clone(t),
            _ => {
                let t = self.l2_table(l2_offset)?;
                *table = Some((l2_offset, Arc::clone(&t)));
                t
            }
        };
        let index = (gc & ((1u64 << self.l2_bits) - 1)) as usize;
        if self.header.extended_l2 {
            let e = t.get(index * 2).copied().unwrap_or(0);
            let b = t.get(index * 2 + 1).copied().unwrap_or(0);
            Ok((e, b))
        } else {
            Ok((t.get(index).copied().unwrap_or(0), 0))
        }
    }

    /// Where guest offset `g` comes from, and how many bytes from `g` share that source
    /// within its cluster (or subcluster run).
    fn classify(&self, g: u64, table: &mut Option<(u64, Arc<[u64]>)>) -> Result<(Extent, u64)> {
        let gc = g >> self.cluster_bits;
        let within = g & (self.cluster_size - 1);
        let to_cluster_end = self.cluster_size - within;
        let (entry, bitmap) = self.l2_entry(gc, table)?;
        if entry & OFLAG_COMPRESSED != 0 {
            return Ok((Extent::Compressed(entry), to_cluster_end));
        }
        let host = entry & OFFSET_MASK;
        let entry_at = || {
            // For error messages: the L1 entry's place is exact; the L2 entry is named by cluster.
            self.header.l1_table_offset + (gc >> self.l2_bits) * 8
        };
        if host != 0 && !host.is_multiple_of(self.cluster_size) {
            return Err(self.corrupt(
                entry_at(),
                format!("guest cluster {gc}: data offset {host:#x} is not cluster-aligned"),
            ));
        }
        if !self.header.extended_l2 {
            let extent = if self.header.version >= 3 && entry & OFLAG_ZERO != 0 {
                Extent::Zero
            } else if host == 0 {
                Extent::Unallocated
            } else {
                Extent::Data(host + within)
            };
            return Ok((extent, to_cluster_end));
        }
        // Extended L2: 32 subclusters; bit i allocated, bit 32 + i reads as zeros.
        let sc_bits = self.cluster_bits - 5;
        let sc_of = |x: u64| (x >> sc_bits) as u32;
        let status = |i: u32| -> Result<Extent> {
            let alloc = bitmap >> i & 1 != 0;
            let zero = bitmap >> (32 + i) & 1 != 0;
            match (alloc, zero) {
                (true, true) => Err(self.corrupt(
                    entry_at(),
                    format!("guest cluster {gc}: subcluster {i} both allocated and zero"),
                )),
                (true, false) if host == 0 => Err(self.corrupt(
                    entry_at(),
                    format!(
                        "guest cluster {gc}: subcluster {i} allocated in an unallocated cluster"
                    ),
                )),
                (true, false) => Ok(Extent::Data(host)),
                (false, true) => Ok(Extent::Zero),
                (false, false) => Ok(Extent::Unallocated),
            }
        };
        let first = sc_of(within);
        let kind = status(first)?;
        let mut last = first;
        while last + 1 < SUBCLUSTERS && status(last + 1)? == kind {
            last += 1;
        }
        let run_end = u64::from(last + 1) << sc_bits;
        let extent = match kind {
            Extent::Data(h) => Extent::Data(h + within),
            k => k,
        };
        Ok((extent, run_end - within))
    }

    /// The extent at `g`, extended over following clusters of the same kind (contiguous in
    /// the file for data), up to `max` bytes.
    fn extent(
        &self,
        g: u64,
        max: u64,
        table: &mut Option<(u64, Arc<[u64]>)>,
    ) -> Result<(Extent, u64)> {
        let (kind, mut run) = self.classify(g, table)?;
        if matches!(kind, Extent::Compressed(_)) {
            return Ok((kind, run.min(max)));
        }
        while run < max {
            let (next, more) = self.classify(g + run, table)?;
            let same = match (kind, next) {
                (Extent::Data(a), Extent::Data(b)) => b == a + run,
                (Extent::Zero, Extent::Zero) | (Extent::Unallocated, Extent::Unallocated) => true,
                _ => false,
            };
            if !same {
                break;
            }
            run += more;
        }
        Ok((kind, run.min(max)))
    }

    fn read_backing(&self, g: u64, out: &mut [u8]) -> Result<()> {
        match &self.backing {
            Some(b) => {
                // A backing image shorter than this one reads as zeros past its end.
                let avail = b.len().saturating_sub(g).min(out.len() as u64) as usize;
                let (head, tail) = out.split_at_mut(avail);
                if !head.is_empty() {
                    b.read_at(g, head)?;
                }
                tail.fill(0);
                Ok(())
            }
            None if self.header.backing_file.is_some() => Err(Error::BackingChain {
                path: self.file.name().into(),
                reason: format!(
                    "backing file {:?} is not attached; cannot read guest offset {g:#x}",
                    self.header.backing_file.as_deref().unwrap_or_default()
                ),
            }),
            None => {
                out.fill(0);
                Ok(())
            }
        }
    }

    /// Decompresses the cluster of L2 entry `entry` into `out` (one cluster long).
    fn decompress(&self, entry: u64, out: &mut [u8], d: &mut Decompressor) -> Result<()> {
        let shift = 62 - (self.cluster_bits - 8);
        let host = entry & ((1u64 << shift) - 1);
        let sectors = ((entry >> shift) & ((1u64 << (self.cluster_bits - 8)) - 1)) + 1;
        let csize = (sectors * 512).saturating_sub(host & 511);
        let file_len = self.file.len();
        if host >= file_len {
            return Err(self.corrupt(
                host,
                "compressed cluster starts past the end of the file".into(),
            ));
        }
        // The last compressed cluster may end short of its sector-rounded size.
        let csize = csize.min(file_len - host) as usize;
        d.input.resize(csize, 0);
        self.file.read_at(host, &mut d.input)?;
        let bad = |why: String| Error::Corrupt {
            source_name: self.file.name(),
            offset: host,
            reason: why,
        };
        match self.header.compression {
            Compression::Deflate => {
                d.inflate.reset(false);
                d.inflate
                    .decompress(&d.input, out, FlushDecompress::Finish)
                    .map_err(|e| bad(format!("deflate: {e}")))?;
                if d.inflate.total_out() != out.len() as u64 {
                    return Err(bad(format!(
                        "deflate stream gives {} bytes, not a cluster of {}",
                        d.inflate.total_out(),
                        out.len()
                    )));
                }
            }
            Compression::Zstd => {
                let dec = match &mut d.zstd {
                    Some(z) => z,
                    slot @ None => {
                        slot.insert(ZstdDecoder::new().map_err(|e| bad(format!("zstd: {e}")))?)
                    }
                };
                dec.reinit().map_err(|e| bad(format!("zstd: {e}")))?;
                let mut inb = InBuffer::around(&d.input);
                let mut outb = OutBuffer::around(&mut *out);
                // As qemu does: feed until the cluster is full; the sector padding after the
                // frame is never parsed. Every turn must make progress, so this ends.
                while outb.pos() < outb.capacity() {
                    let (ip, op) = (inb.pos(), outb.pos());
                    dec.run(&mut inb, &mut outb)
                        .map_err(|e| bad(format!("zstd: {e}")))?;
                    if inb.pos() == ip && outb.pos() == op {
                        break;
                    }
                }
                if outb.pos() != outb.capacity() {
                    return Err(bad(format!(
                        "zstd frame gives {} bytes, not a cluster of {}",
                        outb.pos(),
                        outb.capacity()
                    )));
                }
            }
        }
        Ok(())
    }

    fn take_decompressor(&self) -> Decompressor {
        lock(&self.pool).pop().unwrap_or_else(|| Decompressor {
            input: Vec::new(),
            cluster: vec![0u8; self.cluster_size as usize].into_boxed_slice(),
            inflate: Decompress::new(false),
            zstd: None,
        })
    }

    /// Sets how many threads may inflate the compressed clusters of one large read (1: only
    /// the caller's). The default is the host's parallelism, at most 4.
    pub fn with_decompress_threads(mut self, threads: usize) -> Qcow2Image {
        self.threads = threads.max(1);
        self
    }

    /// Inflates whole clusters `(L2 entry, offset in buf)` straight into `buf`, splitting them
    /// among threads when there are enough to pay for it (qemu, too, inflates in a pool).
    fn inflate_whole_clusters(&self, buf: &mut [u8], whole: &[(u64, usize)]) -> Result<()> {
        let cs = self.cluster_size as usize;
        // Cut `buf` into the clusters' disjoint slices, in order.
        let mut jobs: Vec<(u64, &mut [u8])> = Vec::with_capacity(whole.len());
        let mut rest: &mut [u8] = buf;
        let mut consumed = 0usize;
        for &(entry, start) in whole {
            let tail = std::mem::take(&mut rest);
            let skip = start.checked_sub(consumed).filter(|s| s + cs <= tail.len());
            let Some(skip) = skip else {
                return Err(self.corrupt(0, "compressed clusters out of order".into()));
            };
            let (chunk, after) = tail[skip..].split_at_mut(cs);
            jobs.push((entry, chunk));
            rest = after;
            consumed = start + cs;
        }
        let threads = self.threads.min(jobs.len() / 4).max(1);
        let run = |part: &mut [(u64, &mut [u8])]| -> Result<()> {
            let mut d = self.take_decompressor();
            let r = part
                .iter_mut()
                .try_for_each(|(entry, out)| self.decompress(*entry, out, &mut d));
            lock(&self.pool).push(d);
            r
        };
        if threads == 1 {
            return run(&mut jobs);
        }
        let per = jobs.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let mut parts = jobs.chunks_mut(per);
            let mine = parts.next();
            let handles: Vec<_> = parts.map(|p| scope.spawn(|| run(p))).collect();
            let mut result = mine.map_or(Ok(()), &run);
            for h in handles {
                let r = h.join().unwrap_or_else(|_| {
                    Err(self.corrupt(0, "a decompression thread panicked".into()))
                });
                if result.is_ok() {
                    result = r;
                }
            }
            result
        })
    }

    fn read_compressed(&self, g: u64, entry: u64, out: &mut [u8]) -> Result<()> {
        let within = (g & (self.cluster_size - 1)) as usize;
        let mut d = self.take_decompressor();
        let result = if within == 0 && out.len() as u64 == self.cluster_size {
            // The whole cluster is wanted: inflate straight into the caller's buffer.
            self.decompress(entry, out, &mut d)
        } else {
            self.read_compressed_cached(entry, within, out, &mut d)
        };
        lock(&self.pool).push(d);
        result
    }

    fn read_compressed_cached(
        &self,
        entry: u64,
        within: usize,
        out: &mut [u8],
        d: &mut Decompressor,
    ) -> Result<()> {
        let range = within..within + out.len();
        {
            let cache = lock(&self.clusters);
            if let Some((_, data)) = cache.slots.iter().find(|(e, _)| *e == entry) {
                if let Some(src) = data.get(range.clone()) {
                    out.copy_from_slice(src);
                    return Ok(());
                }
            }
        }
        let mut cluster = std::mem::take(&mut d.cluster);
        let r = self.decompress(entry, &mut cluster, d);
        d.cluster = cluster;
        r?;
        let src = d
            .cluster
            .get(range)
            .ok_or_else(|| self.corrupt(0, "read past a compressed cluster".into()))?;
        out.copy_from_slice(src);
        let mut cache = lock(&self.clusters);
        if cache.slots.len() < cache.capacity {
            cache.slots.push((entry, d.cluster.clone()));
        } else {
            let slot = cache.next;
            cache.next = (slot + 1) % cache.capacity;
            if let Some((e, data)) = cache.slots.get_mut(slot) {
                *e = entry;
                data.copy_from_slice(&d.cluster);
            }
        }
        Ok(())
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
        Ok(())
    }

    fn len(&self) -> u64 {
        self.header.size
    }

    fn name(&self) -> String {
        self.file.name()
    }
}
