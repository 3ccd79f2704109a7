//! The discovery cache: symbols and layouts of one kernel build, kept on disk so that a
//! second crawl of the same guest skips kallsyms recovery and BTF parsing.
//!
//! Entries are keyed by the kernel's banner (which names the build, compiler and date) and
//! live under `$XDG_CACHE_HOME/origami` (default `~/.cache/origami`) unless the options name
//! another folder. Symbols are stored relative to `linux_banner`, so one entry serves every
//! boot of the build whatever its KASLR shifts. An entry carries a checksum of its content;
//! an entry that does not parse, does not match, or fails its checksum is ignored (and
//! overwritten by the next cold discovery), never trusted. Write failures are ignored too:
//! the cache only ever saves time.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::kallsyms::SymbolTable;
use super::layout::{needed_symbols, Layout};
use super::LinuxOptions;

/// The entry format this version writes (3: the mount, kernel-log and panic-state needs and
/// bitfield positions were added to the layouts; an entry of an older format lacks them).
const FORMAT: u32 = 3;

/// The largest cache file read.
const MAX_ENTRY: u64 = 4 << 20;

/// One kernel build's discovery results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The entry format (3 in this version); other formats are ignored and rebuilt.
    pub format: u32,
    /// The banner the entry is for.
    pub banner: String,
    /// The link-time (un-shifted) address of `linux_banner`.
    pub banner_link: u64,
    /// Needed symbols, relative to `linux_banner`.
    pub symbols: BTreeMap<String, i64>,
    /// Resolved layouts.
    pub layout: Layout,
    /// FNV-1a of the entry serialised with this field at 0.
    pub checksum: u64,
}

/// FNV-1a, 64-bit: a cheap content hash for keys and checksums (not a security measure).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl CacheEntry {
    /// An entry for `banner`; `banner_virt` is the runtime address the symbols are at.
    pub fn new(
        banner: &str,
        banner_virt: u64,
        banner_link: u64,
        symbols: &SymbolTable,
        layout: &Layout,
    ) -> CacheEntry {
        let symbols = needed_symbols()
            .filter_map(|n| {
                symbols
                    .get(n)
                    .map(|a| (n.to_string(), a.wrapping_sub(banner_virt) as i64))
            })
            .collect();
        let mut e = CacheEntry {
            format: FORMAT,
            banner: banner.to_string(),
            banner_link,
            symbols,
            layout: layout.clone(),
            checksum: 0,
        };
        e.checksum = e.compute_checksum();
        e
    }

    fn compute_checksum(&self) -> u64 {
        let mut c = self.clone();
        c.checksum = 0;
        fnv1a(serde_json::to_string(&c).unwrap_or_default().as_bytes())
    }
}

/// The cache folder in force.
pub fn dir(opts: &LinuxOptions) -> Option<PathBuf> {
    if let Some(d) = &opts.cache_dir {
        return Some(d.clone());
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("origami"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("origami"))
}

/// The file an entry for `banner` lives in.
pub fn path(opts: &LinuxOptions, banner: &str) -> Option<PathBuf> {
    dir(opts).map(|d| d.join(format!("linux-{:016x}.json", fnv1a(banner.as_bytes()))))
}

/// The entry for `banner`, when a valid one is cached.
pub fn load(opts: &LinuxOptions, banner: &str) -> Option<CacheEntry> {
    let p = path(opts, banner)?;
    let meta = std::fs::metadata(&p).ok()?;
    if meta.len() > MAX_ENTRY {
        return None;
    }
    let text = std::fs::read_to_string(&p).ok()?;
    let e: CacheEntry = serde_json::from_str(&text).ok()?;
    (e.format == FORMAT && e.banner == banner && e.checksum == e.compute_checksum()).then_some(e)
}

/// Saves an entry (atomically: a temporary file renamed over the old one).
pub fn store(opts: &LinuxOptions, e: &CacheEntry) {
    let Some(p) = path(opts, &e.banner) else {
        return;
    };
    let Some(d) = p.parent() else { return };
    if std::fs::create_dir_all(d).is_err() {
        return;
    }
    let Ok(text) = serde_json::to_string(e) else {
        return;
    };
    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, &p).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}
