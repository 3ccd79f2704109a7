//! Test inputs for the layout sources other than the kernel's own BTF, made once and kept
//! under `target/kernel-debug/`:
//!
//! - copies of the fixture dumps with the kernel's BTF blob zeroed (every copy of the
//!   fixture's `vmlinux.btf` bytes found in the dump is overwritten with zeros), so that
//!   discovery must find the layouts elsewhere;
//! - the DWARF `vmlinux` of the fixture kernel, from Debian's `-dbg` package of the same
//!   build (only that file, streamed out of the package by `make-kernel-dump.py`);
//! - a Volatility 3 ISF made from that DWARF by Volatility's own `dwarf2json` (another
//!   DWARF reader altogether: Go's `debug/dwarf`), kept trimmed in `tests/data/isf/`.
//!
//! Each is made under a file lock and renamed into place, so parallel tests share one copy.
//! When the package cannot be fetched (no network, no apt), the tests that need it skip with
//! the reason printed, or fail under `CI=true`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use origami_testsupport::Fixtures;

/// The fixture kernel's release and Debian package version.
pub const RELEASE: &str = "6.1.0-56-amd64";
/// The Debian version of the fixture kernel's package (its banner ends in `Debian 6.1.192-2`;
/// `make-kernel-dump.py` pins the same).
pub const PACKAGE_VERSION: &str = "6.1.192-2";

/// The folder the derived inputs are kept in.
pub fn dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| origami_testsupport::workspace_root().join("target"));
    let d = target.join("kernel-debug");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `make` to create `path` unless it exists, under a lock shared by test processes.
fn once(path: &Path, make: impl FnOnce(&Path) -> Result<(), String>) -> Result<PathBuf, String> {
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let lock_path = path.with_extension("lock");
    let lock = std::fs::File::create(&lock_path).map_err(|e| e.to_string())?;
    lock.lock().map_err(|e| e.to_string())?;
    if !path.exists() {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        make(&tmp)?;
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())?;
    }
    Ok(path.to_path_buf())
}

/// A copy of the fixture dump `name` (`memdump`, ...) with the kernel's BTF zeroed.
pub fn nobtf_dump(fx: &Fixtures, name: &str) -> PathBuf {
    let out = dir().join(format!("{name}-nobtf.elf"));
    once(&out, |tmp| {
        let btf = std::fs::read(fx.path("memdump/kernel/vmlinux.btf")).unwrap();
        let mut dump = std::fs::read(fx.path(&format!("{name}/memory.elf"))).unwrap();
        let head = &btf[..256];
        let mut found = 0;
        let mut at = 0;
        while let Some(pos) = memchr::memmem::find(&dump[at..], head) {
            let start = at + pos;
            let end = start + btf.len();
            if dump.get(start..end) == Some(&btf[..]) {
                dump[start..end].fill(0);
                found += 1;
            }
            at = start + 1;
        }
        assert!(found >= 1, "{name}: the kernel's BTF is not in the dump");
        std::fs::write(tmp, &dump).map_err(|e| e.to_string())
    })
    .unwrap()
}

/// The fixture kernel's DWARF `vmlinux` (from `linux-image-RELEASE-dbg`), or `None` after
/// printing why it could not be fetched (a failure under `CI=true`). It is streamed out of
/// the package by `scripts/fixtures/make-kernel-dump.py bookworm-6.1 --debug-vmlinux
/// --no-dump`, which stops the download once it has the file (~97 MB fetched of 858 MB).
pub fn vmlinux() -> Option<PathBuf> {
    let out = dir().join(format!("vmlinux-{RELEASE}"));
    let got = once(&out, |tmp| {
        let d = dir();
        let cache = d.join(".cache");
        let script =
            origami_testsupport::workspace_root().join("scripts/fixtures/make-kernel-dump.py");
        let o = Command::new("python3")
            .arg(&script)
            .args(["bookworm-6.1"])
            .arg(d.join("bookworm-6.1"))
            .args(["--debug-vmlinux", "--no-dump", "--cache"])
            .arg(&cache)
            .output()
            .map_err(|e| format!("python3 {}: {e}", script.display()))?;
        if !o.status.success() {
            return Err(format!(
                "make-kernel-dump.py bookworm-6.1 --debug-vmlinux failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        let dbg = cache.join(format!("dbg-{RELEASE}"));
        std::fs::rename(dbg.join(format!("vmlinux-{RELEASE}")), tmp).map_err(|e| e.to_string())
    });
    match got {
        Ok(p) => Some(p),
        Err(reason) => {
            origami_testsupport::skip(&format!("the fixture kernel's DWARF vmlinux: {reason}"));
            None
        }
    }
}

/// A Volatility 3 ISF of the fixture kernel, as `dwarf2json linux --elf` (v0.9.0) wrote it
/// from the `-dbg` package's `vmlinux`, trimmed by `scripts/trim-isf.py` to the structs,
/// enums and symbols the layout table reads (entries left out, none changed). It is kept in
/// the repository (`tests/data/isf/`, 16 KB as `.json.xz`) because `dwarf2json` is a Go
/// program whose modules cannot be fetched where the tests run, and takes minutes and ~4 GB
/// to run. The `.json.xz` form as kept, or (`xz` false) decompressed once into [`dir`].
pub fn isf(xz: bool) -> Option<PathBuf> {
    let kept = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/isf")
        .join(format!("{RELEASE}.json.xz"));
    if xz {
        return Some(kept);
    }
    let json = dir().join(format!("{RELEASE}.json"));
    once(&json, |tmp| {
        let st = Command::new("bash")
            .arg("-c")
            .arg(format!("xz -dc '{}' > '{}'", kept.display(), tmp.display()))
            .status()
            .map_err(|e| e.to_string())?;
        st.success().then_some(()).ok_or("xz -d failed".to_string())
    })
    .map_err(|reason| origami_testsupport::skip(&format!("the ISF, decompressed: {reason}")))
    .ok()
}
