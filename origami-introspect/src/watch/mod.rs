//! Watching a running guest: the kernel found once, then its processes, connections,
//! modules and host name re-read at a fixed interval (or whenever the caller asks), each
//! change reported as a typed [`Event`].
//!
//! A [`Watcher`] holds the guest's memory (any [`PhysicalMemory`]: a QEMU process attached
//! by pid, a running VM's RAM file, a dump) and its discovered [`Kernel`]. Each
//! [`Watcher::tick`] reads the sections once more (through a page cache emptied before every
//! read, so each page is read once per attempt) and compares them with the last *good*
//! state, by identity: a process is its pid and start time, a socket its protocol and
//! endpoints, a module its name (see [`diff`]). The first tick is the baseline and reports
//! nothing unless [`WatchOptions::report_existing`] is set.
//!
//! A running guest changes its lists while they are read. A read that meets a *torn*
//! state (a walk error, a broken back link, a task that fails its checks, a task whose pid
//! or start time changed between the walk and the end of the read, a walk bound hit) is
//! retried up to [`WatchOptions::retries`] times; a section still torn after that is
//! withheld: the tick is [partial](Tick::partial), its [`Tick::torn`] says why, no event is
//! derived from that section and its last good state is kept. An event is never invented
//! from a torn read. Per-item failures that retrying cannot fix (a process whose command
//! line is paged out) do not tear a section: the item is reported with what could be read.
//!
//! Limits: a new process is reported by the first tick that sees it out of `execve` (the
//! kernel's `task_struct.in_execve`), or, on a kernel whose layout lacks that flag, once
//! its name and command line read the same on [`WatchOptions::settle`] more ticks; while
//! its name and command line are still its parent's (a forked child shows its parent's
//! until it calls `exec`) it waits [`WatchOptions::settle_fork`] ticks. A later `exec` of
//! a reported process is no event. Its command line is the one read when it was
//! reported. Threads are not reported, only processes (thread-group
//! leaders).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use origami_core::memory::MemoryDump;
//! use origami_introspect::watch::{WatchOptions, Watcher};
//! use origami_introspect::MemorySource;
//!
//! // The fixture guest's memory dump, when the fixtures are unpacked (see the README).
//! let Some(dir) = std::env::var_os("ORIGAMI_FIXTURES_CACHE") else { return Ok(()) };
//! let path = std::path::Path::new(&dir).join("memdump/memory.elf");
//! if !path.exists() { return Ok(()) }
//! let dump = MemoryDump::open(&path)?;
//! let vmcoreinfo = dump.vmcoreinfo().cloned();
//! let mut source = MemorySource::new(path.display().to_string(), Arc::new(dump));
//! source.vmcoreinfo = vmcoreinfo;
//!
//! let mut watcher = Watcher::new(&source, WatchOptions::default())?;
//! // A dump does not change: three ticks, 10 ms apart, and no event after the baseline.
//! for tick in watcher.ticks(Duration::from_millis(10)).take(3) {
//!     assert!(!tick.partial(), "{:?}", tick.torn);
//!     assert!(tick.events.is_empty());
//! }
//! assert_eq!(watcher.hostname(), Some("vmi-fixture"));
//! assert!(watcher.processes().any(|p| p.name == "httpd"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod diff;
mod schedule;

pub use schedule::Schedule;
pub mod event;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use origami_core::memory::{PageCache, PhysicalMemory};
use origami_frame::{Connection, Module, Process, Section};

pub use diff::ProcessId;
pub use event::{Event, OsHostname};

use crate::error::Result;
use crate::linux::kmem::Kmem;
use crate::linux::tasks::Task;
use crate::linux::{discover, sockets, sysinfo, tasks, Kernel, LinuxOptions};
use crate::target::MemorySource;
use diff::{Connections, Modules, Tracked};

/// The sections a watcher can follow: processes, connections, modules, and `os` (the host
/// name).
pub const WATCH_SECTIONS: [Section; 4] = [
    Section::Process,
    Section::Connection,
    Section::Module,
    Section::Os,
];

