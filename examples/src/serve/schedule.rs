//! The crawl scheduler of `origami serve FLEET.toml`: every machine on its own schedule,
//! each frame into the one index writer as it arrives.
//!
//! - A machine with disks is crawled when one of its disk image files changes (its size or
//!   modification time differs from the crawl before), and at the latest every `interval`.
//! - A machine with memory (a dump, or a running VM's memory file) is crawled every
//!   `interval`: its contents change without its file's metadata saying so.
//! - A running VM (a QEMU process id: the manifest's `qemu_pid`, or a VM `--local-vms`
//!   found) is crawled whole (disks, and memory attached through the QEMU) when its disk
//!   images change and every [`LIVE_FULL_CRAWLS`] intervals (at least a minute); between
//!   those, a [watcher](super::live) reads its processes, connections and modules at the
//!   interval, and each change is indexed as a frame: the latest full crawl's with those
//!   sections replaced.
//! - A crawl that fails, reads nothing, panics or overruns the per-machine timeout is a
//!   failure: the machine's status says so (last error, when, next attempt) and it is retried
//!   after `backoff_min`, doubling after each further failure up to `backoff_max`. Its last
//!   good frame stays the machine's state in the index.
//! - At most `jobs` crawls run at once, each on its own thread; a crawl past its timeout is
//!   left to end on its own (a thread cannot be killed) and, as in the library's
//!   [`origami_introspect::fleet`] engine, at most `max_stuck` such threads may run before
//!   fewer crawls start, so a wedged storage backend cannot exhaust the host. One machine
//!   never holds up another.
//!
//! The [`StatusBoard`] is what the fleet page and `/api/machines` show of the schedule.

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use origami_frame::{FeatureError, Frame};

use crate::index_url::WriteIndex;
use origami_introspect::fleet::{read_nothing, Machine};
use origami_introspect::linux::LinuxOptions;
use origami_introspect::{CrawlOptions, Crawler, Disk};
use serde::Serialize;
use time::OffsetDateTime;

use super::live::{self, LiveMsg, LiveState, LiveWatch};

/// A running VM is crawled whole every this many intervals (its watcher follows it at the
/// interval), and at least every minute.
pub const LIVE_FULL_CRAWLS: u32 = 10;

/// How the scheduler crawls.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Crawls at once (at least 1).
    pub jobs: usize,
    /// The most time one crawl may take.
    pub timeout: Duration,
    /// Timed-out crawls that may still run before fewer crawls start.
    pub max_stuck: usize,
    /// The first retry delay after a failure; it doubles after each further failure.
    pub backoff_min: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
    /// How often the scheduler looks at the clock, the disk images and finished crawls.
    pub tick: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            jobs: 2,
            timeout: Duration::from_secs(600),
            max_stuck: 2,
            backoff_min: Duration::from_secs(10),
            backoff_max: Duration::from_secs(3600),
            tick: Duration::from_millis(200),
        }
    }
}

/// One machine to keep crawled, and how often.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The machine.
    pub machine: Machine,
    /// Its crawl interval.
    pub interval: Duration,
    /// The running QEMU whose guest RAM is the machine's memory (read live, see
    /// [`super::live`]), if any.
    pub qemu_pid: Option<u32>,
}

impl Planned {
    /// How often the machine is crawled whole when its disks do not change.
    pub fn full_interval(&self) -> Duration {
        match self.qemu_pid {
            Some(_) => (self.interval * LIVE_FULL_CRAWLS).max(Duration::from_secs(60)),
            None => self.interval,
        }
    }
}

/// What the page shows of a running VM's watcher.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LiveStatus {
    /// The QEMU process read.
    pub qemu_pid: u32,
    /// `starting`, `watching`, or `failed` (it is retried).
    pub state: &'static str,
    /// When the watcher last saw a change (RFC 3339).
    pub last_change: Option<String>,
    /// Changes indexed since `serve` started.
    pub updates: u64,
    /// Why it failed last, while it fails.
    pub last_error: Option<String>,
}

