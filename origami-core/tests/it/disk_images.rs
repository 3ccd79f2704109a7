//! Disk images against the fixtures: every byte read through qcow2 (plain, zlib, zstd, a
//! backing chain) hashes to the raw image's sha256 recorded in `images.json` (or, for the
//! overlay, to its expected raw bytes read straight from disk).

use std::io::Read;
use std::sync::Arc;

use origami_core::{BlockCache, Error, FileSource, Image, ImageFormat, ReadAt};
use sha2::{Digest, Sha256};

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a whole device read through `ReadAt`, in large chunks.
fn sha256_device(r: &dyn ReadAt) -> String {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut off = 0u64;
    while off < r.len() {
        let n = (r.len() - off).min(buf.len() as u64) as usize;
        r.read_at(off, &mut buf[..n]).unwrap();
        h.update(&buf[..n]);
        off += n as u64;
    }
    hex(&h.finalize())
}

/// sha256 of a host file read with std, not through the library.
fn sha256_file(path: &std::path::Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex(&h.finalize())
}

fn truth_sha(images: &serde_json::Value, file: &str) -> (String, u64) {
    let a = images["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["file"] == file)
        .unwrap_or_else(|| panic!("{file} not in images.json"));
    (
        a["sha256"].as_str().unwrap().to_string(),
        a["size"].as_u64().unwrap(),
    )
}

#[test]
fn synthetic_qcow2_variants_read_as_the_raw_disk() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let images = fx.json("images.json");
    let (want, size) = truth_sha(&images, "synth/gpt.img");
    for name in [
        "synth/gpt.qcow2",
        "synth/gpt-zlib.qcow2",
        "synth/gpt-zstd.qcow2",
    ] {
        let img = Image::open(fx.path(name)).unwrap();
        assert_eq!(img.format(), ImageFormat::Qcow2, "{name}");
        assert_eq!(img.len(), size, "{name}");
        assert_eq!(sha256_device(&img), want, "{name}");
    }
    let raw = Image::open(fx.path("synth/gpt.img")).unwrap();
    assert_eq!(raw.format(), ImageFormat::Raw);
    assert_eq!(sha256_device(&raw), want);
}

#[test]
fn debian_qcow2_and_compressed_read_as_the_raw_disk() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let images = fx.json("images.json");
    let (want, size) = truth_sha(&images, "debian/disk-gpt.raw");
    for name in ["debian/disk-gpt.qcow2", "debian/disk-gpt-compressed.qcow2"] {
        let img = Image::open(fx.path(name)).unwrap();
        assert_eq!(img.format(), ImageFormat::Qcow2, "{name}");
        assert_eq!(img.len(), size, "{name}");
        assert_eq!(sha256_device(&img), want, "{name}");
    }
}

#[test]
fn backing_chain_reads_as_the_expected_overlay_bytes() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let img = Image::open(fx.path("debian/disk-overlay.qcow2")).unwrap();
    assert_eq!(img.format(), ImageFormat::Qcow2);
    assert_eq!(
        img.backing_file(),
        Some(fx.path("debian/disk-gpt.qcow2").as_path())
    );
    let want = sha256_file(&fx.path("debian/disk-overlay.raw"));
    assert_eq!(sha256_device(&img), want);
}

/// Small, unaligned reads from several threads at once hit every path (data, zeros,
/// compressed-cluster cache, backing) and must equal the raw bytes.
#[test]
fn small_reads_from_many_threads_equal_the_raw_bytes() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let raw = Arc::new(FileSource::open(fx.path("synth/gpt.img")).unwrap());
    for name in [
        "synth/gpt.qcow2",
        "synth/gpt-zlib.qcow2",
        "synth/gpt-zstd.qcow2",
    ] {
        let img = Arc::new(Image::open(fx.path(name)).unwrap());
        let cached = Arc::new(BlockCache::new(Arc::clone(&img), 4096, 64));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (raw, img, cached) = (Arc::clone(&raw), Arc::clone(&img), Arc::clone(&cached));
                std::thread::spawn(move || {
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                    let (mut a, mut b, mut c) = (vec![0u8; 9000], vec![0u8; 9000], vec![0u8; 9000]);
                    for _ in 0..2000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let len = (x % 9000) as usize + 1;
                        let off = (x >> 20) % (raw.len() - len as u64);
                        raw.read_at(off, &mut a[..len]).unwrap();
                        img.read_at(off, &mut b[..len]).unwrap();
                        cached.read_at(off, &mut c[..len]).unwrap();
                        assert_eq!(a[..len], b[..len], "offset {off} len {len}");
                        assert_eq!(a[..len], c[..len], "cached: offset {off} len {len}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut one = [0u8; 1];
        assert!(matches!(
            img.read_at(img.len(), &mut one),
            Err(Error::OutOfBounds { .. })
        ));
    }
}

#[test]
fn vmdk_reads_as_the_raw_disk() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let images = fx.json("images.json");
    let (want, size) = truth_sha(&images, "synth/gpt.img");
    let img = Image::open(fx.path("synth/gpt.vmdk")).unwrap();
    assert_eq!(img.format(), ImageFormat::Vmdk);
    assert_eq!(img.len(), size);
    assert_eq!(sha256_device(&img), want);
}

#[test]
fn vhdx_reads_as_the_raw_disk() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let images = fx.json("images.json");
    let (want, size) = truth_sha(&images, "synth/gpt.img");
    let img = Image::open(fx.path("synth/gpt.vhdx")).unwrap();
    assert_eq!(img.format(), ImageFormat::Vhdx);
    assert_eq!(img.len(), size);
    assert_eq!(sha256_device(&img), want);
}

#[test]
fn other_formats_are_refused_as_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    for (magic, at, format) in [
        (&b"conectix"[..], 0usize, "VHD (dynamic)"),
        (b"QED\0", 0, "QED"),
        (&[0x7f, 0x10, 0xda, 0xbe], 0x40, "VDI"),
        (b"QFI\xfb\0\0\0\x01", 0, "qcow (version 1)"),
    ] {
        let mut bytes = vec![0u8; 4096];
        bytes[at..at + magic.len()].copy_from_slice(magic);
        let path = dir.path().join("img");
        std::fs::write(&path, &bytes).unwrap();
        match Image::open(&path) {
            Err(Error::UnsupportedFormat { format: f, .. }) => assert_eq!(f, format),
            other => panic!("{format}: {other:?}"),
        }
    }
    // A VMDK descriptor is read (see disk_backing_rule.rs), but one naming no extent is
    // corrupt, not raw bytes.
    let mut bytes = b"# Disk DescriptorFile\n".to_vec();
    bytes.resize(4096, 0);
    let path = dir.path().join("desc.vmdk");
    std::fs::write(&path, &bytes).unwrap();
    match Image::open(&path) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("no extent"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn mmap_source_reads_as_pread() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let path = fx.path("synth/mbr.img");
    let m = origami_core::MmapSource::open(&path).unwrap();
    let f = FileSource::open(&path).unwrap();
    assert_eq!(m.len(), f.len());
    let (mut a, mut b) = (vec![0u8; 70_000], vec![0u8; 70_000]);
    for off in [0u64, 511, 1 << 20, f.len() - 70_000] {
        m.read_at(off, &mut a).unwrap();
        f.read_at(off, &mut b).unwrap();
        assert!(a == b, "offset {off}");
    }
    assert!(matches!(
        m.read_at(f.len() - 1, &mut a[..2]),
        Err(Error::OutOfBounds { .. })
    ));
}