/// How a [`Watcher`] reads and reports.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// How the kernel is discovered (a `System.map`, the cache folder); its sections are
    /// not used.
    pub linux: LinuxOptions,
    /// The sections to follow (default [`WATCH_SECTIONS`]; others are ignored).
    pub sections: BTreeSet<Section>,
    /// Reads retried after a torn one, per tick (default 3).
    pub retries: u32,
    /// On a kernel that does not say which tasks are in the middle of `execve` (no
    /// `task_struct.in_execve` in its layout): ticks a new process's name and command line
    /// must stay the same before it is reported (default 1; 0 reports it when first seen).
    /// Where the kernel says, a process out of `execve` is reported when first seen.
    pub settle: u32,
    /// The same while a new process still has its parent's name and command line, as a
    /// child between `fork` and `exec` has (default 25: a quarter of a second at 100 Hz,
    /// for a guest whose vCPU stalls between the two calls).
    pub settle_fork: u32,
    /// Report what the first tick finds as started, opened and loaded (default false: the
    /// first tick is the baseline).
    pub report_existing: bool,
    /// Read through a page cache emptied before each attempt (default true): each page is
    /// read once per attempt, which makes a source with a system call per read
    /// (`/proc/PID/mem`) several times faster.
    pub page_cache: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            linux: LinuxOptions::default(),
            sections: WATCH_SECTIONS.into_iter().collect(),
            retries: 3,
            settle: 1,
            settle_fork: 25,
            report_existing: false,
            page_cache: true,
        }
    }
}

impl WatchOptions {
    /// Options following only these sections.
    pub fn with_sections(mut self, sections: impl IntoIterator<Item = Section>) -> Self {
        self.sections = sections.into_iter().collect();
        self
    }

    /// Options with `retries` retries of a torn read.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Options with settle counts (see [`WatchOptions::settle`] and
    /// [`WatchOptions::settle_fork`]).
    pub fn with_settle(mut self, settle: u32, settle_fork: u32) -> Self {
        self.settle = settle;
        self.settle_fork = settle_fork;
        self
    }

    /// Options that report what the first tick finds.
    pub fn reporting_existing(mut self, yes: bool) -> Self {
        self.report_existing = yes;
        self
    }

    /// Options with kernel discovery as `linux` says.
    pub fn with_linux(mut self, linux: LinuxOptions) -> Self {
        self.linux = linux;
        self
    }
}

/// A section a tick withheld, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornSection {
    /// The section (`process`, `connection`, `module`, `os`).
    pub section: Section,
    /// What the last attempt met.
    pub reason: String,
}

/// One re-read of the guest and what changed.
#[derive(Debug, Clone)]
pub struct Tick {
    /// 1 for the first tick (the baseline), then 2, 3, ...
    pub number: u64,
    /// When the tick began (wall clock).
    pub time: SystemTime,
    /// How long it took, retries included.
    pub duration: Duration,
    /// Reads made: 1 when nothing was torn.
    pub attempts: u32,
    /// The events, processes first, then connections, modules, host name.
    pub events: Vec<Event>,
    /// The sections withheld because they stayed torn (or could not be read at all).
    pub torn: Vec<TornSection>,
    /// New processes seen in the middle of `execve`, reported by a later tick once out of
    /// it ([`Schedule`] re-reads early for them).
    pub in_execve: usize,
}

impl Tick {
    /// A tick that read nothing and saw no change (for tests and examples).
    pub fn empty(number: u64) -> Tick {
        Tick {
            number,
            time: SystemTime::now(),
            duration: Duration::ZERO,
            attempts: 0,
            events: Vec::new(),
            torn: Vec::new(),
            in_execve: 0,
        }
    }

    /// True when a section was withheld: its events are not in this tick (they come with
    /// the next good one, compared with the last good state).
    pub fn partial(&self) -> bool {
        !self.torn.is_empty()
    }
}

/// The last good state of each section (`None`: no good read yet).
#[derive(Debug, Default)]
struct State {
    processes: Option<BTreeMap<ProcessId, Tracked>>,
    connections: Option<Connections>,
    modules: Option<Modules>,
    hostname: Option<String>,
}

/// Follows a running guest's processes, connections, modules and host name (see the
/// [module docs](self)). `Send`: it can be moved to a thread of its own.
pub struct Watcher {
    memory: Arc<dyn PhysicalMemory>,
    cache: Option<PageCache<Arc<dyn PhysicalMemory>>>,
    kernel: Kernel,
    options: WatchOptions,
    state: State,
    ticks: u64,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("memory", &self.memory.name())
            .field("kernel", &self.kernel.release)
            .field("ticks", &self.ticks)
            .finish()
    }
}

/// What one attempt read of a section: the items, or why the section is torn.
type Read<T> = std::result::Result<T, String>;

/// What one task walk gave the sections that wanted it (`None`: not wanted), and which
/// processes it saw in the middle of `execve` (`None`: the kernel does not say).
type TaskReads = (
    Option<Read<Vec<Process>>>,
    Option<Read<Vec<Connection>>>,
    Option<BTreeSet<ProcessId>>,
);

