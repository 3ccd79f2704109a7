//! Shared by `disk_xfs.rs` and `disk_btrfs.rs`: the test images, built once by
//! `scripts/make-xfs-btrfs-images.sh` into `target/fs-images/` with Debian's mkfs tools
//! (no mount), their manifests (written from the source trees by the shared
//! `fixture_tool.py`), a walk of a tree compared with a manifest, and a reader that
//! overlays patches on an image for the hostile tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use origami_core::{FileSource, ReadAt};
use origami_introspect::fs::{GuestTree, Stat, WalkControl, WalkLimits};
use sha2::{Digest, Sha256};

/// The folder holding the images of `kind` (`xfs` or `btrfs`), built on first use; `None`
/// (the test skips, or fails under `CI=true`) without root, the mkfs tool or the shared
/// fixture folder.
pub fn images(kind: &'static str, done_marker: &str) -> Option<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    static BUILT: OnceLock<Mutex<BTreeMap<&'static str, Option<PathBuf>>>> = OnceLock::new();
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let built = BUILT.get_or_init(|| Mutex::new(BTreeMap::new()));
    if let Some(r) = built.lock().unwrap().get(kind) {
        return r.clone();
    }
    let r = build(kind, done_marker);
    built.lock().unwrap().insert(kind, r.clone());
    r
}

fn build(kind: &str, done_marker: &str) -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| origami_testsupport::workspace_root().join("target"));
    let dir = target.join("fs-images");
    if dir.join(done_marker).is_file() {
        return Some(dir);
    }
    let tool = if kind == "xfs" {
        "mkfs.xfs"
    } else {
        "mkfs.btrfs"
    };
    if !origami_testsupport::require_program(tool)
        || !origami_testsupport::require_program("python3")
    {
        return None;
    }
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        origami_testsupport::skip("building the XFS/btrfs test images needs root");
        return None;
    }
    let fixtures = match std::env::var_os("ORIGAMI_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => origami_testsupport::workspace_root().join("../shared/fixtures"),
    };
    if !fixtures.join("fixture_tool.py").is_file() {
        origami_testsupport::skip("the shared fixture folder (fixture_tool.py) is missing");
        return None;
    }
    let script = origami_testsupport::workspace_root().join("scripts/make-xfs-btrfs-images.sh");
    let st = Command::new("bash")
        .arg(script)
        .arg(kind)
        .arg(&dir)
        .env("ORIGAMI_FIXTURES", &fixtures)
        .status()
        .expect("run make-xfs-btrfs-images.sh");
    assert!(st.success(), "make-xfs-btrfs-images.sh {kind} failed");
    assert!(dir.join(done_marker).is_file());
    Some(dir)
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every entry of the tree, by path.
pub fn walk(tree: &GuestTree) -> BTreeMap<Vec<u8>, Stat> {
    let mut out = BTreeMap::new();
    let errors = tree.walk(b"/", &WalkLimits::default(), &mut |e| {
        out.insert(e.path.to_vec(), e.stat.clone());
        WalkControl::Continue
    });
    assert!(errors.is_empty(), "{errors:?}");
    out
}

pub fn sha256_of(tree: &GuestTree, path: &[u8], ino: u64) -> std::io::Result<String> {
    let mut r = tree
        .open_by_inode(path, ino)
        .map_err(std::io::Error::other)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn entry_path(e: &serde_json::Value) -> Vec<u8> {
    match e.get("path_hex").and_then(|h| h.as_str()) {
        Some(h) => (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect(),
        None => e["path"].as_str().unwrap().as_bytes().to_vec(),
    }
}

pub fn manifest(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Compares a walk of `tree` with `manifest`: every entry's type, mode, uid, gid, size
/// (files and symlinks), content sha256, symlink target; `mtime_ok(stat mtime, manifest
/// mtime)` judges the times; nothing more than the manifest except under `extra_ok`
/// paths. Returns the number of entries checked.
pub fn check_tree(
    what: &str,
    tree: &GuestTree,
    manifest: &serde_json::Value,
    mtime_ok: &dyn Fn(i64, i64) -> bool,
    extra_ok: &[&[u8]],
) -> usize {
    let got = walk(tree);
    let entries = manifest["entries"].as_array().unwrap();
    for e in entries {
        let path = entry_path(e);
        let p = e["path"].as_str().unwrap();
        let st = got
            .get(&path)
            .unwrap_or_else(|| panic!("{what}: {p} missing"));
        let want_type = e["type"].as_str().unwrap();
        assert_eq!(st.file_type.name(), want_type, "{what} {p} type");
        assert_eq!(
            u64::from(st.mode),
            e["mode"].as_u64().unwrap(),
            "{what} {p} mode"
        );
        assert_eq!(
            u64::from(st.uid),
            e["uid"].as_u64().unwrap(),
            "{what} {p} uid"
        );
        assert_eq!(
            u64::from(st.gid),
            e["gid"].as_u64().unwrap(),
            "{what} {p} gid"
        );
        let want_mtime = e["mtime"].as_i64().unwrap();
        assert!(
            mtime_ok(st.mtime, want_mtime),
            "{what} {p} mtime {} (manifest {want_mtime})",
            st.mtime
        );
        match want_type {
            "file" => {
                assert_eq!(st.size, e["size"].as_u64().unwrap(), "{what} {p} size");
                let h =
                    sha256_of(tree, &path, st.ino).unwrap_or_else(|e| panic!("{what} {p}: {e}"));
                assert_eq!(h, e["sha256"].as_str().unwrap(), "{what} {p} sha256");
            }
            "symlink" => {
                assert_eq!(st.size, e["size"].as_u64().unwrap(), "{what} {p} size");
                let t = tree.read_link(&path).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&t),
                    e["target"].as_str().unwrap(),
                    "{what} {p} target"
                );
            }
            _ => {}
        }
    }
    let known: std::collections::HashSet<Vec<u8>> = entries.iter().map(entry_path).collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|p| !extra_ok.iter().any(|x| p.starts_with(x)))
        .filter(|p| !known.contains(*p))
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert!(extra.is_empty(), "{what}: not in the manifest: {extra:?}");
    entries.len()
}

/// An image with some bytes replaced: hostile metadata without copying the image.
pub struct Patched {
    pub inner: FileSource,
    pub patches: Vec<(u64, Vec<u8>)>,
}

impl Patched {
    pub fn new(path: &Path) -> Patched {
        Patched {
            inner: FileSource::open(path).unwrap(),
            patches: Vec::new(),
        }
    }

    pub fn patch(&mut self, at: u64, bytes: &[u8]) {
        self.patches.push((at, bytes.to_vec()));
    }

    pub fn into_arc(self) -> Arc<dyn ReadAt> {
        Arc::new(self)
    }
}

impl ReadAt for Patched {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> origami_core::Result<()> {
        self.inner.read_at(offset, buf)?;
        let end = offset + buf.len() as u64;
        for (at, bytes) in &self.patches {
            for (i, b) in bytes.iter().enumerate() {
                let p = at + i as u64;
                if p >= offset && p < end {
                    buf[(p - offset) as usize] = *b;
                }
            }
        }
        Ok(())
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn name(&self) -> String {
        format!("{} (patched)", self.inner.name())
    }
}
