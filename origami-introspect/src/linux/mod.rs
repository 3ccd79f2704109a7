//! Linux guests from memory alone: the kernel, its symbols and types found in the dump, then
//! processes, connections, modules, mounts, the kernel log, host name, uptime, memory
//! figures and the taint and panic state.
//!
//! [`discover()`] finds the kernel (banner, `VMCOREINFO` when present, KASLR shifts, page-table
//! root), its symbols (a given `System.map`, else kallsyms recovered from memory) and its
//! struct layouts (its own BTF), caching symbols and layouts per kernel build. The feature
//! functions ([`crawl_kernel`]) then read the kernel's structures through those layouts.
//! [`crawl_into`] does both into a [`Frame`], recording each feature's time and errors.
//! Limits: x86-64 guests; kernels with kallsyms (or a System.map) and BTF.
//!
//! ```no_run
//! use origami_core::memory::MemoryDump;
//! use origami_introspect::frame::Frame;
//! use origami_introspect::linux::{crawl_into, LinuxOptions};
//!
//! let dump = MemoryDump::open("memory.elf")?;
//! let mut frame = Frame::new("vm-1");
//! crawl_into(&dump, &LinuxOptions::default(), &mut frame);
//! println!("{} processes", frame.process.len());
//! # Ok::<(), origami_core::Error>(())
//! ```

pub mod btf;
pub mod cache;
pub mod discover;
pub mod health;
pub mod kallsyms;
pub mod kmem;
pub mod layout;
pub mod modules;
pub mod mounts;
pub mod printk;
pub mod sockets;
pub mod sysinfo;
pub mod tasks;

use std::path::PathBuf;
use std::time::Instant;

use origami_core::memory::{MemoryDump, PhysicalMemory};
use origami_frame::Frame;

pub use discover::{DumpView, Kernel, SymbolSource};

use crate::error::Result;

/// How the memory crawl runs.
#[derive(Debug, Clone)]
pub struct LinuxOptions {
    /// A `System.map` for the guest's kernel; without one, kallsyms is recovered from memory.
    pub system_map: Option<PathBuf>,
    /// Use the discovery cache (`--no-cache` turns it off).
    pub use_cache: bool,
    /// The cache folder; default `$XDG_CACHE_HOME/origami`, else `~/.cache/origami`.
    pub cache_dir: Option<PathBuf>,
}

impl Default for LinuxOptions {
    fn default() -> Self {
        LinuxOptions {
            system_map: None,
            use_cache: true,
            cache_dir: None,
        }
    }
}

impl LinuxOptions {
    /// Options with a `System.map`.
    pub fn with_system_map(mut self, path: impl Into<PathBuf>) -> Self {
        self.system_map = Some(path.into());
        self
    }

    /// Options without the cache.
    pub fn no_cache(mut self) -> Self {
        self.use_cache = false;
        self
    }

    /// Options with the cache in `dir`.
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self.use_cache = true;
        self
    }
}