/// What the page shows of one machine's schedule.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MachineStatus {
    /// The machine's name (its frames' system id).
    pub name: String,
    /// `waiting` (never crawled yet), `crawling`, `ok`, or `failed`.
    pub state: &'static str,
    /// Whether a crawl runs now.
    pub crawling: bool,
    /// When the last crawl that gave a frame ended (RFC 3339).
    pub last_success: Option<String>,
    /// The last failure's message, while the machine fails (cleared by a success).
    pub last_error: Option<String>,
    /// When that failure happened (RFC 3339).
    pub last_error_at: Option<String>,
    /// Failures in a row.
    pub failures: u32,
    /// When the next crawl is due at the latest (RFC 3339): after the backoff when
    /// failing; otherwise an interval after the last crawl began (a changed disk image is
    /// crawled sooner).
    pub next_attempt: Option<String>,
    /// How long the last successful crawl took, in milliseconds.
    pub last_duration_ms: Option<u64>,
    /// Crawls that gave a frame since `serve` started.
    pub crawls: u64,
    /// The crawl interval in seconds.
    pub interval_seconds: u64,
    /// The watcher of a running VM (`null` for other machines).
    pub live: Option<LiveStatus>,
}

/// The schedule's state as the page reads it; the scheduler writes it.
#[derive(Debug, Default)]
pub struct StatusBoard {
    machines: Mutex<BTreeMap<String, MachineStatus>>,
}

impl StatusBoard {
    /// Every machine's status, sorted by name.
    pub fn snapshot(&self) -> Vec<MachineStatus> {
        self.machines
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn set(&self, s: MachineStatus) {
        if let Ok(mut m) = self.machines.lock() {
            m.insert(s.name.clone(), s);
        }
    }

    fn retain(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut m) = self.machines.lock() {
            m.retain(|k, _| keep(k));
        }
    }
}

/// Size and modification time of each disk image file; an error's text when one cannot be
/// read (a missing image is a change too, once it appears).
type Fingerprint = Vec<(PathBuf, Result<(u64, SystemTime), String>)>;

fn fingerprint(m: &Machine) -> Fingerprint {
    m.target
        .disks
        .iter()
        .filter_map(|d| match d {
            Disk::Path(p) => Some((
                p.clone(),
                std::fs::metadata(p)
                    .and_then(|md| Ok((md.len(), md.modified()?)))
                    .map_err(|e| e.to_string()),
            )),
            Disk::Reader { .. } => None,
        })
        .collect()
}

/// One machine's schedule.
struct Slot {
    planned: Planned,
    /// What the machine's description was (to see it changed on a reload).
    described: String,
    /// The fingerprint taken when the last crawl began.
    seen: Option<Fingerprint>,
    last_start: Option<Instant>,
    /// When a failing machine may be tried again.
    retry_at: Option<Instant>,
    /// The crawl running now (its number).
    running: Option<u64>,
    status: MachineStatus,
    /// A running VM's watcher.
    live: Option<LiveWatch>,
    /// A running VM's latest full frame as indexed (live states are folded into it).
    base: Option<Frame>,
    /// A running VM's latest state from its watcher.
    live_state: Option<LiveState>,
    /// The time of the latest frame indexed (frames of a system must come in time order).
    last_indexed: Option<OffsetDateTime>,
}

const RUNNING: u8 = 0;
const LEFT: u8 = 1;
const ENDED: u8 = 2;

/// A crawl the scheduler waits for.
struct Flight {
    name: String,
    started: Instant,
    deadline: Instant,
    state: Arc<AtomicU8>,
}

type Outcome = (u64, Result<Frame, String>);

/// Keeps a fleet crawled into one index (see the [module docs](self)).
pub struct Scheduler {
    index: Arc<dyn WriteIndex>,
    crawler: Arc<Crawler>,
    policy: Policy,
    board: Arc<StatusBoard>,
    slots: BTreeMap<String, Slot>,
    flights: HashMap<u64, Flight>,
    next_id: u64,
    stuck: Arc<AtomicUsize>,
    tx: Sender<Outcome>,
    rx: Receiver<Outcome>,
    live_tx: Sender<live::Envelope>,
    live_rx: Receiver<live::Envelope>,
    next_watch: u64,
}

fn describe(p: &Planned) -> String {
    format!(
        "{:?} every {:?}, QEMU {:?}",
        p.machine, p.interval, p.qemu_pid
    )
}

