//! kdump-compressed dumps (makedumpfile's "diskdump" layout, which QEMU writes for
//! `dump-guest-memory -z` / `kdump-zlib` / `kdump-raw-zlib`): a header block, a sub-header
//! with the notes and `VMCOREINFO`, two page bitmaps, an array of 24-byte page descriptors
//! (one per dumped page, in page order), and the page data, each page zlib-compressed or
//! stored as is.
//!
//! Limits: zlib and uncompressed pages only (LZO, snappy and zstd pages are an error naming
//! the page); the flattened (`makedumpfile -F`) variant is not read. Every size from the
//! header is checked against the file before use; the bitmaps, the only per-page state
//! held in memory, lie in the file, so memory stays bounded by the file size. Decompressed
//! pages are cached in a small fixed cache keyed by their data offset (QEMU stores one
//! shared zero page for all zero pages).

use std::sync::{Arc, Mutex};

use flate2::{Decompress, FlushDecompress, Status};

use super::elf::MAX_NOTES_BYTES;
use super::notes::{cpu_states, parse_notes, vmcoreinfo_note, CpuState};
use super::segments::read_pieces;
use super::store::Store;
use super::vmcoreinfo::VmcoreInfo;
use super::PhysRange;
use crate::error::{Error, Result};

const DESC_SIZE: u64 = 24;
const ZLIB: u32 = 0x1;
const LZO: u32 = 0x2;
const SNAPPY: u32 = 0x4;
const ZSTD: u32 = 0x20;
const CACHE_SLOTS: usize = 64;

fn u32_at(b: &[u8], at: u64) -> Option<u32> {
    let at = usize::try_from(at).ok()?;
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: u64) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// A decompressed page and the data offset it was decompressed from (the cache key).
type CachedPage = (u64, Arc<[u8]>);

/// The pages of a kdump file: which are present, and where their descriptors are.
pub(crate) struct KdumpPages {
    page_size: u64,
    /// The second bitmap (pages dumped), as words; bit `pfn % 64` of word `pfn / 64`.
    bitmap: Vec<u64>,
    /// Set bits in all words before word `i`: the descriptor index of a page is its rank.
    rank: Vec<u64>,
    /// Pages the bitmap describes (`max_mapnr`, capped by the bitmap's size).
    pages: u64,
    desc_offset: u64,
    cache: Mutex<Vec<Option<CachedPage>>>,
}

impl std::fmt::Debug for KdumpPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KdumpPages")
            .field("page_size", &self.page_size)
            .field("pages", &self.pages)
            .field("desc_offset", &self.desc_offset)
            .finish_non_exhaustive()
    }
}

/// What a kdump file holds besides its pages.
pub(crate) struct Kdump {
    pub(crate) pages: KdumpPages,
    pub(crate) cpus: Vec<CpuState>,
    pub(crate) vmcoreinfo: Option<VmcoreInfo>,
}

