//! Guest file systems (origami's ext4 and FAT under its guards) and the disk crawlers run
//! over them.
//!
//! Input of both targets: a list of patches, each `[offset: u24 LE][len: u8][len bytes]`,
//! applied to a template image at `offset % template.len()` (clipped at its end). A few
//! patches reach any superblock, group descriptor, inode, directory block, extent or
//! journal field, while most of the image stays valid, so the libraries get past their
//! first checks. The templates are made by `fuzz/templates/make-templates.sh`.
//!
//! Library panics are caught by origami's guard (`catch_unwind` around every call into
//! ext4-view or fatfs) and become errors; libfuzzer-sys's panic hook would abort on them
//! even when caught, so these targets replace it with a quiet one ([`quiet_panics`]). A
//! panic that escapes the guard still reaches libfuzzer-sys's own `catch_unwind` (or the
//! replay test's) and is reported as a crash; so are huge allocations (`-rss_limit_mb` /
//! `-malloc_limit_mb`, the replay test's counting allocator), stack overflows and hangs
//! (`-timeout`).
use std::sync::{Arc, Once};

use origami_introspect::disk::{config, os, package, user};
use origami_introspect::fs::{
    Ext4Fs, Ext4Options, FatFs, FileSystem, GuestTree, WalkControl, WalkLimits,
};

/// ext4, 1 KiB blocks, journal, metadata_csum, htree, extents, inline and block symlinks,
/// a sparse file.
static EXT4: &[u8] = include_bytes!("../../fuzz/templates/ext4.img");
/// The same tree with inline_data.
static EXT4_INLINE: &[u8] = include_bytes!("../../fuzz/templates/ext4-inline.img");
/// [`EXT4`] with a transaction left in its journal (needs_recovery).
static EXT4_JOURNAL: &[u8] = include_bytes!("../../fuzz/templates/ext4-journal.img");
/// FAT12, long names, nested directories.
static FAT12: &[u8] = include_bytes!("../../fuzz/templates/fat12.img");

/// `template` with the input's patches applied (see the module docs).
pub(crate) fn patched(template: &[u8], data: &[u8]) -> Vec<u8> {
    let mut img = template.to_vec();
    let mut rest = data;
    while rest.len() >= 4 {
        let offset = u32::from_le_bytes([rest[0], rest[1], rest[2], 0]) as usize;
        let len = rest[3] as usize;
        rest = &rest[4..];
        let bytes = &rest[..len.min(rest.len())];
        rest = &rest[bytes.len()..];
        let at = offset % img.len();
        let end = (at + bytes.len()).min(img.len());
        img[at..end].copy_from_slice(&bytes[..end - at]);
    }
    img
}

/// Replaces the process's panic hook, once, by one that prints nothing: panics inside the
/// file-system libraries are expected and caught by origami's guard. Whether a panic
/// escapes is judged by the caller's `catch_unwind` (libfuzzer-sys's or the replay
/// test's), which receives the panic's message as its payload.
pub(crate) fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

/// Uses the file system the way the crawler does (walk, stat, read every file, follow
/// links, run the disk crawlers), with tight bounds.
pub(crate) fn exercise(fs: Box<dyn FileSystem>) {
    let tree = GuestTree::single(fs);
    let limits = WalkLimits {
        max_entries: 4096,
        max_depth: 32,
        max_dir_entries: 1024,
    };
    let mut entries = Vec::new();
    let _ = tree.walk(b"/", &limits, &mut |e| {
        entries.push((e.path.to_vec(), e.stat.clone()));
        WalkControl::Continue
    });
    for (path, stat) in entries.iter().take(512) {
        let _ = tree.lstat(path);
        let _ = tree.read_prefix_by_inode(path, stat.ino, 64 << 10);
        let _ = tree.read_link_by_inode(path, stat.ino);
        let _ = tree.resolve(path, true);
    }
    let _ = os::crawl(&tree);
    let _ = package::crawl_with(&tree, 1 << 20);
    let _ = user::crawl(&tree, 1 << 20);
    let _ = config::crawl(
        &tree,
        &config::ConfigOptions {
            limits,
            ..Default::default()
        },
    );
}

/// A patched ext4 image (1 KiB blocks, journal, metadata_csum, htree, extents, inline and
/// block symlinks, a sparse file; or the same tree with inline_data; or with a journal to
/// replay) opened by origami's ext4 (the vendored ext4-view under origami's guards) and
/// crawled: errors, never a crash, an unbounded allocation or a hang.
///
/// The first byte holds flags, the rest are patches (see the module docs). Checksums are
/// verified when bit 0 is set (otherwise every patched block would fail its checksum
/// first); bits 1-2 pick the template: 1 the inline_data one, 2 the one with a journal to
/// replay, 0 or 3 the plain one.
pub fn fs_ext4(data: &[u8]) {
    quiet_panics();
    let flags = data.first().copied().unwrap_or(0);
    let verify = flags & 1 == 1;
    let template = match (flags >> 1) & 3 {
        1 => EXT4_INLINE,
        2 => EXT4_JOURNAL,
        _ => EXT4,
    };
    let img = patched(template, data.get(1..).unwrap_or_default());
    let options = Ext4Options {
        verify_checksums: verify,
    };
    if let Ok(fs) = Ext4Fs::open_with(Arc::new(img), options) {
        exercise(Box::new(fs));
    }
}

/// A patched FAT12 image (long names, nested directories) opened by origami's FAT
/// (fatfs, read-only, under origami's guards) and crawled: errors, never a crash, an
/// unbounded allocation or a hang. The input is a list of patches (see the module docs).
pub fn fs_fat(data: &[u8]) {
    quiet_panics();
    let img = patched(FAT12, data);
    if let Ok(fs) = FatFs::open(Arc::new(img)) {
        exercise(Box::new(fs));
    }
}
