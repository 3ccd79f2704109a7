//! Where the kernel's symbols come from: kallsyms decoded from memory (at the addresses
//! `VMCOREINFO` gives, or found by searching around the banner), a `System.map` shifted by
//! the KASLR offset, or a discovery-cache entry. Each source is checked against the
//! banner's position before it is believed; decoded kallsyms are kept between banner
//! candidates so that a decoy banner costs no second decode.

use origami_core::memory::{PhysicalMemory, VmcoreInfo};

use super::cache::CacheEntry;
use super::image::{read_window, spans_without, WINDOW_AFTER, WINDOW_BEFORE};
use super::kallsyms::{self, SymbolTable, Tables};
use super::kernel::{nodata, DumpView};
use super::kmem::{bad, START_KERNEL_MAP};
use super::placement::{check_placement, find_banner_virt, Placement};
use crate::error::{Error, Result};
use crate::limits::Bounds;

/// Decodes the kallsyms tables `t` of window `w` within `bounds`: at most
/// [`crate::Limits::symbols`] symbols, the decoded table reserved on the budget (an
/// estimate of 64 bytes a symbol besides its [`kallsyms::Symbol`]) while discovery holds it.
fn decode_within(w: &[u8], t: &kallsyms::Tables, bounds: &Bounds) -> Result<Vec<kallsyms::Symbol>> {
    if t.num_syms <= bounds.limits.symbols {
        let per = std::mem::size_of::<kallsyms::Symbol>() as u64 + 64;
        let _held = bounds.budget.reserve(
            format!("kallsyms ({} symbols decoded)", t.num_syms),
            per.saturating_mul(u64::from(t.num_syms)),
        )?;
    }
    kallsyms::decode_bounded(w, t, bounds.limits.symbols)
}

/// kallsyms from the table addresses VMCOREINFO gives.
fn kallsyms_from_vmcoreinfo(
    phys: &dyn PhysicalMemory,
    vi: &VmcoreInfo,
    image_phys: u64,
    bounds: &Bounds,
) -> Result<Decoded> {
    let sym = |n: &str| {
        vi.symbol(n)
            .ok_or_else(|| nodata(format!("VMCOREINFO lacks SYMBOL({n})")))
    };
    let to_phys = |v: u64| v.wrapping_sub(START_KERNEL_MAP).wrapping_add(image_phys);
    let (offsets, base, num, names, table, index) = (
        sym("kallsyms_offsets")?,
        sym("kallsyms_relative_base")?,
        sym("kallsyms_num_syms")?,
        sym("kallsyms_names")?,
        sym("kallsyms_token_table")?,
        sym("kallsyms_token_index")?,
    );
    let mut b = [0u8; 4];
    phys.read_phys(to_phys(num), &mut b)?;
    let n = u32::from_le_bytes(b);
    let mut b = [0u8; 8];
    phys.read_phys(to_phys(base), &mut b)?;
    let relative_base = u64::from_le_bytes(b);
    let lo = offsets.min(names).min(table).min(index).min(num);
    let hi = offsets
        .saturating_add(4 * u64::from(n))
        .max(index.saturating_add(512))
        .max(names)
        .max(table);
    if hi - lo > 256 << 20 {
        return Err(nodata(
            "VMCOREINFO kallsyms tables are implausibly far apart",
        ));
    }
    let _held = bounds.budget.reserve(
        format!("kallsyms tables at physical {:#x}", to_phys(lo)),
        hi - lo,
    )?;
    let w = read_window(phys, to_phys(lo), hi - lo)?;
    let t = Tables {
        offsets: (offsets - lo) as usize,
        relative_base,
        num_syms: n,
        names: (names - lo) as usize,
        token_table: (table - lo) as usize,
        token_index: (index - lo) as usize,
    };
    Ok(Decoded {
        symbols: decode_within(&w, &t, bounds)?,
        spans: spans_without(to_phys(lo), to_phys(hi), to_phys(base)),
    })
}

