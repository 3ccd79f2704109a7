//! Each bound of `Limits` that a memory crawl meets reaches its section: the crawl of the
//! fixture dump with one bound set below what the guest holds keeps what it read before
//! the bound, and the frame says which bound stopped which section, as a typed error (not
//! a panic, not a silent cut). The counts the bounds are set against come from the guest's
//! own /proc (`memdump/truth.json`), not from an earlier crawl.

use std::collections::BTreeSet;
use std::time::Duration;

use origami_core::memory::MemoryDump;
use origami_introspect::frame::Frame;
use origami_introspect::linux::{crawl_kernel, discover, LinuxOptions};
use origami_introspect::{CrawlOptions, Crawler, Limits, Target};
use serde_json::Value;

fn crawl(limits: Limits) -> Frame {
    let fx = origami_testsupport::fixtures().unwrap();
    let options = CrawlOptions::builder().limits(limits).build().unwrap();
    Crawler::new(options)
        .crawl(&Target::default().with_memory(fx.path("memdump/memory.elf")))
        .unwrap()
}

fn errors<'a>(frame: &'a Frame, feature: &str) -> Vec<&'a str> {
    frame
        .meta
        .errors
        .iter()
        .filter(|e| e.feature == feature)
        .map(|e| e.message.as_str())
        .collect()
}

fn truth() -> Value {
    origami_testsupport::fixtures()
        .unwrap()
        .json("memdump/truth.json")
}

