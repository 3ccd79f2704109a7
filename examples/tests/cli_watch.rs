//! `origami watch` and `origami crawl --qemu-pid` (issue 12 items 2, 4 and 5), and the
//! library's `Watcher` on a live guest.
//!
//! On the fixture dump (no VM): `origami watch --json --report-existing` prints JSON Lines
//! of the shape (time, system, event, the item under its section name), whose
//! processes, modules and sockets are the dump's truth file's, then the summary line; bad
//! input (a pid that is not QEMU, a missing file, a bad interval) fails with a clear error.
//!
//! A live guest, booted once for this file: the fixture kernel under QEMU TCG with plain
//! anonymous RAM, attached by pid (`/proc/PID/mem`), with a shell on its console.
//! `origami crawl --qemu-pid` is compared with the guest's own /proc snapshot, and so is the
//! library watcher's first tick. A uniquely named process started and killed from the
//! console gives exactly one `process_started` and one `process_exited`, with the pid the
//! guest's shell printed and the command line it ran: once through the library's `Watcher`
//! (on a thread of its own, at 100 Hz), once through `origami watch --qemu-pid --json`.
//! Then the wedged cases, through `origami crawl --qemu-pid`: every process stopped (`kill
//! -STOP -1`) is still crawled, and so is the guest after its kernel panicked (`echo c >
//! /proc/sysrq-trigger`, `panic=0` on its command line): processes listed, the panic in
//! `kernel_log`, `os.panicked` true.
//!
//! Skips outside CI when the fixtures, qemu-system-x86_64, tar or base64 are missing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use origami_core::memory::{MemoryDump, PhysicalMemory};
use origami_frame::{Frame, Process};
use origami_introspect::watch::{Event, WatchOptions, Watcher};
use origami_introspect::MemorySource;
use origami_testsupport::qemu::{FixtureVm, GuestTruth, RamBacking, VmOptions, CONSOLE_SHELL};
use serde_json::Value;

const BOOT: Duration = Duration::from_secs(600);
const CONSOLE: Duration = Duration::from_secs(60);

fn origami(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_origami"))
        .args(args)
        .output()
        .expect("run origami")
}

/// Checks one event line's shape: `time` (RFC 3339), `system`, `event`, then the item
/// under `section`, in that order; returns it parsed.
fn event_line(line: &str, system: &str) -> Value {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let event = v["event"]
        .as_str()
        .unwrap_or_else(|| panic!("no event: {line}"));
    let section = match event {
        "process_started" | "process_exited" => "process",
        "connection_opened" | "connection_closed" => "connection",
        "module_loaded" | "module_unloaded" => "module",
        "hostname_changed" => "os",
        other => panic!("unknown event {other}: {line}"),
    };
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    let want: BTreeSet<&str> = if section == "os" {
        ["time", "system", "event", "os", "previous"].into()
    } else {
        ["time", "system", "event", section].into()
    };
    assert_eq!(
        keys.iter().map(|k| k.as_str()).collect::<BTreeSet<_>>(),
        want,
        "{line}"
    );
    let at = |k: &str| line.find(&format!("\"{k}\":")).unwrap();
    assert!(
        at("time") < at("system") && at("system") < at("event") && at("event") < at(section),
        "order: {line}"
    );
    let t = v["time"].as_str().unwrap();
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{t}: {e}"));
    assert_eq!(v["system"], system, "{line}");
    v
}

/// Checks the summary line and returns (crawls, partial).
fn summary_line(line: &str) -> (u64, u64) {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v.as_object().unwrap().len(), 1, "{line}");
    let s = &v["summary"];
    assert!(s["seconds"].as_f64().is_some_and(|x| x >= 0.0), "{line}");
    assert_eq!(s.as_object().unwrap().len(), 3, "{line}");
    assert!(line.find("\"crawls\"") < line.find("\"seconds\""), "{line}");
    assert!(
        line.find("\"seconds\"") < line.find("\"partial\""),
        "{line}"
    );
    (
        s["crawls"].as_u64().unwrap(),
        s["partial"].as_u64().unwrap(),
    )
}

