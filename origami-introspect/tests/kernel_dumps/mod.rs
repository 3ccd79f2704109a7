//! Dumps of more Debian kernels, made once by `scripts/fixtures/make-kernel-dump.py` (the
//! shared `make-memory-dump.sh`: the same guest, QEMU TCG, truth.json from the guest's own
//! /proc) and kept under `target/kernel-dumps/` (not committed: 256 MiB each), with what
//! the tests derive from them: a copy with the kernel's BTF zeroed, the DWARF `vmlinux`.
//!
//! A dump that cannot be made (no root, no QEMU, no network) skips the tests that need it
//! with the reason printed, or fails them under `CI=true`.
//!
//! Cost of a cold run (measured on the shared 2-core machine at load ~20; an idle machine
//! boots each guest in about a minute):
//!
//! | dump | fetched | boot to dump | kept under target/kernel-dumps |
//! |---|---|---|---|
//! | bullseye-5.10 | apt lists 13 MB, kernel 56 MB, `-dbg` 92 MB of 800 (streamed) | 4-5 min | 257 MB dump + 20 MB kdump, 257 MB BTF-less copy, 647 MB DWARF vmlinux |
//! | bookworm-rt | apt lists 26 MB, kernel 71 MB | 8 min | 257 MB + 22 MB |
//! | bookworm-cloud | (same lists), kernel 27 MB | 4 min | 257 MB + 22 MB |
//!
//! `.ci/run` starts the script for all three in the background before the workspace
//! compiles, so a cold CI run pays little of this in wall time; a warm one (target/ kept)
//! fetches and boots nothing.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use origami_introspect::frame::Frame;

/// The kernels the script knows: (its name for the dump, the kernel's release).
pub const BULLSEYE: (&str, &str) = ("bullseye-5.10", "5.10.0-32-amd64");
/// Debian 12's PREEMPT_RT flavour of the fixture kernel's build.
pub const RT: (&str, &str) = ("bookworm-rt", "6.1.0-56-rt-amd64");
/// Debian 12's cloud flavour (a smaller config) of the fixture kernel's build.
pub const CLOUD: (&str, &str) = ("bookworm-cloud", "6.1.0-56-cloud-amd64");

/// The folder the dumps and their downloads are kept in (`target/kernel-dumps`).
pub fn dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| origami_testsupport::workspace_root().join("target"));
    let d = target.join("kernel-dumps");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One dump made by the script: its folder (`memory.elf`, `truth.json`, `kernel/`).
pub struct Dump {
    /// The dump's folder.
    pub dir: PathBuf,
    /// The kernel's release (`uname -r`).
    pub release: &'static str,
}

impl Dump {
    /// The ELF dump.
    pub fn elf(&self) -> PathBuf {
        self.dir.join("memory.elf")
    }

    /// The guest's truth.
    pub fn truth(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.join("truth.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// The kernel's BTF as built (`.BTF` of its `vmlinux`; the guest's own
    /// /sys/kernel/btf/vmlinux has the same sha256, which truth.json records).
    pub fn btf(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("kernel/vmlinux.btf")).unwrap()
    }

    /// The DWARF `vmlinux` from the kernel's `-dbg` package (made with `--debug-vmlinux`).
    pub fn vmlinux(&self) -> PathBuf {
        dir()
            .join(".cache")
            .join(format!("dbg-{}", self.release))
            .join(format!("vmlinux-{}", self.release))
    }

    /// A copy of the dump with every copy of the kernel's BTF blob zeroed, made once.
    pub fn nobtf(&self) -> PathBuf {
        let out = self.dir.join("memory-nobtf.elf");
        if out.exists() {
            return out;
        }
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if out.exists() {
            return out;
        }
        let btf = self.btf();
        let mut dump = std::fs::read(self.elf()).unwrap();
        let head = &btf[..256];
        let (mut found, mut at) = (0, 0);
        while let Some(pos) = memchr::memmem::find(&dump[at..], head) {
            let start = at + pos;
            let end = start + btf.len();
            if dump.get(start..end) == Some(&btf[..]) {
                dump[start..end].fill(0);
                found += 1;
            }
            at = start + 1;
        }
        assert!(
            found >= 1,
            "{}: the kernel's BTF is not in the dump",
            self.dir.display()
        );
        let tmp = out.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &dump).unwrap();
        std::fs::rename(&tmp, &out).unwrap();
        out
    }
}

static LOCK: Mutex<()> = Mutex::new(());

/// The dump `kernel` (one of the constants above), made by the script unless it is already
/// there; `debug_vmlinux` also fetches the DWARF `vmlinux`. `None` after saying why when
/// it cannot be made (a failure under `CI=true`).
pub fn get(kernel: (&str, &'static str), debug_vmlinux: bool) -> Option<Dump> {
    let (name, release) = kernel;
    let out = dir().join(name);
    let dump = Dump {
        dir: out.clone(),
        release,
    };
    if out.join(".done").exists() && (!debug_vmlinux || dump.vmlinux().is_file()) {
        return Some(dump);
    }
    let fx = origami_testsupport::fixtures()?;
    let script = origami_testsupport::workspace_root().join("scripts/fixtures/make-kernel-dump.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(name).arg(&out);
    if debug_vmlinux {
        cmd.arg("--debug-vmlinux");
    }
    cmd.env("ORIGAMI_FIXTURES", fx.source());
    let o = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            origami_testsupport::skip(&format!("python3 {}: {e}", script.display()));
            return None;
        }
    };
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(30).collect();
        origami_testsupport::skip(&format!(
            "make-kernel-dump.py {name} failed ({}):\n{}",
            o.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
        return None;
    }
    Some(dump)
}

/// The shared independent checker, `frame-vs-truth.py memory FRAME truth.json`: its line of
/// figures, after asserting that each is 100%.
pub fn judge(frame: &Frame, truth: &Path, tag: &str) -> String {
    let fx = origami_testsupport::fixtures().expect("fixtures");
    let checker = fx.source().join("../tools/frame-vs-truth.py");
    let path =
        std::env::temp_dir().join(format!("origami-kernels-{}-{tag}.json", std::process::id()));
    std::fs::write(&path, frame.to_json()).unwrap();
    let out = Command::new("python3")
        .arg(&checker)
        .arg("memory")
        .arg(&path)
        .arg(truth)
        .output()
        .expect("python3 runs the checker");
    let _ = std::fs::remove_file(&path);
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{tag}: frame-vs-truth.py says {line} ({})",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("frame-vs-truth ({tag}): {line}");
    line
}
