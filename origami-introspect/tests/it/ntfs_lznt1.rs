//! LZNT1-compressed NTFS files read back as ntfs-3g wrote them: two images made by
//! `tests/data/ntfs-lznt1/make.py` (mkntfs, then ntfs-3g's FUSE driver with its
//! `compression` option writing into a directory marked compressed), one with 4 KiB
//! clusters (64 KiB compression units) and one with 512-byte clusters (8 KiB units). The
//! truth is the script's own input: sizes and sha256 of the files it wrote, and the
//! allocation ntfs-3g reported, which shows the files are stored compressed.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use origami_introspect::fs::{FileSystem, NtfsFs};
use sha2::{Digest, Sha256};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ntfs-lznt1")
}

fn image(name: &str) -> Vec<u8> {
    let packed = std::fs::read(data_dir().join(name)).unwrap();
    zstd::decode_all(&packed[..]).unwrap()
}

fn truth() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(data_dir().join("truth.json")).unwrap()).unwrap()
}

fn read_all(fs: &NtfsFs, path: &str, chunk: usize) -> Vec<u8> {
    let mut r = fs.open(path.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn compressed_files_read_as_ntfs3g_wrote_them() {
    let truth = truth();
    let mut checked = 0;
    for (img, files) in truth.as_object().unwrap() {
        let fs = NtfsFs::open(Arc::new(image(img))).unwrap();
        let mut compressed_units = false;
        for (path, want) in files.as_object().unwrap() {
            let size = want["size"].as_u64().unwrap();
            let st = fs.lstat(path.as_bytes()).unwrap();
            assert_eq!(st.size, size, "{img} {path}");
            let meta = st.ntfs.as_ref().unwrap();
            // FILE_ATTRIBUTE_COMPRESSED, as ntfs-3g reported it
            assert_eq!(
                meta.attributes & 0x800,
                want["attributes"].as_u64().unwrap() as u32 & 0x800,
                "{img} {path}"
            );
            compressed_units |= want["allocated"].as_u64().unwrap() < size / 2;
            // Odd read sizes cross compression units and chunks at every offset.
            for chunk in [256 << 10, 4093, 1] {
                if chunk == 1 && size > 70_000 {
                    continue;
                }
                let data = read_all(&fs, path, chunk);
                assert_eq!(data.len() as u64, size, "{img} {path} by {chunk}");
                let sha = format!("{:x}", Sha256::digest(&data));
                assert_eq!(
                    sha,
                    want["sha256"].as_str().unwrap(),
                    "{img} {path} by {chunk}"
                );
            }
            checked += 1;
        }
        assert!(compressed_units, "{img}: no file is stored compressed");
    }
    assert_eq!(checked, 8);
}

/// A compressed unit's LZNT1 data damaged on disk reads as an error naming the unit, not
/// as wrong content, and the other files still read.
#[test]
fn damaged_compressed_unit_is_an_error() {
    let want = &truth()["ntfs-4k.img.zst"];
    let mut img = image("ntfs-4k.img.zst");
    let fs = NtfsFs::open(Arc::new(img.clone())).unwrap();
    let first = read_all(&fs, "/Compressed/text.txt", 1 << 16);
    drop(fs);
    // The first unit's LZNT1 data starts with a compressed chunk header (bit 15 set,
    // signature 3 in bits 12-14) followed by "line 0: "'s flag byte and literals.
    let at = img
        .windows(10)
        .position(|w| w[1] & 0xF0 == 0xB0 && w[2] == 0 && &w[3..10] == b"line 0:")
        .expect("text.txt's first LZNT1 chunk");
    assert_eq!(at % 4096, 0, "a unit starts a cluster");
    // its first item is now a copy token, at the chunk's first byte
    img[at + 2] = 0x01;
    let fs = NtfsFs::open(Arc::new(img)).unwrap();
    let mut r = fs.open(b"/Compressed/text.txt").unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let e = r.read(&mut buf).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("compression unit 0") && msg.contains("LZNT1"),
        "{msg}"
    );
    assert_eq!(
        first.len() as u64,
        want["/Compressed/text.txt"]["size"].as_u64().unwrap()
    );
    let random = read_all(&fs, "/Compressed/random.bin", 1 << 16);
    let sha = format!("{:x}", Sha256::digest(&random));
    assert_eq!(
        sha,
        want["/Compressed/random.bin"]["sha256"].as_str().unwrap()
    );
}