/// User processes' pids as the guest's /proc listed them.
fn truth_pids(t: &Value) -> BTreeSet<u64> {
    t["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["tgid"].as_u64().unwrap())
        .collect()
}

#[test]
fn list_bounds_keep_what_came_before_and_say_so() {
    if origami_testsupport::fixtures().is_none() {
        return;
    }
    let t = truth();
    let n_truth = t["processes"].as_array().unwrap().len();
    assert!(
        n_truth > 10,
        "the guest has more tasks than the bound below"
    );
    assert!(t["modules"].as_array().unwrap().len() > 1);

    let full = crawl(Limits::DEFAULT);
    assert!(full.meta.errors.is_empty(), "{:?}", full.meta.errors);

    let mut l = Limits::DEFAULT;
    l.tasks = 10;
    l.modules = 1;
    let f = crawl(l);
    // The walk stops at the bound: exactly 10 tasks read, each one the guest has.
    assert_eq!(f.process.len(), 10);
    let pids = truth_pids(&t);
    assert!(f.process.iter().all(|p| pids.contains(&u64::from(p.pid))));
    assert!(
        errors(&f, "process")
            .iter()
            .any(|e| e.contains("task_struct.tasks list") && e.contains("over the bound of 10")),
        "{:?}",
        f.meta.errors
    );
    assert_eq!(f.module.len(), 1);
    let names: BTreeSet<&str> = t["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(f.module[0].name.as_str()));
    assert!(errors(&f, "module")
        .iter()
        .any(|e| e.contains("module.list list") && e.contains("over the bound of 1")));
    // The sections that do not walk these lists are whole.
    assert_eq!(f.mount.len(), full.mount.len());
    assert_eq!(f.kernel_log.len(), full.kernel_log.len());
    assert!(errors(&f, "mount").is_empty() && errors(&f, "connection").is_empty());
}

#[test]
fn fd_and_socket_bounds_reach_the_connection_section() {
    if origami_testsupport::fixtures().is_none() {
        return;
    }
    let t = truth();
    let sockets: usize = t["sockets"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_array().map_or(0, Vec::len))
        .sum();
    assert!(sockets >= 2);
    let full = crawl(Limits::DEFAULT);
    assert!(full.connection.len() >= 2, "{} sockets in truth", sockets);

    let mut l = Limits::DEFAULT;
    l.sockets = 1;
    let f = crawl(l);
    assert_eq!(f.connection.len(), 1);
    assert!(
        errors(&f, "connection")
            .iter()
            .any(|e| e.starts_with("sockets") && e.contains("over the bound of 1")),
        "{:?}",
        f.meta.errors
    );
    assert!(errors(&f, "process").is_empty());

    // Every process's fd table has more than 2 slots (the kernel's smallest is 64).
    let mut l = Limits::DEFAULT;
    l.fds_per_task = 2;
    let f = crawl(l);
    let e = errors(&f, "connection");
    assert!(
        e.iter()
            .any(|e| e.contains("fd table") && e.contains("over the bound of 2")),
        "{e:?}"
    );
    // Only sockets no process holds (TCP's hash) are left.
    assert!(f.connection.iter().all(|c| c.pid.is_none()));
    assert_eq!(f.process.len(), full.process.len());
}

#[test]
fn the_command_line_bound_cuts_and_says_so() {
    if origami_testsupport::fixtures().is_none() {
        return;
    }
    let t = truth();
    // The longest command line of the guest, in bytes as /proc/PID/cmdline holds it.
    let (pid, longest) = t["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let bytes: usize = p["cmdline"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().len() + 1)
                .sum();
            (p["tgid"].as_u64().unwrap(), bytes)
        })
        .max_by_key(|&(_, n)| n)
        .unwrap();
    assert!(longest > 16);
    let mut l = Limits::DEFAULT;
    l.cmdline = 16;
    let f = crawl(l);
    let p = f.process.iter().find(|p| u64::from(p.pid) == pid).unwrap();
    let kept: usize = p.cmdline.iter().map(|a| a.len() + 1).sum();
    assert!(kept <= 17, "{:?}", p.cmdline);
    let needle = format!("process {pid} command line: {longest} bytes is over the 16-byte bound");
    assert!(
        errors(&f, "process").iter().any(|e| e.contains(&needle)),
        "{needle} in {:?}",
        f.meta.errors
    );
}

#[test]
fn symbol_btf_and_memory_bounds_stop_discovery_with_their_error() {
    if origami_testsupport::fixtures().is_none() {
        return;
    }
    let mut l = Limits::DEFAULT;
    l.symbols = 1000;
    let f = crawl(l);
    assert!(f.process.is_empty());
    assert!(
        errors(&f, "kernel")
            .iter()
            .any(|e| e.starts_with("kallsyms: ") && e.contains("over the bound of 1000")),
        "{:?}",
        f.meta.errors
    );

    let mut l = Limits::DEFAULT;
    l.btf = 1 << 20;
    let f = crawl(l);
    assert!(f.process.is_empty());
    assert!(
        errors(&f, "kernel")
            .iter()
            .any(|e| e.starts_with("kernel BTF at physical") && e.contains("1048576-byte bound")),
        "{:?}",
        f.meta.errors
    );

    let mut l = Limits::DEFAULT;
    l.memory = 1 << 20;
    let f = crawl(l);
    assert!(f.process.is_empty());
    assert!(
        errors(&f, "kernel")
            .iter()
            .any(|e| e.contains("over its memory budget of 1048576 bytes")),
        "{:?}",
        f.meta.errors
    );
}

#[test]
fn each_memory_section_stops_at_its_time_and_the_others_go_on() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let dump = MemoryDump::open(fx.path("memdump/memory.elf")).unwrap();
    let kernel = discover(&dump, &LinuxOptions::default()).unwrap();
    let mut l = Limits::DEFAULT;
    l.section_time = Some(Duration::ZERO);
    let mut f = Frame::new("t");
    crawl_kernel(&kernel, &dump, &LinuxOptions::default().with_limits(l)).merge_into(&mut f);
    // Every section ran (each has its own error) and those that walk stopped at once.
    for section in [
        "os",
        "process",
        "connection",
        "module",
        "mount",
        "kernel_log",
    ] {
        let e = errors(&f, section);
        let over: Vec<_> = e
            .iter()
            .filter(|m| m.starts_with(&format!("section {section}: stopped after")))
            .collect();
        assert_eq!(over.len(), 1, "{section}: {e:?}");
        assert!(over[0].contains("over its time bound of 0 ms"));
    }
    assert!(f.process.is_empty());
    assert!(f.module.is_empty());

    // Discovery is the `kernel` section.
    let f = crawl(l);
    assert!(errors(&f, "kernel")
        .iter()
        .any(|e| e.starts_with("section kernel: stopped after")));
}
