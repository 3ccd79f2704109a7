// Shared by the file-system fuzz targets: patch a template image with the fuzzer's bytes,
// then use the file system the way the crawler does (walk, stat, read every file, follow
// links, run the disk crawlers), with tight bounds.
//
// Input: a list of patches, each `[offset: u24 LE][len: u8][len bytes]`, applied to the
// template at `offset % template.len()` (clipped at its end). A few patches reach any
// superblock, group descriptor, inode, directory block, extent or journal field, while
// most of the image stays valid, so the libraries get past their first checks.
//
// Library panics are caught by origami's guard (`catch_unwind` around every call into
// ext4-view or fatfs) and become errors; libfuzzer-sys's hook would abort on them even
// when caught, so it is replaced by a quiet one. A panic that escapes the guard still
// reaches libfuzzer-sys's own `catch_unwind` and is reported as a crash; so are huge
// allocations (-rss_limit_mb / -malloc_limit_mb), stack overflows and hangs (-timeout).
use std::sync::Once;

use origami_introspect::disk::{config, os, package, user};
use origami_introspect::fs::{FileSystem, GuestTree, WalkControl, WalkLimits};

pub fn patched(template: &[u8], data: &[u8]) -> Vec<u8> {
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

pub fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

pub fn exercise(fs: Box<dyn FileSystem>) {
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
