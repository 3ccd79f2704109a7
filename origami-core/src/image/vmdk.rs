//! VMDK hosted sparse extents, read-only: `monolithicSparse` and `streamOptimized` images
//! whose one extent lives in the same file as its descriptor.
//!
//! A guest offset goes through the grain directory (read whole at open, bounded by the file
//! and by a 32 MiB cap) and a grain table (a few cached) to a grain: data in the file, a
//! zlib-compressed grain behind a marker (`streamOptimized`), a zero grain, or unallocated
//! (zeros). Runs of grains that are contiguous in the file are read with one `pread`.
//!
//! Extents named by a separate descriptor file (split and flat images) are read by
//! `vmdk_descriptor`, through [`crate::Image::open`].
//!
//! Limits: images with a parent (differencing, `parentCID` other than `ffffffff`) and ESX
//! `COWD` extents are refused with [`Error::Unsupported`] / [`Error::UnsupportedFormat`].

use std::sync::{Arc, Mutex, MutexGuard};

use flate2::{Decompress, FlushDecompress};

use crate::bytes::{le32, le64};
use crate::error::{Error, Result};
use crate::read::{check_range, ReadAt};

use super::vmdk_descriptor::MAX_DESCRIPTOR;

/// The four bytes a sparse extent starts with.
pub const VMDK_MAGIC: [u8; 4] = *b"KDMV";

const SECTOR: u64 = 512;
const GD_AT_END: u64 = u64::MAX;
const FLAG_COMPRESSED: u32 = 1 << 16;
const MAX_GD_BYTES: u64 = 32 << 20;
/// 1 MiB grains at most (VMware writes 64 KiB).
const MAX_GRAIN_SECTORS: u64 = 2048;
const MAX_GTES: u32 = 1 << 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Cache entries are replaced whole: a poisoned lock still guards consistent data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Grain {
    Data(u64),
    Zero,
    Compressed(u64),
}

/// A VMDK sparse extent read through any [`ReadAt`].
pub struct VmdkImage {
    file: Box<dyn ReadAt>,
    capacity: u64,
    grain: u64,
    gtes: u32,
    gd: Vec<u32>,
    compressed: bool,
    tables: Mutex<Vec<(u64, Arc<[u32]>)>>,
    grains: Mutex<Vec<(u64, Box<[u8]>)>>,
}

impl std::fmt::Debug for VmdkImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmdkImage")
            .field("file", &self.file.name())
            .field("capacity", &self.capacity)
            .field("grain", &self.grain)
            .field("compressed", &self.compressed)
            .finish_non_exhaustive()
    }
}

impl VmdkImage {
    /// Opens the sparse extent held by `source`, checking its header, descriptor and grain
    /// directory.
    pub fn from_source(source: impl ReadAt + 'static) -> Result<VmdkImage> {
        Self::from_boxed(Box::new(source))
    }

    /// [`VmdkImage::from_source`] for an already boxed source.
    pub fn from_boxed(file: Box<dyn ReadAt>) -> Result<VmdkImage> {
        Self::open_sparse(file, false)
    }

    /// A sparse extent named by a separate descriptor file: its own embedded descriptor,
    /// if any, is not consulted (the naming descriptor is the one that counts).
    pub(crate) fn extent_from_boxed(file: Box<dyn ReadAt>) -> Result<VmdkImage> {
        Self::open_sparse(file, true)
    }

