//! Crawling a fleet: many [`Machine`]s (a name and a [`Target`]) crawled with one set of
//! [`CrawlOptions`] on a bounded pool of threads, each frame handed to the caller's
//! [`Sink`] on the calling thread as its crawl ends.
//!
//! One machine never stops the fleet: a crawl that is refused, panics, or overruns the
//! per-machine timeout becomes a [`MachineError`] in the [`FleetReport`] and the others go
//! on. A thread cannot be killed, so a crawl that times out is left to end on its own (its
//! frame dropped) and the number of such threads is bounded
//! ([`FleetBuilder::max_stuck`]).
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use origami_introspect::fleet::{Fleet, Machine, MachineError, Sink};
//! use origami_introspect::{frame::Frame, CrawlOptions, Target};
//!
//! /// A sink that keeps the frames and prints the failures.
//! #[derive(Default)]
//! struct Keep(Vec<Frame>);
//!
//! impl Sink for Keep {
//!     type Error = Infallible;
//!     fn frame(&mut self, _: &Machine, frame: Frame) -> Result<bool, Infallible> {
//!         self.0.push(frame);
//!         Ok(true) // go on
//!     }
//!     fn failed(&mut self, machine: &Machine, error: &MachineError) -> bool {
//!         eprintln!("{}: {error}", machine.name);
//!         true
//!     }
//! }
//!
//! // One of the demo fleet's guest disks (zstd-compressed ext4).
//! let zst = include_bytes!("../../../examples/demo-fleet/web-02.img.zst");
//! let disk = std::env::temp_dir().join(format!("origami-fleet-doc-{}.img", std::process::id()));
//! std::fs::write(&disk, zstd::stream::decode_all(&zst[..])?)?;
//!
//! let machines = [
//!     Machine::new("web-02", Target::disk(&disk)),
//!     // A disk that is not there: the frame records the error.
//!     Machine::new("gone", Target::disk("/nonexistent/gone.qcow2")),
//!     // Nothing to crawl: refused, no frame.
//!     Machine::new("empty", Target::default()),
//! ];
//! let options = CrawlOptions::builder().config_glob("/home/*/.bash_history").build()?;
//! let mut fleet = Fleet::builder()
//!     .jobs(2)
//!     .timeout(Duration::from_secs(600))
//!     .build(options);
//! let mut kept = Keep::default();
//! let report = fleet.crawl(&machines, &mut kept)?;
//! std::fs::remove_file(&disk)?;
//!
//! assert_eq!(report.crawled, 2);
//! assert!(kept.0.iter().any(|f| f.system() == "web-02" && !f.package.is_empty()));
//! assert!(report.read_nothing.contains("gone"));
//! assert!(matches!(report.failed["empty"], MachineError::Crawl(_)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod report;
mod sink;

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use origami_frame::Frame;

pub use report::{read_nothing, FleetError, FleetReport, MachineError};
pub use sink::{Progress, Sink};

use crate::{CrawlOptions, Crawler, Target};

/// One machine of a fleet: a name (its frames' system id), what to crawl and, when it
/// differs from the fleet's, how.
#[derive(Debug, Clone)]
pub struct Machine {
    /// The system id its frame carries; unique within a fleet.
    pub name: String,
    /// Its disks and memory.
    pub target: Target,
    /// Options for this machine alone (for example the folders its images may name
    /// backing files in); `None` crawls it with the fleet's.
    pub options: Option<Arc<CrawlOptions>>,
}

impl Machine {
    /// A machine named `name`, crawled with the fleet's options.
    pub fn new(name: impl Into<String>, target: Target) -> Machine {
        Machine {
            name: name.into(),
            target,
            options: None,
        }
    }

    /// The machine crawled with `options` instead of the fleet's.
    pub fn with_options(mut self, options: CrawlOptions) -> Machine {
        self.options = Some(Arc::new(options));
        self
    }
}

/// Builds a [`Fleet`]: how many crawls at once, how long each may take.
#[derive(Debug, Clone)]
pub struct FleetBuilder {
    jobs: usize,
    timeout: Option<Duration>,
    max_stuck: Option<usize>,
}

impl Default for FleetBuilder {
    fn default() -> Self {
        FleetBuilder {
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            timeout: None,
            max_stuck: None,
        }
    }
}

impl FleetBuilder {
    /// The defaults: as many crawls at once as CPUs, no timeout.
    pub fn new() -> FleetBuilder {
        FleetBuilder::default()
    }

    /// How many machines are crawled at once (at least 1).
    pub fn jobs(mut self, n: usize) -> Self {
        self.jobs = n.max(1);
        self
    }

