//! Linux guests from memory alone: the kernel, its symbols and types found in the dump, then
//! processes, connections, modules, mounts, the kernel log, host name, uptime, memory
//! figures and the taint and panic state.
//!
//! [`discover()`] finds the kernel (banner, `VMCOREINFO` when present, KASLR shifts, page-table
//! root), its symbols (a given `System.map`, else kallsyms recovered from memory) and its
//! struct layouts (its own BTF, or a DWARF `vmlinux` or Volatility ISF the caller names, see
//! [`layout_source`]), caching symbols and layouts per kernel build when asked to
//! (bound to the kernel's bytes, see [`cache`]). [`crawl_kernel`] then reads the kernel's
//! structures through those layouts, walking the task list once for processes and
//! connections, and returns [`MemoryFacts`]; [`crawl()`] does both. The memory is anything
//! that gives a [`DumpView`]: a [`MemoryDump`](origami_core::memory::MemoryDump), or the
//! caller's own [`PhysicalMemory`] with what it knows of the CPUs and `VMCOREINFO`.
//! Limits: x86-64 guests; kernels with kallsyms (or a System.map) and BTF.
//!
//! ```no_run
//! use origami_core::memory::MemoryDump;
//! use origami_introspect::frame::Frame;
//! use origami_introspect::linux::{crawl, LinuxOptions};
//!
//! let dump = MemoryDump::open("memory.elf")?;
//! let facts = crawl(&dump, &LinuxOptions::default());
//! println!("{} processes", facts.process.as_ref().map_or(0, Vec::len));
//! let mut frame = Frame::new("vm-1");
//! facts.merge_into(&mut frame);
//! # Ok::<(), origami_core::Error>(())
//! ```

pub mod banner;
pub mod btf;
pub mod cache;
pub mod discover;
pub mod dwarf;
pub mod facts;
pub mod health;
pub mod image;
pub mod isf;
pub mod kallsyms;
pub mod kernel;
pub mod kmem;
pub mod layout;
pub mod layout_source;
pub mod modules;
pub mod mounts;
mod placement;
pub mod printk;
pub mod sockets;
mod symbols;
pub mod sysinfo;
pub mod tasks;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use origami_core::memory::PhysicalMemory;
use origami_frame::Section;

pub use facts::{FeatureFailure, MemoryFacts, RunningOs};
pub use kernel::{DumpView, Kernel, SymbolSource};
pub use layout_source::LayoutSource;

use crate::error::{Error, Result};
use crate::limits::{Bounds, Budget, Limits};
use crate::timing::millis;

/// The sections a memory crawl can fill.
pub const MEMORY_SECTIONS: [Section; 6] = [
    Section::Os,
    Section::Process,
    Section::Connection,
    Section::Module,
    Section::Mount,
    Section::KernelLog,
];

/// How the memory crawl runs.
#[derive(Debug, Clone)]
pub struct LinuxOptions {
    /// A `System.map` for the guest's kernel; without one, kallsyms is recovered from memory.
    pub system_map: Option<PathBuf>,
    /// The discovery cache's folder; `None` (the default) uses no cache.
    /// [`cache::default_dir`] is the conventional folder.
    pub cache_dir: Option<PathBuf>,
    /// The sections to crawl (default [`MEMORY_SECTIONS`]; others are ignored).
    pub sections: BTreeSet<Section>,
    /// The bounds of the crawl (default [`Limits::DEFAULT`]): list lengths, sizes, the
    /// memory budget, time per section.
    pub limits: Limits,
    /// The memory budget the crawl shares with what else the caller crawls (the
    /// [`Crawler`](crate::Crawler) sets its own); `None` gives each crawl a fresh one of
    /// `limits.memory`.
    pub budget: Option<Budget>,
    /// Where the kernel's type layouts come from instead of its own BTF (a DWARF
    /// `vmlinux` or a Volatility 3 ISF, or a folder of them); `None` (the default) reads
    /// the BTF in memory.
    pub layouts: Option<LayoutSource>,
}

impl Default for LinuxOptions {
    fn default() -> Self {
        LinuxOptions {
            system_map: None,
            cache_dir: None,
            sections: MEMORY_SECTIONS.into_iter().collect(),
            limits: Limits::DEFAULT,
            budget: None,
            layouts: None,
        }
    }
}

