//! The watcher (issue 12 items 2 and 5).
//!
//! Torn state, on the fixture dump (no VM): a `PhysicalMemory` over `memory.elf` that
//! rewrites the task list as it is read (a broken back link, a pointer out of RAM, a list
//! rewired into a loop, a task whose start time changes between two reads, a tear that
//! happens once) gives partial ticks (or a retried good one), never panics, reads a
//! bounded amount, and invents no process; a task unlinked cleanly gives exactly one
//! `process_exited`, and linked back, one `process_started`.
//!
//! The watcher on a live guest (events of a process run from the guest's console, frozen
//! and panicked guests) is tested with the `origami watch` command, on one booted guest, in
//! `examples/tests/cli_watch.rs`.
//!
//! Skips outside CI when the fixtures are missing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use origami_core::memory::{MemoryDump, PhysRange, PhysicalMemory};
use origami_introspect::frame::Section;
use origami_introspect::linux::{discover, LinuxOptions};
use origami_introspect::watch::{Event, WatchOptions, Watcher};

/// How [`Tearing`] rewrites the task list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Tear {
    /// The dump as it is.
    None,
    /// The victim's `prev` no longer points back at its predecessor.
    BackLink,
    /// The victim's `next` points out of RAM.
    OutOfRam,
    /// The victim's `next` points back at the first task: a loop.
    Loop,
    /// The victim's start time reads differently every time.
    StartTime,
    /// [`Tear::BackLink`] on the first read of the victim's `prev` only.
    Once,
    /// The victim unlinked cleanly (as when it is reaped).
    Unlink,
}

const TEARS: [Tear; 7] = [
    Tear::None,
    Tear::BackLink,
    Tear::OutOfRam,
    Tear::Loop,
    Tear::StartTime,
    Tear::Once,
    Tear::Unlink,
];

/// Physical addresses of what [`Tearing`] rewrites (the victim and its neighbours'
/// `task_struct.tasks` nodes) and the values it writes.
struct Spots {
    victim_next: u64,
    victim_prev: u64,
    victim_start: u64,
    before_next: u64,
    after_prev: u64,
    /// Virtual addresses of nodes.
    before_node: u64,
    after_node: u64,
    first_node: u64,
}

/// The fixture dump, with the task list rewritten as [`Tear`] says; live (so reads are
/// retried), counting reads.
struct Tearing {
    inner: MemoryDump,
    spots: Spots,
    mode: AtomicU8,
    reads: AtomicU64,
    fired: AtomicBool,
}

impl Tearing {
    fn set(&self, t: Tear) {
        self.mode.store(t as u8, Ordering::SeqCst);
        self.fired.store(false, Ordering::SeqCst);
        self.reads.store(0, Ordering::SeqCst);
    }

    fn patches(&self) -> Vec<(u64, u64)> {
        let s = &self.spots;
        match TEARS[self.mode.load(Ordering::SeqCst) as usize] {
            Tear::None => vec![],
            Tear::BackLink => vec![(s.victim_prev, 0xffff_8880_0bad_0000)],
            Tear::OutOfRam => vec![(s.victim_next, 0xffff_8887_ff00_0000)],
            Tear::Loop => vec![(s.victim_next, s.first_node)],
            Tear::StartTime => {
                let n = self.reads.load(Ordering::SeqCst);
                vec![(s.victim_start, 1_000_000_000 * (n + 1))]
            }
            Tear::Once => {
                if self.fired.load(Ordering::SeqCst) {
                    vec![]
                } else {
                    vec![(s.victim_prev, 0xffff_8880_0bad_0000)]
                }
            }
            Tear::Unlink => vec![(s.before_next, s.after_node), (s.after_prev, s.before_node)],
        }
    }
}

impl PhysicalMemory for Tearing {
    fn read_phys(&self, addr: u64, buf: &mut [u8]) -> origami_core::Result<()> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_phys(addr, buf)?;
        let end = addr + buf.len() as u64;
        for (at, value) in self.patches() {
            let covers = at < end && at + 8 > addr;
            if covers && at == self.spots.victim_prev {
                self.fired.store(true, Ordering::SeqCst);
            }
            for (i, b) in value.to_le_bytes().iter().enumerate() {
                let a = at + i as u64;
                if a >= addr && a < end {
                    buf[(a - addr) as usize] = *b;
                }
            }
        }
        Ok(())
    }
    fn ranges(&self) -> Vec<PhysRange> {
        self.inner.ranges()
    }
    fn name(&self) -> String {
        format!("tearing {}", self.inner.name())
    }
    fn is_live(&self) -> bool {
        true
    }
}

fn ids(w: &Watcher) -> BTreeSet<(u32, u64)> {
    w.processes()
        .map(|p| (p.pid, p.start_time.unwrap_or(0)))
        .collect()
}

fn process_events(events: &[Event]) -> Vec<(&'static str, u32, String)> {
    events
        .iter()
        .filter_map(|e| e.process().map(|p| (e.name(), p.pid, p.name.clone())))
        .collect()
}