#[test]
fn watch_prints_json_lines_of_a_dump_that_match_its_truth() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let truth = fx.json("memdump/truth.json");
    let dump = fx.path("memdump/memory.elf");
    let out = origami(&[
        "watch",
        "--memory",
        dump.to_str().unwrap(),
        "--count",
        "3",
        "--interval",
        "5ms",
        "--json",
        "--report-existing",
        "--no-cache",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (last, events) = lines.split_last().expect("lines");
    assert_eq!(summary_line(last), (3, 0));
    let events: Vec<Value> = events
        .iter()
        .map(|l| event_line(l, "vmi-fixture"))
        .collect();

    // The dump does not change: everything is reported by the first crawl, once.
    let started: BTreeMap<u64, (Value, Value)> = events
        .iter()
        .filter(|e| e["event"] == "process_started")
        .map(|e| {
            let p = &e["process"];
            (
                p["pid"].as_u64().unwrap(),
                (p["name"].clone(), p["cmdline"].clone()),
            )
        })
        .collect();
    let n_started = events
        .iter()
        .filter(|e| e["event"] == "process_started")
        .count();
    assert_eq!(n_started, started.len(), "a process reported twice");
    for p in truth["processes"].as_array().unwrap() {
        let pid = p["pid"].as_u64().unwrap();
        if p["comm"].as_str().unwrap().starts_with("kworker/") {
            continue;
        }
        assert_eq!(
            started.get(&pid),
            Some(&(p["comm"].clone(), p["cmdline"].clone())),
            "pid {pid}"
        );
    }
    let modules: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["event"] == "module_loaded")
        .map(|e| e["module"]["name"].as_str().unwrap())
        .collect();
    let want: BTreeSet<&str> = truth["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(modules, want);
    let tcp: BTreeSet<(u64, u64, String)> = events
        .iter()
        .filter(|e| e["event"] == "connection_opened" && e["connection"]["protocol"] == "tcp")
        .map(|e| {
            let c = &e["connection"];
            (
                c["local_port"].as_u64().unwrap(),
                c["remote_port"].as_u64().unwrap(),
                c["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for family in ["tcp", "tcp6"] {
        for s in truth["sockets"][family].as_array().unwrap() {
            let key = (
                s["local_port"].as_u64().unwrap(),
                s["remote_port"].as_u64().unwrap(),
                s["state"].as_str().unwrap().to_string(),
            );
            assert!(tcp.contains(&key), "{key:?} not in {tcp:?}");
        }
    }
    assert!(events.iter().all(|e| e["event"] != "process_exited"));

    // Text output: one line an event and a summary.
    let out = origami(&[
        "watch",
        "--memory",
        dump.to_str().unwrap(),
        "--count",
        "2",
        "--no-cache",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.trim().starts_with("2 crawls in ") && text.trim().ends_with(" s, 0 partial"),
        "{text}"
    );
}

#[test]
fn watch_and_crawl_refuse_bad_input_with_clear_errors() {
    let me = std::process::id().to_string();
    for args in [
        vec!["watch", "--qemu-pid", me.as_str(), "--count", "1"],
        vec!["crawl", "--qemu-pid", me.as_str()],
    ] {
        let out = origami(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("not an x86 QEMU"), "{args:?}: {err}");
        assert!(err.contains("pgrep"), "{args:?}: says what to do: {err}");
        assert_eq!(
            err.matches("not an x86 QEMU").count(),
            1,
            "said once: {err}"
        );
    }
    let out = origami(&["watch", "--memory", "/nonexistent/ram", "--count", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ram"));
    for bad in ["10", "0ms", "5 parsecs", "-1s"] {
        let out = origami(&["watch", "--memory", "x", "--interval", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
    let out = origami(&["watch", "--count", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let out = origami(&["watch", "--memory", "x", "--qemu-pid", "1"]);
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------
// A live guest.

fn have_tools() -> bool {
    ["qemu-system-x86_64", "tar", "base64"]
        .into_iter()
        .all(origami_testsupport::require_program)
}

/// `origami crawl --qemu-pid PID` (no cache): the frame it prints.
fn crawl_frame(qemu: u32) -> Frame {
    let out = origami(&[
        "crawl",
        "--qemu-pid",
        &qemu.to_string(),
        "--no-cache",
        "--compact",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Frame::from_json(String::from_utf8_lossy(&out.stdout).trim()).expect("a frame")
}

type Listed = BTreeMap<u32, (String, Vec<String>)>;

/// Every process of the snapshot but workqueue workers, by pid: name and command line.
fn truth_processes(truth: &GuestTruth) -> Listed {
    truth
        .processes
        .iter()
        .filter(|(_, t)| !t.comm.starts_with("kworker/"))
        .map(|(pid, t)| (*pid, (t.comm.clone(), t.cmdline.clone())))
        .collect()
}

fn listed<'a>(processes: impl IntoIterator<Item = &'a Process>) -> Listed {
    processes
        .into_iter()
        .map(|p| (p.pid, (p.name.clone(), p.cmdline.clone())))
        .collect()
}

/// Missing or different processes of the snapshot.
fn missing(want: &Listed, got: &Listed) -> Vec<String> {
    want.iter()
        .filter(|(pid, t)| got.get(pid) != Some(t))
        .map(|(pid, t)| format!("pid {pid}: want {t:?}, got {:?}", got.get(pid)))
        .collect()
}

/// Runs `/tmp/NAME ARG` from the console and returns its pid as the guest's shell printed
/// it; the script blocks on a FIFO, so it neither ends nor forks.
fn start(vm: &mut FixtureVm, name: &str, arg: &str) -> u32 {
    vm.console_run(
        &format!(
            "[ -p /tmp/ow-fifo ] || mkfifo /tmp/ow-fifo; \
             printf '#!/bin/sh\\nread x < /tmp/ow-fifo\\n' > /tmp/{name}; chmod +x /tmp/{name}"
        ),
        CONSOLE,
    );
    let out = vm.console_run(&format!("/tmp/{name} {arg} & echo PID=$!"), CONSOLE);
    number_after(&out, "PID=")
}

/// The number printed after `key` (the shell's prompt may precede it on its line).
fn number_after(out: &str, key: &str) -> u32 {
    out.split(key)
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {out:?}"))
}

/// Kills and reaps `pid` from the console.
fn kill(vm: &mut FixtureVm, pid: u32) {
    vm.console_run(&format!("kill {pid}; wait {pid}; echo reaped"), CONSOLE);
}

/// Checks that `events` hold exactly one start and one exit of `/tmp/NAME ARG` (pid
/// `pid`) and no other event of it.
fn started_and_exited_once(events: &[Event], pid: u32, name: &str, arg: &str) {
    let ours: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.process().is_some_and(|p| {
                p.pid == pid || p.name.contains(name) || p.cmdline.iter().any(|a| a.contains(name))
            })
        })
        .collect();
    let script = format!("/tmp/{name}");
    let cmdline = ["/bin/sh", script.as_str(), arg];
    assert_eq!(ours.len(), 2, "{ours:#?}");
    match (ours[0], ours[1]) {
        (Event::ProcessStarted { process: a }, Event::ProcessExited { process: b }) => {
            for p in [a, b] {
                assert_eq!(p.pid, pid);
                assert_eq!(p.name, name);
                assert_eq!(p.cmdline, cmdline);
                assert_eq!(p.uid, 0);
            }
            assert_eq!(a.start_time, b.start_time);
        }
        other => panic!("{other:#?}"),
    }
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

    // `origami crawl --qemu-pid` against the guest's own /proc.
    let frame = crawl_frame(vm.pid());
    assert!(frame.meta.errors.is_empty(), "{:#?}", frame.meta.errors);
    let bad = missing(&want, &listed(&frame.process));
    assert!(bad.is_empty(), "crawl --qemu-pid against /proc: {bad:#?}");
    assert_eq!(frame.system(), "vmi-fixture");

    the_library_watcher_sees_a_process_once(&mut vm, &want);
    origami_watch_sees_a_process_once(&mut vm);
    a_frozen_user_space_is_crawled(&mut vm, &want);
    a_panicked_kernel_is_crawled(&mut vm, &want);
}

fn the_library_watcher_sees_a_process_once(vm: &mut FixtureVm, want: &Listed) {
    let dump = MemoryDump::attach_qemu_pid(vm.pid()).expect("attach");
    let source = MemorySource::new(dump.name(), Arc::new(dump));
    let mut watcher = Watcher::new(&source, WatchOptions::default()).expect("watcher");
    // The baseline: the first good tick (a live read may be torn now and then).
    let first = (0..20)
        .map(|_| watcher.tick())
        .find(|t| !t.partial())
        .expect("a good tick in 20");
    assert!(first.events.is_empty());
    let bad = missing(want, &listed(watcher.processes()));
    assert!(bad.is_empty(), "the first tick against /proc: {bad:#?}");
    assert_eq!(watcher.hostname(), Some("vmi-fixture"));

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
    let pid = start(vm, "ow-watch-4711", "unique-arg-4711");
    std::thread::sleep(Duration::from_secs(1));
    kill(vm, pid);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    let (events, (ticks, partial)) = watching.join().expect("watcher thread");
    eprintln!(
        "library: {ticks} ticks, {partial} partial, {} events",
        events.len()
    );
    started_and_exited_once(&events, pid, "ow-watch-4711", "unique-arg-4711");
}

fn origami_watch_sees_a_process_once(vm: &mut FixtureVm) {
    // --report-existing: the baseline's lines show when it is done.
    let mut child = Command::new(env!("CARGO_BIN_EXE_origami"))
        .args(["watch", "--qemu-pid", &vm.pid().to_string(), "--json"])
        .args(["--interval", "10ms", "--no-cache", "--report-existing"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("origami watch");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = vec![rx.recv_timeout(BOOT).expect("the baseline's first line")];
    let pid = start(vm, "ow-cli-4712", "unique-arg-4712");
    std::thread::sleep(Duration::from_secs(1));
    kill(vm, pid);
    std::thread::sleep(Duration::from_secs(1));
    child.kill().expect("stop origami watch");
    child.wait().expect("origami watch ends");
    reader.join().expect("reader");
    lines.extend(rx.try_iter());
    let events: Vec<Event> = lines
        .iter()
        .map(|l| {
            let v = event_line(l, "vmi-fixture");
            serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .collect();
    started_and_exited_once(&events, pid, "ow-cli-4712", "unique-arg-4712");
}

fn a_frozen_user_space_is_crawled(vm: &mut FixtureVm, want: &Listed) {
    // Every process but init and the shell that sends the signal.
    let shell = vm.console_run("echo SHELL=$$", CONSOLE);
    let shell = number_after(&shell, "SHELL=");
    vm.console_run("kill -STOP -1", CONSOLE);
    let frame = crawl_frame(vm.pid());
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

fn a_panicked_kernel_is_crawled(vm: &mut FixtureVm, want: &Listed) {
    vm.console_send("echo c > /proc/sysrq-trigger");
    vm.wait_for_console("Kernel panic - not syncing", BOOT);
    // Let the panic finish (other CPUs stopped, the last lines printed).
    std::thread::sleep(Duration::from_secs(2));
    let frame = crawl_frame(vm.pid());
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
