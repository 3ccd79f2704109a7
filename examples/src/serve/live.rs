//! Live VMs in `origami serve`: one [`Watcher`] thread per running QEMU (a manifest's
//! `qemu_pid`, or a VM `--local-vms` found), whose processes, connections, modules and host
//! name the scheduler folds into the machine's latest full frame at the machine's interval.
//!
//! The thread attaches to the QEMU's guest RAM (read-only, the guest not stopped), finds
//! the kernel once (through the discovery cache), then ticks at the interval. After a tick
//! whose state differs from the last one sent (by identity: each process's pid, parent,
//! owner, name and command line; each socket's endpoints and state; each module's name;
//! the host name) it sends the state; an unchanged guest sends nothing, so the index gets a
//! new frame only when something changed. A torn section keeps its last good state (see
//! [`origami_introspect::watch`]); nothing is sent before the first good read of the
//! processes.
//!
//! When the QEMU cannot be attached, no kernel is found, or the process ends, the thread
//! sends a [`LiveMsg::Failed`] and tries again after `max(interval, 5 s)`. It ends when its
//! [`LiveWatch`] drops (the machine left the schedule) or the scheduler is gone.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use origami_frame::{Connection, Frame, Module, Process};
use origami_introspect::linux::LinuxOptions;
use origami_introspect::watch::{WatchOptions, Watcher};
use time::OffsetDateTime;

/// What a watcher read of a live guest at one instant.
#[derive(Debug, Clone)]
pub struct LiveState {
    /// When the tick that read it began.
    pub time: OffsetDateTime,
    /// The guest's host name.
    pub hostname: Option<String>,
    /// Its processes, in pid order.
    pub process: Vec<Process>,
    /// Its sockets.
    pub connection: Vec<Connection>,
    /// Its kernel modules.
    pub module: Vec<Module>,
    /// How long the tick took.
    pub tick: Duration,
}

impl LiveState {
    /// `base` (the machine's latest full frame) with this state's processes, connections
    /// and modules (and host name, when read), taken at this state's time.
    pub fn merged_into(&self, base: &Frame) -> Frame {
        let mut f = base.clone();
        f.meta.timestamp = self.time;
        f.meta.duration_ms = self.tick.as_millis() as u64;
        if let Some(h) = &self.hostname {
            f.meta.hostname = Some(h.clone());
            f.os.hostname = Some(h.clone());
        }
        f.process = self.process.clone();
        f.connection = self.connection.clone();
        f.module = self.module.clone();
        f
    }

    /// Moves this state's sections into `frame` (a full crawl's), when they are newer than
    /// the crawl.
    pub fn refresh(&self, frame: &mut Frame) {
        if self.time > frame.meta.timestamp {
            frame.process = self.process.clone();
            frame.connection = self.connection.clone();
            frame.module = self.module.clone();
        }
    }
}

/// What a watcher thread tells the scheduler.
#[derive(Debug, Clone)]
pub enum LiveMsg {
    /// The guest's state changed (or was read for the first time).
    State(LiveState),
    /// The guest could not be read; the thread tries again later.
    Failed(String),
}

/// A watcher thread's message: the machine, the watch's number, what it says.
pub type Envelope = (String, u64, LiveMsg);

/// A running watcher thread; dropping it stops the thread (at its next tick).
#[derive(Debug)]
pub struct LiveWatch {
    stop: Arc<AtomicBool>,
    /// The number its messages carry (a newer watch of the same machine has another).
    pub id: u64,
    /// The QEMU process it reads.
    pub pid: u32,
}

impl Drop for LiveWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The identity of what a watcher holds: a change in it is worth a frame.
fn identity(w: &Watcher) -> u64 {
    let mut h = DefaultHasher::new();
    for p in w.processes() {
        (p.pid, p.ppid, p.uid, &p.name, &p.cmdline, p.start_time).hash(&mut h);
    }
    0xc0u8.hash(&mut h);
    for c in w.connections() {
        origami_introspect::watch::diff::connection_key(c).hash(&mut h);
        c.state.hash(&mut h);
    }
    0x40u8.hash(&mut h);
    for m in w.modules() {
        m.name.hash(&mut h);
    }
    w.hostname().hash(&mut h);
    h.finish()
}

/// Sleeps `d`, in short naps, unless `stop` is set; false when it was.
fn nap(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    !stop.load(Ordering::SeqCst)
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Starts watching the QEMU `pid` for machine `name`, ticking every `interval`, with the
/// kernel found as `linux` says; messages go to `tx`.
pub fn spawn(
    name: String,
    id: u64,
    pid: u32,
    interval: Duration,
    linux: LinuxOptions,
    tx: Sender<Envelope>,
) -> std::io::Result<LiveWatch> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::Builder::new()
        .name(format!("watch {name}"))
        .spawn(move || watch(&name, id, pid, interval, linux, &tx, &flag))?;
    Ok(LiveWatch { stop, id, pid })
}

fn watch(
    name: &str,
    id: u64,
    pid: u32,
    interval: Duration,
    linux: LinuxOptions,
    tx: &Sender<Envelope>,
    stop: &AtomicBool,
) {
    let retry = interval.max(Duration::from_secs(5));
    let send = |msg: LiveMsg| tx.send((name.to_string(), id, msg)).is_ok();
    let mut options = WatchOptions::default().with_linux(linux);
    // Each read of /proc/PID/mem is a system call: a page cache pays off (see `watch`).
    options.page_cache = true;
    while !stop.load(Ordering::SeqCst) {
        let watcher = crate::watch::attach(pid)
            .map_err(|e| e.to_string())
            .and_then(|source| {
                Watcher::new(&source, options.clone())
                    .map_err(|e| format!("no kernel to watch in QEMU {pid}: {e}"))
            });
        let mut w = match watcher {
            Ok(w) => w,
            Err(e) => {
                if !send(LiveMsg::Failed(e)) || !nap(stop, retry) {
                    return;
                }
                continue;
            }
        };
        let mut sent: Option<u64> = None;
        let mut next = Instant::now();
        loop {
            // A fixed rate; a tick that overruns is followed at once, without a burst.
            let now = Instant::now();
            if next > now && !nap(stop, next - now) {
                return;
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
            next = Instant::now().max(next) + interval;
            let started = Instant::now();
            let time = OffsetDateTime::now_utc();
            let tick = w.tick();
            if !alive(pid) {
                if !send(LiveMsg::Failed(format!("QEMU process {pid} ended"))) {
                    return;
                }
                break;
            }
            for t in &tick.torn {
                tracing::debug!(
                    "{name}: tick {} torn: {}: {}",
                    tick.number,
                    t.section,
                    t.reason
                );
            }
            if w.processes().next().is_none() {
                continue;
            }
            let now_id = identity(&w);
            if sent == Some(now_id) {
                continue;
            }
            let state = LiveState {
                time,
                hostname: w.hostname().map(String::from),
                process: w.processes().cloned().collect(),
                connection: w.connections().cloned().collect(),
                module: w.modules().cloned().collect(),
                tick: started.elapsed(),
            };
            if !send(LiveMsg::State(state)) {
                return;
            }
            sent = Some(now_id);
        }
        if !nap(stop, retry) {
            return;
        }
    }
}