impl Watcher {
    /// Discovers the kernel in `source` (as [`crate::linux::discover()`] with
    /// `options.linux`) and makes a watcher that has not ticked yet.
    pub fn new(source: &MemorySource, options: WatchOptions) -> Result<Watcher> {
        let kernel = discover(source, &options.linux)?;
        Ok(Self::with_kernel(source.phys.clone(), kernel, options))
    }

    /// A watcher over `memory` whose kernel the caller already discovered.
    pub fn with_kernel(
        memory: Arc<dyn PhysicalMemory>,
        kernel: Kernel,
        options: WatchOptions,
    ) -> Watcher {
        let cache = options.page_cache.then(|| PageCache::new(memory.clone()));
        Watcher {
            memory,
            cache,
            kernel,
            options,
            state: State::default(),
            ticks: 0,
        }
    }

    /// The discovered kernel.
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// The options.
    pub fn options(&self) -> &WatchOptions {
        &self.options
    }

    /// Ticks so far.
    pub fn tick_count(&self) -> u64 {
        self.ticks
    }

    /// The processes of the last good read (none before it), in pid order.
    pub fn processes(&self) -> impl Iterator<Item = &Process> {
        self.state
            .processes
            .iter()
            .flat_map(|m| m.values().map(|t| &t.process))
    }

