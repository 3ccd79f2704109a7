//! Finding the kernel in guest memory: its banner, where its image sits physically and
//! virtually (the KASLR shifts), its page-table root and paging mode, its symbols and its
//! type layouts.
//!
//! The order of evidence: the `VMCOREINFO` note when the dump has one (release,
//! `KERNELOFFSET`, `phys_base`, the kallsyms table addresses); otherwise the `Linux
//! version` banner found by searching RAM, then kallsyms recovered around it (or a given
//! `System.map`), whose `linux_banner` address ties the banner's physical address to its
//! virtual one. The page-table root is `init_top_pgt` (checked by translating the banner's
//! address through it), else a CPU's CR3. Shifts are checked: the image's physical base and
//! the virtual KASLR offset must be 2 MiB-aligned and the banner must translate to where it
//! was found. Limits: x86-64 only; kernels built with `CONFIG_KALLSYMS` (or a `System.map`)
//! and `CONFIG_DEBUG_INFO_BTF`.
//!
//! This module orders the steps and tries each banner candidate, from the cache first when
//! one is named, then from memory; the steps live beside it: [`super::banner`] (finding
//! banners), `placement` (shifts and page tables), `symbols` (kallsyms, `System.map`,
//! cache entry), [`super::image`] (reading the image's bytes, the BTF blob, the cache
//! digest).

use std::time::Instant;

use origami_core::paging::PagingMode;

use super::banner::{find_banners, read_banner, release_of};
use super::cache::{self, CacheEntry, Span};
use super::image::{digest_spans, find_btf};
use super::kallsyms::SymbolTable;
use super::kernel::nodata;
use super::kernel::{DumpView, Kernel, SymbolSource};
use super::kmem::{bad, START_KERNEL_MAP};
use super::layout::Layout;
use super::layout_source::Sources;
use super::placement::{find_root, image_hints, IMAGE_ALIGN};
use super::symbols::{from_cache, from_kallsyms, from_map, KallsymsMemo};
use super::LinuxOptions;
use crate::error::{Error, Result};
use crate::limits::Bounds;
use crate::timing::millis;

/// The link address of `_text` with the default CONFIG_PHYSICAL_START (16 MiB).
const DEFAULT_TEXT_LINK: u64 = START_KERNEL_MAP + 0x100_0000;

/// The most banner candidates tried.
const MAX_BANNERS: usize = 16;

/// Discovers the kernel: placement, root, symbols, layouts (from the cache when the
/// options name a cache folder and its entry for this banner was made from these same
/// kernel bytes).
pub fn discover(view: &DumpView<'_>, opts: &LinuxOptions) -> Result<Kernel> {
    let t_all = Instant::now();
    // The `kernel` section's limits, budget and time (see crate::Limits).
    let bounds = opts.bounds().section("kernel");
    let mut timings = Vec::new();
    let phys = view.phys;
    let map = match &opts.system_map {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::Malformed {
                file: p.display().to_string(),
                location: "whole file".into(),
                what: e.to_string(),
            })?;
            let m = SymbolTable::parse_system_map(&text);
            if m.get("linux_banner").is_none() {
                return Err(Error::Malformed {
                    file: p.display().to_string(),
                    location: "whole file".into(),
                    what: "not a System.map (no linux_banner)".into(),
                });
            }
            Some(m)
        }
        None => None,
    };

    // 1. The banner: first near where the dump says the kernel runs, then anywhere.
    let t = Instant::now();
    let hints = image_hints(view);
    let hinted = if hints.is_empty() {
        Vec::new()
    } else {
        find_banners(phys, Some(&hints), MAX_BANNERS)?
    };
    timings.push(("kernel.banner".to_string(), millis(t)));
    // The error reported: that of the first banner whose symbols were confirmed (the
    // kernel that runs), else the last candidate's (decoy copies of the banner fail early).
    let mut last_err = nodata("no `Linux version` banner in memory");
    let mut confirmed_err: Option<Error> = None;
    let mut memo = Memo::default();
    let attempts: &[Attempt] = match opts.cache_dir {
        Some(_) => &[Attempt::Cache, Attempt::Cold],
        None => &[Attempt::Cold],
    };
    for round in 0..2 {
        let banners = if round == 0 {
            hinted.clone()
        } else {
            let t = Instant::now();
            let all = find_banners(phys, None, MAX_BANNERS)?;
            timings.push(("kernel.banner_search".to_string(), millis(t)));
            all.into_iter().filter(|b| !hinted.contains(b)).collect()
        };
        // A cached build first (cheap to check), then recovery from memory.
        for &attempt in attempts {
            for &bp in &banners {
                bounds.deadline.check()?;
                match kernel_at(
                    view,
                    opts,
                    map.as_ref(),
                    bp,
                    attempt,
                    &mut memo,
                    &mut timings,
                    &bounds,
                ) {
                    Ok(mut k) => {
                        k.timings.push(("kernel.total".to_string(), millis(t_all)));
                        return Ok(k);
                    }
                    Err(Failure {
                        confirmed: true,
                        error,
                    }) => {
                        confirmed_err.get_or_insert(error);
                    }
                    // A bound the kernel's own tables break is the answer for every
                    // candidate: it is what the caller must hear, not a later decoy's miss.
                    Err(Failure { error, .. }) if is_bound(&last_err) && !is_bound(&error) => {}
                    Err(Failure { error, .. }) => last_err = error,
                }
            }
        }
    }
    Err(confirmed_err.unwrap_or(last_err))
}

