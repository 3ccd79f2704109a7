//! Helpers shared by the origami integration tests: a temporary folder,
//! known bytes, and ext4 images built from them with `mkfs.ext4 -d`.

#![allow(dead_code, clippy::arithmetic_side_effects, clippy::as_conversions)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `mkfs.ext4`, from `PATH` or the usual sbin folders; `None` (test
/// skipped) when it is not installed and `CI` is not set.
pub fn mkfs() -> Option<PathBuf> {
    tool("mkfs.ext4")
}

/// The e2fsprogs program `name`, from `PATH` or the usual sbin folders;
/// `None` (test skipped) when it is not installed and `CI` is not set.
pub fn tool(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = dirs
        .into_iter()
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed (e2fsprogs)"
        );
        eprintln!("skipped: {name} is not installed (e2fsprogs)");
    }
    found
}

/// A folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ext4-view-origami-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` pseudo-random bytes (xorshift64*, seeded by `seed`).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// An ext4 image of `size_kib` KiB with `block_size` blocks holding
/// `files` (paths relative to the root, parents created), built in `dir`.
pub fn make_image(
    mkfs: &Path,
    dir: &TempDir,
    block_size: u32,
    size_kib: u32,
    files: &[(&str, Vec<u8>)],
) -> Vec<u8> {
    let root = dir.0.join("root");
    for (name, content) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    std::fs::create_dir_all(&root).unwrap();
    let img = dir.0.join("fs.img");
    let out = Command::new(mkfs)
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            &block_size.to_string(),
            "-d",
        ])
        .arg(&root)
        .arg(&img)
        .arg(format!("{size_kib}k"))
        .output()
        .unwrap();
    assert!(out.status.success(), "mkfs.ext4: {out:?}");
    std::fs::read(&img).unwrap()
}
