//! The watcher (issue 12 items 2 and 5).
//!
//! Torn state, on the fixture dump (no VM): a `PhysicalMemory` over `memory.elf` that
//! rewrites the task list as it is read (a broken back link, a pointer out of RAM, a list
//! rewired into a loop, a task whose start time changes between two reads, a tear that
//! happens once) gives partial ticks (or a retried good one), never panics, reads a
//! bounded amount, and invents no process; a task unlinked cleanly gives exactly one
//! `process_exited`, and linked back, one `process_started`.
//!
//! A live guest, booted once for this file: the fixture kernel under QEMU TCG with plain
//! anonymous RAM, attached by pid (`/proc/PID/mem`), with a shell on its console. The
//! watcher's first tick is compared with the guest's own /proc snapshot; a uniquely named
//! process started and killed from the console gives exactly one `process_started` and one
//! `process_exited`, with the pid the guest's shell printed and the command line it ran.
//! Then the wedged cases: every process stopped (`kill -STOP -1`) is still crawled, and so
//! is the guest after its kernel panicked (`echo c > /proc/sysrq-trigger`, `panic=0` on its
//! command line): processes listed, the panic in `kernel_log`, `os.panicked` true.
//!
//! Skips outside CI when the fixtures, qemu-system-x86_64, tar or base64 are missing.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use origami_core::memory::{MemoryDump, PhysRange, PhysicalMemory};
use origami_introspect::frame::{Frame, Process, Section};
use origami_introspect::linux::{crawl, discover, LinuxOptions};
use origami_introspect::watch::{Event, WatchOptions, Watcher};
use origami_introspect::MemorySource;
use origami_testsupport::qemu::{FixtureVm, GuestTruth, RamBacking, VmOptions, CONSOLE_SHELL};

const BOOT: Duration = Duration::from_secs(600);
const CONSOLE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Torn state on the fixture dump.

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

// ---------------------------------------------------------------------------------------
// A live guest.

fn have_tools() -> bool {
    ["qemu-system-x86_64", "tar", "base64"]
        .into_iter()
        .all(origami_testsupport::require_program)
}

/// Crawls the guest (no cache) into a frame.
fn crawl_frame(source: &MemorySource) -> Frame {
    let mut frame = Frame::new("watched");
    crawl(source, &LinuxOptions::default().no_cache()).merge_into(&mut frame);
    frame
}

/// Every process of the snapshot but workqueue workers, by pid: name and command line.
fn truth_processes(truth: &GuestTruth) -> BTreeMap<u32, (String, Vec<String>)> {
    truth
        .processes
        .iter()
        .filter(|(_, t)| !t.comm.starts_with("kworker/"))
        .map(|(pid, t)| (*pid, (t.comm.clone(), t.cmdline.clone())))
        .collect()
}

fn listed(processes: &[Process]) -> BTreeMap<u32, (String, Vec<String>)> {
    processes
        .iter()
        .map(|p| (p.pid, (p.name.clone(), p.cmdline.clone())))
        .collect()
}

/// Missing or different processes of the snapshot.
fn missing(
    want: &BTreeMap<u32, (String, Vec<String>)>,
    got: &BTreeMap<u32, (String, Vec<String>)>,
) -> Vec<String> {
    want.iter()
        .filter(|(pid, t)| got.get(pid) != Some(t))
        .map(|(pid, t)| format!("pid {pid}: want {t:?}, got {:?}", got.get(pid)))
        .collect()
}

#[test]
fn a_live_guest_is_watched_then_crawled_frozen_and_panicked() {
    if !have_tools() {
        return;
    }
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let options = VmOptions {
        backing: RamBacking::Anonymous,
        console_shell: true,
        ..VmOptions::default()
    };
    // panic=0 (after the fixture's panic=-1): a panicked kernel stays up, halted.
    let mut vm = FixtureVm::boot_with(fx, "origami-watch", "panic=0", BOOT, &options);
    vm.wait_for_console(CONSOLE_SHELL, BOOT);
    let truth = GuestTruth::read(&vm);
    let want = truth_processes(&truth);
    let dump = MemoryDump::attach_qemu_pid(vm.pid()).expect("attach");
    let source = MemorySource::new(dump.name(), Arc::new(dump));

    a_process_started_and_killed_from_the_console_is_seen_once(&mut vm, &source, &want);
    a_frozen_user_space_is_crawled(&mut vm, &source, &want);
    a_panicked_kernel_is_crawled(&mut vm, &source, &want);
}