/// What one discovery keeps between banner candidates: kallsyms tables already decoded,
/// the caller's layout source already loaded.
#[derive(Default)]
struct Memo {
    kallsyms: KallsymsMemo,
    sources: Sources,
}

/// Why a banner candidate failed, and whether its symbols were confirmed first (the
/// banner is the running kernel's, not a stray copy).
struct Failure {
    confirmed: bool,
    error: Error,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure {
            confirmed: false,
            error,
        }
    }
}

/// A failure past the symbols step: the banner is the running kernel's.
fn confirmed(error: Error) -> Failure {
    Failure {
        confirmed: true,
        error,
    }
}

/// The error for a kernel whose own BTF cannot be used and for which no other source of
/// layouts was given.
fn btf_missing(e: Error) -> Error {
    nodata(format!(
        "the kernel's BTF is missing or damaged ({e}); give its type layouts another way: \
         --kernel-debuginfo VMLINUX (DWARF debug info of this kernel build) or \
         --isf FILE.json[.xz] (a Volatility 3 symbol file)"
    ))
}

/// True for the errors of [`crate::Limits`] (sizes, list lengths, memory, time).
fn is_bound(e: &Error) -> bool {
    matches!(
        e,
        Error::TooLarge { .. }
            | Error::LimitExceeded { .. }
            | Error::OverBudget { .. }
            | Error::OverTime { .. }
    )
}

/// How a banner candidate is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// Only from a cache entry, checked against the dump's kernel bytes.
    Cache,
    /// From memory (or the System.map) alone, never the cache.
    Cold,
}