/// Checks that the symbols describe this kernel: the key symbols exist and `linux_banner`
/// is where the banner was found.
pub(super) fn check_symbols(syms: &SymbolTable, p: &Placement) -> Result<()> {
    for n in ["init_task", "linux_banner", "init_uts_ns", "init_top_pgt"] {
        if syms.get(n).is_none() {
            return Err(nodata(format!("symbol {n} missing")));
        }
    }
    if syms.get("linux_banner") != Some(p.banner_virt) {
        return Err(bad(
            "linux_banner",
            p.banner_virt,
            "symbols disagree with the banner's position",
        ));
    }
    Ok(())
}

/// Symbols recovered from kallsyms in memory around the banner at `bp`, with the physical
/// spans of the tables they were decoded from.
pub(super) fn from_kallsyms(
    view: &DumpView<'_>,
    bp: u64,
    vi_image_phys: Option<u64>,
    memo: &mut KallsymsMemo,
    bounds: &Bounds,
) -> Result<Recovered> {
    let phys = view.phys;
    if let (Some(vi), Some(ip)) = (view.vmcoreinfo, vi_image_phys) {
        let decoded = match memo.take(VMCOREINFO_TAG) {
            Some(d) => Some(d),
            // A bound the tables break is the answer (searching would meet them again).
            None => match kallsyms_from_vmcoreinfo(phys, vi, ip, bounds) {
                Ok(d) => Some(d),
                Err(e @ (Error::LimitExceeded { .. } | Error::OverBudget { .. })) => return Err(e),
                Err(_) => None,
            },
        };
        if let Some(decoded) = decoded {
            // VMCOREINFO's tables are the kernel's own word: a banner they do not place is
            // a decoy, not a reason to search.
            return match accept(decoded, bp) {
                Ok(r) if r.0.image_phys() == ip => Ok(r),
                Ok(_) => Err(nodata("VMCOREINFO phys_base disagrees with kallsyms")),
                Err(decoded) => {
                    memo.put(VMCOREINFO_TAG, decoded);
                    Err(nodata(format!(
                        "VMCOREINFO's kallsyms place linux_banner elsewhere than {bp:#x}"
                    )))
                }
            };
        }
    }
    let start = bp.saturating_sub(WINDOW_BEFORE);
    let len = WINDOW_BEFORE + WINDOW_AFTER;
    // The tables a previous (decoy) banner led to serve this one when they are in reach.
    let decoded = match memo.take_within(start, start + len) {
        Some(d) => d,
        None => {
            let _held = bounds
                .budget
                .reserve(format!("kernel window at physical {start:#x}"), len)?;
            let w = read_window(phys, start, len)?;
            let at = kallsyms::locate_tables(&w)?;
            let symbols = decode_within(&w, &at.tables, bounds)?;
            let (lo, hi) = at.extent();
            memo.tag = start + at.tables.token_table as u64;
            Decoded {
                symbols,
                spans: spans_without(
                    start + lo as u64,
                    start + hi as u64,
                    start + at.relative_base_at as u64,
                ),
            }
        }
    };
    let tag = memo.tag;
    accept(decoded, bp).map_err(|decoded| {
        memo.put(tag, decoded);
        nodata(format!(
            "kallsyms near the banner at {bp:#x} place linux_banner elsewhere"
        ))
    })
}

/// Symbols recovered from kallsyms: where they place the kernel, the table, and the
/// physical spans `(start, length)` of the table bytes they were decoded from.
pub(super) type Recovered = (Placement, SymbolTable, Vec<(u64, u64)>);

/// The tag of symbols decoded from VMCOREINFO's table addresses.
const VMCOREINFO_TAG: u64 = u64::MAX;

/// Decoded kallsyms, and the physical spans `(start, length)` of the table bytes they
/// were decoded from.
#[derive(Debug, Default)]
struct Decoded {
    symbols: Vec<kallsyms::Symbol>,
    spans: Vec<(u64, u64)>,
}

