//! Test inputs for the layout sources other than the kernel's own BTF, made once and kept
//! under `target/kernel-debug/`:
//!
//! - copies of the fixture dumps with the kernel's BTF blob zeroed (every copy of the
//!   fixture's `vmlinux.btf` bytes found in the dump is overwritten with zeros), so that
//!   discovery must find the layouts elsewhere;
//! - the DWARF `vmlinux` of the fixture kernel, from Debian's `-dbg` package of the same
//!   build (`apt-get download`, then only that one file extracted);
//! - a Volatility 3 ISF made from that DWARF by Volatility's own `dwarf2json` (another
//!   DWARF reader altogether: Go's `debug/dwarf`), found as `$DWARF2JSON` or on the PATH
//!   (`.ci/run` builds it); it takes minutes and some 4 GB, so it is made once.
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
/// The Debian version of the fixture kernel's package (its banner ends in `Debian 6.1.192-2`).
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
/// printing why it could not be fetched (a failure under `CI=true`).
pub fn vmlinux() -> Option<PathBuf> {
    let out = dir().join(format!("vmlinux-{RELEASE}"));
    let got = once(&out, |tmp| {
        let d = dir();
        let pkg = format!("linux-image-{RELEASE}-dbg");
        let deb = d.join(format!("{pkg}_{PACKAGE_VERSION}_amd64.deb"));
        if !deb.exists() {
            let st = Command::new("apt-get")
                .args(["download", &format!("{pkg}={PACKAGE_VERSION}")])
                .current_dir(&d)
                .status()
                .map_err(|e| format!("apt-get: {e}"))?;
            if !st.success() || !deb.exists() {
                return Err(format!("apt-get download {pkg}={PACKAGE_VERSION} failed"));
            }
        }
        let member = format!("./usr/lib/debug/boot/vmlinux-{RELEASE}");
        let st = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; dpkg-deb --fsys-tarfile '{}' | tar -xO '{member}' > '{}'",
                deb.display(),
                tmp.display()
            ))
            .status()
            .map_err(|e| format!("dpkg-deb: {e}"))?;
        if !st.success() {
            return Err(format!("extracting {member} from {} failed", deb.display()));
        }
        Ok(())
    });
    match got {
        Ok(p) => Some(p),
        Err(reason) => {
            origami_testsupport::skip(&format!("the fixture kernel's DWARF vmlinux: {reason}"));
            None
        }
    }
}

/// A Volatility 3 ISF of the fixture kernel made from its DWARF `vmlinux` by
/// `dwarf2json linux --elf` (xz-compressed when `xz` is true).
pub fn isf(xz: bool) -> Option<PathBuf> {
    let vmlinux = vmlinux()?;
    let json = dir().join(format!("{RELEASE}.json"));
    let made = once(&json, |tmp| {
        let tool = std::env::var_os("DWARF2JSON")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("dwarf2json"));
        let out = std::fs::File::create(tmp).map_err(|e| e.to_string())?;
        let st = Command::new(&tool)
            .args(["linux", "--elf"])
            .arg(&vmlinux)
            .stdout(out)
            .status()
            .map_err(|e| format!("{}: {e} (set DWARF2JSON)", tool.display()))?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("{} failed", tool.display()))
        }
    });
    let json = match made {
        Ok(p) => p,
        Err(reason) => {
            origami_testsupport::skip(&format!("ISF of the fixture kernel: {reason}"));
            return None;
        }
    };
    if !xz {
        return Some(json);
    }
    let out = dir().join(format!("{RELEASE}.json.xz"));
    once(&out, |tmp| {
        let st = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "xz -T0 -c '{}' > '{}'",
                json.display(),
                tmp.display()
            ))
            .status()
            .map_err(|e| e.to_string())?;
        st.success().then_some(()).ok_or("xz failed".to_string())
    })
    .map_err(|reason| origami_testsupport::skip(&format!("xz of the ISF: {reason}")))
    .ok()
}