/// Parses the header, sub-header, notes and bitmap of a kdump file held in `bytes`.
pub(crate) fn parse(bytes: &[u8], name: &dyn Fn() -> String) -> Result<Kdump> {
    let size = bytes.len() as u64;
    let bad = |offset: u64, reason: String| Error::BadDump {
        source_name: name(),
        offset,
        reason,
    };
    let short = |offset: u64| bad(offset, "kdump header truncated".into());
    let version = u32_at(bytes, 8).ok_or_else(|| short(8))?;
    let block_size = u64::from(u32_at(bytes, 428).ok_or_else(|| short(428))?);
    let sub_hdr_size = u64::from(u32_at(bytes, 432).ok_or_else(|| short(432))?);
    let bitmap_blocks = u64::from(u32_at(bytes, 436).ok_or_else(|| short(436))?);
    let mut max_mapnr = u64::from(u32_at(bytes, 440).ok_or_else(|| short(440))?);
    if !block_size.is_power_of_two() || !(4096..=65536).contains(&block_size) {
        return Err(bad(
            428,
            format!("block size {block_size} is not a page size"),
        ));
    }
    let sub = block_size;
    if version >= 6 {
        if let Some(m) = u64_at(bytes, sub + 96) {
            max_mapnr = m;
        }
    }
    // Notes (version >= 4) and VMCOREINFO text (version >= 3) from the sub-header.
    let region = |off_at: u64, size_at: u64, what: &str| -> Result<Option<&[u8]>> {
        let (Some(off), Some(len)) = (u64_at(bytes, sub + off_at), u64_at(bytes, sub + size_at))
        else {
            return Err(short(sub + off_at));
        };
        if len == 0 {
            return Ok(None);
        }
        if len > MAX_NOTES_BYTES {
            return Err(bad(
                sub + size_at,
                format!("{what} of {len} bytes is too large"),
            ));
        }
        let slice = usize::try_from(off)
            .ok()
            .zip(usize::try_from(off.saturating_add(len)).ok())
            .and_then(|(a, e)| bytes.get(a..e));
        match slice {
            Some(s) => Ok(Some(s)),
            None => Err(bad(
                sub + off_at,
                format!("{what} at {off:#x} ({len:#x} bytes) passes the end of the file"),
            )),
        }
    };
    let notes_bytes = if version >= 4 {
        region(48, 56, "note area")?
    } else {
        None
    };
    let vmcore_text = if version >= 3 {
        region(32, 40, "VMCOREINFO")?
    } else {
        None
    };
    let notes = notes_bytes.map(parse_notes).unwrap_or_default();
    let cpus = cpu_states(&notes);
    let vmcoreinfo = vmcoreinfo_note(&notes)
        .or(vmcore_text)
        .and_then(|t| VmcoreInfo::parse(t).ok());

    let blocks = |n: u64| n.checked_mul(block_size);
    let bitmap_at = blocks(1 + sub_hdr_size.min(u64::from(u32::MAX)))
        .ok_or_else(|| bad(432, "sub-header size overflows".into()))?;
    let bitmap_len =
        blocks(bitmap_blocks).ok_or_else(|| bad(436, "bitmap size overflows".into()))?;
    let desc_offset = bitmap_at
        .checked_add(bitmap_len)
        .filter(|&end| end <= size)
        .ok_or_else(|| {
            bad(
                bitmap_at,
                format!("bitmaps of {bitmap_len:#x} bytes pass the end of the file"),
            )
        })?;
    // The second half of the bitmap area is the "dumped pages" bitmap.
    let half = bitmap_len / 2;
    let second = bitmap_at + half;
    let pages = max_mapnr.min(half.saturating_mul(8));
    let words = pages.div_ceil(64);
    let mut bitmap = Vec::with_capacity(usize::try_from(words).unwrap_or(0));
    let mut rank = Vec::with_capacity(bitmap.capacity());
    let mut total = 0u64;
    for w in 0..words {
        let mut word = [0u8; 8];
        let at = second + w * 8;
        let n = usize::try_from((pages - w * 64).div_ceil(8).min(8)).unwrap_or(8);
        let src = usize::try_from(at)
            .ok()
            .and_then(|a| bytes.get(a..a.checked_add(n)?));
        let Some(src) = src else {
            return Err(short(at));
        };
        if let Some(dst) = word.get_mut(..n) {
            dst.copy_from_slice(src);
        }
        let mut value = u64::from_le_bytes(word);
        let valid = pages - w * 64;
        if valid < 64 {
            value &= (1u64 << valid) - 1;
        }
        rank.push(total);
        total += u64::from(value.count_ones());
        bitmap.push(value);
    }
    if total
        .checked_mul(DESC_SIZE)
        .and_then(|l| desc_offset.checked_add(l))
        .is_none_or(|end| end > size)
    {
        return Err(bad(
            desc_offset,
            format!("{total} page descriptors pass the end of the file"),
        ));
    }
    Ok(Kdump {
        pages: KdumpPages {
            page_size: block_size,
            bitmap,
            rank,
            pages,
            desc_offset,
            cache: Mutex::new(vec![None; CACHE_SLOTS]),
        },
        cpus,
        vmcoreinfo,
    })
}

