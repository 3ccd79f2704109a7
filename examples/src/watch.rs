//! `origami watch`: follows a running VM's memory and prints what changes, one event a
//! line; and the memory sources of `origami crawl --qemu-pid`.
//!
//! The memory is a running QEMU attached by process id (`--qemu-pid`, read-only through
//! `/proc/PID/mem` or QEMU's shared RAM descriptor, the guest not stopped) or a file
//! (`--memory`): a running VM's RAM file (raw bytes, placed in guest-physical space as the
//! `--machine` type lays out RAM) or a dump (ELF, kdump, LiME), which does not change. The
//! kernel is found once; then a [`Watcher`] re-reads processes, connections, modules and
//! the host name every `--interval`.
//!
//! With `--json` each event is one JSON object a line (JSON Lines):
//! `{"time": "2026-12-01T18:00:00.010Z", "system": "vmi-fixture", "event":
//! "process_started", "process": {"pid": 412, ...}}`, the item under its frame section's
//! name with the frame's field names (`hostname_changed` carries `os` and `previous`, each
//! `{"hostname": ...}`). With `--count N` it stops after N crawls and prints
//! `{"summary": {"crawls": N, "seconds": S, "partial": P}}` last. A partial crawl (a torn
//! read retried and still torn) yields no event for its torn sections and is logged on
//! stderr.
//!
//! ```
//! use std::time::Duration;
//! use origami_examples::watch::parse_interval;
//! assert_eq!(parse_interval("10ms"), Ok(Duration::from_millis(10)));
//! assert_eq!(parse_interval("1.5s"), Ok(Duration::from_millis(1500)));
//! assert!(parse_interval("10").is_err());
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use origami_core::memory::{DumpFormat, MemoryDump, PhysicalMemory, RamLayout};
use origami_introspect::linux::LinuxOptions;
use origami_introspect::watch::{Event, Schedule, Tick, WatchOptions, Watcher};
use origami_introspect::MemorySource;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The arguments of `origami watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// A running VM's RAM file (`memory-backend-file`) or a memory dump.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["qemu_pid", "disks"],
        conflicts_with = "qemu_pid"
    )]
    pub memory: Option<PathBuf>,
    /// A disk image whose files to watch instead of memory (repeatable; with --state):
    /// each crawl reads what changed since the state and prints file events as JSON Lines.
    #[arg(long = "disk", value_name = "IMG", requires = "state", conflicts_with_all = ["memory", "qemu_pid"])]
    pub disks: Vec<PathBuf>,
    /// The crawl state and change source of a disk watch.
    #[command(flatten)]
    pub incremental: crate::incremental::StateArgs,
    /// The process id of a running QEMU whose guest RAM to read (no file needed).
    #[arg(long, value_name = "PID")]
    pub qemu_pid: Option<u32>,
    /// Time between crawls: a number with a unit (`10ms`, `1s`, `250us`).
    #[arg(long, value_name = "TIME", default_value = "10ms", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop after N crawls (the first is the baseline) and print a summary line.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// One JSON object a line per event (JSON Lines).
    #[arg(long)]
    pub json: bool,
    /// The system id printed with each event (default: the guest's host name).
    #[arg(long)]
    pub name: Option<String>,
    /// The guest kernel's System.map (otherwise kallsyms is recovered from memory).
    #[arg(long, value_name = "FILE")]
    pub system_map: Option<PathBuf>,
    /// Skip the per-kernel discovery cache.
    #[arg(long)]
    pub no_cache: bool,
    /// How a raw RAM file (`--memory`) lies in guest-physical space: the QEMU machine
    /// type (`q35`, `pc`; RAM above the PCI hole is split as they split it), or `flat`.
    #[arg(long, value_name = "TYPE", default_value = "q35")]
    pub machine: String,
    /// Also report what the first crawl finds (as started, opened, loaded).
    #[arg(long)]
    pub report_existing: bool,
}

/// Errors of `origami watch` and of attaching to a VM's memory.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The memory could not be opened or attached.
    #[error(transparent)]
    Memory(#[from] origami_core::Error),
    /// No Linux kernel was found in the memory.
    #[error("no kernel to watch in {source_name}: {error}")]
    Kernel {
        /// The memory's name.
        source_name: String,
        /// Why.
        error: origami_introspect::Error,
    },
    /// An unknown `--machine`.
    #[error("--machine {0:?}: use q35, pc or flat")]
    Machine(String),
    /// Writing the events failed (a closed pipe ends the watch quietly instead).
    #[error("writing events: {0}")]
    Output(#[from] std::io::Error),
}

/// Parses an interval: a number (with a fraction) and a unit, `ns`, `us`, `ms`, `s`, `m`.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?}: give a unit, e.g. 10ms, 1s"))?;
    let (n, unit) = t.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("{s:?}: not a number"))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        u => return Err(format!("{s:?}: unknown unit {u:?} (ns, us, ms, s, m)")),
    };
    Duration::try_from_secs_f64(n * scale)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?}: not a positive interval"))
}

/// The memory of the running QEMU `pid`, attached read-only (see
/// [`MemoryDump::attach_qemu_pid`]).
pub fn attach(pid: u32) -> Result<MemorySource, WatchError> {
    let dump = MemoryDump::attach_qemu_pid(pid)?;
    Ok(MemorySource::new(dump.name(), Arc::new(dump)))
}

/// The memory in `path`: a dump as it is (with its CPU state and `VMCOREINFO`), raw bytes
/// as a running VM's RAM file laid out for `machine`.
pub fn open_memory(path: &Path, machine: &str) -> Result<MemorySource, WatchError> {
    let dump = MemoryDump::open(path)?;
    if dump.format() != DumpFormat::Raw {
        let cpus = dump.cpus().to_vec();
        let vmcoreinfo = dump.vmcoreinfo().cloned();
        let mut source = MemorySource::new(dump.name(), Arc::new(dump)).with_cpus(cpus);
        source.vmcoreinfo = vmcoreinfo;
        return Ok(source);
    }
    // A raw file is read from address 0 for its whole length.
    let len = dump.ranges().iter().map(|r| r.end).max().unwrap_or(0);
    drop(dump);
    let layout = match machine {
        "flat" => RamLayout::flat(len),
        "q35" => RamLayout::q35(len),
        "pc" => RamLayout::pc_i440fx(len),
        m => return Err(WatchError::Machine(m.to_string())),
    };
    let live = MemoryDump::open_live(path, layout)?;
    Ok(MemorySource::new(live.name(), Arc::new(live)))
}

/// One JSON line of an event.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    system: &'a str,
    #[serde(flatten)]
    event: &'a Event,
}

/// The summary line: `{"summary": {...}}`.
#[derive(Serialize)]
struct SummaryLine {
    summary: Summary,
}

/// What the summary line says.
#[derive(Serialize)]
struct Summary {
    crawls: u64,
    seconds: f64,
    partial: u64,
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t).format(&Rfc3339).unwrap_or_default()
}

/// Runs `origami watch`, writing events to `out`.
pub fn run(args: &WatchArgs, out: &mut dyn Write) -> Result<(), WatchError> {
    let source = match (args.qemu_pid, &args.memory) {
        (Some(pid), _) => attach(pid)?,
        (None, Some(path)) => open_memory(path, &args.machine)?,
        (None, None) => unreachable!("clap requires --memory or --qemu-pid"),
    };
    let mut linux = LinuxOptions::default();
    if let Some(m) = &args.system_map {
        linux = linux.with_system_map(m);
    }
    if !args.no_cache {
        if let Some(dir) = origami_introspect::linux::cache::default_dir() {
            linux = linux.with_cache_dir(dir);
        }
    }
    let mut options = WatchOptions::default()
        .with_linux(linux)
        .reporting_existing(args.report_existing);
    // A page cache pays off where each read is a system call (`/proc/PID/mem`: about 3x
    // faster in the live bench); a mapped file is read faster without one.
    options.page_cache = args.qemu_pid.is_some();
    let mut watcher = Watcher::new(&source, options).map_err(|error| WatchError::Kernel {
        source_name: source.phys.name(),
        error,
    })?;
    let started = Instant::now();
    let (mut crawls, mut partial) = (0u64, 0u64);
    let mut system: Option<String> = args.name.clone();
    // A fixed rate; a crawl that overruns is followed at once, without a burst; a new
    // process seen in the middle of `execve` is re-read early (see `Schedule`).
    let mut schedule = Schedule::new(args.interval);
    let mut next = None;
    loop {
        let due = Schedule::wait(next);
        let tick = watcher.tick();
        next = Some(schedule.next(due, &tick));
        crawls += 1;
        if tick.partial() {
            partial += 1;
            for t in &tick.torn {
                tracing::warn!("crawl {} partial: {}: {}", tick.number, t.section, t.reason);
            }
        }
        // The system is the guest's host name at its first good read (or --name).
        if system.is_none() {
            system = watcher.hostname().map(String::from);
        }
        let name = system.as_deref().unwrap_or("unknown");
        if let Err(e) = print_tick(&tick, name, args.json, out) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
        if args.count.is_some_and(|n| crawls >= n) {
            break;
        }
    }
    let summary = Summary {
        crawls,
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        partial,
    };
    if args.json {
        serde_json::to_writer(&mut *out, &SummaryLine { summary }).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{} crawls in {:.3} s, {} partial",
            summary.crawls, summary.seconds, summary.partial
        )?;
    }
    out.flush()?;
    Ok(())
}

fn print_tick(tick: &Tick, system: &str, json: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let time = rfc3339(tick.time);
    for event in &tick.events {
        if json {
            serde_json::to_writer(
                &mut *out,
                &Line {
                    time: time.clone(),
                    system,
                    event,
                },
            )?;
            writeln!(out)?;
        } else {
            writeln!(out, "{time} {system} {}", describe(event))?;
        }
    }
    out.flush()
}

/// An event as one line of text.
pub fn describe(event: &Event) -> String {
    match event {
        Event::ProcessStarted { process: p } | Event::ProcessExited { process: p } => format!(
            "{} pid={} uid={} name={} cmdline={:?}",
            event.name(),
            p.pid,
            p.uid,
            p.name,
            p.cmdline.join(" ")
        ),
        Event::ConnectionOpened { connection: c } | Event::ConnectionClosed { connection: c } => {
            format!(
                "{} {} {}:{} -> {}:{} {}{}",
                event.name(),
                c.protocol,
                c.local_address,
                c.local_port,
                c.remote_address,
                c.remote_port,
                c.state,
                c.pid.map(|p| format!(" pid={p}")).unwrap_or_default()
            )
        }
        Event::ModuleLoaded { module: m } | Event::ModuleUnloaded { module: m } => {
            format!("{} {} size={}", event.name(), m.name, m.size)
        }
        Event::HostnameChanged { os, previous } => {
            format!("{} {} -> {}", event.name(), previous.hostname, os.hostname)
        }
    }
}