impl LinuxOptions {
    /// Options with a `System.map`.
    pub fn with_system_map(mut self, path: impl Into<PathBuf>) -> Self {
        self.system_map = Some(path.into());
        self
    }

    /// Options taking the kernel's layouts from `source` instead of its BTF.
    pub fn with_layouts(mut self, source: LayoutSource) -> Self {
        self.layouts = Some(source);
        self
    }

    /// Options without the cache (the default).
    pub fn no_cache(mut self) -> Self {
        self.cache_dir = None;
        self
    }

    /// Options with the cache in `dir`.
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Options crawling only these sections.
    pub fn with_sections(mut self, sections: impl IntoIterator<Item = Section>) -> Self {
        self.sections = sections.into_iter().collect();
        self
    }

    /// Options within `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    fn wants(&self, section: Section) -> bool {
        self.sections.contains(&section)
    }

    /// The bounds of one crawl: the limits, the caller's budget (or a fresh one) and no
    /// deadline yet ([`Bounds::section`] starts one per section).
    pub fn bounds(&self) -> Bounds {
        Bounds {
            limits: self.limits,
            budget: self
                .budget
                .clone()
                .unwrap_or_else(|| Budget::new(self.limits.memory)),
            deadline: crate::Deadline::none(),
        }
    }

    /// These options with their budget fixed (a fresh one when none was given), so that
    /// every step of one crawl shares it.
    fn for_one_crawl(&self) -> LinuxOptions {
        let mut o = self.clone();
        o.budget = Some(self.bounds().budget);
        o
    }
}

/// Discovers the kernel in guest memory (see [`discover::discover`]).
pub fn discover<'a>(mem: impl Into<DumpView<'a>>, opts: &LinuxOptions) -> Result<Kernel> {
    discover::discover(&mem.into(), opts)
}

/// Reads the running kernel and machine (`init_uts_ns`, memory totals, the clock). Parts
/// that fail are reported and left out.
fn running_os(kernel: &Kernel, km: &kmem::Kmem<'_>, facts: &mut MemoryFacts) -> RunningOs {
    let mut os = RunningOs {
        release: kernel.release.clone(),
        banner: kernel.banner.clone(),
        ..RunningOs::default()
    };
    match sysinfo::uts(kernel, km) {
        Ok(u) => {
            if !u.release.is_empty() {
                os.release = u.release;
            }
            os.arch = Some(u.machine).filter(|m| !m.is_empty());
            os.hostname = Some(u.hostname);
        }
        Err(e) => facts.fail("os", e),
    }
    match sysinfo::memory(kernel, km) {
        Ok(m) => {
            os.mem_total_kb = Some(m.total_kb);
            os.mem_free_kb = Some(m.free_kb);
        }
        Err(e) => facts.fail("os", e),
    }
    match sysinfo::clock(kernel, km) {
        Ok(c) => {
            os.uptime_s = Some((c.uptime_s * 100.0).round() / 100.0);
            let boot = c.now_unix - c.uptime_s as i64;
            os.boot_time = time::OffsetDateTime::from_unix_timestamp(boot)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                });
        }
        Err(e) => facts.fail("os", e),
    }
    os
}

