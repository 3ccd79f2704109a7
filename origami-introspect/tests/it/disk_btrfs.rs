//! btrfs against ground truth made without origami: images built by `mkfs.btrfs
//! --rootdir` with subvolumes (`--subvol`) and each compression (`--compress`) over a
//! synthetic tree (`scripts/make-xfs-btrfs-images.sh`), compared with the tree's manifest
//! (fixture_tool.py); structures located with btrfs-progs' `dump-tree` and
//! `btrfs-map-logical` for the hostile tests (a tree block pointing at itself, a chunk past
//! the device, overlapping chunks), which expect typed errors.

use crate::fs_images;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use fs_images::{check_tree, manifest, walk, Patched};
use origami_core::{FileSource, ReadAt};
use origami_introspect::fs::fstab::{assemble, Volume};
use origami_introspect::fs::{
    open_filesystem, BtrfsFs, BtrfsOptions, FsKind, GuestTree, Subvolume,
};
use origami_introspect::Error;

const UUID: &str = "7b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

fn images() -> Option<PathBuf> {
    fs_images::images("btrfs", "btrfs-zstd.img")
}

fn dump_tree(img: &Path, args: &[&str]) -> String {
    let out = Command::new("btrfs")
        .args(["inspect-internal", "dump-tree"])
        .args(args)
        .arg(img)
        .output()
        .unwrap();
    assert!(out.status.success(), "dump-tree {args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check(comp: &str, compression_type: Option<u8>) {
    let Some(dir) = images() else { return };
    let img = dir.join(format!("btrfs-{comp}.img"));
    // The image really holds extents of that compression (dump-tree's word).
    if let Some(t) = compression_type {
        let dump = dump_tree(&img, &[]);
        assert!(
            dump.contains(&format!("compression {t}")),
            "{comp}: no extent of compression {t}"
        );
    }
    let src: Arc<dyn ReadAt> = Arc::new(FileSource::open(&img).unwrap());
    let fs = open_filesystem(src.clone()).unwrap();
    let info = fs.info();
    assert_eq!(info.kind, FsKind::Btrfs);
    assert_eq!(info.uuid.as_deref(), Some(UUID));
    assert_eq!(
        info.label.as_deref(),
        Some(format!("origami-{comp}").as_str())
    );
    // The default subvolume (@, with @/srv/nested inside it) at the root.
    let tree = GuestTree::single(fs);
    let m = manifest(&dir.join("btrfs-root.manifest.json"));
    let n = check_tree(comp, &tree, &m, &|got, want| got == want, &[]);
    assert!(n > 8000, "{n}");
    let name = b"/forms/btree/entry-04999-btree-directory-form.txt";
    assert_eq!(tree.read_file(name, 100).unwrap(), b"btree 4999\n");
    // @home, by path from the top level; the top level itself, by id.
    let btrfs = BtrfsFs::open(src).unwrap();
    let home = btrfs
        .subvolume(&Subvolume::Path(b"@home".to_vec()))
        .unwrap();
    let m = manifest(&dir.join("btrfs-home.manifest.json"));
    check_tree(
        comp,
        &GuestTree::single(Box::new(home)),
        &m,
        &|g, w| g == w,
        &[],
    );
    let top = GuestTree::single(Box::new(btrfs.subvolume(&Subvolume::Id(5)).unwrap()));
    let names: Vec<Vec<u8>> = top
        .read_dir(b"/", 10)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![b"@".to_vec(), b"@home".to_vec()]);
    assert_eq!(
        top.read_file(b"/@/srv/nested/inside.txt", 100).unwrap(),
        b"in a nested subvolume\n"
    );
}

#[test]
fn btrfs_uncompressed_matches_manifest() {
    check("none", None);
}

#[test]
fn btrfs_zlib_matches_manifest() {
    check("zlib", Some(1));
}

#[test]
fn btrfs_lzo_matches_manifest() {
    check("lzo", Some(2));
}

#[test]
fn btrfs_zstd_matches_manifest() {
    check("zstd", Some(3));
}

/// With checksums verified the tree reads the same.
#[test]
fn btrfs_checksums_verified() {
    let Some(dir) = images() else { return };
    let img = dir.join("btrfs-zstd.img");
    let open = |verify| {
        let src = Arc::new(FileSource::open(&img).unwrap());
        GuestTree::single(Box::new(
            BtrfsFs::open_with(
                src,
                BtrfsOptions {
                    verify_checksums: verify,
                },
            )
            .unwrap(),
        ))
    };
    assert_eq!(walk(&open(false)), walk(&open(true)));
}

