//! The memory crawl on a running VM: boots the fixture guest (same kernel, initramfs and
//! command line as the fixture dumps, KASLR on) under QEMU with its RAM in a shared file,
//! waits until the guest has snapshotted its own /proc (it writes the snapshot to its
//! second serial port, then prints `@@FIXTURE-READY@@`), crawls the live RAM file with no
//! System.map, and compares processes, TCP sockets, modules, release and host name with
//! that snapshot. The guest then blocks without creating processes, so the snapshot stays
//! true (kernel workers aside, which the kernel may start or retire at any time).
//!
//! Skips outside CI when qemu-system-x86_64, tar or base64 is missing.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use origami_core::memory::{MemoryDump, RamLayout};
use origami_introspect::frame::Frame;
use origami_introspect::linux::{crawl, LinuxOptions};
use origami_testsupport::qemu::{self, FixtureVm};

const BOOT_TIMEOUT: Duration = Duration::from_secs(400);

/// One process as the guest's /proc showed it.
#[derive(Debug)]
struct ProcTruth {
    ppid: u32,
    comm: String,
    cmdline: Vec<String>,
    uid: u32,
    kernel_thread: bool,
}

fn read_proc(dir: &Path) -> HashMap<u32, ProcTruth> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let Some(pid) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
        let (Some(l), Some(r)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[l + 1..r].to_string();
        let f: Vec<&str> = stat[r + 2..].split_whitespace().collect();
        let flags: u32 = f[6].parse().unwrap();
        let status = std::fs::read_to_string(p.join("status")).unwrap();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|u| u.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        let raw = std::fs::read(p.join("cmdline")).unwrap_or_default();
        let mut cmdline: Vec<String> = raw
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if cmdline.last().is_some_and(String::is_empty) {
            cmdline.pop();
        }
        out.insert(
            pid,
            ProcTruth {
                ppid: f[1].parse().unwrap(),
                comm,
                cmdline,
                uid,
                kernel_thread: flags & 0x0020_0000 != 0,
            },
        );
    }
    out
}

/// (local port, remote port, state) of /proc/net/tcp and tcp6.
fn read_tcp(dir: &Path) -> BTreeSet<(u16, u16, String)> {
    const STATES: [&str; 12] = [
        "",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
    ];
    let mut out = BTreeSet::new();
    for f in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        for line in text.lines().skip(1) {
            let c: Vec<&str> = line.split_whitespace().collect();
            let port = |s: &str| u16::from_str_radix(s.rsplit(':').next().unwrap(), 16).unwrap();
            let st = usize::from_str_radix(c[3], 16).unwrap();
            out.insert((port(c[1]), port(c[2]), STATES[st].to_string()));
        }
    }
    out
}

#[test]
fn crawls_a_running_vm() {
    let fx = origami_testsupport::require_fixtures!();
    for p in ["qemu-system-x86_64", "tar", "base64"] {
        if !origami_testsupport::require_program(p) {
            return;
        }
    }
    let mut vm = FixtureVm::boot(fx, "origami-live-introspect", "", BOOT_TIMEOUT);
    vm.wait_for_console("@@FIXTURE-READY@@", BOOT_TIMEOUT);
    let (dir, ram_file, serial1) = (
        vm.dir().to_path_buf(),
        vm.ram_file.clone(),
        vm.serial1.clone(),
    );

    // The guest's own /proc snapshot, from its second serial port.
    let text = std::fs::read_to_string(&serial1).unwrap().replace('\r', "");
    let b64: String = text
        .split("@@TRUTH-BEGIN@@")
        .nth(1)
        .and_then(|t| t.split("@@TRUTH-END@@").next())
        .expect("truth on ttyS1")
        .to_string();
    std::fs::write(dir.join("truth.b64"), b64).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg("base64 -d truth.b64 > truth.tgz && tar -xzf truth.tgz")
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let truth_dir = dir.join("truth");

    let live = MemoryDump::open_live(&ram_file, RamLayout::q35(qemu::RAM)).unwrap();
    let opts = LinuxOptions::default().no_cache();
    let mut frame = Frame::new("live");
    crawl(&live, &opts).merge_into(&mut frame);
    assert!(frame.meta.errors.is_empty(), "{:#?}", frame.meta.errors);

    let release = std::fs::read_to_string(truth_dir.join("sys/kernel.osrelease")).unwrap();
    let hostname = std::fs::read_to_string(truth_dir.join("sys/kernel.hostname")).unwrap();
    assert_eq!(frame.os.kernel.as_deref(), Some(release.trim()));
    assert_eq!(frame.os.hostname.as_deref(), Some(hostname.trim()));

    let truth = read_proc(&truth_dir.join("proc"));
    assert!(
        truth.len() > 40,
        "{} processes in the snapshot",
        truth.len()
    );
    let got: HashMap<u32, _> = frame.process.iter().map(|p| (p.pid, p)).collect();
    let mut bad = Vec::new();
    for (pid, t) in &truth {
        // Workqueue workers come and go (and /proc decorates their names).
        if t.comm.starts_with("kworker/") {
            continue;
        }
        match got.get(pid) {
            Some(g)
                if g.ppid == t.ppid
                    && g.name == t.comm
                    && g.cmdline == t.cmdline
                    && g.uid == t.uid
                    && g.kernel_thread == t.kernel_thread => {}
            other => bad.push(format!("pid {pid}: want {t:?}, got {other:?}")),
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");

    let tcp = read_tcp(&truth_dir.join("net"));
    let conns: BTreeSet<(u16, u16, String)> = frame
        .connection
        .iter()
        .filter(|c| c.protocol == "tcp")
        .map(|c| (c.local_port, c.remote_port, c.state.clone()))
        .collect();
    assert!(!tcp.is_empty());
    assert!(tcp.is_subset(&conns), "tcp: want {tcp:?}, got {conns:?}");

    let mods = std::fs::read_to_string(truth_dir.join("modules")).unwrap();
    let want: BTreeSet<&str> = mods
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let got: BTreeSet<&str> = frame.module.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(want, got);
    drop(vm);
}
