//! XFS against ground truth made without origami: images built by mkfs.xfs from a
//! protofile over a synthetic tree (`scripts/make-xfs-btrfs-images.sh`), compared with the
//! tree's manifest (fixture_tool.py); structures located with `xfs_db` for the hostile
//! tests, which patch them (a loop in an extent B+tree, an extent past the device, a loop
//! in a directory's hash B+tree, absurd counts) and expect typed errors, quickly.

use crate::fs_images;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use fs_images::{check_tree, manifest, walk, Patched};
use origami_core::FileSource;
use origami_introspect::fs::{open_filesystem, FsKind, GuestTree, XfsFs, XfsOptions};
use origami_introspect::Error;

fn images() -> Option<PathBuf> {
    fs_images::images("xfs", "xfs-forms.txt")
}

/// The build window of the images: the protofile stamps every inode with the time of mkfs.
fn times(dir: &Path) -> (i64, i64) {
    let t = std::fs::read_to_string(dir.join("xfs-times.txt")).unwrap();
    let v: Vec<i64> = t.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0], v[1])
}

fn check(img: &str, uuid: &str, label: &str) {
    let Some(dir) = images() else { return };
    // The forms xfs_db saw: the test is only worth its name if the big directories are
    // B+trees (and so the leaf and node forms are under them) and the small ones short-form.
    let forms = std::fs::read_to_string(dir.join("xfs-forms.txt")).unwrap();
    for (path, form) in [
        ("/forms/btree", "3 (btree)"),
        ("/forms/node", "3 (btree)"),
        ("/forms/leaf", "2 (extents)"),
        ("/forms", "1 (local)"),
        ("/links/rel-symlink", "1 (local)"),
        ("/links/max-symlink-1023", "2 (extents)"),
    ] {
        let line = forms
            .lines()
            .find(|l| l.starts_with(&format!("{img} {path} ")))
            .unwrap_or_else(|| panic!("{img} {path} not in xfs-forms.txt"));
        assert!(line.contains(form), "{line}: expected {form}");
    }
    let src = Arc::new(FileSource::open(dir.join(format!("{img}.img"))).unwrap());
    let fs = open_filesystem(src).unwrap();
    let info = fs.info();
    assert_eq!(info.kind, FsKind::Xfs);
    assert_eq!(info.uuid.as_deref(), Some(uuid));
    assert_eq!(info.label.as_deref(), Some(label));
    let tree = GuestTree::single(fs);
    let (start, end) = times(&dir);
    let m = manifest(&dir.join("xfs-tree.manifest.json"));
    let n = check_tree(
        img,
        &tree,
        &m,
        &|got, _| got >= start - 1 && got <= end + 1,
        &[],
    );
    assert!(n > 8000, "{n}");
    // A look-up by path through the B+tree directory, content included.
    let name = b"/forms/btree/entry-04999-btree-directory-form.txt";
    assert_eq!(tree.read_file(name, 100).unwrap(), b"btree 4999\n");
}

#[test]
fn xfs_v5_matches_manifest() {
    check(
        "xfs-v5",
        "5f0e7a2c-1b3d-4e5f-8a9b-0c1d2e3f4a5b",
        "origami-xfs5",
    );
}

#[test]
fn xfs_v4_matches_manifest() {
    check(
        "xfs-v4",
        "4f0e7a2c-1b3d-4e5f-8a9b-0c1d2e3f4a5b",
        "origami-xfs4",
    );
}

/// With CRC verification on, the v5 image reads the same (every checksum mkfs wrote is
/// right), and a flipped byte in a directory block is then caught.
#[test]
fn xfs_v5_checksums_verified() {
    let Some(dir) = images() else { return };
    let img = dir.join("xfs-v5.img");
    let open = |src: Arc<dyn origami_core::ReadAt>, verify| {
        GuestTree::single(Box::new(
            XfsFs::open_with(
                src,
                XfsOptions {
                    verify_checksums: verify,
                },
            )
            .unwrap(),
        ))
    };
    let plain = walk(&open(Arc::new(FileSource::open(&img).unwrap()), false));
    let checked = walk(&open(Arc::new(FileSource::open(&img).unwrap()), true));
    assert_eq!(plain, checked);
    // A name byte of /forms/leaf's first data block, changed.
    let off = db_offset(&img, &["path /forms/leaf", "dblock 0"]);
    let mut p = Patched::new(&img);
    p.patch(off + 64 + 9, b"Z");
    let tree = open(p.into_arc(), true);
    let err = tree.read_dir(b"/forms/leaf", 100_000).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
}