fn wall(at: Instant) -> String {
    let now = Instant::now();
    let t = if at >= now {
        OffsetDateTime::now_utc() + (at - now)
    } else {
        OffsetDateTime::now_utc() - (now - at)
    };
    super::api::rfc3339(t)
}

fn now_text() -> String {
    super::api::rfc3339(OffsetDateTime::now_utc())
}

impl Scheduler {
    /// A scheduler feeding `index`, crawling machines without their own options with
    /// `options`, reporting on `board`.
    pub fn new(
        index: Arc<dyn WriteIndex>,
        options: CrawlOptions,
        policy: Policy,
        board: Arc<StatusBoard>,
    ) -> Scheduler {
        let (tx, rx) = mpsc::channel();
        let (live_tx, live_rx) = mpsc::channel();
        Scheduler {
            index,
            crawler: Arc::new(Crawler::new(options)),
            policy,
            board,
            slots: BTreeMap::new(),
            flights: HashMap::new(),
            next_id: 0,
            stuck: Arc::new(AtomicUsize::new(0)),
            tx,
            rx,
            live_tx,
            live_rx,
            next_watch: 0,
        }
    }

    /// Sets the machines to keep crawled: new ones are crawled at once, removed ones
    /// dropped (a crawl of theirs that runs is let end and its frame dropped), changed ones
    /// (other disks, memory, options or interval) start over.
    pub fn set_machines(&mut self, planned: Vec<Planned>) {
        let mut wanted: BTreeMap<String, Planned> = BTreeMap::new();
        for p in planned {
            wanted.entry(p.machine.name.clone()).or_insert(p);
        }
        self.slots.retain(|name, slot| {
            wanted
                .get(name)
                .is_some_and(|p| describe(p) == slot.described)
        });
        for (name, p) in wanted {
            if self.slots.contains_key(&name) {
                continue;
            }
            let status = MachineStatus {
                name: name.clone(),
                state: "waiting",
                crawling: false,
                last_success: None,
                last_error: None,
                last_error_at: None,
                failures: 0,
                next_attempt: Some(now_text()),
                last_duration_ms: None,
                crawls: 0,
                interval_seconds: p.interval.as_secs(),
                live: None,
            };
            let mut slot = Slot {
                described: describe(&p),
                planned: p,
                seen: None,
                last_start: None,
                retry_at: None,
                running: None,
                status,
                live: None,
                base: None,
                live_state: None,
                last_indexed: None,
            };
            self.watch(&name, &mut slot);
            self.slots.insert(name, slot);
        }
        // Flights of machines gone or changed: their outcome is dropped when it comes.
        let slots = &self.slots;
        for f in self.flights.values_mut() {
            if !slots.contains_key(&f.name) {
                f.name.clear();
            }
        }
        self.board.retain(|n| slots.contains_key(n));
        for s in self.slots.values() {
            self.board.set(s.status.clone());
        }
    }

    /// Starts the watcher of a running VM's slot (a no-op for other machines).
    fn watch(&mut self, name: &str, slot: &mut Slot) {
        let Some(pid) = slot.planned.qemu_pid else {
            return;
        };
        let id = self.next_watch;
        self.next_watch += 1;
        let target = &slot.planned.machine.target;
        let mut linux = LinuxOptions::default().with_limits(*self.crawler.options().limits());
        linux.cache_dir = origami_introspect::linux::cache::default_dir();
        linux.system_map.clone_from(&target.system_map);
        linux.layouts.clone_from(&target.kernel_layouts);
        let mut status = LiveStatus {
            qemu_pid: pid,
            state: "starting",
            last_change: None,
            updates: 0,
            last_error: None,
        };
        match live::spawn(
            name.to_string(),
            id,
            pid,
            slot.planned.interval,
            linux,
            self.live_tx.clone(),
        ) {
            Ok(w) => slot.live = Some(w),
            Err(e) => {
                status.state = "failed";
                status.last_error = Some(format!("starting a watcher thread: {e}"));
            }
        }
        slot.status.live = Some(status);
    }

