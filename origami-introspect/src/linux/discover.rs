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

use std::time::Instant;

use origami_core::memory::{CpuState, MemoryDump, PhysRange, PhysicalMemory, VmcoreInfo};
use origami_core::paging::{PagingMode, VirtualMemory};
use sha2::{Digest, Sha256};

use super::btf::{Btf, Header, BTF_MAGIC};
use super::cache::{self, CacheEntry, Span};
use super::kallsyms::{self, SymbolTable, Tables};
use super::kmem::{bad, Kmem, KERNEL_IMAGE_SIZE, START_KERNEL_MAP};
use super::layout::Layout;
use super::LinuxOptions;
use crate::error::{Error, Result};
use crate::timing::millis;

/// The alignment of the kernel image, physically and virtually (CONFIG_PHYSICAL_ALIGN).
const IMAGE_ALIGN: u64 = 2 << 20;

/// The link address of `_text` with the default CONFIG_PHYSICAL_START (16 MiB).
const DEFAULT_TEXT_LINK: u64 = START_KERNEL_MAP + 0x100_0000;

/// The most banner candidates tried.
const MAX_BANNERS: usize = 16;

/// The most bytes of a banner.
const MAX_BANNER: usize = 512;

/// The window of RAM around the banner searched for kallsyms and BTF.
const WINDOW_BEFORE: u64 = 16 << 20;
const WINDOW_AFTER: u64 = 48 << 20;

/// The largest BTF blob accepted.
const MAX_BTF: u64 = 64 << 20;

/// What discovery reads: physical memory and what the dump says about itself.
#[derive(Clone, Copy)]
pub struct DumpView<'a> {
    /// Guest physical memory.
    pub phys: &'a dyn PhysicalMemory,
    /// The `VMCOREINFO` note, when the dump has one.
    pub vmcoreinfo: Option<&'a VmcoreInfo>,
    /// The CPUs' registers, when the dump has them.
    pub cpus: &'a [CpuState],
}

impl<'a> From<&'a MemoryDump> for DumpView<'a> {
    fn from(dump: &'a MemoryDump) -> DumpView<'a> {
        DumpView {
            phys: dump,
            vmcoreinfo: dump.vmcoreinfo(),
            cpus: dump.cpus(),
        }
    }
}

impl std::fmt::Debug for DumpView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DumpView")
            .field("phys", &self.phys.name())
            .field("vmcoreinfo", &self.vmcoreinfo.is_some())
            .field("cpus", &self.cpus.len())
            .finish()
    }
}

/// Where the symbols came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolSource {
    /// Recovered from the kernel's kallsyms tables in memory.
    Kallsyms,
    /// A `System.map` the caller gave, shifted by the KASLR offset.
    SystemMap,
    /// The discovery cache (symbols first recovered from kallsyms).
    Cache,
}

/// A kernel found in memory, ready for the feature crawlers.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The `Linux version ...` banner.
    pub banner: String,
    /// The release (`6.1.0-56-amd64`), from the banner.
    pub release: String,
    /// Physical address of the banner (`linux_banner`).
    pub banner_phys: u64,
    /// Physical address corresponding to `__START_KERNEL_map` (the runtime `phys_base`).
    pub image_phys: u64,
    /// The virtual KASLR shift: runtime `_text` minus its link address.
    pub kaslr_offset: u64,
    /// The direct map's base.
    pub page_offset_base: u64,
    /// 4- or 5-level paging.
    pub mode: PagingMode,
    /// Physical address of the kernel's top page table.
    pub root: u64,
    /// Runtime symbol addresses.
    pub symbols: SymbolTable,
    /// Struct layouts from the kernel's BTF.
    pub layout: Layout,
    /// Where the symbols came from.
    pub symbol_source: SymbolSource,
    /// True when symbols and layouts came from the cache.
    pub from_cache: bool,
    /// True when the dump had a VMCOREINFO note.
    pub had_vmcoreinfo: bool,
    /// How long each discovery step took, in milliseconds.
    pub timings: Vec<(String, f64)>,
}

impl Kernel {
    /// The runtime address of `name`, or an error naming the symbol.
    pub fn symbol(&self, name: &str) -> Result<u64> {
        self.symbols.get(name).ok_or_else(|| Error::Malformed {
            file: "kernel symbols".into(),
            location: name.into(),
            what: "symbol not found".into(),
        })
    }

    /// A view of the kernel's address space.
    pub fn kmem<'a>(&self, phys: &'a dyn PhysicalMemory) -> Kmem<'a> {
        Kmem::new(
            phys,
            self.root,
            self.mode,
            self.image_phys,
            self.page_offset_base,
        )
    }
}

