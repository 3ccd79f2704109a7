//! Windows guests: origami's NTFS (the `ntfs` crate under origami's guards) and its
//! registry hive reader.
//!
//! Templates: `fuzz/templates/ntfs.img` and `fuzz/templates/system.hive`, made by
//! `fuzz/templates/make-windows-templates.sh`.
use std::sync::Arc;

use origami_introspect::disk::windows::{self, hive::Hive};
use origami_introspect::fs::{GuestTree, NtfsFs};

use crate::fs::{exercise, patched, quiet_panics};

/// A 2 MiB NTFS volume: directories, resident and non-resident files, an alternate data
/// stream, a hard link.
static NTFS: &[u8] = include_bytes!("../../fuzz/templates/ntfs.img");
/// The Windows fixture's SYSTEM hive.
static SYSTEM_HIVE: &[u8] = include_bytes!("../../fuzz/templates/system.hive");

/// A patched NTFS image (patches as in the `fs_ext4` target: `[offset: u24 LE][len: u8]
/// [len bytes]`...) opened by origami's NTFS and walked, read and crawled whole (the Linux
/// crawlers and the Windows one): errors, never a crash, an unbounded allocation or a hang.
pub fn fs_ntfs(data: &[u8]) {
    quiet_panics();
    let img = patched(NTFS, data);
    if let Ok(fs) = NtfsFs::open(Arc::new(img.clone())) {
        exercise(Box::new(fs));
    }
    if let Ok(fs) = NtfsFs::open(Arc::new(img)) {
        let _ = windows::crawl(&GuestTree::single(Box::new(fs)));
    }
}

/// Any bytes as LZNT1 data, decompressed twice: as NTFS reads a 64 KiB compression unit
/// (chunks padded to 4096 bytes) and as a plain buffer with a 1 MiB bound. Output within
/// its bound, a padded success a whole number of chunks (or the whole unit), errors typed
/// with an offset inside the input; never a panic.
pub fn ntfs_lznt1(data: &[u8]) {
    use origami_introspect::fs::ntfs::lznt1::{decompress, CHUNK};
    for (limit, pad) in [(64 << 10, true), (1 << 20, false)] {
        let mut out = Vec::new();
        match decompress(data, &mut out, limit, pad) {
            Ok(()) => assert!(!pad || out.len() % CHUNK == 0 || out.len() == limit),
            Err(e) => assert!(e.offset < data.len(), "{e}"),
        }
        assert!(out.len() <= limit);
    }
}

/// A registry hive, parsed and walked whole (every key to depth 16, at most 4096 keys, and
/// every value): errors, never a crash, an unbounded allocation or a hang. First byte: bit 0
/// set, the rest is the hive itself; clear, the rest patches the fixture's SYSTEM hive.
pub fn registry_hive(data: &[u8]) {
    let raw = data.first().is_some_and(|f| f & 1 == 1);
    let rest = data.get(1..).unwrap_or_default();
    let bytes = if raw {
        rest.to_vec()
    } else {
        patched(SYSTEM_HIVE, rest)
    };
    let Ok(hive) = Hive::parse("fuzz", bytes) else {
        return;
    };
    let mut stack = vec![(hive.root(), 0usize)];
    let mut seen = 0usize;
    while let Some((key, depth)) = stack.pop() {
        seen += 1;
        if seen > 4096 {
            break;
        }
        let _ = key.name();
        let _ = key.values();
        if depth < 16 {
            if let Ok(subs) = key.subkeys() {
                stack.extend(subs.into_iter().take(4096).map(|k| (k, depth + 1)));
            }
        }
    }
}