#[test]
fn a_task_list_rewritten_under_the_walk_gives_partial_ticks_and_no_invented_process() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let dump = MemoryDump::open(fx.path("memdump/memory.elf")).unwrap();
    let kernel = discover(&dump, &LinuxOptions::default().no_cache()).unwrap();
    let truth = fx.json("memdump/truth.json");
    let victim_pid = truth["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["comm"] == "httpd")
        .and_then(|p| p["pid"].as_u64())
        .unwrap() as u32;
    let want: BTreeSet<(u32, u64)> = truth["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["comm"].as_str().unwrap().starts_with("kworker/"))
        .map(|p| {
            (
                p["pid"].as_u64().unwrap() as u32,
                p["start_time_ticks"].as_u64().unwrap(),
            )
        })
        .collect();

    // Where the victim (httpd) and its neighbours sit on the task list.
    let km = kernel.kmem(&dump);
    let l = &kernel.layout;
    let off = l.off("task_struct.tasks").unwrap();
    let head = kernel.symbol("init_task").unwrap() + off;
    let (nodes, err) = km.list("tasks", head, 10_000);
    assert!(err.is_none());
    let tgid = l.off("task_struct.tgid").unwrap();
    let i = nodes
        .iter()
        .position(|&n| km.u32(n - off + tgid).unwrap() == victim_pid)
        .expect("httpd on the task list");
    assert!(i > 1 && i + 1 < nodes.len());
    let phys = |v: u64| km.translate(v).unwrap();
    let start = l.off("task_struct.start_boottime|real_start_time").unwrap();
    let spots = Spots {
        victim_next: phys(nodes[i]),
        victim_prev: phys(nodes[i] + 8),
        victim_start: phys(nodes[i] - off + start),
        before_next: phys(nodes[i - 1]),
        after_prev: phys(nodes[i + 1] + 8),
        before_node: nodes[i - 1],
        after_node: nodes[i + 1],
        first_node: nodes[0],
    };
    let tearing = Arc::new(Tearing {
        inner: dump,
        spots,
        mode: AtomicU8::new(Tear::None as u8),
        reads: AtomicU64::new(0),
        fired: AtomicBool::new(false),
    });
    let options = WatchOptions::default();
    let retries = options.retries;
    let mut w = Watcher::with_kernel(tearing.clone(), kernel, options);

    let t = w.tick();
    assert!(!t.partial(), "{:?}", t.torn);
    assert!(t.events.is_empty());
    let baseline = ids(&w);
    assert!(want.is_subset(&baseline), "want {want:?}, got {baseline:?}");
    let names: BTreeMap<u32, String> = w.processes().map(|p| (p.pid, p.name.clone())).collect();
    assert_eq!(names[&victim_pid], "httpd");
    assert!(w.tick().events.is_empty());

    for tear in [Tear::BackLink, Tear::OutOfRam, Tear::Loop, Tear::StartTime] {
        tearing.set(tear);
        for _ in 0..3 {
            let t = w.tick();
            let torn: BTreeSet<Section> = t.torn.iter().map(|s| s.section).collect();
            assert_eq!(
                torn,
                BTreeSet::from([Section::Process, Section::Connection]),
                "{tear:?}: {:?}",
                t.torn
            );
            assert_eq!(t.attempts, retries + 1, "{tear:?}");
            assert!(t.events.is_empty(), "{tear:?}: {:?}", t.events);
            assert_eq!(ids(&w), baseline, "{tear:?}: the last good state is kept");
            let reads = tearing.reads.swap(0, Ordering::SeqCst);
            assert!(reads < 200_000, "{tear:?}: {reads} reads in one tick");
        }
    }
    // A tear that happens once: the retry reads a good list.
    tearing.set(Tear::Once);
    let t = w.tick();
    assert!(!t.partial(), "{:?}", t.torn);
    assert!(t.attempts >= 2 && tearing.fired.load(Ordering::SeqCst));
    assert!(t.events.is_empty(), "{:?}", t.events);

    tearing.set(Tear::None);
    let t = w.tick();
    assert!(!t.partial() && t.events.is_empty(), "{t:?}");
    assert_eq!(ids(&w), baseline);

    // Unlinked cleanly: exactly one exit, httpd's (its listening socket closes with it).
    tearing.set(Tear::Unlink);
    let t = w.tick();
    assert!(!t.partial(), "{:?}", t.torn);
    assert_eq!(
        process_events(&t.events),
        [("process_exited", victim_pid, "httpd".to_string())]
    );
    for e in &t.events {
        if let Event::ConnectionClosed { connection } = e {
            assert_eq!(connection.pid, Some(victim_pid), "{e:?}");
        } else {
            assert!(e.process().is_some(), "{e:?}");
        }
    }
    // Linked back: started once (after it settled), nothing else.
    tearing.set(Tear::None);
    let mut events = Vec::new();
    for _ in 0..3 {
        let t = w.tick();
        assert!(!t.partial(), "{:?}", t.torn);
        events.extend(t.events);
    }
    assert_eq!(
        process_events(&events),
        [("process_started", victim_pid, "httpd".to_string())]
    );
    assert_eq!(ids(&w), baseline);
}