    /// The connections of the last good read.
    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.state
            .connections
            .iter()
            .flat_map(|m| m.values().flatten())
    }

    /// The modules of the last good read, by name.
    pub fn modules(&self) -> impl Iterator<Item = &Module> {
        self.state.modules.iter().flat_map(|m| m.values())
    }

    /// The host name of the last good read.
    pub fn hostname(&self) -> Option<&str> {
        self.state.hostname.as_deref()
    }

    /// Reads the guest once more (retrying torn sections) and reports what changed since
    /// the last good read.
    pub fn tick(&mut self) -> Tick {
        let time = SystemTime::now();
        let started = Instant::now();
        self.ticks += 1;
        let mut pending: BTreeSet<Section> = self.options.sections.clone();
        pending.retain(|s| WATCH_SECTIONS.contains(s));
        let mut torn: BTreeMap<Section, String> = BTreeMap::new();
        let mut procs: Option<Vec<Process>> = None;
        let mut conns: Option<Vec<Connection>> = None;
        let mut mods: Option<Vec<Module>> = None;
        let mut host: Option<String> = None;
        let mut in_exec: Option<BTreeSet<ProcessId>> = None;
        let mut attempts = 0;
        while !pending.is_empty() && attempts <= self.options.retries {
            attempts += 1;
            if let Some(c) = &self.cache {
                c.clear();
            }
            let phys: &dyn PhysicalMemory = match &self.cache {
                Some(c) => c,
                None => &*self.memory,
            };
            let km = self.kernel.kmem(phys);
            let want_p = pending.contains(&Section::Process);
            let want_c = pending.contains(&Section::Connection);
            if want_p || want_c {
                let (p, c, e) = self.read_tasks(&km, want_p, want_c);
                if matches!(p, Some(Ok(_))) {
                    in_exec = e;
                }
                settle_read(Section::Process, p, &mut procs, &mut pending, &mut torn);
                settle_read(Section::Connection, c, &mut conns, &mut pending, &mut torn);
            }
            if pending.contains(&Section::Module) {
                let read = match crate::linux::modules::modules(&self.kernel, &km) {
                    Ok((m, errors)) if errors.is_empty() => Ok(m),
                    Ok((_, errors)) => Err(first_error(&errors)),
                    Err(e) => Err(e.to_string()),
                };
                settle_read(
                    Section::Module,
                    Some(read),
                    &mut mods,
                    &mut pending,
                    &mut torn,
                );
            }
            if pending.contains(&Section::Os) {
                let read = sysinfo::uts(&self.kernel, &km)
                    .map(|u| u.hostname)
                    .map_err(|e| e.to_string());
                settle_read(Section::Os, Some(read), &mut host, &mut pending, &mut torn);
            }
        }
        let mut events = Vec::new();
        let report = self.options.report_existing;
        let mut in_execve = 0;
        if let Some(p) = procs {
            let (next, ev) = diff::processes(
                self.state.processes.as_ref(),
                p,
                diff::Settle {
                    after: self.options.settle,
                    after_fork: self.options.settle_fork.max(self.options.settle),
                },
                match &in_exec {
                    Some(set) => diff::ExecState::Known(set),
                    None => diff::ExecState::Unknown,
                },
                report,
            );
            if let Some(set) = &in_exec {
                in_execve = next
                    .iter()
                    .filter(|(id, t)| !t.reported && set.contains(*id))
                    .count();
            }
            self.state.processes = Some(next);
            events.extend(ev);
        }
        if let Some(c) = conns {
            let now = diff::group_connections(c);
            events.extend(diff::connections(
                self.state.connections.as_ref(),
                &now,
                report,
            ));
            self.state.connections = Some(now);
        }
        if let Some(m) = mods {
            let now: Modules = m.into_iter().map(|m| (m.name.clone(), m)).collect();
            events.extend(diff::modules(self.state.modules.as_ref(), &now, report));
            self.state.modules = Some(now);
        }
        if let Some(h) = host {
            events.extend(diff::hostname(self.state.hostname.as_deref(), &h));
            self.state.hostname = Some(h);
        }
        Tick {
            number: self.ticks,
            time,
            duration: started.elapsed(),
            attempts,
            events,
            torn: torn
                .into_iter()
                .filter(|(s, _)| pending.contains(s))
                .map(|(section, reason)| TornSection { section, reason })
                .collect(),
            in_execve,
        }
    }

    /// One walk of the task list and what the wanted sections read through it; both torn
    /// when the walk is, or when a task changed identity before the reads were done.
    fn read_tasks(&self, km: &Kmem<'_>, want_p: bool, want_c: bool) -> TaskReads {
        let both = |reason: String| {
            (
                want_p.then(|| Err(reason.clone())),
                want_c.then_some(Err(reason)),
                None,
            )
        };
        let walked = match tasks::tasks(&self.kernel, km) {
            Ok((t, errors)) if errors.is_empty() => t,
            Ok((_, errors)) => return both(format!("task list: {}", first_error(&errors))),
            Err(e) => return both(format!("task list: {e}")),
        };
        let known = self.state.processes.as_ref();
        let reported = |t: &Task| {
            known
                .and_then(|k| k.get(&(t.tgid, t.start_ticks)))
                .is_some_and(|k| k.reported)
        };
        let procs = want_p.then(|| Ok(self.processes_of(km, &walked)));
        let conns = want_c.then(|| match sockets::connections(&self.kernel, km, &walked) {
            Ok((c, errors)) if errors.is_empty() => Ok(c),
            Ok((_, errors)) => Err(first_error(&errors)),
            Err(e) => Err(e.to_string()),
        });
        // Read the identities again, past the page cache, of the tasks whose later reads
        // feed events: a task freed and reused while we read (its memory zeroed or another
        // task's) made them suspect. Those are the processes not yet reported (read whole
        // this tick) and the owners of the sockets found; what the walk itself read of a
        // reported process (name, state) makes no event.
        let owners: BTreeSet<u32> = match &conns {
            Some(Ok(c)) => c.iter().filter_map(|c| c.pid).collect(),
            _ => BTreeSet::new(),
        };
        let suspect: Vec<&Task> = walked
            .iter()
            .filter(|t| !reported(t) || owners.contains(&t.tgid))
            .collect();
        if let Err(reason) = self.check_identities(&suspect) {
            return both(reason);
        }
        let in_exec = walked
            .iter()
            .map(|t| t.in_execve.map(|e| (e, (t.tgid, t.start_ticks))))
            .collect::<Option<Vec<_>>>()
            .map(|v| {
                v.into_iter()
                    .filter(|(e, _)| *e)
                    .map(|(_, id)| id)
                    .collect()
            });
        (procs, conns, in_exec)
    }

    /// The processes of `walked`: known ones from the last good state with what the walk
    /// read anew (name, state, parent, uid), the others read whole (command line, RSS).
    fn processes_of(&self, km: &Kmem<'_>, walked: &[Task]) -> Vec<Process> {
        let known = self.state.processes.as_ref();
        let mut out = Vec::with_capacity(walked.len());
        let mut fresh = Vec::new();
        for t in walked {
            let id = (t.tgid, t.start_ticks);
            match known.and_then(|k| k.get(&id)).filter(|k| k.reported) {
                Some(k) => {
                    let mut p = k.process.clone();
                    p.name.clone_from(&t.comm);
                    p.ppid = t.ppid;
                    p.uid = t.uid;
                    p.state = Some(t.state.to_string());
                    out.push(p);
                }
                None => fresh.push(t.clone()),
            }
        }
        // Per-process errors (a command line paged out, an address space being torn
        // down) leave that field empty: retrying would not bring it back.
        let (read, _errors) = tasks::processes(&self.kernel, km, &fresh);
        out.extend(read);
        out.sort_by_key(|p| (p.pid, p.start_time));
        out
    }

    /// Re-reads each walked task's pid, tgid and start time from the source itself (a
    /// source that is not live cannot change: nothing to check).
    fn check_identities(&self, walked: &[&Task]) -> Read<()> {
        if !self.memory.is_live() {
            return Ok(());
        }
        let l = &self.kernel.layout;
        let offs = (|| {
            Ok::<_, crate::error::Error>((
                l.off("task_struct.pid")?,
                l.off("task_struct.tgid")?,
                l.off("task_struct.start_boottime|real_start_time")?,
            ))
        })()
        .map_err(|e| e.to_string())?;
        let km = self.kernel.kmem(&*self.memory);
        for t in walked {
            let again = (|| {
                // `pid` and `tgid` are neighbours in every kernel: one read for both.
                let (pid, tgid) = if offs.1 == offs.0 + 4 {
                    let both = km.u64(t.addr.wrapping_add(offs.0))?;
                    (both as u32, (both >> 32) as u32)
                } else {
                    (
                        km.u32(t.addr.wrapping_add(offs.0))?,
                        km.u32(t.addr.wrapping_add(offs.1))?,
                    )
                };
                let start = km.u64(t.addr.wrapping_add(offs.2))? / 10_000_000;
                Ok::<_, crate::error::Error>((pid, tgid, start))
            })();
            match again {
                Ok((pid, tgid, start)) if (pid, tgid, start) == (t.pid, t.tgid, t.start_ticks) => {}
                Ok((pid, tgid, start)) => {
                    return Err(format!(
                        "task at {:#x} changed under the walk: pid {} tgid {} start {} \
                         became pid {pid} tgid {tgid} start {start}",
                        t.addr, t.pid, t.tgid, t.start_ticks
                    ))
                }
                Err(e) => return Err(format!("task at {:#x} became unreadable: {e}", t.addr)),
            }
        }
        Ok(())
    }

    /// An iterator of ticks, one every `interval` at a fixed rate (the first at once);
    /// when a tick overruns, the next starts at once rather than bursting to catch up;
    /// a tick that saw a new process in the middle of `execve` is followed by one early
    /// re-read (see [`Schedule`]). It never ends: bound it with `take`, or stop iterating.
    pub fn ticks(&mut self, interval: Duration) -> Ticks<'_> {
        Ticks {
            watcher: self,
            schedule: Schedule::new(interval),
            next: None,
        }
    }

    /// Ticks every `interval` (as [`Watcher::ticks`]) and hands each tick to `f` until it
    /// returns [`ControlFlow::Break`].
    pub fn run<B>(&mut self, interval: Duration, mut f: impl FnMut(Tick) -> ControlFlow<B>) -> B {
        let mut ticks = self.ticks(interval);
        loop {
            // `Ticks` never ends.
            let Some(t) = ticks.next() else { continue };
            if let ControlFlow::Break(b) = f(t) {
                return b;
            }
        }
    }
}

