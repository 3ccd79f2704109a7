//! Hostile and hand-made images: each bad structure gets its typed error (never a panic, an
//! unbounded allocation or an endless loop), and hand-built qcow2 features (v2 headers,
//! extended L2 subclusters, zero clusters) read as the bytes their tables describe.

use origami_core::image::{Qcow2Image, MAX_BACKING_DEPTH};
use origami_core::partition::{read_partitions, TableKind};
use origami_core::{Error, Image, ReadAt};

const CB: u32 = 16;
const CS: usize = 1 << CB;

/// A small qcow2 built field by field: cluster 0 header, 1 L1, 2 L2, 3.. data.
struct Qcow2 {
    version: u32,
    size: u64,
    l1_size: u32,
    l1_offset: u64,
    crypt: u32,
    incompat: u64,
    extended_l2: bool,
    backing: Option<String>,
    /// (L2 entry, bitmap) per guest cluster.
    l2: Vec<(u64, u64)>,
    data: Vec<Vec<u8>>,
}

impl Qcow2 {
    fn new(size: u64) -> Qcow2 {
        Qcow2 {
            version: 3,
            size,
            l1_size: 1,
            l1_offset: CS as u64,
            crypt: 0,
            incompat: 0,
            extended_l2: false,
            backing: None,
            l2: Vec::new(),
            data: Vec::new(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        // The last cluster is an (empty) refcount table: qemu will not open an image without one.
        let mut f = vec![0u8; CS * (4 + self.data.len())];
        let put32 =
            |f: &mut Vec<u8>, at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_be_bytes());
        let put64 =
            |f: &mut Vec<u8>, at: usize, v: u64| f[at..at + 8].copy_from_slice(&v.to_be_bytes());
        f[..4].copy_from_slice(b"QFI\xfb");
        put32(&mut f, 4, self.version);
        put32(&mut f, 20, CB);
        put64(&mut f, 24, self.size);
        put32(&mut f, 32, self.crypt);
        put32(&mut f, 36, self.l1_size);
        put64(&mut f, 48, (CS * (3 + self.data.len())) as u64);
        put32(&mut f, 56, 1);
        put64(&mut f, 40, self.l1_offset);
        let mut incompat = self.incompat;
        if self.extended_l2 {
            incompat |= 1 << 4;
        }
        if self.version == 3 {
            put64(&mut f, 72, incompat);
            put32(&mut f, 96, 4);
            put32(&mut f, 100, 104);
        }
        if let Some(b) = &self.backing {
            let at = 512;
            f[at..at + b.len()].copy_from_slice(b.as_bytes());
            put64(&mut f, 8, at as u64);
            put32(&mut f, 16, b.len() as u32);
        }
        put64(&mut f, CS, (2 * CS) as u64 | 1 << 63);
        for (i, (e, bitmap)) in self.l2.iter().enumerate() {
            if self.extended_l2 {
                put64(&mut f, 2 * CS + 16 * i, *e);
                put64(&mut f, 2 * CS + 16 * i + 8, *bitmap);
            } else {
                put64(&mut f, 2 * CS + 8 * i, *e);
            }
        }
        for (i, d) in self.data.iter().enumerate() {
            let at = (3 + i) * CS;
            f[at..at + d.len()].copy_from_slice(d);
        }
        f
    }
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..CS).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn read_all(r: &dyn ReadAt) -> Result<Vec<u8>, Error> {
    let mut v = vec![0u8; r.len() as usize];
    r.read_at(0, &mut v)?;
    Ok(v)
}

#[test]
fn l1_table_claiming_2_pow_40_entries_is_refused_before_allocating() {
    // 512-byte clusters, 64 entries per L2: each L1 entry maps 32 KiB, so 2^55 bytes need
    // 2^40 L1 entries.
    let mut h = Qcow2::new(1 << 55);
    h.l1_size = u32::MAX;
    let mut f = h.bytes();
    f[20..24].copy_from_slice(&9u32.to_be_bytes());
    match Qcow2Image::from_source(f) {
        Err(Error::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, 24);
            assert!(reason.contains("1099511627776"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // An L1 table the size allows but the file does not hold.
    let mut h = Qcow2::new(1 << 50);
    h.l1_size = 1 << 22;
    match Qcow2Image::from_source(h.bytes()) {
        Err(Error::Corrupt {
            offset: 40, reason, ..
        }) => assert!(reason.contains("past the end"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // An L1 table smaller than the virtual size needs.
    let mut h = Qcow2::new(1 << 40);
    h.l1_size = 1;
    assert!(matches!(
        Qcow2Image::from_source(h.bytes()),
        Err(Error::Corrupt { offset: 36, .. })
    ));
}

#[test]
fn encrypted_external_data_and_unknown_features_are_unsupported() {
    let mut h = Qcow2::new(CS as u64);
    h.crypt = 2;
    match Qcow2Image::from_source(h.bytes()) {
        Err(Error::Unsupported {
            offset: 32,
            feature,
            ..
        }) => assert!(feature.contains("LUKS"), "{feature}"),
        other => panic!("{other:?}"),
    }
    let mut h = Qcow2::new(CS as u64);
    h.incompat = 1 << 2;
    match Qcow2Image::from_source(h.bytes()) {
        Err(Error::Unsupported {
            offset: 72,
            feature,
            ..
        }) => assert!(feature.contains("external data"), "{feature}"),
        other => panic!("{other:?}"),
    }
    let mut h = Qcow2::new(CS as u64);
    h.incompat = 1 << 9;
    match Qcow2Image::from_source(h.bytes()) {
        Err(Error::Unsupported {
            offset: 72,
            feature,
            ..
        }) => assert!(feature.contains("0x200"), "{feature}"),
        other => panic!("{other:?}"),
    }
    let mut h = Qcow2::new(CS as u64);
    h.version = 4;
    assert!(matches!(
        Qcow2Image::from_source(h.bytes()),
        Err(Error::Unsupported { offset: 4, .. })
    ));
}

#[test]
fn backing_chain_that_points_to_itself_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Qcow2::new(4 * CS as u64);
    h.backing = Some("self.qcow2".into());
    std::fs::write(dir.path().join("self.qcow2"), h.bytes()).unwrap();
    match Image::open(dir.path().join("self.qcow2")) {
        Err(Error::BackingChain { reason, .. }) => assert!(reason.contains("loops"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // a -> b -> a
    h.backing = Some("b.qcow2".into());
    std::fs::write(dir.path().join("a.qcow2"), h.bytes()).unwrap();
    h.backing = Some("./a.qcow2".into());
    std::fs::write(dir.path().join("b.qcow2"), h.bytes()).unwrap();
    assert!(matches!(
        Image::open(dir.path().join("a.qcow2")),
        Err(Error::BackingChain { .. })
    ));
}

#[test]
fn backing_chains_are_bounded_and_resolved_against_the_image_folder() {
    let dir = tempfile::tempdir().unwrap();
    let base: Vec<u8> = (0..4 * CS).map(|i| (i % 97) as u8).collect();
    std::fs::write(dir.path().join("base.raw"), &base).unwrap();
    // A chain of exactly MAX_BACKING_DEPTH images opens; one more is refused.
    let mut prev = "base.raw".to_string();
    for i in 1..=MAX_BACKING_DEPTH {
        let mut h = Qcow2::new(4 * CS as u64);
        h.backing = Some(prev.clone());
        prev = format!("layer{i}.qcow2");
        std::fs::write(dir.path().join(&prev), h.bytes()).unwrap();
    }
    let top = Image::open(
        dir.path()
            .join(format!("layer{}.qcow2", MAX_BACKING_DEPTH - 1)),
    )
    .unwrap();
    assert_eq!(read_all(&top).unwrap(), base);
    match Image::open(dir.path().join(&prev)) {
        Err(Error::BackingChain { reason, .. }) => assert!(reason.contains("deep"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A missing backing file is an I/O error naming it.
    let mut h = Qcow2::new(4 * CS as u64);
    h.backing = Some("missing.qcow2".into());
    std::fs::write(dir.path().join("orphan.qcow2"), h.bytes()).unwrap();
    match Image::open(dir.path().join("orphan.qcow2")) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("missing.qcow2")),
        other => panic!("{other:?}"),
    }
    // Without its backing file attached, an unallocated cluster cannot be read.
    let q = Qcow2Image::from_source(h.bytes()).unwrap();
    assert!(matches!(read_all(&q), Err(Error::BackingChain { .. })));
}

#[test]
fn v2_v3_zero_and_data_clusters_read_as_their_tables_say() {
    let backing = vec![0xbbu8; 4 * CS];
    for version in [2, 3] {
        let mut h = Qcow2::new(4 * CS as u64);
        h.version = version;
        h.data = vec![pattern(1), pattern(2)];
        let d0 = (3 * CS) as u64;
        let d1 = (4 * CS) as u64;
        // cluster 0 -> d1, 1 -> d0 (out of order), 2 -> zero flag (v3) / reserved bit (v2), 3 unallocated
        h.l2 = vec![(d1 | 1 << 63, 0), (d0 | 1 << 63, 0), (1, 0), (0, 0)];
        let q = Qcow2Image::from_source(h.bytes())
            .unwrap()
            .with_backing(Box::new(backing.clone()));
        let got = read_all(&q).unwrap();
        let mut want = pattern(2);
        want.extend(pattern(1));
        if version == 3 {
            want.extend(vec![0u8; CS]);
        } else {
            want.extend(vec![0xbbu8; CS]);
        }
        want.extend(vec![0xbbu8; CS]);
        assert_eq!(got, want, "v{version}");
    }
    // A data cluster past the end of the file: an error naming the file, not zeros.
    let mut h = Qcow2::new(CS as u64);
    h.l2 = vec![((100 * CS) as u64, 0)];
    assert!(matches!(
        read_all(&Qcow2Image::from_source(h.bytes()).unwrap()),
        Err(Error::OutOfBounds { .. })
    ));
    // A misaligned one.
    h.l2 = vec![(3 * CS as u64 + 512, 0)];
    assert!(matches!(
        read_all(&Qcow2Image::from_source(h.bytes()).unwrap()),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn extended_l2_subclusters_read_as_their_bitmaps_say() {
    let sc = CS / 32;
    let mut h = Qcow2::new(4 * CS as u64);
    h.extended_l2 = true;
    h.data = vec![pattern(7)];
    let host = (3 * CS) as u64;
    // cluster 0: subclusters 0-3 allocated, 4-7 zero, the rest from the backing file;
    // cluster 1: unallocated, subcluster 0 zero; clusters 2, 3: nothing.
    h.l2 = vec![(host | 1 << 63, 0xf | 0xf0 << 32), (0, 1 << 32)];
    let backing = vec![0xbbu8; 4 * CS];
    let bytes = h.bytes();
    let q = Qcow2Image::from_source(bytes)
        .unwrap()
        .with_backing(Box::new(backing));
    assert!(q.header().extended_l2);
    let got = read_all(&q).unwrap();
    let mut want = pattern(7)[..4 * sc].to_vec();
    want.extend(vec![0u8; 4 * sc]);
    want.extend(vec![0xbbu8; 24 * sc]);
    want.extend(vec![0u8; sc]);
    want.extend(vec![0xbbu8; 31 * sc + 2 * CS]);
    assert_eq!(got.len(), want.len());
    assert!(got == want);
    // Small reads across subcluster edges agree with the whole read.
    let mut b = [0u8; 100];
    for off in [
        4 * sc as u64 - 50,
        8 * sc as u64 - 50,
        CS as u64 - 50,
        CS as u64 + sc as u64 - 50,
    ] {
        q.read_at(off, &mut b).unwrap();
        assert_eq!(b[..], want[off as usize..off as usize + 100]);
    }
    // A subcluster both allocated and zero is corrupt.
    h.l2 = vec![(host | 1 << 63, 1 | 1 << 32)];
    assert!(matches!(
        read_all(&Qcow2Image::from_source(h.bytes()).unwrap()),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn garbage_compressed_clusters_are_errors() {
    let mut h = Qcow2::new(CS as u64);
    h.data = vec![vec![0xffu8; CS]];
    // compressed, 16 sectors at 3 * CS (cluster_bits 16: size field starts at bit 54)
    h.l2 = vec![(1 << 62 | 15 << 54 | (3 * CS) as u64, 0)];
    let q = Qcow2Image::from_source(h.bytes()).unwrap();
    assert!(matches!(read_all(&q), Err(Error::Corrupt { .. })));
    let mut b = [0u8; 10];
    assert!(matches!(q.read_at(100, &mut b), Err(Error::Corrupt { .. })));
}

fn mbr_entry(sector: &mut [u8], i: usize, kind: u8, lba: u32, sectors: u32) {
    let at = 446 + 16 * i;
    sector[at + 4] = kind;
    sector[at + 8..at + 12].copy_from_slice(&lba.to_le_bytes());
    sector[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
}

#[test]
fn ebr_chain_that_loops_is_an_error() {
    let mut disk = vec![0u8; 4096 * 512];
    disk[440..444].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xaa;
    mbr_entry(&mut disk, 0, 0x05, 100, 3000);
    // EBR at 100: logical at +10, next EBR at ext+200; EBR at 300 links back to ext+0.
    for (ebr, next) in [(100usize, 200u32), (300, 0)] {
        let s = &mut disk[ebr * 512..ebr * 512 + 512];
        s[510] = 0x55;
        s[511] = 0xaa;
        mbr_entry(s, 0, 0x83, 10, 50);
        mbr_entry(s, 1, 0x05, next, 100);
    }
    match read_partitions(&disk) {
        Err(Error::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, 100 * 512);
            assert!(reason.contains("loops"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Broken loop: the chain ends at 300 and both logicals are numbered 5, 6.
    let s = &mut disk[300 * 512..300 * 512 + 512];
    mbr_entry(s, 1, 0, 0, 0);
    let t = read_partitions(&disk).unwrap();
    assert_eq!(t.kind, TableKind::Mbr);
    let got: Vec<(u32, u64, String)> = t
        .partitions
        .iter()
        .map(|p| (p.number, p.start / 512, p.uuid.clone().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (1, 100, "12345678-01".into()),
            (5, 110, "12345678-05".into()),
            (6, 310, "12345678-06".into())
        ]
    );
}

#[test]
fn gpt_backup_is_used_when_the_primary_is_damaged() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let mut disk = std::fs::read(fx.path("synth/gpt.img")).unwrap();
    let good = read_partitions(&disk).unwrap();
    assert!(good.warnings.is_empty());
    // Damage the primary header's CRC-covered bytes.
    disk[512 + 40] ^= 0xff;
    let t = read_partitions(&disk).unwrap();
    assert_eq!(t.partitions, good.partitions);
    assert!(
        t.warnings.iter().any(|w| w.contains("backup")),
        "{:?}",
        t.warnings
    );
    // Damage the primary entry array instead.
    disk[512 + 40] ^= 0xff;
    disk[1024 + 60] ^= 0xff;
    let t = read_partitions(&disk).unwrap();
    assert_eq!(t.partitions, good.partitions);
    assert!(
        t.warnings.iter().any(|w| w.contains("entry array CRC")),
        "{:?}",
        t.warnings
    );
    // Damage the backup too: an error naming the GPT.
    let last = disk.len() - 512;
    disk[last + 40] ^= 0xff;
    match read_partitions(&disk) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("no valid GPT"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn gpt_with_huge_entry_array_is_refused() {
    // A protective MBR and a header claiming 2^32-1 entries of 2^32-8 bytes.
    let mut disk = vec![0u8; 64 * 512];
    disk[510] = 0x55;
    disk[511] = 0xaa;
    mbr_entry(&mut disk, 0, 0xee, 1, 63);
    let h = &mut disk[512..1024];
    h[..8].copy_from_slice(b"EFI PART");
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&1u64.to_le_bytes());
    h[32..40].copy_from_slice(&63u64.to_le_bytes());
    h[72..80].copy_from_slice(&2u64.to_le_bytes());
    h[80..84].copy_from_slice(&u32::MAX.to_le_bytes());
    h[84..88].copy_from_slice(&(u32::MAX - 7).to_le_bytes());
    let crc = crc32(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    match read_partitions(&disk) {
        Err(Error::Corrupt { reason, .. }) => {
            assert!(reason.contains("implausibly large"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

/// CRC-32 (IEEE), written out here so the test does not lean on the library's CRC.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