    fn open_sparse(file: Box<dyn ReadAt>, as_extent: bool) -> Result<VmdkImage> {
        let corrupt = |offset: u64, reason: String| Error::Corrupt {
            source_name: file.name(),
            offset,
            reason,
        };
        let unsupported = |offset: u64, feature: String| Error::Unsupported {
            source_name: file.name(),
            offset,
            feature,
        };
        let len = file.len();
        if len < SECTOR {
            return Err(corrupt(0, "too short for a VMDK header".into()));
        }
        let mut h = [0u8; 512];
        file.read_at(0, &mut h)?;
        if h[..4] != VMDK_MAGIC {
            return Err(corrupt(0, "not a VMDK sparse extent (bad magic)".into()));
        }
        let mut gd_offset = le64(&h, 56);
        if gd_offset == GD_AT_END {
            // streamOptimized: the real header is the footer, 1024 bytes before the end.
            if len < 3 * SECTOR {
                return Err(corrupt(
                    56,
                    "grain directory at the end, but no footer".into(),
                ));
            }
            let mut footer = [0u8; 512];
            file.read_at(len - 1024, &mut footer)?;
            if footer[..4] != VMDK_MAGIC {
                return Err(corrupt(len - 1024, "footer without the VMDK magic".into()));
            }
            h = footer;
            gd_offset = le64(&h, 56);
            if gd_offset == GD_AT_END {
                return Err(corrupt(
                    len - 1024 + 56,
                    "footer's grain directory is also at the end".into(),
                ));
            }
        }
        let version = le32(&h, 4);
        if !(1..=3).contains(&version) {
            return Err(unsupported(4, format!("VMDK version {version}")));
        }
        let flags = le32(&h, 8);
        let capacity_sectors = le64(&h, 12);
        let grain_sectors = le64(&h, 20);
        if grain_sectors == 0
            || !grain_sectors.is_power_of_two()
            || grain_sectors > MAX_GRAIN_SECTORS
        {
            return Err(corrupt(
                20,
                format!("grain size of {grain_sectors} sectors"),
            ));
        }
        let gtes = le32(&h, 44);
        if gtes == 0 || gtes > MAX_GTES {
            return Err(corrupt(44, format!("{gtes} entries per grain table")));
        }
        let compressed = flags & FLAG_COMPRESSED != 0;
        if compressed && le32(&h, 77) & 0xffff != 1 {
            return Err(unsupported(
                77,
                "grain compression other than deflate".into(),
            ));
        }
        let capacity = capacity_sectors
            .checked_mul(SECTOR)
            .ok_or_else(|| corrupt(12, format!("capacity of {capacity_sectors} sectors")))?;

        // The embedded descriptor: only self-contained images without a parent are read.
        let (desc_at, desc_sectors) = (le64(&h, 28), le64(&h, 36));
        if desc_at != 0 && desc_sectors != 0 && !as_extent {
            let bytes = desc_sectors.saturating_mul(SECTOR).min(MAX_DESCRIPTOR);
            let start = desc_at.saturating_mul(SECTOR);
            if start.saturating_add(bytes) > len {
                return Err(corrupt(
                    28,
                    "descriptor lies past the end of the file".into(),
                ));
            }
            let mut text = vec![0u8; bytes as usize];
            file.read_at(start, &mut text)?;
            let text = String::from_utf8_lossy(&text);
            for line in text.lines().map(str::trim) {
                if let Some(v) = line.strip_prefix("parentCID=") {
                    if !v.trim().eq_ignore_ascii_case("ffffffff") {
                        return Err(unsupported(
                            start,
                            "VMDK with a parent (differencing image)".into(),
                        ));
                    }
                }
                if let Some(v) = line.strip_prefix("createType=") {
                    let t = v.trim().trim_matches('"');
                    if !matches!(t, "monolithicSparse" | "streamOptimized") {
                        return Err(unsupported(start, format!("VMDK create type {t:?}")));
                    }
                }
            }
        }

        let span = grain_sectors * SECTOR * u64::from(gtes);
        let entries = capacity.div_ceil(span);
        let gd_bytes = entries.saturating_mul(4);
        if gd_bytes > MAX_GD_BYTES {
            return Err(corrupt(
                12,
                format!("capacity needs a grain directory of {entries} entries"),
            ));
        }
        let gd_start = gd_offset.saturating_mul(SECTOR);
        if gd_start.saturating_add(gd_bytes) > len {
            return Err(corrupt(
                56,
                format!("grain directory of {entries} entries lies past the end of the file"),
            ));
        }
        // Bounded by MAX_GD_BYTES and the file's length.
        let mut raw = vec![0u8; gd_bytes as usize];
        file.read_at(gd_start, &mut raw)?;
        let gd = raw.chunks_exact(4).map(|c| le32(c, 0)).collect();
        Ok(VmdkImage {
            file,
            capacity,
            grain: grain_sectors * SECTOR,
            gtes,
            gd,
            compressed,
            tables: Mutex::new(Vec::new()),
            grains: Mutex::new(Vec::new()),
        })
    }

    fn corrupt(&self, offset: u64, reason: String) -> Error {
        Error::Corrupt {
            source_name: self.file.name(),
            offset,
            reason,
        }
    }

