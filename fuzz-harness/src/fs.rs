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
use std::sync::{Arc, Once, OnceLock};

use origami_core::ReadAt;
use origami_introspect::disk::{config, os, package, user};
use origami_introspect::fs::{
    BtrfsFs, BtrfsOptions, Ext4Fs, Ext4Options, FatFs, FileSystem, GuestTree, WalkControl,
    WalkLimits, XfsFs, XfsOptions,
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

/// XFS v5, 16 MiB, one allocation group, 1 KiB blocks: short-form, block, leaf, node and
/// B+tree directories, inline and remote symlinks (zstd-compressed, see
/// `fuzz/templates/make-xfs-btrfs-templates.sh`).
static XFS_V5: &[u8] = include_bytes!("../../fuzz/templates/xfs.img.zst");
/// The same tree, v4, 256-byte inodes (its big directory is an extent B+tree).
static XFS_V4: &[u8] = include_bytes!("../../fuzz/templates/xfs-v4.img.zst");
/// btrfs, single profiles: default subvolume `@` (a nested subvolume inside), `@home`,
/// LZO-compressed data.
static BTRFS_LZO: &[u8] = include_bytes!("../../fuzz/templates/btrfs-lzo.img.zst");
/// The same, zlib.
static BTRFS_ZLIB: &[u8] = include_bytes!("../../fuzz/templates/btrfs-zlib.img.zst");

/// A committed template, decompressed once.
fn template(cell: &'static OnceLock<Vec<u8>>, zst: &[u8]) -> &'static [u8] {
    cell.get_or_init(|| zstd::decode_all(zst).expect("a committed template decompresses"))
}

/// A template with the input's patches (see the module docs) laid over it when read, so
/// that the 16 MiB images are not copied for every input.
struct Overlay {
    base: &'static [u8],
    patches: Vec<(u64, Vec<u8>)>,
}

impl Overlay {
    fn new(base: &'static [u8], data: &[u8]) -> Overlay {
        let mut patches = Vec::new();
        let mut rest = data;
        while rest.len() >= 4 && !base.is_empty() {
            let offset = u32::from_le_bytes([rest[0], rest[1], rest[2], 0]) as usize;
            let len = rest[3] as usize;
            rest = &rest[4..];
            let bytes = &rest[..len.min(rest.len())];
            rest = &rest[bytes.len()..];
            let at = offset % base.len();
            let end = (at + bytes.len()).min(base.len());
            patches.push((at as u64, bytes[..end - at].to_vec()));
        }
        Overlay { base, patches }
    }
}

impl ReadAt for Overlay {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> origami_core::Result<()> {
        self.base.read_at(offset, buf)?;
        let end = offset + buf.len() as u64;
        for (at, bytes) in &self.patches {
            let p_end = at + bytes.len() as u64;
            let lo = offset.max(*at);
            let hi = end.min(p_end);
            if lo < hi {
                buf[(lo - offset) as usize..(hi - offset) as usize]
                    .copy_from_slice(&bytes[(lo - at) as usize..(hi - at) as usize]);
            }
        }
        Ok(())
    }
    fn len(&self) -> u64 {
        self.base.len() as u64
    }
    fn name(&self) -> String {
        "fuzz template".into()
    }
}

/// A patched XFS image (v5 or v4; short-form, block, leaf, node and B+tree directories,
/// extent lists and an extent B+tree, inline and remote symlinks) opened by origami's XFS
/// and crawled: errors, never a crash, an unbounded allocation or a hang.
///
/// The first byte holds flags, the rest are patches (see the module docs). Bit 0: verify
/// CRCs (v5); bit 1: the v4 template instead of the v5 one.
pub fn fs_xfs(data: &[u8]) {
    quiet_panics();
    static V5: OnceLock<Vec<u8>> = OnceLock::new();
    static V4: OnceLock<Vec<u8>> = OnceLock::new();
    let flags = data.first().copied().unwrap_or(0);
    let base = if flags & 2 != 0 {
        template(&V4, XFS_V4)
    } else {
        template(&V5, XFS_V5)
    };
    let img = Overlay::new(base, data.get(1..).unwrap_or_default());
    let options = XfsOptions {
        verify_checksums: flags & 1 == 1,
    };
    if let Ok(fs) = XfsFs::open_with(Arc::new(img), options) {
        exercise(Box::new(fs));
    }
}

/// A patched btrfs image (chunk tree, root tree, a default subvolume with a nested one,
/// another subvolume; inline and regular extents, LZO or zlib) opened by origami's btrfs
/// and crawled, then its other subvolume (`subvol=@home`) and its top level
/// (`subvolid=5`): errors, never a crash, an unbounded allocation or a hang.
///
/// The first byte holds flags, the rest are patches (see the module docs). Bit 0: verify
/// checksums; bit 1: the zlib template instead of the LZO one.
pub fn fs_btrfs(data: &[u8]) {
    quiet_panics();
    static LZO: OnceLock<Vec<u8>> = OnceLock::new();
    static ZLIB: OnceLock<Vec<u8>> = OnceLock::new();
    let flags = data.first().copied().unwrap_or(0);
    let base = if flags & 2 != 0 {
        template(&ZLIB, BTRFS_ZLIB)
    } else {
        template(&LZO, BTRFS_LZO)
    };
    let img = Overlay::new(base, data.get(1..).unwrap_or_default());
    let options = BtrfsOptions {
        verify_checksums: flags & 1 == 1,
    };
    if let Ok(fs) = BtrfsFs::open_with(Arc::new(img), options) {
        for options in ["subvol=@home", "subvolid=5"] {
            if let Some(Ok(sub)) = fs.open_subvolume(options) {
                exercise(sub);
            }
        }
        exercise(Box::new(fs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every XFS and btrfs template opens and walks whole, without errors: a template the
    /// readers refused would leave its target fuzzing only the first checks.
    #[test]
    fn templates_read_whole() {
        static CELLS: [OnceLock<Vec<u8>>; 4] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        for (i, (zst, xfs)) in [
            (XFS_V5, true),
            (XFS_V4, true),
            (BTRFS_LZO, false),
            (BTRFS_ZLIB, false),
        ]
        .into_iter()
        .enumerate()
        {
            let src = Arc::new(Overlay::new(template(&CELLS[i], zst), &[]));
            let fs: Box<dyn FileSystem> = if xfs {
                Box::new(XfsFs::open(src).unwrap())
            } else {
                Box::new(BtrfsFs::open(src).unwrap())
            };
            let tree = GuestTree::single(fs);
            let mut n = 0;
            let errors = tree.walk(b"/", &WalkLimits::default(), &mut |_| {
                n += 1;
                WalkControl::Continue
            });
            assert!(errors.is_empty(), "template {i}: {errors:?}");
            assert!(n > 1100, "template {i}: {n} entries");
            assert_eq!(
                tree.read_file(b"/d/btree/btree-entry-with-a-long-name-699", 10)
                    .unwrap(),
                b"699\n"
            );
            assert_eq!(tree.read_link(b"/a/long-link").unwrap().len(), 601);
            assert_eq!(tree.read_file(b"/a/b/text", 1 << 20).unwrap().len(), 13_893);
        }
    }
}