/// Files one attempt's read of `section`: good items end its retries, a torn read is
/// remembered (replacing the previous attempt's reason).
fn settle_read<T>(
    section: Section,
    read: Option<Read<T>>,
    slot: &mut Option<T>,
    pending: &mut BTreeSet<Section>,
    torn: &mut BTreeMap<Section, String>,
) {
    match read {
        Some(Ok(items)) => {
            *slot = Some(items);
            pending.remove(&section);
            torn.remove(&section);
        }
        Some(Err(reason)) => {
            torn.insert(section, reason);
        }
        None => {}
    }
}

fn first_error(errors: &[crate::error::Error]) -> String {
    match errors {
        [] => String::new(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

/// Ticks at a fixed rate (see [`Watcher::ticks`]).
#[derive(Debug)]
pub struct Ticks<'w> {
    watcher: &'w mut Watcher,
    schedule: Schedule,
    next: Option<Instant>,
}

impl Iterator for Ticks<'_> {
    type Item = Tick;

    fn next(&mut self) -> Option<Tick> {
        let due = Schedule::wait(self.next);
        let tick = self.watcher.tick();
        self.next = Some(self.schedule.next(due, &tick));
        Some(tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watcher_is_send() {
        fn send<T: Send>() {}
        send::<Watcher>();
        send::<Tick>();
        send::<Event>();
    }
}