/// Reads the sections `opts` asks for from a discovered kernel. The task list is walked
/// once: the same tasks give the processes and, through their open files, the connections.
pub fn crawl_kernel(
    kernel: &Kernel,
    phys: &dyn PhysicalMemory,
    opts: &LinuxOptions,
) -> MemoryFacts {
    let km = kernel.kmem(phys);
    let mut facts = MemoryFacts::default();
    let bounds = opts.bounds();
    if opts.wants(Section::Os) {
        let t = Instant::now();
        let b = bounds.section("os");
        facts.os = Some(running_os(kernel, &km, &mut facts));
        facts.timings.push(("os.memory".into(), millis(t)));
        if b.deadline.passed() {
            facts.fail("os", b.deadline.error());
        }
    }

    let (want_proc, want_conn) = (
        opts.wants(Section::Process),
        opts.wants(Section::Connection),
    );
    if want_proc || want_conn {
        let t = Instant::now();
        let walk_feature = if want_proc { "process" } else { "connection" };
        let b = bounds.section(walk_feature);
        match tasks::tasks_with(kernel, &km, &b) {
            Ok((tasks, walk_errors)) => {
                // A walk cut short is the process section's error (or the connections'
                // when processes are not crawled); both use what it read.
                for e in walk_errors {
                    facts.fail(walk_feature, e);
                }
                if want_proc {
                    let procs = Ok(tasks::processes_with(kernel, &km, &tasks, &b));
                    facts.process = facts.keep("process", procs);
                    facts.timings.push(("process".into(), millis(t)));
                }
                if want_conn {
                    let t = Instant::now();
                    let b = bounds.section("connection");
                    let conns = sockets::connections_with(kernel, &km, &tasks, &b);
                    facts.connection = facts.keep("connection", conns);
                    facts.timings.push(("connection".into(), millis(t)));
                }
            }
            Err(e) => {
                if want_conn {
                    facts.fail(
                        "connection",
                        Error::Malformed {
                            file: "kernel task list".into(),
                            location: "init_task".into(),
                            what: format!("no task list to find sockets through: {e}"),
                        },
                    );
                }
                if want_proc {
                    facts.fail("process", e);
                }
            }
        }
    }

    if opts.wants(Section::Module) {
        let t = Instant::now();
        let b = bounds.section("module");
        facts.module = facts.keep("module", modules::modules_with(kernel, &km, &b));
        facts.timings.push(("module".into(), millis(t)));
    }
    mounts_log_health(kernel, &km, opts, &bounds, &mut facts);
    facts
}

/// Mounts, the kernel log and the panic state, each when `opts` asks for its section (the
/// panic state goes with `os`). The features themselves are pure functions in [`mounts`],
/// [`printk`] and [`health`].
fn mounts_log_health(
    kernel: &Kernel,
    km: &kmem::Kmem<'_>,
    opts: &LinuxOptions,
    bounds: &Bounds,
    facts: &mut MemoryFacts,
) {
    // These walks are bounded by their own constants; past its time, a section is
    // reported when it ends.
    let overran = |facts: &mut MemoryFacts, feature: &'static str, b: &Bounds| {
        if b.deadline.passed() {
            facts.fail(feature, b.deadline.error());
        }
    };
    if opts.wants(Section::Mount) {
        let t = Instant::now();
        let b = bounds.section("mount");
        match mounts::mounts(kernel, km) {
            Ok(m) => {
                for e in m.errors {
                    facts.fail("mount", e);
                }
                facts.mount = Some(m.mounts);
            }
            Err(e) => facts.fail("mount", e),
        }
        overran(facts, "mount", &b);
        facts.timings.push(("mount".into(), millis(t)));
    }
    if opts.wants(Section::KernelLog) {
        let t = Instant::now();
        let b = bounds.section("kernel_log");
        match printk::kernel_log(kernel, km) {
            Ok(log) => {
                for e in log.errors {
                    facts.fail("kernel_log", e);
                }
                facts.kernel_log = Some(log.records);
            }
            Err(e) => facts.fail("kernel_log", e),
        }
        overran(facts, "kernel_log", &b);
        facts.timings.push(("kernel_log".into(), millis(t)));
    }
    if opts.wants(Section::Os) {
        let t = Instant::now();
        match health::health(kernel, km) {
            Ok(h) => facts.health = Some(h),
            Err(e) => facts.fail("os", e),
        }
        facts.timings.push(("os.health".into(), millis(t)));
    }
}

/// Discovers the kernel in guest memory and reads the sections `opts` asks for (see
/// [`crawl_kernel`]); a discovery failure is a `kernel` error and leaves every section
/// out.
pub fn crawl<'a>(mem: impl Into<DumpView<'a>>, opts: &LinuxOptions) -> MemoryFacts {
    let view = mem.into();
    let opts = &opts.for_one_crawl();
    let t = Instant::now();
    let deadline = crate::Deadline::start("kernel", opts.limits.section_time);
    let kernel = discover::discover(&view, opts);
    let discovery_ms = millis(t);
    let overran = deadline.passed().then(|| deadline.error());
    let mut facts = match kernel {
        Ok(k) => {
            let mut facts = crawl_kernel(&k, view.phys, opts);
            facts.timings.splice(0..0, k.timings);
            facts
        }
        Err(e) => {
            let mut facts = MemoryFacts::default();
            facts.fail("kernel", e);
            facts
        }
    };
    if let Some(e) = overran {
        facts.fail("kernel", e);
    }
    facts.timings.insert(0, ("kernel".into(), discovery_ms));
    facts
}