    /// Takes what the watchers sent: each changed state is indexed (folded into the
    /// machine's latest full frame), each failure shown.
    fn live_landed(&mut self) {
        while let Ok((name, id, msg)) = self.live_rx.try_recv() {
            let Some(slot) = self.slots.get_mut(&name) else {
                continue;
            };
            if slot.live.as_ref().map(|w| w.id) != Some(id) {
                continue;
            }
            let Some(st) = slot.status.live.as_mut() else {
                continue;
            };
            match msg {
                LiveMsg::Failed(e) => {
                    tracing::warn!("{name}: watcher: {e}");
                    st.state = "failed";
                    st.last_error = Some(e);
                }
                LiveMsg::State(state) => {
                    st.state = "watching";
                    st.last_error = None;
                    if let Some(base) = &slot.base {
                        let mut frame = state.merged_into(base);
                        after(&mut frame, slot.last_indexed);
                        match self.index.add_frame(&frame) {
                            Ok(_) => {
                                slot.last_indexed = Some(frame.meta.timestamp);
                                st.updates += 1;
                                st.last_change = Some(super::api::rfc3339(state.time));
                            }
                            Err(e) => {
                                st.last_error = Some(format!("indexing the frame: {e}"));
                            }
                        }
                    }
                    slot.live_state = Some(state);
                }
            }
            self.board.set(slot.status.clone());
        }
    }

    /// The machines scheduled, by name.
    pub fn machines(&self) -> Vec<String> {
        self.slots.keys().cloned().collect()
    }

    /// Crawl threads that timed out and still run.
    pub fn stuck(&self) -> usize {
        self.stuck.load(Ordering::SeqCst)
    }

