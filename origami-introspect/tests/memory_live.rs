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
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use origami_core::memory::{MemoryDump, RamLayout};
use origami_introspect::frame::Frame;
use origami_introspect::linux::{crawl_into, LinuxOptions};

const RAM: u64 = 256 << 20;
const BOOT_TIMEOUT: Duration = Duration::from_secs(400);

/// Kills and reaps QEMU and removes its files however the test ends.
struct Vm {
    child: Child,
    dir: PathBuf,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find_file(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && !n.ends_with(".zst"))
        })
        .unwrap_or_else(|| panic!("no {prefix}* in {}", dir.display()))
}

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
    let build = fx.json("memdump/build.json");
    let kernel_dir = fx.path("memdump/kernel");
    let dir = std::env::temp_dir().join(format!("origami-live-introspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ram_file = dir.join("guest-ram");
    let console = dir.join("console.log");
    let serial1 = dir.join("truth-serial.txt");
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-name",
            "origami-live-introspect",
            "-machine",
            "q35",
            "-accel",
            "tcg",
        ])
        .args(["-cpu", "max,la57=off", "-smp", "2", "-m", "256M"])
        .arg("-kernel")
        .arg(find_file(&kernel_dir, "vmlinuz-"))
        .arg("-initrd")
        .arg(fx.path("memdump/initramfs.cpio.gz"))
        .args(["-append", build["kernel_cmdline"].as_str().unwrap()])
        .args(["-netdev", "hubport,id=n0,hubid=0"])
        .args(["-device", "e1000,netdev=n0,mac=52:54:00:12:34:56"])
        .args([
            "-vga",
            "none",
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", serial1.display()))
        .arg("-object")
        .arg(format!(
            "memory-backend-file,id=ram,size=256M,mem-path={},share=on",
            ram_file.display()
        ))
        .args(["-machine", "memory-backend=ram"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 starts");
    let mut vm = Vm {
        child,
        dir: dir.clone(),
    };
    let started = Instant::now();
    loop {
        if let Some(status) = vm.child.try_wait().unwrap() {
            panic!("qemu exited early: {status}");
        }
        let log = std::fs::read_to_string(&console).unwrap_or_default();
        if log.contains("@@FIXTURE-READY@@") {
            break;
        }
        assert!(
            started.elapsed() < BOOT_TIMEOUT,
            "guest not ready after {BOOT_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

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

    let live = MemoryDump::open_live(&ram_file, RamLayout::q35(RAM)).unwrap();
    let opts = LinuxOptions::default().no_cache();
    let mut frame = Frame::new("live");
    crawl_into(&live, &opts, &mut frame);
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
