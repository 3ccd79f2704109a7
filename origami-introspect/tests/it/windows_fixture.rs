//! The Windows fixture disk (scripts/fixtures/windows/make-windows-disk.sh), built once per
//! checkout under `target/windows-fixture/` (rebuilt when the script's inputs change) and
//! shared by the tests under a file lock.

use std::path::PathBuf;
use std::process::Command;

/// Where the fixture is: `windows.img`, `ntfs.img`, `truth.json`.
pub struct WindowsFixture {
    pub dir: PathBuf,
}

impl WindowsFixture {
    pub fn disk(&self) -> PathBuf {
        self.dir.join("windows.img")
    }
    pub fn ntfs(&self) -> PathBuf {
        self.dir.join("ntfs.img")
    }
    pub fn truth(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.join("truth.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

/// A digest of the script folder's files, so a changed input rebuilds the fixture.
fn inputs_stamp(dir: &std::path::Path) -> String {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in names {
        for b in p
            .file_name()
            .unwrap()
            .as_encoded_bytes()
            .iter()
            .chain(std::fs::read(&p).unwrap().iter())
        {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The fixture, built if needed; `None` (skipped) when the Debian tools are missing outside
/// CI.
pub fn windows_fixture() -> Option<WindowsFixture> {
    for tool in [
        "mkntfs",
        "ntfscp",
        "hivexregedit",
        "sgdisk",
        "mkfs.fat",
        "mcopy",
    ] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "command -v {tool} || test -x /sbin/{tool} || test -x /usr/sbin/{tool}"
            ))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found && !origami_testsupport::skip(&format!("{tool} is not installed")) {
            return None;
        }
    }
    let root = origami_testsupport::workspace_root();
    let script_dir = root.join("scripts/fixtures/windows");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = target.join("windows-fixture");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    let stamp = inputs_stamp(&script_dir);
    let stamp_file = dir.join("inputs.stamp");
    let fresh = std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp)
        && dir.join("windows.img").is_file()
        && dir.join("truth.json").is_file();
    if !fresh {
        let path = format!(
            "{}:/usr/sbin:/sbin",
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("bash")
            .arg(script_dir.join("make-windows-disk.sh"))
            .arg(&dir)
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "make-windows-disk.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&stamp_file, &stamp).unwrap();
    }
    drop(lock);
    Some(WindowsFixture { dir })
}