fn a_process_started_and_killed_from_the_console_is_seen_once(
    vm: &mut FixtureVm,
    source: &MemorySource,
    want: &BTreeMap<u32, (String, Vec<String>)>,
) {
    let mut watcher = Watcher::new(source, WatchOptions::default()).expect("watcher");
    // The baseline: the first good tick (a live read may be torn now and then).
    let first = (0..20)
        .map(|_| watcher.tick())
        .find(|t| !t.partial())
        .expect("a good tick in 20");
    assert!(first.events.is_empty());
    let got: BTreeMap<u32, (String, Vec<String>)> = watcher
        .processes()
        .map(|p| (p.pid, (p.name.clone(), p.cmdline.clone())))
        .collect();
    let bad = missing(want, &got);
    assert!(bad.is_empty(), "the first tick against /proc: {bad:#?}");
    assert_eq!(watcher.hostname(), Some("vmi-fixture"));

    vm.console_run(
        "mkfifo /tmp/ow-fifo; printf '#!/bin/sh\\nread x < /tmp/ow-fifo\\n' > /tmp/ow-watch-4711; \
         chmod +x /tmp/ow-watch-4711",
        CONSOLE,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = stop.clone();
    // The watcher is Send: it ticks at 100 Hz on a thread of its own.
    let watching = std::thread::spawn(move || {
        let mut events = Vec::new();
        let mut ticks = (0u64, 0u64);
        watcher.run(Duration::from_millis(10), |t| {
            ticks.0 += 1;
            ticks.1 += u64::from(t.partial());
            events.extend(t.events);
            if stopper.load(Ordering::SeqCst) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        (events, ticks)
    });
    std::thread::sleep(Duration::from_millis(500));
    let out = vm.console_run("/tmp/ow-watch-4711 unique-arg-4711 & echo PID=$!", CONSOLE);
    let pid: u32 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("PID="))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no PID= in {out:?}"));
    std::thread::sleep(Duration::from_secs(1));
    vm.console_run(&format!("kill {pid}; wait {pid}; echo reaped"), CONSOLE);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    let (events, (ticks, partial)) = watching.join().expect("watcher thread");
    eprintln!("{ticks} ticks, {partial} partial, {} events", events.len());

    let ours: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.process().is_some_and(|p| {
                p.pid == pid
                    || p.name.contains("ow-watch")
                    || p.cmdline.iter().any(|a| a.contains("ow-watch"))
            })
        })
        .collect();
    let cmdline = ["/bin/sh", "/tmp/ow-watch-4711", "unique-arg-4711"];
    assert_eq!(ours.len(), 2, "{ours:#?}");
    match (ours[0], ours[1]) {
        (Event::ProcessStarted { process: a }, Event::ProcessExited { process: b }) => {
            for p in [a, b] {
                assert_eq!(p.pid, pid);
                assert_eq!(p.name, "ow-watch-4711");
                assert_eq!(p.cmdline, cmdline);
                assert_eq!(p.uid, 0);
            }
            assert_eq!(a.start_time, b.start_time);
        }
        other => panic!("{other:#?}"),
    }
}

fn a_frozen_user_space_is_crawled(
    vm: &mut FixtureVm,
    source: &MemorySource,
    want: &BTreeMap<u32, (String, Vec<String>)>,
) {
    // Every process but init and the shell that sends the signal.
    let shell = vm.console_run("echo SHELL=$$", CONSOLE);
    let shell: u32 = shell
        .lines()
        .find_map(|l| l.trim().strip_prefix("SHELL="))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no SHELL= in {shell:?}"));
    vm.console_run("kill -STOP -1", CONSOLE);
    let frame = crawl_frame(source);
    assert!(frame.meta.errors.is_empty(), "{:#?}", frame.meta.errors);
    let bad = missing(want, &listed(&frame.process));
    assert!(bad.is_empty(), "frozen: {bad:#?}");
    let running: Vec<&Process> = frame
        .process
        .iter()
        .filter(|p| !p.kernel_thread && p.pid != 1 && p.pid != shell)
        // Stopped, or a zombie (the fixture keeps one), which no signal stops.
        .filter(|p| !matches!(p.state.as_deref(), Some("T" | "Z")))
        .collect();
    assert!(running.is_empty(), "not stopped: {running:#?}");
    assert!(frame.process.len() > 40);
    vm.console_run("kill -CONT -1", CONSOLE);
}

fn a_panicked_kernel_is_crawled(
    vm: &mut FixtureVm,
    source: &MemorySource,
    want: &BTreeMap<u32, (String, Vec<String>)>,
) {
    vm.console_send("echo c > /proc/sysrq-trigger");
    vm.wait_for_console("Kernel panic - not syncing", BOOT);
    // Let the panic finish (other CPUs stopped, the last lines printed).
    std::thread::sleep(Duration::from_secs(2));
    let frame = crawl_frame(source);
    assert_eq!(frame.os.panicked, Some(true), "{:#?}", frame.os);
    assert!(
        frame
            .kernel_log
            .iter()
            .any(|r| r.message.contains("Kernel panic - not syncing")),
        "no panic in the kernel log's last lines: {:#?}",
        frame.kernel_log.iter().rev().take(10).collect::<Vec<_>>()
    );
    let bad = missing(want, &listed(&frame.process));
    assert!(bad.is_empty(), "panicked: {bad:#?}");
    let errors: Vec<_> = frame
        .meta
        .errors
        .iter()
        .filter(|e| e.feature == "process")
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}