    fn table(&self, sector: u64) -> Result<Arc<[u32]>> {
        if let Some((_, t)) = lock(&self.tables).iter().find(|(s, _)| *s == sector) {
            return Ok(Arc::clone(t));
        }
        let mut raw = vec![0u8; self.gtes as usize * 4];
        self.file.read_at(sector.saturating_mul(SECTOR), &mut raw)?;
        let t: Arc<[u32]> = raw.chunks_exact(4).map(|c| le32(c, 0)).collect();
        let mut cache = lock(&self.tables);
        if cache.len() >= 16 {
            cache.remove(0);
        }
        cache.push((sector, Arc::clone(&t)));
        Ok(t)
    }

    fn grain_at(&self, g: u64) -> Result<Grain> {
        let gi = g / self.grain;
        let gd_index = gi / u64::from(self.gtes);
        let gt_sector = usize::try_from(gd_index)
            .ok()
            .and_then(|i| self.gd.get(i))
            .copied()
            .ok_or_else(|| self.corrupt(0, format!("no grain directory entry {gd_index}")))?;
        if gt_sector == 0 {
            return Ok(Grain::Zero);
        }
        let t = self.table(u64::from(gt_sector))?;
        let e = t
            .get((gi % u64::from(self.gtes)) as usize)
            .copied()
            .unwrap_or(0);
        Ok(match e {
            0 | 1 => Grain::Zero,
            s if self.compressed => Grain::Compressed(u64::from(s) * SECTOR),
            s => Grain::Data(u64::from(s) * SECTOR),
        })
    }

    /// Inflates the compressed grain whose marker is at `at` into `out` (one grain).
    fn inflate(&self, at: u64, out: &mut [u8]) -> Result<()> {
        let mut marker = [0u8; 12];
        self.file.read_at(at, &mut marker)?;
        let size = u64::from(le32(&marker, 8));
        if size > self.grain * 2 + 1024 {
            return Err(self.corrupt(at, format!("compressed grain of {size} bytes")));
        }
        let mut data = vec![0u8; size as usize];
        self.file.read_at(at + 12, &mut data)?;
        let mut z = Decompress::new(true);
        z.decompress(&data, out, FlushDecompress::Finish)
            .map_err(|e| self.corrupt(at, format!("deflate: {e}")))?;
        if z.total_out() != out.len() as u64 {
            return Err(self.corrupt(
                at,
                format!(
                    "grain inflates to {} bytes, not {}",
                    z.total_out(),
                    out.len()
                ),
            ));
        }
        Ok(())
    }

    fn read_compressed(&self, at: u64, within: usize, out: &mut [u8]) -> Result<()> {
        let range = within..within + out.len();
        if let Some((_, g)) = lock(&self.grains).iter().find(|(a, _)| *a == at) {
            if let Some(src) = g.get(range.clone()) {
                out.copy_from_slice(src);
                return Ok(());
            }
        }
        let mut grain = vec![0u8; self.grain as usize].into_boxed_slice();
        self.inflate(at, &mut grain)?;
        let src = grain
            .get(range)
            .ok_or_else(|| self.corrupt(at, "read past a grain".into()))?;
        out.copy_from_slice(src);
        let mut cache = lock(&self.grains);
        if cache.len() >= 16 {
            cache.remove(0);
        }
        cache.push((at, grain));
        Ok(())
    }
}

impl ReadAt for VmdkImage {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(|| self.name(), offset, buf.len(), self.capacity)?;
        let mut pos = 0usize;
        while pos < buf.len() {
            let g = offset + pos as u64;
            let within = g % self.grain;
            let mut run = (self.grain - within).min((buf.len() - pos) as u64);
            let kind = self.grain_at(g)?;
            // Extend over following grains of the same kind (contiguous in the file for data).
            while pos as u64 + run < buf.len() as u64 && !matches!(kind, Grain::Compressed(_)) {
                let next = self.grain_at(g + run)?;
                let same = match (kind, next) {
                    (Grain::Data(a), Grain::Data(b)) => b == a + within + run,
                    (Grain::Zero, Grain::Zero) => true,
                    _ => false,
                };
                if !same {
                    break;
                }
                run = (run + self.grain).min((buf.len() - pos) as u64);
            }
            let out = &mut buf[pos..pos + run as usize];
            match kind {
                Grain::Data(at) => self.file.read_at(at + within, out)?,
                Grain::Zero => out.fill(0),
                Grain::Compressed(at) if within == 0 && run == self.grain => {
                    self.inflate(at, out)?
                }
                Grain::Compressed(at) => self.read_compressed(at, within as usize, out)?,
            }
            pos += run as usize;
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.capacity
    }

    fn name(&self) -> String {
        self.file.name()
    }
}
