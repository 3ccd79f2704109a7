//! Test support: finds the shared guest fixtures and makes them ready to read.
//!
//! The fixtures live in a read-only folder (`ORIGAMI_FIXTURES`, default
//! `../shared/fixtures` beside the workspace). Their `unpack.sh` decompresses them into a
//! writable cache (`ORIGAMI_FIXTURES_CACHE`, default `target/fixtures`), once: a file lock
//! keeps parallel test processes from unpacking at the same time, and `unpack.sh` itself is
//! a no-op when the cache is current.
//!
//! Where the fixtures are missing, [`fixtures`] prints why and returns `None` so the test
//! can skip, except under `CI=true`, where a missing fixture is a failure.
//!
//! [`synth`] makes a synthetic fleet's frames (deterministic, no fixture needed) for the
//! index tests and benchmarks.
//!
//! ```no_run
//! # fn main() {
//! let Some(fx) = origami_testsupport::fixtures() else { return };
//! let facts = fx.json("debian/rootfs.facts.json");
//! assert_eq!(facts["hostname"], "vmi-fixture");
//! # }
//! ```
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub mod live_disk;
pub mod nbd;
pub mod postgres;
pub mod qemu;
pub mod synth;
pub mod truth;

/// The unpacked fixtures: every path of `unpack.sh`'s DEST.
#[derive(Debug, Clone)]
pub struct Fixtures {
    source: PathBuf,
    root: PathBuf,
}

impl Fixtures {
    /// The unpacked folder (DEST of `unpack.sh`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The read-only source folder (with `README.md`, the scripts and `data/`).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// A path inside the unpacked folder, e.g. `debian/disk-gpt.qcow2`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Reads and parses a JSON file of the unpacked folder (a truth file); panics with the
    /// path when it cannot, since a test cannot go on without its truth.
    pub fn json(&self, rel: &str) -> serde_json::Value {
        let p = self.path(rel);
        let text =
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
    }
}

/// True when the tests run under CI (`CI=true`), where missing fixtures fail.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Skips (prints, returns `false`) or, under CI, fails (panics) for a missing prerequisite.
pub fn skip(reason: &str) -> bool {
    if in_ci() {
        panic!("CI=true and a test prerequisite is missing: {reason}");
    }
    eprintln!("SKIP: {reason}");
    false
}

/// The workspace root (the folder holding this crate's folder).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn source_dir() -> PathBuf {
    match std::env::var_os("ORIGAMI_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("../shared/fixtures"),
    }
}

fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("ORIGAMI_FIXTURES_CACHE") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("fixtures")
}

fn prepare() -> Result<Fixtures, String> {
    let source = source_dir();
    let unpack = source.join("unpack.sh");
    if !unpack.is_file() {
        return Err(format!(
            "no fixtures at {} (set ORIGAMI_FIXTURES to the shared fixtures folder)",
            source.display()
        ));
    }
    let root = cache_dir();
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let lock_path = root.with_extension("lock");
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
    let out = Command::new("bash")
        .arg(&unpack)
        .arg(&root)
        .output()
        .map_err(|e| format!("running {}: {e}", unpack.display()))?;
    drop(lock);
    if !out.status.success() {
        return Err(format!(
            "{} {} failed ({}): {}",
            unpack.display(),
            root.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Fixtures {
        source: source.canonicalize().unwrap_or(source),
        root,
    })
}

/// The unpacked fixtures, or `None` (after printing why) when they are missing outside CI.
/// Under `CI=true` a missing or broken fixture set panics, so the test fails.
pub fn fixtures() -> Option<&'static Fixtures> {
    static READY: OnceLock<Result<Fixtures, String>> = OnceLock::new();
    match READY.get_or_init(prepare) {
        Ok(f) => Some(f),
        Err(reason) => {
            skip(reason);
            None
        }
    }
}

/// Returns the fixtures from the calling test, or returns early (skips) when they are
/// missing outside CI.
#[macro_export]
macro_rules! require_fixtures {
    () => {
        match $crate::fixtures() {
            Some(f) => f,
            None => return,
        }
    };
}

/// True when `program` is on the PATH; otherwise skips (or fails under CI) with a reason.
pub fn require_program(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    found || skip(&format!("{program} is not installed"))
}
