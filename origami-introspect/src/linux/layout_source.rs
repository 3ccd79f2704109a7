//! Type layouts from outside the dump: a DWARF `vmlinux` ([`super::dwarf`]) or a
//! Volatility 3 ISF ([`super::isf`]), named by the caller ([`LayoutSource`]) for kernels
//! without usable BTF, or to override it.
//!
//! A source is a file or a folder; from a folder, the file whose banner is the dump's is
//! picked (files named after the kernel's release tried first). Whatever the file, it must
//! be of *this* kernel build: its banner (DWARF: the bytes at `linux_banner`; ISF:
//! `linux_banner`'s `constant_data`) must equal the dump's, and the symbols it shares with
//! the ones discovery found must lie at the same distances from `linux_banner`. A file
//! that says neither is refused, as is one whose layouts hold none of the members the
//! features read. Loading is done once per crawl ([`Sources`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::dwarf::KernelDwarf;
use super::isf::Isf;
use super::kallsyms::{Symbol, SymbolTable};
use super::layout::{Layout, NEEDS};
use crate::error::{Error, Result};

/// The most folder entries looked at, and the most files opened from a folder.
const MAX_DIR_ENTRIES: usize = 10_000;
/// See [`MAX_DIR_ENTRIES`].
const MAX_CANDIDATES: usize = 8;

/// Where a kernel's type layouts come from, instead of its own BTF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutSource {
    /// A `vmlinux` with DWARF debug info (a `-dbg` / `debuginfo` package's), or a folder
    /// of them (`origami crawl --kernel-debuginfo`).
    KernelDebuginfo(PathBuf),
    /// A Volatility 3 symbol file, `.json` or `.json.xz`, or a folder of them
    /// (`origami crawl --isf`).
    Isf(PathBuf),
}

impl LayoutSource {
    /// The file or folder named.
    pub fn path(&self) -> &Path {
        match self {
            LayoutSource::KernelDebuginfo(p) | LayoutSource::Isf(p) => p,
        }
    }

    /// `DWARF` or `ISF`, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            LayoutSource::KernelDebuginfo(_) => "DWARF",
            LayoutSource::Isf(_) => "ISF",
        }
    }
}

/// What a source gave for one kernel build.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file the layouts came from.
    pub path: PathBuf,
    /// The layouts.
    pub layout: Layout,
    /// The banner the file holds, when it holds one.
    pub banner: Option<String>,
    /// Link-time addresses of the symbols discovery reads, when the file has them.
    pub symbols: BTreeMap<String, u64>,
}

impl Loaded {
    /// The file's symbols as a table (link-time addresses, like a `System.map`), when it
    /// names `linux_banner`.
    pub fn symbol_table(&self) -> Option<SymbolTable> {
        self.symbols.contains_key("linux_banner").then(|| {
            SymbolTable::from_symbols(self.symbols.iter().map(|(n, a)| Symbol {
                name: n.clone(),
                address: *a,
                kind: 'D',
            }))
        })
    }

    /// Checks that the file is of the kernel whose runtime symbols are `runtime`: the
    /// symbols both name lie at the same distances from `linux_banner`.
    pub fn check_symbols(&self, runtime: &SymbolTable) -> Result<()> {
        let (Some(link_b), Some(run_b)) = (
            self.symbols.get("linux_banner"),
            runtime.get("linux_banner"),
        ) else {
            return if self.banner.is_some() {
                Ok(())
            } else {
                Err(self.refuse("it names neither the kernel's banner nor linux_banner"))
            };
        };
        for (name, &link) in &self.symbols {
            let Some(run) = runtime.get(name) else {
                continue;
            };
            let (a, b) = (link.wrapping_sub(*link_b), run.wrapping_sub(run_b));
            if a != b {
                return Err(self.refuse(format!(
                    "its {name} lies {a:#x} bytes from linux_banner, the running kernel's \
                     {b:#x}: another build of the kernel"
                )));
            }
        }
        Ok(())
    }

    fn refuse(&self, why: impl Into<String>) -> Error {
        Error::Malformed {
            file: self.path.display().to_string(),
            location: "kernel layouts".into(),
            what: format!("not used: {}", why.into()),
        }
    }
}