impl KdumpPages {
    /// The descriptor index of page `pfn`, or `None` when the page is not in the dump.
    fn index(&self, pfn: u64) -> Option<u64> {
        if pfn >= self.pages {
            return None;
        }
        let w = usize::try_from(pfn / 64).ok()?;
        let word = *self.bitmap.get(w)?;
        let bit = pfn % 64;
        if word & (1 << bit) == 0 {
            return None;
        }
        let below = word & ((1u64 << bit) - 1);
        Some(self.rank.get(w)? + u64::from(below.count_ones()))
    }

    /// The page's decompressed bytes.
    fn page(
        &self,
        store: &Store,
        name: &dyn Fn() -> String,
        pfn: u64,
        idx: u64,
    ) -> Result<Arc<[u8]>> {
        let desc_at = self.desc_offset + idx * DESC_SIZE;
        let mut desc = [0u8; 24];
        store.read(name, desc_at, &mut desc)?;
        let offset = u64_at(&desc, 0).unwrap_or(0);
        let size = u64::from(u32_at(&desc, 8).unwrap_or(0));
        let flags = u32_at(&desc, 12).unwrap_or(0);
        let addr = pfn.saturating_mul(self.page_size);
        let bad = |reason: String| Error::BadDump {
            source_name: name(),
            offset: desc_at,
            reason: format!("page at physical {addr:#x}: {reason}"),
        };
        let slot = usize::try_from(offset / 8 % CACHE_SLOTS as u64).unwrap_or(0);
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(Some((key, page))) = cache.get(slot) {
                if *key == offset {
                    return Ok(page.clone());
                }
            }
        }
        if flags & (LZO | SNAPPY | ZSTD) != 0 {
            return Err(bad(format!(
                "compression flags {flags:#x} (only zlib is read)"
            )));
        }
        if size > self.page_size || (flags & ZLIB == 0 && size != self.page_size) {
            return Err(bad(format!(
                "stored size {size} for a {}-byte page",
                self.page_size
            )));
        }
        let mut stored = vec![0u8; size as usize];
        store.read(name, offset, &mut stored)?;
        let page: Arc<[u8]> = if flags & ZLIB != 0 {
            let mut out = vec![0u8; self.page_size as usize];
            let mut z = Decompress::new(true);
            match z.decompress(&stored, &mut out, FlushDecompress::Finish) {
                Ok(Status::StreamEnd) if z.total_out() == self.page_size => {}
                Ok(_) => {
                    return Err(bad(format!(
                        "zlib data at {offset:#x} does not make one page"
                    )))
                }
                Err(e) => return Err(bad(format!("zlib data at {offset:#x}: {e}"))),
            }
            out.into()
        } else {
            stored.into()
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = cache.get_mut(slot) {
            *s = Some((offset, page.clone()));
        }
        Ok(page)
    }

    /// Reads guest-physical bytes, page by page.
    pub(crate) fn read(
        &self,
        store: &Store,
        name: &dyn Fn() -> String,
        addr: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        read_pieces(name, addr, buf, |cur, dst| {
            let pfn = cur / self.page_size;
            let Some(idx) = self.index(pfn) else {
                return Ok(0);
            };
            let page = self.page(store, name, pfn, idx)?;
            let in_page = (cur % self.page_size) as usize;
            let n = (page.len().saturating_sub(in_page)).min(dst.len());
            match (dst.get_mut(..n), page.get(in_page..in_page + n)) {
                (Some(dst), Some(src)) => dst.copy_from_slice(src),
                _ => return Ok(0),
            }
            Ok(n)
        })
    }

    /// Runs of dumped pages, as address ranges.
    pub(crate) fn ranges(&self) -> Vec<PhysRange> {
        let mut out: Vec<PhysRange> = Vec::new();
        for (w, &word) in self.bitmap.iter().enumerate() {
            if word == 0 {
                continue;
            }
            for bit in 0..64u64 {
                if word & (1 << bit) == 0 {
                    continue;
                }
                let start = (w as u64 * 64 + bit).saturating_mul(self.page_size);
                let end = start.saturating_add(self.page_size);
                match out.last_mut() {
                    Some(last) if last.end == start => last.end = end,
                    _ => out.push(PhysRange { start, end }),
                }
            }
        }
        out
    }
}
