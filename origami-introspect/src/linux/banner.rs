//! The kernel's `Linux version` banner (`linux_banner`): found by searching RAM, read, and
//! its release taken out. The banner is guest data: it says where to look, never what to
//! trust.

use origami_core::memory::{PhysRange, PhysicalMemory};

use super::kernel::nodata;
use super::kmem::bad;
use crate::error::Result;

/// The most bytes of a banner.
const MAX_BANNER: usize = 512;

/// The physical addresses of `Linux version ` banners that look like `linux_banner`
/// (printable, ending in a newline and NUL), in address order.
/// `windows` (physical `[start, end)`) limits the search; `None` searches all of RAM.
pub fn find_banners(
    phys: &dyn PhysicalMemory,
    windows: Option<&[(u64, u64)]>,
    max: usize,
) -> Result<Vec<u64>> {
    const NEEDLE: &[u8] = b"Linux version ";
    const CHUNK: u64 = 8 << 20;
    let finder = memchr::memmem::Finder::new(NEEDLE);
    let mut out = Vec::new();
    let mut buf = vec![0u8; (CHUNK as usize) + MAX_BANNER];
    let mut spans = Vec::new();
    for r in phys.ranges() {
        match windows {
            None => spans.push((r.start, r.end)),
            Some(ws) => spans.extend(ws.iter().filter_map(|&(a, b)| {
                let (lo, hi) = (a.max(r.start), b.min(r.end));
                (lo < hi).then_some((lo, hi))
            })),
        }
    }
    spans.sort_unstable();
    // Merge overlapping windows so no byte is searched twice.
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let spans = merged;
    for (start, end) in spans {
        let r = PhysRange { start, end };
        let mut at = r.start;
        while at < r.end {
            let len = (r.end - at).min(CHUNK + MAX_BANNER as u64) as usize;
            let Some(b) = buf.get_mut(..len) else { break };
            phys.read_phys(at, b)?;
            for pos in finder.find_iter(b) {
                if pos as u64 >= CHUNK {
                    break; // the next chunk sees it again
                }
                let tail = b.get(pos..).unwrap_or_default();
                let tail = tail.get(..tail.len().min(MAX_BANNER)).unwrap_or_default();
                if let Some(nul) = memchr::memchr(0, tail) {
                    let s = tail.get(..nul).unwrap_or_default();
                    if s.ends_with(b"\n")
                        && s.iter().all(|&c| c == b'\n' || (0x20..0x7f).contains(&c))
                    {
                        let hit = at + pos as u64;
                        if !out.contains(&hit) {
                            out.push(hit);
                        }
                        if out.len() >= max {
                            return Ok(out);
                        }
                    }
                }
            }
            at += CHUNK;
        }
    }
    Ok(out)
}

pub(super) fn read_banner(phys: &dyn PhysicalMemory, p: u64) -> Result<String> {
    let mut b = vec![0u8; MAX_BANNER];
    // The banner may sit near the end of RAM: shorten the read until it fits.
    let mut n = MAX_BANNER;
    loop {
        let Some(slice) = b.get_mut(..n) else {
            return Err(nodata("banner unreadable"));
        };
        match phys.read_phys(p, slice) {
            Ok(()) => break,
            Err(e) if n <= 64 => return Err(e.into()),
            Err(_) => n /= 2,
        }
    }
    let b = b.get(..n).unwrap_or_default();
    let end = memchr::memchr(0, b).unwrap_or(b.len());
    let s = String::from_utf8_lossy(b.get(..end).unwrap_or_default()).into_owned();
    if !s.starts_with("Linux version ") {
        return Err(bad("linux_banner", p, "no `Linux version` banner here"));
    }
    Ok(s.trim_end().to_string())
}

/// The release in a banner (`Linux version 6.1.0-56-amd64 (...)`).
pub fn release_of(banner: &str) -> String {
    banner
        .strip_prefix("Linux version ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}