/// The guest's fstab mounts `subvol=@home` at /home: the assembled tree shows it there.
#[test]
fn btrfs_fstab_subvolume_mounted() {
    let Some(dir) = images() else { return };
    let src = Arc::new(FileSource::open(dir.join("btrfs-lzo.img")).unwrap());
    let a = assemble(vec![Volume {
        fs: open_filesystem(src).unwrap(),
        disk: 0,
        partition: None,
        lvm: None,
    }])
    .unwrap();
    let points: Vec<&[u8]> = a.tree.mounts().iter().map(|m| m.point.as_slice()).collect();
    assert_eq!(points, vec![&b"/"[..], b"/home"], "{:?}", a.notes);
    assert_eq!(
        a.tree.read_file(b"/home/alice/notes.txt", 100).unwrap(),
        b"alice home file\n"
    );
    assert_eq!(a.tree.stat(b"/home/alice/random.bin").unwrap().uid, 1000);
}

fn physical(img: &Path, logical: u64) -> u64 {
    let out = Command::new("btrfs-map-logical")
        .args(["-l", &logical.to_string()])
        .arg(img)
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&out.stdout);
    let at = t.find("physical ").unwrap_or_else(|| panic!("{t}"));
    t[at + 9..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn fs_error(e: &Error) -> &str {
    match e {
        Error::FileSystem { what, .. } => what,
        other => panic!("not a file-system error: {other:?}"),
    }
}

/// The level-1 root of @'s tree with its first child pointer aimed at itself (both
/// copies of the DUP metadata): a cycle for a walker that trusts pointers; here the level
/// check ends it with an error.
#[test]
fn btrfs_tree_cycle() {
    let Some(dir) = images() else { return };
    let img = dir.join("btrfs-none.img");
    let dump = dump_tree(&img, &["-t", "257"]);
    let line = dump
        .lines()
        .find(|l| l.starts_with("node "))
        .expect("a node");
    let logical: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut p = Patched::new(&img);
    let mirrors = {
        let out = Command::new("btrfs-map-logical")
            .args(["-l", &logical.to_string()])
            .arg(&img)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split("physical ").nth(1))
            .map(|x| x.split_whitespace().next().unwrap().parse::<u64>().unwrap())
            .collect::<Vec<_>>()
    };
    assert!(!mirrors.is_empty());
    assert_eq!(mirrors[0], physical(&img, logical));
    for phys in mirrors {
        p.patch(phys + 101 + 17, &logical.to_le_bytes());
    }
    let t = Instant::now();
    let err = match open_filesystem(p.into_arc()) {
        Err(e) => e,
        Ok(fs) => GuestTree::single(fs).read_dir(b"/", 100_000).unwrap_err(),
    };
    assert!(fs_error(&err).contains("a loop?"), "{err}");
    assert!(t.elapsed().as_secs() < 5);
}

/// The bootstrap chunk (the superblock's sys_chunk_array) moved past the device, then
/// doubled so that two chunks overlap: typed errors at open.
#[test]
fn btrfs_bad_chunk_map() {
    let Some(dir) = images() else { return };
    let img = dir.join("btrfs-none.img");
    let src = FileSource::open(&img).unwrap();
    let mut sb = vec![0u8; 4096];
    src.read_at(0x10000, &mut sb).unwrap();
    let arr_len = u32::from_le_bytes(sb[0xa0..0xa4].try_into().unwrap()) as usize;
    let arr = 0x10000 + 0x32b;
    // The first stripe's offset.
    let mut p = Patched::new(&img);
    p.patch(arr + 17 + 48 + 8, &(1u64 << 50).to_le_bytes());
    let err = open_filesystem(p.into_arc()).unwrap_err();
    assert!(fs_error(&err).contains("past the device"), "{err}");
    // The array's first entry twice.
    let n = u16::from_le_bytes(sb[0x32b + 17 + 44..0x32b + 17 + 46].try_into().unwrap());
    let entry = 17 + 48 + 32 * n as usize;
    assert!(2 * entry <= 2048 && arr_len >= entry);
    let mut p = Patched::new(&img);
    p.patch(0x10000 + 0xa0, &((2 * entry) as u32).to_le_bytes());
    p.patch(arr + entry as u64, &sb[0x32b..0x32b + entry]);
    let err = open_filesystem(p.into_arc()).unwrap_err();
    assert!(fs_error(&err).contains("overlap"), "{err}");
}