fn nodata(what: impl Into<String>) -> Error {
    Error::Malformed {
        file: "guest memory".into(),
        location: "kernel discovery".into(),
        what: what.into(),
    }
}

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

/// SHA-256 (hex) of the kernel bytes `spans` name for the banner at physical
/// `banner_phys` (holes read as zeros), each span's position and length hashed before its
/// bytes: what binds a cache entry to the kernel it was made from.
pub fn digest_spans(phys: &dyn PhysicalMemory, banner_phys: u64, spans: &[Span]) -> Result<String> {
    const CHUNK: u64 = 1 << 20;
    if !cache::spans_bounded(spans) {
        return Err(nodata("kernel byte spans over the bound"));
    }
    let ranges = phys.ranges();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK as usize];
    for s in spans {
        h.update(s.rel.to_le_bytes());
        h.update(s.len.to_le_bytes());
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
    Ok(cache::hex(&h.finalize()))
}

/// Physical `[lo, hi)` as spans, leaving out the 8 bytes at `hole` (`kallsyms_relative_base`,
/// which each boot's KASLR shift rewrites).
fn spans_without(lo: u64, hi: u64, hole: u64) -> Vec<(u64, u64)> {
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

fn read_banner(phys: &dyn PhysicalMemory, p: u64) -> Result<String> {
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

/// Where the kernel image is, once a banner's physical and virtual addresses are tied.
#[derive(Debug, Clone, Copy)]
struct Placement {
    banner_phys: u64,
    banner_virt: u64,
}

impl Placement {
    fn image_phys(&self) -> u64 {
        self.banner_phys
            .wrapping_sub(self.banner_virt.wrapping_sub(START_KERNEL_MAP))
    }
    fn phys_of(&self, v: u64) -> u64 {
        v.wrapping_sub(START_KERNEL_MAP)
            .wrapping_add(self.image_phys())
    }
}

fn check_placement(p: &Placement) -> Result<()> {
    let ip = p.image_phys();
    if !ip.is_multiple_of(IMAGE_ALIGN) || p.banner_virt < START_KERNEL_MAP {
        return Err(bad(
            "linux_banner",
            p.banner_virt,
            format!(
                "image physical base {ip:#x} (banner at physical {:#x}) is not 2 MiB-aligned",
                p.banner_phys
            ),
        ));
    }
    Ok(())
}

/// Guesses the paging mode from the dump's own statements.
fn mode_hint(view: &DumpView<'_>) -> Option<PagingMode> {
    if let Some(n) = view.vmcoreinfo.and_then(|v| v.number("pgtable_l5_enabled")) {
        return Some(if n != 0 {
            PagingMode::Level5
        } else {
            PagingMode::Level4
        });
    }
    view.cpus.iter().find_map(|c| c.paging_mode())
}

/// Finds a root (and mode) under which `virt` translates to `phys`: first the given
/// candidates, then every CPU's CR3.
fn find_root(
    view: &DumpView<'_>,
    candidates: &[u64],
    virt: u64,
    phys: u64,
) -> Result<(u64, PagingMode)> {
    let modes = match mode_hint(view) {
        Some(PagingMode::Level5) => [PagingMode::Level5, PagingMode::Level4],
        _ => [PagingMode::Level4, PagingMode::Level5],
    };
    let roots = candidates
        .iter()
        .copied()
        .chain(view.cpus.iter().map(|c| c.page_table_root()))
        .filter(|r| *r != 0);
    for root in roots {
        for mode in modes {
            let vm = VirtualMemory::new(view.phys, root, mode);
            if vm.translate(virt).ok() == Some(phys) {
                return Ok((root, mode));
            }
        }
    }
    Err(bad(
        "page tables",
        virt,
        format!("no page-table root maps it to physical {phys:#x}"),
    ))
}

/// Finds the banner's virtual address by translating every 2 MiB-aligned image position
/// through `root` (used when symbols are known only relative to each other).
fn find_banner_virt(view: &DumpView<'_>, banner_phys: u64, rel_root: i64) -> Result<Placement> {
    let modes = match mode_hint(view) {
        Some(PagingMode::Level5) => [PagingMode::Level5, PagingMode::Level4],
        _ => [PagingMode::Level4, PagingMode::Level5],
    };
    let root = banner_phys.wrapping_add(rel_root as u64);
    let low = banner_phys % IMAGE_ALIGN;
    let mut roots = vec![root];
    roots.extend(view.cpus.iter().map(|c| c.page_table_root()));
    for r in roots.into_iter().filter(|r| *r != 0) {
        for mode in modes {
            let vm = VirtualMemory::new(view.phys, r, mode);
            for k in 0..(KERNEL_IMAGE_SIZE / IMAGE_ALIGN) {
                let v = START_KERNEL_MAP + k * IMAGE_ALIGN + low;
                // The top page table must sit, virtually too, where the symbols put it
                // relative to the banner: a banner copy elsewhere (the printk buffer)
                // fails this.
                if vm.translate(v).ok() == Some(banner_phys)
                    && vm.translate(v.wrapping_add(rel_root as u64)).ok() == Some(root)
                {
                    return Ok(Placement {
                        banner_phys,
                        banner_virt: v,
                    });
                }
            }
        }
    }
    Err(bad(
        "linux_banner",
        banner_phys,
        "no kernel-image address maps to the banner",
    ))
}

/// kallsyms from the table addresses VMCOREINFO gives.
fn kallsyms_from_vmcoreinfo(
    phys: &dyn PhysicalMemory,
    vi: &VmcoreInfo,
    image_phys: u64,
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
    let mut b = [0u8; 8];
    phys.read_phys(to_phys(num), &mut b[..4])?;
    let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
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
        symbols: kallsyms::decode(&w, &t)?,
        spans: spans_without(to_phys(lo), to_phys(hi), to_phys(base)),
    })
}