    /// One round: takes the crawls that ended (indexing their frames), fails the ones past
    /// their timeout, starts the machines that are due, and commits when a commit is due.
    /// Returns how long the caller may sleep before the next round.
    pub fn step(&mut self) -> Duration {
        while let Ok((id, outcome)) = self.rx.try_recv() {
            self.landed(id, outcome);
        }
        self.live_landed();
        let now = Instant::now();
        let late: Vec<u64> = self
            .flights
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(f) = self.flights.remove(&id) {
                if f.state
                    .compare_exchange(RUNNING, LEFT, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    self.stuck.fetch_add(1, Ordering::SeqCst);
                }
                let msg = format!(
                    "timed out after {} s (the crawl was left to end on its own)",
                    self.policy.timeout.as_secs()
                );
                self.failed(&f.name, id, msg);
            }
        }
        self.start_due();
        if let Err(e) = self.index.commit_due() {
            tracing::warn!("committing the index: {e}");
        }
        self.policy.tick
    }

    /// Commits everything indexed so far.
    pub fn commit(&self) -> origami_index::Result<()> {
        self.index.commit()
    }

    fn due(slot: &Slot, now: Instant) -> Option<Fingerprint> {
        if slot.running.is_some() {
            return None;
        }
        if let Some(at) = slot.retry_at {
            return (now >= at).then(|| fingerprint(&slot.planned.machine));
        }
        let Some(last) = slot.last_start else {
            return Some(fingerprint(&slot.planned.machine));
        };
        if now.duration_since(last) >= slot.planned.full_interval() {
            return Some(fingerprint(&slot.planned.machine));
        }
        let fp = fingerprint(&slot.planned.machine);
        (!fp.is_empty() && slot.seen.as_ref() != Some(&fp)).then_some(fp)
    }

    fn start_due(&mut self) {
        let now = Instant::now();
        let most_threads = self.policy.jobs + self.policy.max_stuck;
        // The machines waiting longest first.
        let mut order: Vec<(Option<Instant>, String)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.running.is_none())
            .map(|(n, s)| (s.last_start, n.clone()))
            .collect();
        order.sort();
        for (_, name) in order {
            if self.flights.len() >= self.policy.jobs
                || self.flights.len() + self.stuck() >= most_threads
            {
                break;
            }
            let Some(slot) = self.slots.get_mut(&name) else {
                continue;
            };
            let Some(fp) = Self::due(slot, now) else {
                continue;
            };
            let id = self.next_id;
            self.next_id += 1;
            slot.seen = Some(fp);
            slot.last_start = Some(now);
            slot.running = Some(id);
            slot.status.crawling = true;
            if slot.status.state != "failed" {
                slot.status.state = if slot.status.crawls == 0 {
                    "waiting"
                } else {
                    "ok"
                };
            }
            self.board.set(slot.status.clone());
            let state = Arc::new(AtomicU8::new(RUNNING));
            let machine = slot.planned.machine.clone();
            let qemu_pid = slot.planned.qemu_pid;
            let crawler = self.crawler.clone();
            let (tx, st, stuck) = (self.tx.clone(), state.clone(), self.stuck.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("crawl {}", machine.name))
                .spawn(move || {
                    // A running VM's memory: its QEMU attached anew for each crawl.
                    let (target, attach_error) = match qemu_pid {
                        None => (machine.target.clone(), None),
                        Some(pid) => match crate::watch::attach(pid) {
                            Ok(source) => (machine.target.clone().with_memory_source(source), None),
                            Err(e) => (machine.target.clone(), Some(e.to_string())),
                        },
                    };
                    let r = catch_unwind(AssertUnwindSafe(|| match &machine.options {
                        Some(own) => Crawler::new(CrawlOptions::clone(own)).crawl(&target),
                        None => crawler.crawl(&target),
                    }));
                    let outcome = match r {
                        Ok(Ok(mut frame)) => {
                            if let Some(message) = attach_error {
                                frame.meta.errors.push(FeatureError {
                                    feature: "memory".into(),
                                    message,
                                    extra: Default::default(),
                                });
                            }
                            Ok(frame)
                        }
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("the crawl panicked".to_string()),
                    };
                    if st
                        .compare_exchange(RUNNING, ENDED, Ordering::SeqCst, Ordering::SeqCst)
                        .is_err()
                    {
                        // Timed out earlier: no longer stuck now.
                        stuck.fetch_sub(1, Ordering::SeqCst);
                    }
                    let _ = tx.send((id, outcome));
                });
            match spawned {
                Ok(_) => {
                    self.flights.insert(
                        id,
                        Flight {
                            name: name.clone(),
                            started: now,
                            deadline: now + self.policy.timeout,
                            state,
                        },
                    );
                }
                Err(e) => self.failed(&name, id, format!("starting a crawl thread: {e}")),
            }
        }
    }

    fn landed(&mut self, id: u64, outcome: Result<Frame, String>) {
        // A crawl that timed out (already failed) or whose machine went: dropped.
        let Some(flight) = self.flights.remove(&id) else {
            return;
        };
        let name = flight.name;
        if self.slots.get(&name).and_then(|s| s.running) != Some(id) {
            return;
        }
        let mut frame = match outcome {
            Ok(f) => f,
            Err(e) => return self.failed(&name, id, e),
        };
        // The machine's name is its frames' system id (as in the fleet engine), not the
        // host name the guest claims.
        frame.meta.system = name.clone();
        if read_nothing(&frame) {
            let why: Vec<String> = frame
                .meta
                .errors
                .iter()
                .take(3)
                .map(|e| format!("{}: {}", e.feature, e.message))
                .collect();
            return self.failed(
                &name,
                id,
                format!("no source could be read ({})", why.join("; ")),
            );
        }
        let Some(slot) = self.slots.get_mut(&name) else {
            return;
        };
        if slot.planned.qemu_pid.is_some() {
            // The watcher's state, when newer than the crawl's memory.
            if let Some(state) = &slot.live_state {
                state.refresh(&mut frame);
            }
            after(&mut frame, slot.last_indexed);
        }
        if let Err(e) = self.index.add_frame(&frame) {
            return self.failed(&name, id, format!("indexing the frame: {e}"));
        }
        slot.last_indexed = Some(frame.meta.timestamp);
        if slot.planned.qemu_pid.is_some() {
            slot.base = Some(frame);
        }
        slot.running = None;
        slot.retry_at = None;
        let s = &mut slot.status;
        s.state = "ok";
        s.crawling = false;
        s.failures = 0;
        s.last_error = None;
        s.last_error_at = None;
        s.crawls += 1;
        s.last_success = Some(now_text());
        s.last_duration_ms = Some(flight.started.elapsed().as_millis() as u64);
        s.next_attempt = Some(wall(flight.started + slot.planned.full_interval()));
        tracing::info!("{name}: crawled in {} ms", s.last_duration_ms.unwrap_or(0));
        self.board.set(slot.status.clone());
    }

    fn failed(&mut self, name: &str, id: u64, message: String) {
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        if slot.running != Some(id) {
            return;
        }
        slot.running = None;
        let s = &mut slot.status;
        s.failures = s.failures.saturating_add(1);
        let delay = backoff(&self.policy, s.failures);
        let at = Instant::now() + delay;
        slot.retry_at = Some(at);
        s.state = "failed";
        s.crawling = false;
        tracing::warn!(
            "{name}: {message} (retry in {} s, failure {})",
            delay.as_secs(),
            s.failures
        );
        s.last_error = Some(message);
        s.last_error_at = Some(now_text());
        s.next_attempt = Some(wall(at));
        self.board.set(slot.status.clone());
    }
}

