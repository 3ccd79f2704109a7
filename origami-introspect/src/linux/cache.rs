//! The discovery cache: symbols and layouts of one kernel build, kept on disk so that a
//! second crawl of the same guest skips kallsyms recovery and BTF parsing.
//!
//! The cache is used only when the caller names its folder ([`super::LinuxOptions`]'s
//! `cache_dir`; [`default_dir`] is the conventional one). Entries are filed under the
//! kernel's banner, but the banner is guest data that any root user can rewrite, so it
//! only says where to look: an entry is *bound to the kernel's bytes*. It records where,
//! relative to the banner, lay the bytes its symbols and layouts were derived from (the
//! kallsyms tables and the BTF blob, [`Span`]) and the BLAKE3 digest of those bytes
//! ([`super::image::digest_spans`] says why a guest cannot make other bytes match). Before an
//! entry is used, the same spans are read from the dump being crawled and hashed; a
//! different digest means "not this kernel" and the kernel is discovered afresh (and the
//! entry overwritten), so one guest cannot plant symbols or layouts that another guest's
//! crawl trusts. Symbols are stored relative to `linux_banner`, so one entry serves every
//! boot of the build whatever its KASLR shifts. An entry also carries a checksum of its own
//! content; an entry that does not parse, does not match, or fails its checksum is ignored,
//! never trusted. Write failures are ignored too: the cache only ever saves time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::kallsyms::SymbolTable;
use super::layout::{needed_symbols, Layout};

/// The entry format this version writes (4: entries bound to the kernel's bytes, and the
/// mount, kernel-log and panic-state needs and bitfield positions added to the layouts;
/// 5: the digest of those bytes is BLAKE3, not SHA-256; 6: `task_struct.in_execve` added
/// to the layouts; an entry of an older format is not used).
const FORMAT: u32 = 6;

/// The largest cache file read.
const MAX_ENTRY: u64 = 4 << 20;

/// The most spans an entry may name.
const MAX_SPANS: usize = 8;

/// The most bytes an entry's spans may cover together (the kallsyms tables and the BTF
/// blob of a large kernel are some tens of MiB).
pub const MAX_SPAN_BYTES: u64 = 320 << 20;

/// Bytes of the kernel image an entry was derived from: `len` bytes at the banner's
/// physical address plus `rel` (the image is physically contiguous, so the distance is the
/// same in every boot of the build).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Offset from the banner's physical address.
    pub rel: i64,
    /// Length in bytes.
    pub len: u64,
}

impl Span {
    /// The span of `len` bytes at physical `start`, for a banner at physical `banner_phys`.
    pub fn at(banner_phys: u64, start: u64, len: u64) -> Span {
        Span {
            rel: start.wrapping_sub(banner_phys) as i64,
            len,
        }
    }

    /// The span's physical start for a banner at physical `banner_phys`.
    pub fn start(&self, banner_phys: u64) -> u64 {
        banner_phys.wrapping_add(self.rel as u64)
    }
}

/// True when `spans` are few enough and small enough to be read and hashed.
pub fn spans_bounded(spans: &[Span]) -> bool {
    spans.len() <= MAX_SPANS
        && !spans.is_empty()
        && spans
            .iter()
            .try_fold(0u64, |acc, s| acc.checked_add(s.len))
            .is_some_and(|total| total <= MAX_SPAN_BYTES)
}

/// One kernel build's discovery results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The entry format (6 in this version); other formats are ignored and rebuilt.
    pub format: u32,
    /// The banner the entry is filed under.
    pub banner: String,
    /// The link-time (un-shifted) address of `linux_banner`.
    pub banner_link: u64,
    /// Needed symbols, relative to `linux_banner`.
    pub symbols: BTreeMap<String, i64>,
    /// Resolved layouts.
    pub layout: Layout,
    /// The kernel bytes the symbols and layouts were derived from: the kallsyms tables and
    /// the BTF blob.
    pub spans: Vec<Span>,
    /// BLAKE3 (hex) of the bytes of `spans`, as read from the dump the entry was made from
    /// ([`super::image::digest_spans`]).
    pub digest: String,
    /// SHA-256 (hex) of the entry serialised with this field empty.
    pub checksum: String,
}

/// SHA-256 of `bytes`, in hex: the one stable content hash of the cache (file names,
/// checksums).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl CacheEntry {
    /// An entry for `banner`; `banner_virt` is the runtime address the symbols are at,
    /// `spans` and `digest` the kernel bytes they and `layout` were derived from.
    pub fn new(
        banner: &str,
        banner_virt: u64,
        banner_link: u64,
        symbols: &SymbolTable,
        layout: &Layout,
        spans: Vec<Span>,
        digest: String,
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
            spans,
            digest,
            checksum: String::new(),
        };
        e.checksum = e.compute_checksum();
        e
    }

    fn compute_checksum(&self) -> String {
        let mut c = self.clone();
        c.checksum = String::new();
        sha256_hex(serde_json::to_string(&c).unwrap_or_default().as_bytes())
    }
}

/// The conventional cache folder: `$XDG_CACHE_HOME/origami`, else `~/.cache/origami`
/// (`None` when neither variable is set). The library never uses it on its own; callers
/// that want a cache name it (the `origami` CLI does, unless `--no-cache`).
pub fn default_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("origami"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("origami"))
}

/// The file in `dir` where an entry for `banner` is filed.
pub fn path(dir: &Path, banner: &str) -> PathBuf {
    let name = sha256_hex(banner.as_bytes());
    dir.join(format!("linux-{}.json", name.get(..32).unwrap_or(&name)))
}

/// The entry filed under `banner` in `dir`, when a well-formed one is there. It is not
/// yet checked against the dump: the caller compares its digest with the dump's bytes.
pub fn load(dir: &Path, banner: &str) -> Option<CacheEntry> {
    let p = path(dir, banner);
    let meta = std::fs::metadata(&p).ok()?;
    if meta.len() > MAX_ENTRY {
        return None;
    }
    let text = std::fs::read_to_string(&p).ok()?;
    let e: CacheEntry = serde_json::from_str(&text).ok()?;
    (e.format == FORMAT
        && e.banner == banner
        && spans_bounded(&e.spans)
        && e.checksum == e.compute_checksum())
    .then_some(e)
}

/// Saves an entry in `dir` (atomically: a temporary file renamed over the old one).
pub fn store(dir: &Path, e: &CacheEntry) {
    let p = path(dir, &e.banner);
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(text) = serde_json::to_string(e) else {
        return;
    };
    // Unique per process and per call: concurrent crawls of one build never share a file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = p.with_extension(format!("tmp{}-{n}", std::process::id()));
    if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, &p).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}