/// Tries the banner at `bp`: symbols, placement, layouts, root.
#[allow(clippy::too_many_arguments)]
fn kernel_at(
    view: &DumpView<'_>,
    opts: &LinuxOptions,
    map: Option<&SymbolTable>,
    bp: u64,
    attempt: Attempt,
    memo: &mut Memo,
    timings: &mut Vec<(String, f64)>,
    bounds: &Bounds,
) -> std::result::Result<Kernel, Failure> {
    let Memo {
        kallsyms: memo,
        sources,
    } = memo;
    let phys = view.phys;
    let vi = view.vmcoreinfo;
    let vi_image_phys = vi.and_then(|v| v.number("phys_base")).map(|n| n as u64);
    let vi_offset = vi.and_then(|v| v.kernel_offset());
    let banner = read_banner(phys, bp)?;
    let release = release_of(&banner);
    let mut layout_file = None;
    // 2. Symbols and layouts: from a cache entry bound to these kernel bytes, or derived
    //    from memory (and the bytes they were derived from remembered for the cache).
    let t = Instant::now();
    let (place, symbols, layout, source, derived_from) = match attempt {
        Attempt::Cache => {
            let entry = opts
                .cache_dir
                .as_deref()
                .and_then(|d| cache::load(d, &banner))
                .ok_or_else(|| nodata("no cache entry for this banner"))?;
            let (place, symbols, source) = match map {
                Some(m) => from_map(view, bp, m, vi_image_phys, vi_offset)
                    .map(|(p, s)| (p, s, SymbolSource::SystemMap))?,
                None => from_cache(view, bp, &entry, vi_image_phys, vi_offset)
                    .map(|(p, s)| (p, s, SymbolSource::Cache))?,
            };
            timings.push(("kernel.symbols".to_string(), millis(t)));
            let t = Instant::now();
            let digest = digest_spans(phys, bp, &entry.spans)?;
            timings.push(("kernel.cache_check".to_string(), millis(t)));
            if digest != entry.digest {
                // Not the kernel's error: the cold attempt that follows gives the real one.
                return Err(nodata(
                    "the cache entry for this banner was made from other kernel bytes",
                )
                .into());
            }
            (place, symbols, entry.layout, source, None)
        }
        Attempt::Cold => {
            let (place, symbols, source, kallsyms_spans) = match map {
                Some(m) => from_map(view, bp, m, vi_image_phys, vi_offset)
                    .map(|(p, s)| (p, s, SymbolSource::SystemMap, None))?,
                None => match from_kallsyms(view, bp, vi_image_phys, memo, bounds) {
                    Ok((p, s, spans)) => (p, s, SymbolSource::Kallsyms, Some(spans)),
                    // Without kallsyms, the symbols of the caller's DWARF or ISF file.
                    Err(e) => {
                        let table = opts.layouts.as_ref().and_then(|src| {
                            sources
                                .get(src, &banner, &release)
                                .ok()
                                .and_then(|l| l.symbol_table())
                        });
                        match table {
                            Some(t) => from_map(view, bp, &t, vi_image_phys, vi_offset)
                                .map(|(p, s)| (p, s, SymbolSource::LayoutFile, None))?,
                            None => return Err(e.into()),
                        }
                    }
                },
            };
            timings.push(("kernel.symbols".to_string(), millis(t)));
            let t = Instant::now();
            let (layout, layout_span, file) = match &opts.layouts {
                Some(src) => {
                    let loaded = sources.get(src, &banner, &release).map_err(confirmed)?;
                    loaded.check_symbols(&symbols).map_err(confirmed)?;
                    timings.push((format!("kernel.{}", src.kind().to_lowercase()), millis(t)));
                    (loaded.layout.clone(), None, Some(loaded.path.clone()))
                }
                None => {
                    let (btf, btf_span) =
                        find_btf(phys, &symbols, &place, bounds).map_err(|e| {
                            // A bound met is said as such; anything else means no usable BTF.
                            confirmed(if is_bound(&e) { e } else { btf_missing(e) })
                        })?;
                    let layout = Layout::from_btf(&btf);
                    timings.push(("kernel.btf".to_string(), millis(t)));
                    (layout, Some(btf_span), None)
                }
            };
            layout_file = file;
            // Only what was derived from memory alone is cached: a System.map's symbols
            // are the caller's word for this crawl, not this kernel's bytes. Layouts from
            // a DWARF or ISF file checked against this kernel's banner and symbols are
            // cached with the kallsyms tables they were checked against.
            let derived_from = kallsyms_spans.map(|mut spans| {
                spans.extend(layout_span);
                spans
            });
            (place, symbols, layout, source, derived_from)
        }
    };
    let from_cache = attempt == Attempt::Cache;

    // 3. Direct map, paging mode and the root, checked by translating the banner.
    let t = Instant::now();
    let pob_sym = symbols.get("page_offset_base");
    let mut page_offset_base = match pob_sym {
        Some(s) => {
            let mut b = [0u8; 8];
            phys.read_phys(place.phys_of(s), &mut b)
                .map_err(|e| confirmed(e.into()))?;
            u64::from_le_bytes(b)
        }
        None => 0,
    };
    let itp = symbols
        .get("init_top_pgt")
        .map(|v| place.phys_of(v))
        .into_iter()
        .collect::<Vec<_>>();
    let (root, mode) = find_root(view, &itp, place.banner_virt, bp).map_err(confirmed)?;
    if page_offset_base == 0 {
        page_offset_base = match mode {
            PagingMode::Level4 => 0xffff_8880_0000_0000,
            PagingMode::Level5 => 0xff11_0000_0000_0000,
        };
    }
    timings.push(("kernel.paging".to_string(), millis(t)));
    let text = symbols.get("_text").unwrap_or(DEFAULT_TEXT_LINK);
    let kaslr_offset = match (&map, vi_offset) {
        (_, Some(o)) => o,
        (Some(m), None) => text.wrapping_sub(m.get("_text").unwrap_or(DEFAULT_TEXT_LINK)),
        (None, None) => text.wrapping_sub(DEFAULT_TEXT_LINK),
    };
    if kaslr_offset % IMAGE_ALIGN != 0 {
        return Err(confirmed(bad(
            "_text",
            text,
            format!("KASLR offset {kaslr_offset:#x} is not 2 MiB-aligned"),
        )));
    }
    if let (Some(vo), true) = (vi_offset, symbols.get("_text").is_some()) {
        if text.wrapping_sub(vo)
            != map
                .as_ref()
                .and_then(|m| m.get("_text"))
                .unwrap_or(DEFAULT_TEXT_LINK)
        {
            return Err(confirmed(bad(
                "_text",
                text,
                format!("VMCOREINFO KERNELOFFSET {vo:#x} disagrees with the symbols"),
            )));
        }
    }
    if let (Some(dir), Some(spans)) = (opts.cache_dir.as_deref(), derived_from) {
        let spans: Vec<Span> = spans
            .into_iter()
            .map(|(start, len)| Span::at(bp, start, len))
            .collect();
        if let Ok(digest) = digest_spans(phys, bp, &spans) {
            let entry = CacheEntry::new(
                &banner,
                place.banner_virt,
                place.banner_virt.wrapping_sub(kaslr_offset),
                &symbols,
                &layout,
                spans,
                digest,
            );
            cache::store(dir, &entry);
        }
    }
    Ok(Kernel {
        banner,
        release,
        banner_phys: bp,
        image_phys: place.image_phys(),
        kaslr_offset,
        page_offset_base,
        mode,
        root,
        symbols,
        layout,
        layout_file,
        symbol_source: source,
        from_cache,
        had_vmcoreinfo: vi.is_some(),
        timings: timings.clone(),
    })
}