/// Moves `frame`'s time past `last` (a system's frames must come in time order; a full
/// crawl that began before the watcher's latest change ends after it).
fn after(frame: &mut Frame, last: Option<OffsetDateTime>) {
    if let Some(last) = last {
        if frame.meta.timestamp <= last {
            frame.meta.timestamp = last + time::Duration::milliseconds(1);
        }
    }
}

/// The schedule as the fleet page shows it: one row per machine, failing ones first.
pub fn status_html(list: &[MachineStatus]) -> super::html::Html {
    use super::html::{Html, Url};
    let mut m = Html::new();
    let failing = list.iter().filter(|s| s.state == "failed").count();
    m.lit("<h2 id=\"schedule\">Crawl schedule</h2><p class=\"summary\"><b>")
        .show(list.len())
        .lit("</b> machines scheduled");
    if failing > 0 {
        m.lit(" · <span class=\"bad\">")
            .show(failing)
            .lit(" failing</span>");
    }
    m.lit("</p><table class=\"fleet schedule\"><thead><tr><th>machine</th><th>state</th><th>last success</th><th>last error</th><th>failures</th><th>next attempt</th><th>interval</th><th>live</th></tr></thead><tbody>");
    let mut rows: Vec<&MachineStatus> = list.iter().collect();
    rows.sort_by_key(|s| (s.state != "failed", s.name.clone()));
    for s in rows {
        let tr = m.tag("tr");
        let tr = if s.state == "failed" {
            tr.class("err")
        } else {
            tr
        };
        tr.attr("data-machine", &s.name).open();
        m.lit("<td>")
            .link(&Url::new("/machines").name_seg(&s.name), &s.name)
            .lit("</td><td>")
            .text(s.state);
        if s.crawling {
            m.lit(" <span class=\"note\">crawling</span>");
        }
        m.lit("</td><td>")
            .text(s.last_success.as_deref().unwrap_or("never"))
            .lit("</td><td>");
        if let Some(e) = &s.last_error {
            m.elem_c("div", "bad", e);
            if let Some(at) = &s.last_error_at {
                m.elem_c("div", "note", at);
            }
        }
        m.lit("</td><td class=\"num\">")
            .show(s.failures)
            .lit("</td><td>")
            .text(s.next_attempt.as_deref().unwrap_or(""))
            .lit("</td><td class=\"num\">")
            .text(&format!("{} s", s.interval_seconds))
            .lit("</td><td>");
        if let Some(l) = &s.live {
            let cell = m.tag("span");
            let cell = if l.state == "failed" {
                cell.class("bad")
            } else {
                cell
            };
            cell.attr("title", l.last_error.as_deref().unwrap_or(""))
                .open()
                .text(&format!(
                    "{} QEMU {} · {} changes",
                    l.state, l.qemu_pid, l.updates
                ))
                .close("span");
            if let Some(e) = &l.last_error {
                m.elem_c("div", "bad", e);
            }
        }
        m.lit("</td></tr>");
    }
    m.lit("</tbody></table>");
    m
}

/// The retry delay after `failures` failures in a row: `backoff_min` doubled each time,
/// at most `backoff_max`.
pub fn backoff(p: &Policy, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    p.backoff_min
        .saturating_mul(1u32 << doublings)
        .min(p.backoff_max.max(p.backoff_min))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let p = Policy {
            backoff_min: Duration::from_secs(2),
            backoff_max: Duration::from_secs(30),
            ..Policy::default()
        };
        let d: Vec<u64> = (1..=7).map(|n| backoff(&p, n).as_secs()).collect();
        assert_eq!(d, [2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(&p, u32::MAX).as_secs(), 30);
    }
}
