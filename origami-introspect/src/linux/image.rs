//! The kernel image's bytes in guest physical memory: windows read with holes as zeros,
//! the BTF blob found in them, and the digest of the spans a discovery-cache entry was
//! derived from (what binds the entry to this kernel's bytes, see [`super::cache`]).

use origami_core::memory::{PhysRange, PhysicalMemory};

use super::btf::{Btf, Header, BTF_MAGIC};
use super::cache::{self, Span};
use super::kallsyms::SymbolTable;
use super::kernel::nodata;
use super::placement::Placement;
use crate::error::{Error, Result};
use crate::limits::Bounds;

/// The window of RAM around the banner searched for kallsyms and BTF.
pub(super) const WINDOW_BEFORE: u64 = 16 << 20;
/// See [`WINDOW_BEFORE`].
pub(super) const WINDOW_AFTER: u64 = 48 << 20;

/// The largest BTF blob accepted by default ([`crate::Limits::btf`]).
pub const MAX_BTF: u64 = crate::Limits::DEFAULT.btf;

/// Reads `[start, start + len)` of physical memory, zero-filling holes.
pub fn read_window(phys: &dyn PhysicalMemory, start: u64, len: u64) -> Result<Vec<u8>> {
    let len_usize = usize::try_from(len).map_err(|_| nodata("window too large"))?;
    let mut out = vec![0u8; len_usize];
    read_window_into(phys, &phys.ranges(), start, &mut out)?;
    Ok(out)
}

/// Fills `out` with the physical memory at `start`, zero-filling what `ranges` (the
/// memory's own) do not hold.
fn read_window_into(
    phys: &dyn PhysicalMemory,
    ranges: &[PhysRange],
    start: u64,
    out: &mut [u8],
) -> Result<()> {
    out.fill(0);
    let end = start.saturating_add(out.len() as u64);
    for r in ranges {
        let lo = r.start.max(start);
        let hi = r.end.min(end);
        if lo < hi {
            let a = (lo - start) as usize;
            let b = (hi - start) as usize;
            if let Some(dst) = out.get_mut(a..b) {
                phys.read_phys(lo, dst)?;
            }
        }
    }
    Ok(())
}

/// BLAKE3 (hex, 256 bits) of the kernel bytes `spans` name for the banner at physical
/// `banner_phys` (holes read as zeros), each span's position and length hashed before its
/// bytes: what binds a cache entry to the kernel it was made from.
///
/// Why a guest cannot plant a poisoned entry through this digest: the spans are every
/// byte the entry's content was derived from (the kallsyms tables the symbols were decoded
/// from, the BTF blob the layouts were parsed from), read from the dump being crawled, not
/// from the entry; so an entry is used only when the bytes it would stand for are the
/// bytes a cold discovery of this dump would read, and a cold discovery would then find
/// the same symbols and layouts. To make an entry made from its own (altered) bytes pass
/// on another guest, a guest would need two byte strings with one BLAKE3 digest, which is
/// as hard as breaking BLAKE3's collision resistance (2^128 work). The span list itself
/// comes from the entry, but it is hashed too, so an entry cannot point the check at
/// other bytes than it was made from; and the spans are placed relative to the banner the
/// dump is crawled for. Its speed (a few GiB/s with AVX2, against about 1.4 GiB/s for
/// SHA-256 with SHA-NI on the 2-core machine) is why it replaced SHA-256 here; the bytes
/// are read in L2-sized chunks so that each is hashed while it is still in cache.
pub fn digest_spans(phys: &dyn PhysicalMemory, banner_phys: u64, spans: &[Span]) -> Result<String> {
    const CHUNK: u64 = 256 << 10;
    if !cache::spans_bounded(spans) {
        return Err(nodata("kernel byte spans over the bound"));
    }
    let ranges = phys.ranges();
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK as usize];
    for s in spans {
        h.update(&s.rel.to_le_bytes());
        h.update(&s.len.to_le_bytes());
        let start = s.start(banner_phys);
        let mut done = 0u64;
        while done < s.len {
            let n = (s.len - done).min(CHUNK) as usize;
            let Some(b) = buf.get_mut(..n) else { break };
            read_window_into(phys, &ranges, start.wrapping_add(done), b)?;
            h.update(&*b);
            done += n as u64;
        }
    }
    Ok(cache::hex(h.finalize().as_bytes()))
}

/// Physical `[lo, hi)` as spans, leaving out the 8 bytes at `hole` (`kallsyms_relative_base`,
/// which each boot's KASLR shift rewrites).
pub(super) fn spans_without(lo: u64, hi: u64, hole: u64) -> Vec<(u64, u64)> {
    if hi <= lo {
        return Vec::new();
    }
    if hole < lo || hole >= hi {
        return vec![(lo, hi - lo)];
    }
    let after = hole.saturating_add(8).min(hi);
    [(lo, hole - lo), (after, hi - after)]
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .collect()
}

/// Finds and parses the kernel's BTF: at `__start_BTF` when the symbols name it, else by
/// searching the kernel's memory around the banner for its header. Returns the blob's
/// physical start and length with it.
///
/// Within `bounds`: a blob over [`crate::Limits::btf`] is an [`Error::TooLarge`] (when no
/// other blob is found), and the bytes read are reserved on the budget while they are
/// parsed.
pub(super) fn find_btf(
    phys: &dyn PhysicalMemory,
    syms: &SymbolTable,
    place: &Placement,
    bounds: &Bounds,
) -> Result<(Btf, (u64, u64))> {
    let max = bounds.limits.btf;
    let too_large = |at: u64, size: u64| Error::TooLarge {
        file: format!("kernel BTF at physical {at:#x}"),
        size,
        limit: max,
    };
    if let (Some(start), Some(stop)) = (syms.get("__start_BTF"), syms.get("__stop_BTF")) {
        let len = stop.saturating_sub(start);
        let at = place.phys_of(start);
        if len > max {
            return Err(too_large(at, len));
        }
        if len > 24 {
            let _held = bounds
                .budget
                .reserve(format!("kernel BTF at physical {at:#x}"), len)?;
            let blob = read_window(phys, at, len)?;
            // Said with where it is: the parser's offsets are within the blob.
            let btf = Btf::parse(&blob).map_err(|e| {
                nodata(format!(
                    "__start_BTF {start:#x} (physical {at:#x}, {len} bytes): {e}"
                ))
            })?;
            return Ok((btf, (at, len)));
        }
    }
    let start = place.banner_phys.saturating_sub(WINDOW_BEFORE);
    let _held = bounds.budget.reserve(
        format!("kernel window at physical {start:#x}"),
        WINDOW_BEFORE + WINDOW_AFTER,
    )?;
    let w = read_window(phys, start, WINDOW_BEFORE + WINDOW_AFTER)?;
    let magic = BTF_MAGIC.to_le_bytes();
    let needle = [magic[0], magic[1], 1, 0, 24, 0, 0, 0];
    let mut over = None;
    for pos in memchr::memmem::find_iter(&w, &needle) {
        let Some(rest) = w.get(pos..) else { break };
        let Ok(h) = Header::parse(rest) else { continue };
        if h.total_len() > max {
            over = Some(too_large(start + pos as u64, h.total_len()));
            continue;
        }
        if let Ok(btf) = Btf::parse(rest) {
            if btf.struct_id("task_struct").is_some() {
                return Ok((btf, (start + pos as u64, h.total_len())));
            }
        }
    }
    Err(over.unwrap_or_else(|| nodata("no BTF with task_struct in the kernel image")))
}