/// Loads a source for the kernel with `banner` (and `release`), picking the file from a
/// folder.
pub fn load(src: &LayoutSource, banner: &str, release: &str) -> Result<Loaded> {
    let path = src.path();
    if !path.is_dir() {
        return load_file(src, path, banner);
    }
    let rd = std::fs::read_dir(path).map_err(|e| Error::Malformed {
        file: path.display().to_string(),
        location: "folder".into(),
        what: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = rd
        .take(MAX_DIR_ENTRIES)
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| match src {
            LayoutSource::Isf(_) => {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                n.ends_with(".json") || n.ends_with(".json.xz")
            }
            LayoutSource::KernelDebuginfo(_) => true,
        })
        .collect();
    // The files named after the release first, then the rest, in a stable order.
    files.sort_by_key(|p| {
        let n = p.file_name().map(|n| n.to_string_lossy().into_owned());
        (!n.as_deref().unwrap_or("").contains(release), n)
    });
    let mut tried = Vec::new();
    for p in files.iter().take(MAX_CANDIDATES) {
        match load_file(src, p, banner) {
            Ok(l) => return Ok(l),
            Err(e) => tried.push(e.to_string()),
        }
    }
    Err(Error::Malformed {
        file: path.display().to_string(),
        location: "folder".into(),
        what: format!(
            "no {} file there is of the kernel `{banner}` ({} of {} files tried{}{})",
            src.kind(),
            tried.len(),
            files.len(),
            if tried.is_empty() { "" } else { ": " },
            tried.join("; ")
        ),
    })
}

/// Loads one file; refuses it when its banner is another kernel's.
fn load_file(src: &LayoutSource, path: &Path, banner: &str) -> Result<Loaded> {
    let refuse = |theirs: &str| Error::Malformed {
        file: path.display().to_string(),
        location: "linux_banner".into(),
        what: format!("not used: its banner `{theirs}` is not the running kernel's `{banner}`"),
    };
    let loaded = match src {
        LayoutSource::KernelDebuginfo(_) => {
            let d = KernelDwarf::open(path)?;
            if let Some(b) = d.banner().filter(|b| *b != banner) {
                return Err(refuse(b));
            }
            Loaded {
                path: path.to_path_buf(),
                layout: d.layout()?,
                banner: d.banner().map(str::to_string),
                symbols: d.symbols().clone(),
            }
        }
        LayoutSource::Isf(_) => {
            let i = Isf::open(path)?;
            let b = i.banner();
            if let Some(b) = b.as_deref().filter(|b| *b != banner) {
                return Err(refuse(b));
            }
            Loaded {
                path: path.to_path_buf(),
                layout: i.layout(),
                banner: b,
                symbols: i.symbols(),
            }
        }
    };
    if loaded.layout.is_useless() {
        let first: Vec<&str> = NEEDS
            .iter()
            .flat_map(|n| n.fields.iter().copied())
            .take(3)
            .collect();
        return Err(Error::Malformed {
            file: path.display().to_string(),
            location: "kernel layouts".into(),
            what: format!(
                "holds none of the members the crawl reads ({}, ...): {}",
                first.join(", "),
                loaded
                    .layout
                    .missing
                    .iter()
                    .next()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .unwrap_or_default()
            ),
        });
    }
    Ok(loaded)
}

/// The caller's source, loaded at most once per banner in one discovery.
#[derive(Debug, Default)]
pub struct Sources {
    loaded: Vec<(String, std::result::Result<Loaded, String>)>,
}

impl Sources {
    /// The source loaded for `banner` (from memory when already loaded in this discovery).
    pub fn get(&mut self, src: &LayoutSource, banner: &str, release: &str) -> Result<&Loaded> {
        let i = match self.loaded.iter().position(|(b, _)| b == banner) {
            Some(i) => i,
            None => {
                let r = load(src, banner, release).map_err(|e| e.to_string());
                self.loaded.push((banner.to_string(), r));
                self.loaded.len() - 1
            }
        };
        match &self.loaded[i].1 {
            Ok(l) => Ok(l),
            Err(e) => Err(Error::Malformed {
                file: "kernel layouts".into(),
                location: src.kind().into(),
                what: e.clone(),
            }),
        }
    }
}
