//! Boots the fixture guest under QEMU (TCG) with its RAM in a shared file, for the tests
//! that read a running VM's memory. The command line is the fixture's own (its
//! `memdump/build.json`), plus `-object memory-backend-file,...,share=on` as the fixture
//! README says. The VM is killed and its files removed when the [`FixtureVm`] drops.

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
    /// The guest's RAM, shared with QEMU (`memory-backend-file,share=on`).
    pub ram_file: PathBuf,
    /// The first serial port (the console).
    pub console: PathBuf,
    /// The second serial port, where the guest writes its /proc snapshot.
    pub serial1: PathBuf,
    started: Instant,
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
        let child = Command::new("qemu-system-x86_64")
            .args(["-name", name, "-machine", "q35", "-accel", "tcg"])
            .args(["-cpu", "max,la57=off", "-smp", "2", "-m", "256M"])
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
        let mut vm = FixtureVm {
            child,
            dir,
            ram_file,
            console,
            serial1,
            started: Instant::now(),
        };
        // QEMU creates and sizes the file at start-up.
        vm.wait_until(timeout, "the RAM file", |vm| {
            std::fs::metadata(&vm.ram_file).map(|m| m.len()).ok() == Some(RAM)
        });
        vm
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