/// Checks that the symbols describe this kernel: the key symbols exist and `linux_banner`
/// is where the banner was found.
fn check_symbols(syms: &SymbolTable, p: &Placement) -> Result<()> {
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

/// Finds and parses the kernel's BTF: at `__start_BTF` when the symbols name it, else by
/// searching the kernel's memory around the banner for its header. Returns the blob's
/// physical start and length with it.
fn find_btf(
    phys: &dyn PhysicalMemory,
    syms: &SymbolTable,
    place: &Placement,
) -> Result<(Btf, (u64, u64))> {
    if let (Some(start), Some(stop)) = (syms.get("__start_BTF"), syms.get("__stop_BTF")) {
        let len = stop.saturating_sub(start);
        if len > 24 && len <= MAX_BTF {
            let at = place.phys_of(start);
            let blob = read_window(phys, at, len)?;
            return Ok((Btf::parse(&blob)?, (at, len)));
        }
    }
    let start = place.banner_phys.saturating_sub(WINDOW_BEFORE);
    let w = read_window(phys, start, WINDOW_BEFORE + WINDOW_AFTER)?;
    let magic = BTF_MAGIC.to_le_bytes();
    let needle = [magic[0], magic[1], 1, 0, 24, 0, 0, 0];
    for pos in memchr::memmem::find_iter(&w, &needle) {
        let Some(rest) = w.get(pos..) else { break };
        let Ok(h) = Header::parse(rest) else { continue };
        if h.total_len() > MAX_BTF {
            continue;
        }
        if let Ok(btf) = Btf::parse(rest) {
            if btf.struct_id("task_struct").is_some() {
                return Ok((btf, (start + pos as u64, h.total_len())));
            }
        }
    }
    Err(nodata("no BTF with task_struct in the kernel image"))
}

/// Physical windows likely to hold the kernel image: from VMCOREINFO's `phys_base` and
/// `_stext`, and from any CPU that was executing kernel code (its RIP through its CR3).
fn image_hints(view: &DumpView<'_>) -> Vec<(u64, u64)> {
    let mut w = Vec::new();
    if let Some(vi) = view.vmcoreinfo {
        if let (Some(ip), Some(stext)) = (vi.number("phys_base"), vi.symbol("_stext")) {
            let p = stext.wrapping_sub(START_KERNEL_MAP).wrapping_add(ip as u64);
            w.push((p, p.saturating_add(WINDOW_AFTER + WINDOW_BEFORE)));
        }
    }
    for c in view.cpus {
        let in_image = (START_KERNEL_MAP..START_KERNEL_MAP + KERNEL_IMAGE_SIZE).contains(&c.rip);
        if let (true, Some(mode)) = (in_image, c.paging_mode()) {
            let vm = VirtualMemory::new(view.phys, c.page_table_root(), mode);
            if let Ok(p) = vm.translate(c.rip) {
                w.push((
                    p.saturating_sub(WINDOW_AFTER),
                    p.saturating_add(WINDOW_AFTER + WINDOW_BEFORE),
                ));
            }
        }
    }
    w
}

/// Discovers the kernel: placement, root, symbols, layouts (from the cache when the
/// options name a cache folder and its entry for this banner was made from these same
/// kernel bytes).
pub fn discover(view: &DumpView<'_>, opts: &LinuxOptions) -> Result<Kernel> {
    let t_all = Instant::now();
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
    let mut last_err = nodata("no `Linux version` banner in memory");
    let mut memo = KallsymsMemo::default();
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
                match kernel_at(
                    view,
                    opts,
                    map.as_ref(),
                    bp,
                    attempt,
                    &mut memo,
                    &mut timings,
                ) {
                    Ok(mut k) => {
                        k.timings.push(("kernel.total".to_string(), millis(t_all)));
                        return Ok(k);
                    }
                    Err(e) => last_err = e,
                }
            }
        }
    }
    Err(last_err)
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
fn kernel_at(
    view: &DumpView<'_>,
    opts: &LinuxOptions,
    map: Option<&SymbolTable>,
    bp: u64,
    attempt: Attempt,
    memo: &mut KallsymsMemo,
    timings: &mut Vec<(String, f64)>,
) -> Result<Kernel> {
    let phys = view.phys;
    let vi = view.vmcoreinfo;
    let vi_image_phys = vi.and_then(|v| v.number("phys_base")).map(|n| n as u64);
    let vi_offset = vi.and_then(|v| v.kernel_offset());
    let banner = read_banner(phys, bp)?;
    let release = release_of(&banner);
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
                return Err(nodata(
                    "the cache entry for this banner was made from other kernel bytes",
                ));
            }
            (place, symbols, entry.layout, source, None)
        }
        Attempt::Cold => {
            let (place, symbols, source, kallsyms_spans) = match map {
                Some(m) => from_map(view, bp, m, vi_image_phys, vi_offset)
                    .map(|(p, s)| (p, s, SymbolSource::SystemMap, None))?,
                None => from_kallsyms(view, bp, vi_image_phys, memo)
                    .map(|(p, s, spans)| (p, s, SymbolSource::Kallsyms, Some(spans)))?,
            };
            timings.push(("kernel.symbols".to_string(), millis(t)));
            let t = Instant::now();
            let (btf, btf_span) = find_btf(phys, &symbols, &place)?;
            let layout = Layout::from_btf(&btf);
            timings.push(("kernel.btf".to_string(), millis(t)));
            // Only what was derived from memory alone is cached: a System.map's symbols
            // are the caller's word for this crawl, not this kernel's bytes.
            let derived_from = kallsyms_spans.map(|mut spans| {
                spans.push(btf_span);
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
            phys.read_phys(place.phys_of(s), &mut b)?;
            u64::from_le_bytes(b)
        }
        None => 0,
    };
    let itp = symbols
        .get("init_top_pgt")
        .map(|v| place.phys_of(v))
        .into_iter()
        .collect::<Vec<_>>();
    let (root, mode) = find_root(view, &itp, place.banner_virt, bp)?;
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
        return Err(bad(
            "_text",
            text,
            format!("KASLR offset {kaslr_offset:#x} is not 2 MiB-aligned"),
        ));
    }
    if let (Some(vo), true) = (vi_offset, symbols.get("_text").is_some()) {
        if text.wrapping_sub(vo)
            != map
                .as_ref()
                .and_then(|m| m.get("_text"))
                .unwrap_or(DEFAULT_TEXT_LINK)
        {
            return Err(bad(
                "_text",
                text,
                format!("VMCOREINFO KERNELOFFSET {vo:#x} disagrees with the symbols"),
            ));
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
        symbol_source: source,
        from_cache,
        had_vmcoreinfo: vi.is_some(),
        timings: timings.clone(),
    })
}

/// Symbols recovered from kallsyms in memory around the banner at `bp`, with the physical
/// spans of the tables they were decoded from.
fn from_kallsyms(
    view: &DumpView<'_>,
    bp: u64,
    vi_image_phys: Option<u64>,
    memo: &mut KallsymsMemo,
) -> Result<Recovered> {
    let phys = view.phys;
    if let (Some(vi), Some(ip)) = (view.vmcoreinfo, vi_image_phys) {
        let decoded = match memo.take(VMCOREINFO_TAG) {
            Some(d) => Some(d),
            None => kallsyms_from_vmcoreinfo(phys, vi, ip).ok(),
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
            let w = read_window(phys, start, len)?;
            let at = kallsyms::locate_tables(&w)?;
            let symbols = kallsyms::decode(&w, &at.tables)?;
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
type Recovered = (Placement, SymbolTable, Vec<(u64, u64)>);

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
struct KallsymsMemo {
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
fn from_map(
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
fn from_cache(
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