/// Decoded kallsyms kept between banner candidates, tagged by the token table's physical
/// address, so that a decoy banner does not cost a second decode.
#[derive(Debug, Default)]
pub(super) struct KallsymsMemo {
    tag: u64,
    decoded: Option<Decoded>,
}

impl KallsymsMemo {
    fn take(&mut self, tag: u64) -> Option<Decoded> {
        if self.tag == tag {
            self.decoded.take()
        } else {
            None
        }
    }
    fn take_within(&mut self, lo: u64, hi: u64) -> Option<Decoded> {
        if self.tag != VMCOREINFO_TAG && (lo..hi).contains(&self.tag) {
            self.decoded.take()
        } else {
            None
        }
    }
    fn put(&mut self, tag: u64, decoded: Decoded) {
        self.tag = tag;
        self.decoded = Some(decoded);
    }
}

/// Accepts decoded symbols for the banner at `bp` when they place `linux_banner` there
/// (checked before the table is built, so a decoy costs little); else hands them back.
fn accept(decoded: Decoded, bp: u64) -> std::result::Result<Recovered, Decoded> {
    let Some(bv) = decoded
        .symbols
        .iter()
        .find(|s| s.name == "linux_banner")
        .map(|s| s.address)
    else {
        return Err(decoded);
    };
    let p = Placement {
        banner_phys: bp,
        banner_virt: bv,
    };
    if check_placement(&p).is_err() {
        return Err(decoded);
    }
    let Decoded { symbols, spans } = decoded;
    let syms = SymbolTable::from_symbols(symbols);
    match check_symbols(&syms, &p) {
        Ok(()) => Ok((p, syms, spans)),
        // Rare (alignment matched by chance): the table is rebuilt by a later candidate.
        Err(_) => Err(Decoded::default()),
    }
}
/// Symbols from a System.map, shifted by the KASLR offset found for the banner at `bp`.
pub(super) fn from_map(
    view: &DumpView<'_>,
    bp: u64,
    map: &SymbolTable,
    vi_image_phys: Option<u64>,
    vi_offset: Option<u64>,
) -> Result<(Placement, SymbolTable)> {
    let link_banner = map
        .get("linux_banner")
        .ok_or_else(|| nodata("System.map has no linux_banner"))?;
    let p = match (vi_image_phys, vi_offset) {
        (Some(_), Some(off)) => Placement {
            banner_phys: bp,
            banner_virt: link_banner.wrapping_add(off),
        },
        _ => {
            let itp = map
                .get("init_top_pgt")
                .ok_or_else(|| nodata("System.map has no init_top_pgt"))?;
            find_banner_virt(view, bp, itp.wrapping_sub(link_banner) as i64)?
        }
    };
    check_placement(&p)?;
    let syms = map.shifted(p.banner_virt.wrapping_sub(link_banner));
    check_symbols(&syms, &p)?;
    Ok((p, syms))
}

/// Symbols from a cache entry (kept relative to `linux_banner`).
pub(super) fn from_cache(
    view: &DumpView<'_>,
    bp: u64,
    entry: &CacheEntry,
    vi_image_phys: Option<u64>,
    vi_offset: Option<u64>,
) -> Result<(Placement, SymbolTable)> {
    let rel = |n: &str| entry.symbols.get(n).copied();
    let p = match (vi_image_phys, vi_offset) {
        (Some(_), Some(off)) => Placement {
            banner_phys: bp,
            banner_virt: entry.banner_link.wrapping_add(off),
        },
        _ => {
            let itp = rel("init_top_pgt").ok_or_else(|| nodata("cache lacks init_top_pgt"))?;
            find_banner_virt(view, bp, itp)?
        }
    };
    check_placement(&p)?;
    let syms = SymbolTable::from_symbols(entry.symbols.iter().map(|(n, r)| kallsyms::Symbol {
        name: n.clone(),
        address: p.banner_virt.wrapping_add(*r as u64),
        kind: 'D',
    }));
    check_symbols(&syms, &p)?;
    Ok((p, syms))
}
