//! Boots the fixture guest under QEMU (TCG) with its RAM in a shared file, for the tests
//! that read a running VM's memory. The command line is the fixture's own (its
//! `memdump/build.json`), plus `-object memory-backend-file,...,share=on` as the fixture
//! README says. The VM is killed and its files removed when the [`FixtureVm`] drops.
//!
//! [`FixtureVm::boot_with`] boots the same guest with plain anonymous RAM (libvirt's
//! default) and a chosen machine type and RAM size, for the tests that attach to QEMU by its
//! process id; [`GuestTruth`] reads the /proc snapshot the guest writes to its second
//! serial port.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Fixtures;

/// The fixture guest's RAM size (its build.json: `-m 256M`).
pub const RAM: u64 = 256 << 20;

/// A running fixture guest.
#[derive(Debug)]
pub struct FixtureVm {
    child: Child,
    dir: PathBuf,
    /// The guest's RAM, shared with QEMU (`memory-backend-file,share=on`); with other
    /// [`RamBacking`]s no file is there.
    pub ram_file: PathBuf,
    /// The first serial port (the console).
    pub console: PathBuf,
    /// The second serial port, where the guest writes its /proc snapshot.
    pub serial1: PathBuf,
    started: Instant,
}

/// Where the guest's RAM lives on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RamBacking {
    /// `memory-backend-file,share=on` in the VM's scratch folder (`FixtureVm::ram_file`).
    SharedFile,
    /// `memory-backend-memfd,share=on`: a memfd only QEMU holds.
    SharedMemfd,
    /// QEMU's default: anonymous memory of the QEMU process.
    Anonymous,
}

/// How [`FixtureVm::boot_with`] starts the guest.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// The machine type (`q35`, `pc`).
    pub machine: String,
    /// The RAM size in bytes (a whole number of MiB).
    pub ram: u64,
    /// Where the RAM lives.
    pub backing: RamBacking,
}

impl Default for VmOptions {
    /// The fixture's own: q35, 256 MiB, a shared RAM file.
    fn default() -> Self {
        VmOptions {
            machine: "q35".into(),
            ram: RAM,
            backing: RamBacking::SharedFile,
        }
    }
}

/// The first file of `dir` whose name starts with `prefix` (not a `.zst`).
pub fn find_file(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && !n.ends_with(".zst"))
        })
        .unwrap_or_else(|| panic!("no {prefix}* in {}", dir.display()))
}

impl FixtureVm {
    /// Boots the fixture kernel and initramfs with the fixture's command line followed by
    /// `extra_append` (e.g. `nokaslr`), waiting until QEMU has created the RAM file.
    pub fn boot(fx: &Fixtures, name: &str, extra_append: &str, timeout: Duration) -> FixtureVm {
        Self::boot_with(fx, name, extra_append, timeout, &VmOptions::default())
    }