    /// The most time one machine's crawl may take (default: none). A crawl past it is
    /// reported [`MachineError::TimedOut`] and its slot goes to the next machine; its thread
    /// cannot be killed and runs on until its crawl ends.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// How many timed-out crawls may still run while the fleet keeps all its `jobs`
    /// (default: `jobs`). A fleet never has more than `jobs + max_stuck` crawl threads
    /// alive: past `max_stuck` stuck threads fewer crawls run at once, and when every
    /// thread it may have is stuck, the machines not yet crawled are reported
    /// [`MachineError::TooManyStuck`] at once.
    pub fn max_stuck(mut self, n: usize) -> Self {
        self.max_stuck = Some(n);
        self
    }

    /// The fleet engine, crawling every machine with `options`.
    pub fn build(&self, options: CrawlOptions) -> Fleet {
        Fleet {
            crawler: Arc::new(Crawler::new(options)),
            jobs: self.jobs,
            timeout: self.timeout,
            max_stuck: self.max_stuck.unwrap_or(self.jobs),
            stuck: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// The fleet engine (see the [module docs](self)). It remembers the crawls that timed out
/// and still run, across calls, so that the thread bound holds over its whole life.
#[derive(Debug)]
pub struct Fleet {
    crawler: Arc<Crawler>,
    jobs: usize,
    timeout: Option<Duration>,
    max_stuck: usize,
    /// Crawl threads that timed out (or were left behind when a sink stopped) and have not
    /// ended yet; each decrements it when its crawl ends.
    stuck: Arc<AtomicUsize>,
}

/// How one crawl thread stands, shared by the thread and the loop that waits for it.
const RUNNING: u8 = 0;
const LEFT: u8 = 1;
const ENDED: u8 = 2;

/// A crawl the loop waits for.
struct Running {
    index: usize,
    deadline: Option<Instant>,
    state: Arc<AtomicU8>,
}

/// A crawl function: the crawler, or a stand-in in tests.
type CrawlFn = Arc<dyn Fn(&Machine) -> crate::Result<Frame> + Send + Sync>;

impl Fleet {
    /// A builder with the defaults ([`FleetBuilder::new`]).
    pub fn builder() -> FleetBuilder {
        FleetBuilder::new()
    }

    /// The crawl options every machine without its own is crawled with.
    pub fn options(&self) -> &CrawlOptions {
        self.crawler.options()
    }

    /// Crawl threads of this fleet that timed out and still run.
    pub fn stuck(&self) -> usize {
        self.stuck.load(Ordering::SeqCst)
    }

    /// Crawls `machines` and hands each outcome to `sink` as it comes. Returns when every
    /// machine has an outcome or the sink stopped the fleet; only a fleet whose names are
    /// not unique (or empty) is an error.
    pub fn crawl<S: Sink>(
        &mut self,
        machines: &[Machine],
        sink: S,
    ) -> Result<FleetReport, FleetError> {
        let crawler = self.crawler.clone();
        let crawl = move |m: &Machine| match &m.options {
            Some(own) => Crawler::new(CrawlOptions::clone(own)).crawl(&m.target),
            None => crawler.crawl(&m.target),
        };
        self.run(machines, sink, Arc::new(crawl))
    }

    fn run<S: Sink>(
        &mut self,
        machines: &[Machine],
        mut sink: S,
        crawl: CrawlFn,
    ) -> Result<FleetReport, FleetError> {
        let mut names = BTreeSet::new();
        for (index, m) in machines.iter().enumerate() {
            if m.name.is_empty() {
                return Err(FleetError::EmptyName { index });
            }
            if !names.insert(m.name.as_str()) {
                return Err(FleetError::DuplicateName {
                    name: m.name.clone(),
                });
            }
        }
        let start = Instant::now();
        let mut report = FleetReport {
            machines: machines.len(),
            ..FleetReport::default()
        };
        let (tx, rx) = mpsc::channel::<(usize, Result<Frame, MachineError>)>();
        let mut running: Vec<Running> = Vec::new();
        let (mut next, mut done) = (0usize, 0usize);
        let most_threads = self.jobs + self.max_stuck;
        let progress = |done, running: &Vec<Running>, stuck: &AtomicUsize| Progress {
            total: machines.len(),
            done,
            running: running.len(),
            stuck: stuck.load(Ordering::SeqCst),
        };
        'fleet: loop {
            while next < machines.len()
                && running.len() < self.jobs
                && running.len() + self.stuck() < most_threads
            {
                let index = next;
                next += 1;
                match self.spawn(index, &machines[index], &crawl, &tx) {
                    Ok(r) => running.push(r),
                    Err(e) => {
                        done += 1;
                        let go = self.deliver(&machines[index], Err(e), &mut sink, &mut report);
                        sink.progress(&progress(done, &running, &self.stuck));
                        if !go {
                            report.stopped = true;
                            break 'fleet;
                        }
                    }
                }
            }
            if running.is_empty() {
                // Nothing runs and nothing can start: every thread this fleet may have is
                // stuck (or every machine has an outcome).
                let stuck = self.stuck();
                for m in &machines[next..] {
                    done += 1;
                    let e = MachineError::TooManyStuck { stuck };
                    let go = self.deliver(m, Err(e), &mut sink, &mut report);
                    sink.progress(&progress(done, &running, &self.stuck));
                    if !go {
                        report.stopped = true;
                        break 'fleet;
                    }
                }
                break;
            }
            let wait = running.iter().filter_map(|r| r.deadline).min();
            let received = match wait {
                Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let mut ended: Vec<(usize, Result<Frame, MachineError>)> = Vec::new();
            match received {
                Ok((index, outcome)) => {
                    // A crawl that timed out earlier has ended: its outcome was reported.
                    if let Some(at) = running.iter().position(|r| r.index == index) {
                        running.swap_remove(at);
                        ended.push((index, outcome));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    let after = self.timeout.unwrap_or_default();
                    let mut i = 0;
                    while i < running.len() {
                        if running[i].deadline.is_some_and(|d| d <= now) {
                            if self.leave(&running[i]) {
                                let r = running.swap_remove(i);
                                ended.push((r.index, Err(MachineError::TimedOut { after })));
                                continue;
                            }
                            // It ended just now: its outcome is on its way.
                            running[i].deadline = None;
                        }
                        i += 1;
                    }
                }
                // The loop holds a sender, so the channel cannot close.
                Err(RecvTimeoutError::Disconnected) => break,
            }
            for (index, outcome) in ended {
                done += 1;
                let go = self.deliver(&machines[index], outcome, &mut sink, &mut report);
                sink.progress(&progress(done, &running, &self.stuck));
                if !go {
                    report.stopped = true;
                    break 'fleet;
                }
            }
        }
        // Crawls still running when the sink stopped the fleet are left behind like
        // timed-out ones, and counted as stuck until they end.
        for r in &running {
            self.leave(r);
        }
        report.elapsed = start.elapsed();
        Ok(report)
    }

    /// Starts the crawl of `machine` on its own thread (a thread per crawl, so that one
    /// that overruns its time can be left behind).
    fn spawn(
        &self,
        index: usize,
        machine: &Machine,
        crawl: &CrawlFn,
        tx: &mpsc::Sender<(usize, Result<Frame, MachineError>)>,
    ) -> Result<Running, MachineError> {
        let state = Arc::new(AtomicU8::new(RUNNING));
        let (thread_state, stuck) = (state.clone(), self.stuck.clone());
        let (machine, crawl, tx) = (machine.clone(), crawl.clone(), tx.clone());
        std::thread::Builder::new()
            .name("origami-crawl".into())
            .spawn(move || {
                let outcome = match catch_unwind(AssertUnwindSafe(|| crawl(&machine))) {
                    Ok(Ok(frame)) => Ok(frame),
                    Ok(Err(e)) => Err(MachineError::Crawl(e)),
                    Err(payload) => Err(MachineError::Panicked {
                        message: panic_message(payload.as_ref()),
                    }),
                };
                // Leave the stuck count before the outcome is seen, so that the loop never
                // counts an ended crawl as stuck.
                if thread_state.swap(ENDED, Ordering::SeqCst) == LEFT {
                    stuck.fetch_sub(1, Ordering::SeqCst);
                }
                let _ = tx.send((index, outcome));
            })
            .map_err(MachineError::Spawn)?;
        Ok(Running {
            index,
            deadline: self.timeout.map(|t| Instant::now() + t),
            state,
        })
    }

    /// Leaves a running crawl behind (counted as stuck until it ends); false when it has
    /// already ended.
    fn leave(&self, r: &Running) -> bool {
        // Count first: the thread only uncounts what it finds counted.
        self.stuck.fetch_add(1, Ordering::SeqCst);
        let left = r
            .state
            .compare_exchange(RUNNING, LEFT, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if !left {
            self.stuck.fetch_sub(1, Ordering::SeqCst);
        }
        left
    }

    /// Hands one machine's outcome to the sink and the report; returns whether to go on.
    fn deliver<S: Sink>(
        &self,
        machine: &Machine,
        outcome: Result<Frame, MachineError>,
        sink: &mut S,
        report: &mut FleetReport,
    ) -> bool {
        let mut frame = match outcome {
            Ok(frame) => frame,
            Err(e) => {
                let go = sink.failed(machine, &e);
                report.failed.insert(machine.name.clone(), e);
                return go;
            }
        };
        frame.meta.system = machine.name.clone();
        let items = frame.item_count();
        let nothing = read_nothing(&frame);
        let errors: Vec<String> = frame
            .meta
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.feature, e.message))
            .collect();
        match sink.frame(machine, frame) {
            Ok(go) => {
                report.crawled += 1;
                report.items += items;
                if !errors.is_empty() {
                    report.feature_errors.insert(machine.name.clone(), errors);
                }
                if nothing {
                    report.read_nothing.insert(machine.name.clone());
                }
                go
            }
            Err(e) => {
                report
                    .failed
                    .insert(machine.name.clone(), MachineError::Sink(Box::new(e)));
                true
            }
        }
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests;
