//! Boots the fixture guest under QEMU (TCG) with its RAM in a shared file, for the tests
//! that read a running VM's memory. The command line is the fixture's own (its
//! `memdump/build.json`), plus `-object memory-backend-file,...,share=on` as the fixture
//! README says. The VM is killed and its files removed when the [`FixtureVm`] drops.
//!
//! [`FixtureVm::boot_with`] boots the same guest with plain anonymous RAM (libvirt's
//! default) and a chosen machine type and RAM size, for the tests that attach to QEMU by its
//! process id; [`GuestTruth`] reads the /proc snapshot the guest writes to its second
//! serial port.
//!
//! With [`VmOptions::console_shell`] the guest's init, once ready, runs a shell on its
//! console instead of blocking, and [`FixtureVm::console_run`] types commands into it (the
//! console is then a socket that QEMU also logs to `console.log`). The fixture's own init
//! is used, changed only at its end: the initramfs given to QEMU is the fixture's followed
//! by a small uncompressed archive holding that `/init` (the kernel unpacks both, the later
//! file replacing the earlier).

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
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
    /// The console's input (with [`VmOptions::console_shell`]).
    console_in: Option<UnixStream>,
    commands: u64,
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
    /// Once ready, run a shell on the console that [`FixtureVm::console_run`] talks to
    /// (it prints `@@CONSOLE-SHELL@@` when it starts).
    pub console_shell: bool,
    /// More QEMU arguments (disks, a QMP socket, ...).
    pub extra_args: Vec<String>,
    /// More files for the guest's initramfs, `(path, mode, bytes)` (`0o040755` for a
    /// folder; kernel modules for a disk); only with `console_shell`.
    pub extra_files: Vec<(String, u32, Vec<u8>)>,
}

impl Default for VmOptions {
    /// The fixture's own: q35, 256 MiB, a shared RAM file.
    fn default() -> Self {
        VmOptions {
            machine: "q35".into(),
            ram: RAM,
            backing: RamBacking::SharedFile,
            console_shell: false,
            extra_args: Vec::new(),
            extra_files: Vec::new(),
        }
    }
}

/// The marker the console shell prints when it starts.
pub const CONSOLE_SHELL: &str = "@@CONSOLE-SHELL@@";

/// The end of the fixture's init (it blocks forever on a FIFO), replaced for a console
/// shell.
const INIT_TAIL: &str = "mkfifo /run/hold\nwhile :; do read -r x < /run/hold; done";

/// The fixture's initramfs followed by an archive whose `/init` ends in a console shell.
fn initramfs_with_console_shell(
    fx: &Fixtures,
    dir: &Path,
    extra: &[(String, u32, Vec<u8>)],
) -> PathBuf {
    let original = std::fs::read(fx.path("memdump/initramfs.cpio.gz")).expect("initramfs");
    let mut cpio = Vec::new();
    flate2::read::GzDecoder::new(&original[..])
        .read_to_end(&mut cpio)
        .expect("initramfs is gzip");
    let init = cpio_file(&cpio, "init").expect("initramfs has /init");
    let init = String::from_utf8(init.to_vec()).expect("/init is text");
    assert!(
        init.contains(INIT_TAIL),
        "the fixture's /init ends as expected"
    );
    let shell = format!(
        "stty -F /dev/ttyS0 -echo 2>/dev/null\n\
         echo {CONSOLE_SHELL}\n\
         while :; do sh </dev/ttyS0 >/dev/ttyS0 2>&1; done"
    );
    let init = init.replace(INIT_TAIL, &shell);
    let mut out = original;
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    let mut files: Vec<(&str, u32, &[u8])> = vec![("init", 0o100755, init.as_bytes())];
    files.extend(extra.iter().map(|(p, m, b)| (p.as_str(), *m, b.as_slice())));
    out.extend(cpio_archive(&files));
    let path = dir.join("initramfs-console.cpio");
    std::fs::write(&path, out).expect("initramfs with a console shell");
    path
}

/// A file of a `newc` cpio archive.
fn cpio_file<'a>(cpio: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut at = 0usize;
    while at + 110 <= cpio.len() {
        let h = cpio.get(at..at + 110)?;
        if !h.starts_with(b"070701") {
            return None;
        }
        let field = |i: usize| {
            std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i])
                .ok()
                .and_then(|s| usize::from_str_radix(s, 16).ok())
        };
        let (size, namesize) = (field(6)?, field(11)?);
        let n = cpio.get(at + 110..at + 110 + namesize.checked_sub(1)?)?;
        let data_at = (at + 110 + namesize + 3) & !3;
        let data = cpio.get(data_at..data_at + size)?;
        if n == b"TRAILER!!!" {
            return None;
        }
        if n == name.as_bytes() {
            return Some(data);
        }
        at = (data_at + size + 3) & !3;
    }
    None
}