/// The byte offset `xfs_db` gives for the object the commands select.
fn db_offset(img: &Path, cmds: &[&str]) -> u64 {
    let mut c = Command::new("xfs_db");
    c.arg("-r");
    for x in cmds.iter().chain(&["stack"]) {
        c.arg("-c").arg(x);
    }
    let out = c.arg(img).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text
        .find("byte offset ")
        .unwrap_or_else(|| panic!("{text}"));
    text[at + 12..]
        .split(',')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn fs_error(e: &Error) -> &str {
    match e {
        Error::FileSystem { what, .. } => what,
        other => panic!("not a file-system error: {other:?}"),
    }
}

/// The leaf of /forms/btree's extent B+tree made a level-1 node pointing at itself: an
/// endless descent for a walker that trusts pointers; here the level check stops it.
#[test]
fn xfs_extent_btree_loop() {
    let Some(dir) = images() else { return };
    let img = dir.join("xfs-v5.img");
    let off = db_offset(&img, &["path /forms/btree", "addr u3.bmbt.ptrs[1]"]);
    let fsbno = {
        let out = Command::new("xfs_db")
            .args([
                "-r",
                "-c",
                "path /forms/btree",
                "-c",
                "print u3.bmbt.ptrs[1]",
            ])
            .arg(&img)
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        t.rsplit('=').next().unwrap().trim().parse::<u64>().unwrap()
    };
    let mut p = Patched::new(&img);
    p.patch(off + 4, &1u16.to_be_bytes()); // level 1
    p.patch(off + 6, &1u16.to_be_bytes()); // one pointer
    let maxrecs = (4096 - 72) / 16;
    p.patch(off + 72 + maxrecs * 8, &fsbno.to_be_bytes()); // ... to itself
    let tree = GuestTree::single(open_filesystem(p.into_arc()).unwrap());
    let t = Instant::now();
    let err = tree.read_dir(b"/forms/btree", 1_000_000).unwrap_err();
    assert!(fs_error(&err).contains("a loop?"), "{err}");
    assert!(t.elapsed().as_secs() < 5);
    // The rest of the tree is still readable.
    assert_eq!(tree.read_dir(b"/forms/leaf", 1000).unwrap().len(), 200);
}

/// /hello.txt's one extent moved past the end of the device: a typed error naming it.
#[test]
fn xfs_extent_past_device() {
    let Some(dir) = images() else { return };
    let img = dir.join("xfs-v5.img");
    let ino_off = db_offset(&img, &["path /hello.txt"]);
    let agblklog = {
        let mut b = [0u8; 1];
        origami_core::ReadAt::read_at(&FileSource::open(&img).unwrap(), 124, &mut b).unwrap();
        b[0]
    };
    // startoff 0, startblock in AG 1000, 1 block.
    let start: u64 = 1000 << agblklog;
    let hi = start >> 43;
    let lo = ((start & ((1 << 43) - 1)) << 21) | 1;
    let mut p = Patched::new(&img);
    p.patch(ino_off + 176, &hi.to_be_bytes());
    p.patch(ino_off + 184, &lo.to_be_bytes());
    let tree = GuestTree::single(open_filesystem(p.into_arc()).unwrap());
    let err = tree.read_file(b"/hello.txt", 1000).unwrap_err();
    assert!(fs_error(&err).contains("past the device"), "{err}");
}

/// A node of /forms/node's hash B+tree (the directory's leaf space) pointing at itself:
/// entries are read from the data blocks, never through the hash tree, so the listing is
/// whole and the loop is never entered.
#[test]
fn xfs_directory_btree_loop_is_not_followed() {
    let Some(dir) = images() else { return };
    let img = dir.join("xfs-v5.img");
    let off = db_offset(&img, &["path /forms/node", "dblock 8388608"]);
    let mut p = Patched::new(&img);
    // The first `before` pointer of the node (after the 64-byte v5 header and a hash).
    p.patch(off + 64 + 4, &8_388_608u32.to_be_bytes());
    let tree = GuestTree::single(open_filesystem(p.into_arc()).unwrap());
    assert_eq!(tree.read_dir(b"/forms/node", 100_000).unwrap().len(), 3000);
}

/// An extent count of 2^31 in a 336-byte fork, and a claimed file size of 2^62: errors or
/// bounded reads, no allocation by the claim.
#[test]
fn xfs_absurd_counts() {
    let Some(dir) = images() else { return };
    let img = dir.join("xfs-v5.img");
    let ino_off = db_offset(&img, &["path /hello.txt"]);
    let mut p = Patched::new(&img);
    p.patch(ino_off + 76, &(1u32 << 31).to_be_bytes());
    let tree = GuestTree::single(open_filesystem(p.into_arc()).unwrap());
    let err = tree.read_file(b"/hello.txt", 1000).unwrap_err();
    assert!(fs_error(&err).contains("do not fit"), "{err}");

    let mut p = Patched::new(&img);
    p.patch(ino_off + 56, &(1u64 << 62).to_be_bytes());
    let tree = GuestTree::single(open_filesystem(p.into_arc()).unwrap());
    let err = tree.read_file(b"/hello.txt", 1 << 20).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    let (data, more) = tree.read_prefix_canonical(b"/hello.txt", 4096).unwrap();
    assert!(more);
    assert_eq!(&data[..28], b"Hello from the vmi fixture!\n");

    // A superblock claiming 2^32 - 1 allocation groups.
    let mut p = Patched::new(&img);
    p.patch(88, &u32::MAX.to_be_bytes());
    let err = open_filesystem(p.into_arc()).unwrap_err();
    assert!(fs_error(&err).contains("groups of"), "{err}");
}
