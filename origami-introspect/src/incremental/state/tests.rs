//! The state file's codec: round trips, and refusals of foreign, corrupt or truncated files.
use super::*;

fn sample() -> CrawlState {
    let mut v = VolumeState {
        uuid: "u".into(),
        block_size: 4096,
        blocks: 10,
        inodes_per_group: 16,
        inode_size: 256,
        groups: vec![GroupDigests {
            digests: vec![1, 2],
            content: vec![3, 4],
            generations: vec![0, 9],
            blocks: vec![5],
        }],
        ..VolumeState::default()
    };
    v.inodes.insert(
        2,
        Arc::new(InodeRecord {
            listing: Some(vec![EntryRecord {
                name: Bytes(b"etc".to_vec()),
                ino: 12,
                file_type: FileType::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: 4096,
                mtime: -5,
            }]),
            dir_blocks: Some(DirBlocks {
                ranges: vec![(4096, 8192)],
                digest: 77,
            }),
            ..InodeRecord::default()
        }),
    );
    v.inodes.insert(
        13,
        Arc::new(InodeRecord {
            link: Some(Bytes(vec![0, 255, b'a'])),
            ..InodeRecord::default()
        }),
    );
    v.inodes.insert(
        14,
        Arc::new(InodeRecord {
            sha256: Some([7; 32]),
            content: Some(Bytes(b"hello\n".to_vec())),
            ..InodeRecord::default()
        }),
    );
    let mut extra = origami_frame::Extra::new();
    extra.insert("path_hex".into(), "ff".into());
    let files = vec![
        Arc::new(FileRecord {
            item: FileItem {
                path: "/etc/motd".into(),
                size: 6,
                mode: 0o644,
                sha256: Some(crate::disk::file::hex(&[7; 32])),
                ..FileItem::default()
            },
            key: Some(InodeKey {
                volume: "u".into(),
                ino: 14,
                generation: 9,
            }),
        }),
        Arc::new(FileRecord {
            item: FileItem {
                path: "/l".into(),
                file_type: FileType::Symlink,
                link_target: Some("/x".into()),
                sha256: Some("not a digest".into()),
                extra,
                ..FileItem::default()
            },
            key: None,
        }),
    ];
    CrawlState {
        options: "o".into(),
        key: [3; 32],
        volumes: vec![Arc::new(v)],
        files,
        files_complete: true,
    }
}

/// The records of a state with options "o", a zero key, one volume "u" (4 KiB blocks, 10 of
/// them, 16 inodes of 256 bytes per group) and one group, up to that group's inode count.
fn one_volume_one_group() -> Enc {
    let mut e = Enc(Vec::new());
    e.bytes(b"o");
    e.0.extend_from_slice(&[0; 32]);
    e.u8(1);
    e.u32(1);
    e.bytes(b"u");
    e.u64(4096);
    e.u64(10);
    e.u32(16);
    e.u32(256);
    e.u32(1);
    e
}

/// A state file around `body` (records written by hand), its header right.
fn wrap(body: &[u8]) -> Vec<u8> {
    let payload = zstd::bulk::compress(body, 1).unwrap();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(&payload).as_bytes());
    out.extend_from_slice(&payload);
    out
}

#[test]
fn lying_counts_are_refused_before_any_allocation() {
    // Options "o", then 2^32-1 volumes; then one volume whose group claims 2^32-1
    // inodes; then a file record cut short.
    let mut e = Enc(Vec::new());
    e.bytes(b"o");
    e.0.extend_from_slice(&[0; 32]);
    e.u8(1);
    e.u32(u32::MAX);
    let r = CrawlState::from_bytes(Path::new("s"), &wrap(&e.0));
    assert!(
        matches!(r, Err(StateError::Corrupt { offset: 64, .. })),
        "{r:?}"
    );
    let mut e = one_volume_one_group();
    e.u32(u32::MAX);
    let r = CrawlState::from_bytes(Path::new("s"), &wrap(&e.0));
    assert!(
        matches!(&r, Err(StateError::Corrupt { what, .. }) if what.contains("count")),
        "{r:?}"
    );
    let mut good = Enc(Vec::new());
    sample().encode(&mut good);
    for cut in [1, good.0.len() / 2, good.0.len() - 1] {
        let r = CrawlState::from_bytes(Path::new("s"), &wrap(&good.0[..cut]));
        assert!(matches!(r, Err(StateError::Corrupt { .. })), "cut {cut}");
    }
    let mut extra = good.0.clone();
    extra.push(0);
    assert!(CrawlState::from_bytes(Path::new("s"), &wrap(&extra)).is_err());
    // Versions 1 (zstd JSON) and 3 (unkeyed digests) are other formats.
    for version in [1, 3] {
        let mut old = wrap(&good.0);
        old[16] = version;
        assert!(matches!(
            CrawlState::from_bytes(Path::new("s"), &old),
            Err(StateError::Foreign { .. })
        ));
    }
    // More block digests than inodes.
    let mut e = one_volume_one_group();
    e.u32(1);
    e.u64(1);
    e.u64(2);
    e.u32(0);
    e.u32(2);
    e.u64(1);
    e.u64(2);
    e.u32(0);
    e.u32(0);
    let r = CrawlState::from_bytes(Path::new("s"), &wrap(&e.0));
    assert!(
        matches!(&r, Err(StateError::Corrupt { what, .. }) if what.contains("block digests")),
        "{r:?}"
    );
}

#[test]
fn round_trips() {
    let s = sample();
    let b = s.to_bytes();
    assert_eq!(CrawlState::from_bytes(Path::new("s"), &b).unwrap(), s);
}

#[test]
fn every_damage_is_an_error() {
    let b = sample().to_bytes();
    for cut in [0, 10, 16, 63, 64, b.len() - 1] {
        assert!(
            CrawlState::from_bytes(Path::new("s"), &b[..cut]).is_err(),
            "cut {cut}"
        );
    }
    for i in 0..b.len() {
        let mut c = b.clone();
        c[i] ^= 0x40;
        assert!(
            CrawlState::from_bytes(Path::new("s"), &c).is_err(),
            "flip {i}"
        );
    }
    let mut huge = b.clone();
    huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        CrawlState::from_bytes(Path::new("s"), &huge),
        Err(StateError::Corrupt { offset: 24, .. })
    ));
    assert!(matches!(
        CrawlState::from_bytes(Path::new("s"), b"{\"volumes\": []}"),
        Err(StateError::Foreign { .. })
    ));
}