    /// [`FixtureVm::boot`] with a machine type, RAM size and RAM backing of choice. With
    /// [`RamBacking::Anonymous`] there is no RAM file (`ram_file` names none) and the boot
    /// returns once QEMU runs.
    pub fn boot_with(
        fx: &Fixtures,
        name: &str,
        extra_append: &str,
        timeout: Duration,
        options: &VmOptions,
    ) -> FixtureVm {
        let build = fx.json("memdump/build.json");
        let cmdline = format!(
            "{} {extra_append}",
            build["kernel_cmdline"]
                .as_str()
                .expect("build.json kernel_cmdline")
        );
        let dir = std::env::temp_dir().join(format!("origami-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("VM scratch folder");
        let ram_file = dir.join("guest-ram");
        let console = dir.join("console.log");
        let serial1 = dir.join("serial1.txt");
        let mib = options.ram >> 20;
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-name", name, "-machine", &options.machine, "-accel", "tcg"])
            .args([
                "-cpu",
                "max,la57=off",
                "-smp",
                "2",
                "-m",
                &format!("{mib}M"),
            ])
            .arg("-kernel")
            .arg(find_file(&fx.path("memdump/kernel"), "vmlinuz-"))
            .arg("-initrd")
            .arg(fx.path("memdump/initramfs.cpio.gz"))
            .args(["-append", cmdline.trim()])
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
            .arg(format!("file:{}", serial1.display()));
        match options.backing {
            RamBacking::SharedFile => {
                cmd.arg("-object")
                    .arg(format!(
                        "memory-backend-file,id=ram,size={mib}M,mem-path={},share=on",
                        ram_file.display()
                    ))
                    .args(["-machine", "memory-backend=ram"]);
            }
            RamBacking::SharedMemfd => {
                cmd.arg("-object")
                    .arg(format!("memory-backend-memfd,id=ram,size={mib}M,share=on"))
                    .args(["-machine", "memory-backend=ram"]);
            }
            RamBacking::Anonymous => {}
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64 starts");
        let mut vm = FixtureVm {
            child,
            dir,
            ram_file,
            console,
            serial1,
            started: Instant::now(),
        };
        if options.backing == RamBacking::SharedFile {
            // QEMU creates and sizes the file at start-up.
            let size = options.ram;
            vm.wait_until(timeout, "the RAM file", |vm| {
                std::fs::metadata(&vm.ram_file).map(|m| m.len()).ok() == Some(size)
            });
        }
        vm
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The VM's scratch folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Polls `ready` every 100 ms until it holds; panics when QEMU exits or `timeout` (since
    /// boot) passes.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut ready: impl FnMut(&Self) -> bool,
    ) {
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("qemu exited while waiting for {what}: {status}");
            }
            if ready(self) {
                return;
            }
            assert!(
                self.started.elapsed() < timeout,
                "no {what} after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for a marker on the console.
    pub fn wait_for_console(&mut self, marker: &str, timeout: Duration) {
        let console = self.console.clone();
        self.wait_until(timeout, marker, |_| {
            std::fs::read_to_string(&console)
                .unwrap_or_default()
                .contains(marker)
        });
    }
}

impl Drop for FixtureVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One process as the guest's own /proc showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcTruth {
    /// Parent pid.
    pub ppid: u32,
    /// `comm`.
    pub comm: String,
    /// The arguments.
    pub cmdline: Vec<String>,
    /// The real uid.
    pub uid: u32,
    /// `PF_KTHREAD` set.
    pub kernel_thread: bool,
}

/// The /proc snapshot the fixture guest writes to its second serial port before it prints
/// `@@FIXTURE-READY@@` (a base64 tarball between `@@TRUTH-BEGIN@@` and `@@TRUTH-END@@`).
#[derive(Debug)]
pub struct GuestTruth {
    /// Processes by pid.
    pub processes: HashMap<u32, ProcTruth>,
    /// TCP sockets of /proc/net/tcp and tcp6: (local port, remote port, state).
    pub tcp: BTreeSet<(u16, u16, String)>,
    /// Names of /proc/modules.
    pub modules: BTreeSet<String>,
    /// `kernel.osrelease`.
    pub release: String,
    /// `kernel.hostname`.
    pub hostname: String,
}

impl GuestTruth {
    /// Unpacks the snapshot of a booted VM (after `@@FIXTURE-READY@@`) into its folder and
    /// reads it. Needs `base64` and `tar`.
    pub fn read(vm: &FixtureVm) -> GuestTruth {
        let dir = vm.dir();
        let text = std::fs::read_to_string(&vm.serial1)
            .expect("serial1")
            .replace('\r', "");
        let b64 = text
            .split("@@TRUTH-BEGIN@@")
            .nth(1)
            .and_then(|t| t.split("@@TRUTH-END@@").next())
            .expect("truth on ttyS1");
        std::fs::write(dir.join("truth.b64"), b64).expect("truth.b64");
        let st = Command::new("sh")
            .arg("-c")
            .arg("base64 -d truth.b64 > truth.tgz && tar -xzf truth.tgz")
            .current_dir(dir)
            .status()
            .expect("sh");
        assert!(st.success(), "unpacking the guest's truth");
        let t = dir.join("truth");
        let sys = |f: &str| {
            std::fs::read_to_string(t.join("sys").join(f))
                .expect("sys file")
                .trim()
                .to_string()
        };
        let modules = std::fs::read_to_string(t.join("modules"))
            .expect("modules")
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(String::from))
            .collect();
        GuestTruth {
            processes: read_proc(&t.join("proc")),
            tcp: read_tcp(&t.join("net")),
            modules,
            release: sys("kernel.osrelease"),
            hostname: sys("kernel.hostname"),
        }
    }
}

fn read_proc(dir: &Path) -> HashMap<u32, ProcTruth> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(dir).expect("truth proc") {
        let p = e.expect("dir entry").path();
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
        let flags: u32 = f[6].parse().expect("flags");
        let status = std::fs::read_to_string(p.join("status")).expect("status");
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|u| u.split_whitespace().next())
            .expect("Uid")
            .parse()
            .expect("uid");
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
                ppid: f[1].parse().expect("ppid"),
                comm,
                cmdline,
                uid,
                kernel_thread: flags & 0x0020_0000 != 0,
            },
        );
    }
    out
}

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
            let port = |s: &str| {
                u16::from_str_radix(s.rsplit(':').next().unwrap_or(""), 16).expect("port")
            };
            let st = usize::from_str_radix(c[3], 16).expect("state");
            out.insert((port(c[1]), port(c[2]), STATES[st].to_string()));
        }
    }
    out
}