/// A `newc` cpio archive of `(name, mode, bytes)` files, with its trailer.
fn cpio_archive(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entry = |ino: usize, name: &str, mode: u32, data: &[u8]| {
        let header = format!(
            "070701{ino:08X}{mode:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            0, 0, 1, 0, data.len(), 0, 0, 0, 0, name.len() + 1, 0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    };
    for (i, (name, mode, data)) in files.iter().enumerate() {
        entry(i + 1, name, *mode, data);
    }
    entry(0, "TRAILER!!!", 0, &[]);
    out
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
        assert!(
            options.extra_files.is_empty() || options.console_shell,
            "initramfs files need console_shell"
        );
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
            .arg(if options.console_shell {
                initramfs_with_console_shell(fx, &dir, &options.extra_files)
            } else {
                fx.path("memdump/initramfs.cpio.gz")
            })
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
            ]);
        cmd.args(&options.extra_args);
        let socket = dir.join("console.sock");
        if options.console_shell {
            cmd.arg("-chardev")
                .arg(format!(
                    "socket,id=con0,path={},server=on,wait=off,logfile={}",
                    socket.display(),
                    console.display()
                ))
                .args(["-serial", "chardev:con0"]);
        } else {
            cmd.arg("-serial")
                .arg(format!("file:{}", console.display()));
        }
        cmd.arg("-serial")
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
            console_in: None,
            commands: 0,
        };
        if options.console_shell {
            vm.wait_until(timeout, "the console socket", |_| {
                UnixStream::connect(&socket).is_ok_and(|s| {
                    // Keep this one: QEMU takes one client.
                    drop(s);
                    true
                })
            });
            vm.connect_console(&socket);
        }
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

    /// Connects to the console socket and drains what the guest writes (QEMU logs it to
    /// `console.log`), so that the guest never waits for a reader.
    fn connect_console(&mut self, socket: &Path) {
        // QEMU may still be closing the probe connection: retry for a while.
        let mut last = None;
        for _ in 0..100 {
            match UnixStream::connect(socket) {
                Ok(s) => {
                    let mut drain = s.try_clone().expect("console socket clone");
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 4096];
                        while matches!(drain.read(&mut buf), Ok(n) if n > 0) {}
                    });
                    self.console_in = Some(s);
                    return;
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("console socket {}: {last:?}", socket.display());
    }

    /// Runs `command` in the console shell (see [`VmOptions::console_shell`]; wait for
    /// [`CONSOLE_SHELL`] first) and returns what it printed, once a marker printed after it
    /// shows that it ended. Panics when that takes longer than `timeout`.
    pub fn console_run(&mut self, command: &str, timeout: Duration) -> String {
        self.commands += 1;
        let n = self.commands;
        // The marker is made by printf, so the command's own text (were it echoed) never
        // holds it.
        let marker = format!("@@DONE-{n}@@");
        let from = std::fs::metadata(&self.console).map_or(0, |m| m.len()) as usize;
        let line = format!("{command}\nprintf '@@DONE-%s@@\\n' {n}\n");
        self.console_in
            .as_mut()
            .expect("booted with console_shell")
            .write_all(line.as_bytes())
            .expect("console write");
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read(&self.console).unwrap_or_default();
            let text = String::from_utf8_lossy(text.get(from..).unwrap_or_default());
            if let Some(end) = text.find(&marker) {
                return text[..end].replace('\r', "");
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("qemu exited while running {command:?}: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "{command:?} gave no {marker} in {timeout:?}: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `command` into the console shell without waiting for it (for a command
    /// after which the shell cannot answer, such as a crash).
    pub fn console_send(&mut self, command: &str) {
        self.console_in
            .as_mut()
            .expect("booted with console_shell")
            .write_all(format!("{command}\n").as_bytes())
            .expect("console write");
    }

    /// The console's text so far.
    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.console).unwrap_or_default()).replace('\r', "")
    }

    /// Waits up to `timeout` for QEMU to exit (a guest that powered off); its status, or
    /// `None` when it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
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
