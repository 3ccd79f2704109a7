//! Origami tests of the block cache through the public API, on ext4 images
//! built at test time with `mkfs.ext4 -d` from files whose bytes are known:
//! the content read back must be those bytes, every read the cache makes
//! must be one aligned 32 KiB group, and reading again what was just read
//! must not touch the image.
//!
//! Skipped when `mkfs.ext4` (e2fsprogs) is missing, unless `CI` is set.

#![allow(clippy::arithmetic_side_effects, clippy::as_conversions)]

mod origami_common;

use ext4_view::{Ext4, Ext4Read};
use origami_common::{TempDir, make_image, mkfs, pseudo_random};
use std::error::Error;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Bytes per group the cache reads (`GROUP_BYTES` in `src/block_cache.rs`).
const GROUP: u64 = 32 * 1024;

/// The files written into each image: name and content.
fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        // Spans ten 32 KiB groups at least.
        ("span", pseudo_random(1, 300_000)),
        ("small", pseudo_random(2, 100)),
        ("two-blocks", pseudo_random(3, 5000)),
    ]
}

/// An image of `size_kib` KiB with `block_size` blocks holding `files()`.
fn build_image(
    mkfs: &Path,
    dir: &TempDir,
    block_size: u32,
    size_kib: u32,
) -> Vec<u8> {
    make_image(mkfs, dir, block_size, size_kib, &files())
}

/// Every read made through the reader: (first byte, length).
type Log = Arc<Mutex<Vec<(u64, usize)>>>;

/// An image in memory that logs every read.
struct LoggingReader {
    image: Vec<u8>,
    log: Log,
}

impl Ext4Read for LoggingReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn Error + Send + Sync + 'static>> {
        self.log.lock().unwrap().push((start_byte, dst.len()));
        let start = usize::try_from(start_byte)?;
        let src = self
            .image
            .get(start..start + dst.len())
            .ok_or("read past the end of the image")?;
        dst.copy_from_slice(src);
        Ok(())
    }
}

/// Loads `image` behind a logging reader; the log starts empty after the
/// load (the superblock and group descriptors are read without the cache).
fn load(image: Vec<u8>) -> (Ext4, Log) {
    let log = Log::default();
    let fs = Ext4::load(Box::new(LoggingReader {
        image,
        log: log.clone(),
    }))
    .unwrap();
    log.lock().unwrap().clear();
    (fs, log)
}

/// Bytes `offset..offset + len` of `path`, read with `File::read_bytes`.
fn read_range(fs: &Ext4, path: &str, offset: u64, len: usize) -> Vec<u8> {
    let mut file = fs.open(path).unwrap();
    file.seek_to(offset).unwrap();
    let mut out = vec![0; len];
    let mut filled = 0;
    while filled < len {
        let n = file.read_bytes(&mut out[filled..]).unwrap();
        assert!(n > 0, "{path}: early end at {}", offset + filled as u64);
        filled += n;
    }
    out
}

#[test]
fn content_spanning_groups_reads_back_exactly() {
    let Some(mkfs) = mkfs() else { return };
    for block_size in [1024, 4096] {
        let dir = TempDir::new("span");
        let image = build_image(&mkfs, &dir, block_size, 8 * 1024);
        let (fs, log) = load(image);
        for (name, truth) in files() {
            let path = format!("/{name}");
            assert_eq!(fs.read(path.as_str()).unwrap(), truth, "{path}");
        }
        // The big file alone made the cache read ten groups at least.
        assert!(log.lock().unwrap().len() >= 10);

        // Reads that start just before a group boundary of the file
        // system and run into the next groups (the file is contiguous
        // from mkfs, so its group boundaries fall inside it).
        let (_, span) = &files()[0];
        for (offset, len) in [
            (GROUP - 10, 20),
            (GROUP - 1000, 3 * GROUP as usize),
            (100_000, 150_000),
            (1, span.len() - 1),
            (span.len() as u64 - 5, 5),
        ] {
            let want = &span[offset as usize..offset as usize + len];
            assert_eq!(
                read_range(&fs, "/span", offset, len),
                want,
                "{block_size}-byte blocks, {len} bytes at {offset}"
            );
        }
    }
}

#[test]
fn every_cache_read_is_one_aligned_group() {
    let Some(mkfs) = mkfs() else { return };
    for block_size in [1024, 2048, 4096] {
        let dir = TempDir::new("aligned");
        // Not a whole number of groups: the last group is cut short.
        let size_kib = 8 * 1024 + 12;
        let image = build_image(&mkfs, &dir, block_size, size_kib);
        let fs_bytes = image.len() as u64;
        let (fs, log) = load(image);
        for (name, truth) in files() {
            assert_eq!(fs.read(format!("/{name}").as_str()).unwrap(), truth);
        }
        let log = log.lock().unwrap();
        assert!(!log.is_empty());
        for &(start, len) in log.iter() {
            assert_eq!(start % GROUP, 0, "{block_size}: read at {start}");
            let len = len as u64;
            assert!(
                len == GROUP || start + len == fs_bytes,
                "{block_size}: {len} bytes at {start}, image of {fs_bytes}"
            );
        }
    }
}

#[test]
fn reading_again_what_was_just_read_is_all_hits() {
    let Some(mkfs) = mkfs() else { return };
    let dir = TempDir::new("hits");
    let image = build_image(&mkfs, &dir, 4096, 64 * 1024);
    let (fs, log) = load(image);
    let (_, small) = &files()[1];
    // Cold: path resolution and the data are misses.
    assert_eq!(&fs.read("/small").unwrap(), small);
    let misses = log.lock().unwrap().len();
    assert!(misses > 0);
    // Resolving `/small` and reading it touches at most four groups (the
    // inode table, the root directory's block, the file's block). A set
    // has 4 ways, so none of them was evicted: reading again needs no
    // read of the image.
    assert!(misses <= 4, "{misses} groups missed");
    assert_eq!(&fs.read("/small").unwrap(), small);
    assert_eq!(fs.metadata("/small").unwrap().len(), small.len() as u64);
    assert_eq!(log.lock().unwrap().len(), misses, "a second read missed");
}
