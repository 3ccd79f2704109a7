//! File hashing on two threads shares the one opened guest: the Debian fixture's root file
//! system is opened once, both threads read through that one handle (ext4-view's, `Send +
//! Sync` in the vendored crate), and the hashes are the guest's own (`rootfs.manifest.json`,
//! written by the fixture scripts from inside the guest).
//!
//! Opens are counted by a wrapper around the image: opening an ext4 file system reads its
//! whole superblock (1024 bytes at byte 1024) twice, once to validate it and once in
//! ext4-view's `load`; nothing else reads that range (the block cache reads aligned
//! 32 KiB groups).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use origami_core::{FileSource, ReadAt};
use origami_introspect::disk::file::{self, FileOptions};
use origami_introspect::fs::{open_filesystem, FileType, GuestTree};

/// An image that counts superblock reads and records which threads read it.
struct Counting {
    inner: FileSource,
    superblock_reads: AtomicUsize,
    readers: Mutex<HashSet<ThreadId>>,
}

impl Counting {
    fn superblock_reads(&self) -> usize {
        self.superblock_reads.load(Ordering::SeqCst)
    }

    fn readers(&self) -> usize {
        self.readers.lock().unwrap().len()
    }
}

impl ReadAt for Counting {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> origami_core::Result<()> {
        if offset == 1024 && buf.len() == 1024 {
            self.superblock_reads.fetch_add(1, Ordering::SeqCst);
        }
        self.readers
            .lock()
            .unwrap()
            .insert(std::thread::current().id());
        self.inner.read_at(offset, buf)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn name(&self) -> String {
        self.inner.name()
    }
}

#[test]
fn hashing_with_two_threads_opens_the_file_system_once() {
    let fx = origami_testsupport::require_fixtures!();
    let image = Arc::new(Counting {
        inner: FileSource::open(fx.path("debian/rootfs.ext4")).unwrap(),
        superblock_reads: AtomicUsize::new(0),
        readers: Mutex::new(HashSet::new()),
    });
    let tree = GuestTree::single(open_filesystem(image.clone()).unwrap());
    let opened = image.superblock_reads();
    assert_eq!(opened, 2, "one open reads the superblock twice");

    image.readers.lock().unwrap().clear();
    let options = FileOptions {
        hash: true,
        hash_threads: 2,
        ..FileOptions::default()
    };
    let (items, errors) = file::crawl(&tree, &options);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        image.superblock_reads(),
        opened,
        "hashing opened the file system again"
    );
    // Both hashing threads (the calling one and a worker) read through the one handle.
    assert_eq!(image.readers(), 2, "threads that read the image");

    // The hashes are the guest's.
    let manifest = fx.json("debian/rootfs.manifest.json");
    let hashed: BTreeMap<&str, &str> = items
        .iter()
        .filter(|i| i.file_type == FileType::File)
        .map(|i| {
            (
                i.path.as_str(),
                i.sha256.as_deref().expect("a file not hashed"),
            )
        })
        .collect();
    let mut checked = 0;
    for e in manifest["entries"].as_array().unwrap() {
        if let Some(want) = e.get("sha256").and_then(|h| h.as_str()) {
            let path = e["path"].as_str().unwrap();
            assert_eq!(hashed.get(path).copied(), Some(want), "{path}");
            checked += 1;
        }
    }
    assert!(checked > 1000, "only {checked} files checked");
}