/// Discovers the kernel in a dump (see [`discover::discover`]).
pub fn discover(mem: &MemoryDump, opts: &LinuxOptions) -> Result<Kernel> {
    let view = DumpView {
        phys: mem,
        vmcoreinfo: mem.vmcoreinfo(),
        cpus: mem.cpus(),
    };
    discover::discover(&view, opts)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Fills `frame` from a discovered kernel: `os.kernel`, `os.hostname` (and
/// `_frame.hostname` when unset), uptime and memory figures, `process`, `connection` and
/// `module`, with per-feature timings and errors.
pub fn crawl_kernel(kernel: &Kernel, phys: &dyn PhysicalMemory, frame: &mut Frame) {
    let km = kernel.kmem(phys);
    let t = Instant::now();
    match sysinfo::uts(kernel, &km) {
        Ok(u) => {
            let release = if u.release.is_empty() {
                kernel.release.clone()
            } else {
                u.release
            };
            frame.os.kernel = Some(release);
            if !u.machine.is_empty() {
                frame.os.arch = Some(u.machine);
            }
            if frame.meta.hostname.is_none() {
                frame.meta.hostname = Some(u.hostname.clone());
            }
            frame.os.hostname = Some(u.hostname);
        }
        Err(e) => {
            frame.os.kernel = Some(kernel.release.clone());
            frame.record_error("os", e.to_string());
        }
    }
    frame
        .os
        .extra
        .insert("kernel_banner".into(), kernel.banner.clone().into());
    match sysinfo::memory(kernel, &km) {
        Ok(m) => {
            frame
                .os
                .extra
                .insert("mem_total_kb".into(), m.total_kb.into());
            frame
                .os
                .extra
                .insert("mem_free_kb".into(), m.free_kb.into());
        }
        Err(e) => frame.record_error("os", format!("memory totals: {e}")),
    }
    match sysinfo::clock(kernel, &km) {
        Ok(c) => {
            frame.os.extra.insert(
                "uptime_s".into(),
                serde_json::Value::from((c.uptime_s * 100.0).round() / 100.0),
            );
            let boot = c.now_unix - c.uptime_s as i64;
            if let Ok(t) = time::OffsetDateTime::from_unix_timestamp(boot) {
                if let Ok(s) = t.format(&time::format_description::well_known::Rfc3339) {
                    frame.os.boot_time = Some(s);
                }
            }
        }
        Err(e) => frame.record_error("os", format!("uptime: {e}")),
    }
    frame.meta.timings.insert("os.memory".into(), ms(t));

    let t = Instant::now();
    let task_list = match tasks::processes(kernel, &km) {
        Ok((procs, errors)) => {
            for e in errors {
                frame.record_error("process", e.to_string());
            }
            frame.process = procs;
            true
        }
        Err(e) => {
            frame.record_error("process", e.to_string());
            false
        }
    };
    frame.meta.timings.insert("process".into(), ms(t));

    let t = Instant::now();
    if task_list {
        let r =
            tasks::tasks(kernel, &km).and_then(|(ts, _)| sockets::connections(kernel, &km, &ts));
        match r {
            Ok((conns, errors)) => {
                for e in errors {
                    frame.record_error("connection", e.to_string());
                }
                frame.connection = conns;
            }
            Err(e) => frame.record_error("connection", e.to_string()),
        }
    } else {
        frame.record_error("connection", "no task list to find sockets through");
    }
    frame.meta.timings.insert("connection".into(), ms(t));

    let t = Instant::now();
    match modules::modules(kernel, &km) {
        Ok((mods, errors)) => {
            for e in errors {
                frame.record_error("module", e.to_string());
            }
            frame.module = mods;
        }
        Err(e) => frame.record_error("module", e.to_string()),
    }
    frame.meta.timings.insert("module".into(), ms(t));

    crawl_mounts_log_health(kernel, &km, frame);
}

/// Mounts, the kernel log and the panic state into `frame` (`mount`, `kernel_log`, and
/// `os.tainted` / `taint_flags` / `oopsed` / `oops_in_progress` / `panicked` /
/// `panic_cpu`), with timings and errors. The features themselves are pure functions in
/// [`mounts`], [`printk`] and [`health`].
fn crawl_mounts_log_health(kernel: &Kernel, km: &kmem::Kmem<'_>, frame: &mut Frame) {
    let t = Instant::now();
    match mounts::mounts(kernel, km) {
        Ok(m) => {
            for e in m.errors {
                frame.record_error("mount", e.to_string());
            }
            frame.mount = m.mounts;
        }
        Err(e) => frame.record_error("mount", e.to_string()),
    }
    frame.meta.timings.insert("mount".into(), ms(t));

    let t = Instant::now();
    match printk::kernel_log(kernel, km) {
        Ok(log) => {
            for e in log.errors {
                frame.record_error("kernel_log", e.to_string());
            }
            frame.kernel_log = log.records;
        }
        Err(e) => frame.record_error("kernel_log", e.to_string()),
    }
    frame.meta.timings.insert("kernel_log".into(), ms(t));

    let t = Instant::now();
    match health::health(kernel, km) {
        Ok(h) => {
            frame.os.tainted = Some(h.tainted);
            frame.os.oopsed = Some(h.oopsed);
            frame.os.oops_in_progress = Some(h.oops_in_progress);
            frame.os.panicked = Some(h.panicked());
            frame.os.panic_cpu = h.panic_cpu;
            frame.os.taint_flags = Some(h.taint_flags);
        }
        Err(e) => frame.record_error("os", format!("panic state: {e}")),
    }
    frame.meta.timings.insert("os.health".into(), ms(t));
}

/// Discovers the kernel in `mem` and fills `frame` (see [`crawl_kernel`]); a discovery
/// failure is recorded as a `kernel` error and leaves the memory sections empty.
pub fn crawl_into(mem: &MemoryDump, opts: &LinuxOptions, frame: &mut Frame) {
    let t = Instant::now();
    let kernel = discover(mem, opts);
    frame.meta.timings.insert("kernel".into(), ms(t));
    match kernel {
        Ok(k) => {
            for (name, v) in &k.timings {
                frame.meta.timings.insert(name.clone(), *v);
            }
            crawl_kernel(&k, mem, frame);
        }
        Err(e) => frame.record_error("kernel", e.to_string()),
    }
}
