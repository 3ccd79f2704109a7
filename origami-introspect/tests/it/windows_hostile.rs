//! Hostile Windows input: an NTFS directory whose entry points back at itself (an MFT
//! record loop), a hive whose cell sizes overlap, a value claiming 4 GiB. Each ends with a
//! typed error, in bounded memory and time. Inputs are the fuzz templates
//! (`fuzz/templates/make-windows-templates.sh`) patched here.

use std::sync::Arc;

use origami_introspect::disk::windows::hive::{Hive, HiveError, MAX_VALUE};
use origami_introspect::fs::{GuestTree, NtfsFs, WalkControl, WalkLimits};
use origami_introspect::Error;

fn template(name: &str) -> Vec<u8> {
    let path = origami_testsupport::workspace_root()
        .join("fuzz/templates")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Where the directory index entry naming `name` starts (an entry inside a resident
/// `$INDEX_ROOT`: 16-byte entry header, then the `$FILE_NAME` key whose name is at 0x42).
fn index_entry(img: &[u8], name: &str) -> usize {
    let needle = utf16(name);
    let key_len = 0x42 + needle.len();
    (0x52..img.len() - needle.len())
        .filter(|&i| img[i..i + needle.len()] == needle[..] && img[i - 2] as usize == name.len())
        .map(|i| i - 0x52)
        .find(|&e| u16::from_le_bytes([img[e + 10], img[e + 11]]) as usize == key_len)
        .unwrap_or_else(|| panic!("no index entry for {name}"))
}

#[test]
fn ntfs_directory_pointing_at_its_parent_ends_the_walk() {
    let mut img = template("ntfs.img");
    // /Users's entry for "alice" now names the root (MFT record 5): /Users/alice/Users/...
    // forever.
    let e = index_entry(&img, "alice");
    assert!(
        e % 512 < 504,
        "entry reference must not straddle a fixup slot"
    );
    img[e..e + 6].copy_from_slice(&[5, 0, 0, 0, 0, 0]);
    let fs = NtfsFs::open(Arc::new(img)).unwrap();
    let tree = GuestTree::single(Box::new(fs));
    let limits = WalkLimits {
        max_entries: 10_000,
        max_depth: 64,
        max_dir_entries: 1000,
    };
    let mut paths = Vec::new();
    let errors = tree.walk(b"/", &limits, &mut |e| {
        paths.push(String::from_utf8_lossy(e.path).into_owned());
        WalkControl::Continue
    });
    // The loop is seen (same MFT record met again) or the depth bound ends it: either way
    // a typed error, and far fewer entries than the bound.
    assert!(!errors.is_empty(), "{paths:?}");
    assert!(paths.len() < 200, "{} entries", paths.len());
    assert!(
        errors.iter().all(|e| matches!(
            e,
            Error::Malformed { .. } | Error::LimitExceeded { .. } | Error::FileSystem { .. }
        )),
        "{errors:?}"
    );
}

#[test]
fn ntfs_bad_boot_sectors_are_refused_before_the_library() {
    let good = template("ntfs.img");
    for (at, bytes) in [
        (0x40usize, vec![0xE0u8]),                   // 4 GiB MFT records
        (0x0B, vec![0x01, 0x02]),                    // 513-byte sectors
        (0x28, (1u64 << 50).to_le_bytes().to_vec()), // more sectors than the image
        (0x30, (1u64 << 40).to_le_bytes().to_vec()), // the MFT past the end
    ] {
        let mut img = good.clone();
        img[at..at + bytes.len()].copy_from_slice(&bytes);
        match NtfsFs::open(Arc::new(img)) {
            Err(Error::FileSystem { what, .. }) => assert!(what.contains("boot sector"), "{what}"),
            other => panic!("patch at {at:#x}: {other:?}"),
        }
    }
}

fn hive() -> Vec<u8> {
    template("system.hive")
}

#[test]
fn hive_cell_sizes_that_overlap_are_an_error() {
    let mut h = hive();
    // The first cell of the first bin claims 0x2000 bytes: past its 4 KiB bin, over its
    // neighbours.
    h[0x1020..0x1024].copy_from_slice(&(-0x2000i32).to_le_bytes());
    let e: HiveError = Hive::parse("SYSTEM", h).unwrap_err();
    assert_eq!(e.offset, 0x1020);
    assert!(e.what.contains("overlaps"), "{e}");
    assert!(e
        .to_string()
        .starts_with("SYSTEM: registry hive at offset 0x1020"));
}

/// The offset of the `vk` cell of value `name` (compressed ASCII name).
fn vk(h: &[u8], name: &str) -> usize {
    (0x1000..h.len() - 0x18 - name.len())
        .find(|&i| {
            &h[i..i + 2] == b"vk"
                && usize::from(u16::from_le_bytes([h[i + 2], h[i + 3]])) == name.len()
                && &h[i + 0x14..i + 0x14 + name.len()] == name.as_bytes()
        })
        .unwrap_or_else(|| panic!("no value {name}"))
}

#[test]
fn hive_value_claiming_4_gib_is_an_error_not_an_allocation() {
    let mut h = hive();
    let at = vk(&h, "ImagePath");
    // 0xFFFFFFFF: the "inline" bit and 2 GiB; 0x7FFFFFFF: 2 GiB stored out of line;
    // both are refused before anything is read or allocated.
    for size in [0xFFFF_FFFFu32, 0x7FFF_FFFF, (MAX_VALUE as u32) + 1] {
        h[at + 4..at + 8].copy_from_slice(&size.to_le_bytes());
        let parsed = Hive::parse("SYSTEM", h.clone()).unwrap();
        let services = parsed
            .root()
            .path(r"ControlSet001\Services")
            .unwrap()
            .unwrap();
        let errors: Vec<HiveError> = services
            .subkeys()
            .unwrap()
            .iter()
            .filter_map(|k| k.values().err())
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].what.contains("claims"), "{}", errors[0]);
        assert_eq!(errors[0].offset as usize, at - 4, "{}", errors[0]);
    }
}

#[test]
fn hive_subkey_list_pointing_at_itself_ends() {
    let mut h = hive();
    // The root key's subkey list becomes an "ri" list whose first entry is itself.
    let le32 = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let root = le32(&h, 0x24) as usize;
    let list = le32(&h, 0x1000 + root + 4 + 0x1C);
    let at = 0x1000 + list as usize + 4;
    h[at..at + 2].copy_from_slice(b"ri");
    h[at + 4..at + 8].copy_from_slice(&list.to_le_bytes());
    let parsed = Hive::parse("SYSTEM", h).unwrap();
    let mut errors = 0;
    let mut stack = vec![(parsed.root(), 0)];
    while let Some((k, depth)) = stack.pop() {
        match k.subkeys() {
            Ok(s) if depth < 16 => stack.extend(s.into_iter().map(|k| (k, depth + 1))),
            Ok(_) => {}
            Err(e) => {
                assert!(e.what.contains("nest") || e.what.contains("cell"), "{e}");
                errors += 1;
            }
        }
    }
    assert!(errors > 0);
}

/// Undoes (`decode`) or redoes the update-sequence fixups of a multi-sector record.
fn fixups(rec: &mut [u8], decode: bool) {
    let usa = usize::from(u16::from_le_bytes([rec[4], rec[5]]));
    let count = usize::from(u16::from_le_bytes([rec[6], rec[7]]));
    let usn = [rec[usa], rec[usa + 1]];
    for i in 1..count {
        let end = i * 512 - 2;
        if decode {
            let saved = [rec[usa + 2 * i], rec[usa + 2 * i + 1]];
            rec[end..end + 2].copy_from_slice(&saved);
        } else {
            let (a, b) = (rec[end], rec[end + 1]);
            rec[usa + 2 * i] = a;
            rec[usa + 2 * i + 1] = b;
            rec[end..end + 2].copy_from_slice(&usn);
        }
    }
}

#[test]
fn ntfs_index_node_pointing_at_itself_ends_with_an_error() {
    let mut img = template("ntfs.img");
    let name = utf16("file-with-a-long-name-");
    // /Many's INDX block: the one holding its file names.
    let at = (0..img.len() - 4096)
        .step_by(512)
        .find(|&i| {
            &img[i..i + 4] == b"INDX"
                && img[i..i + 4096].windows(name.len()).any(|w| w == &name[..])
        })
        .expect("an INDX block of /Many");
    let mut rec = img[at..at + 4096].to_vec();
    fixups(&mut rec, true);
    let vcn: [u8; 8] = rec[16..24].try_into().unwrap();
    let node = 24;
    let first = node + u32::from_le_bytes(rec[node..node + 4].try_into().unwrap()) as usize;
    let used = u32::from_le_bytes(rec[node + 4..node + 8].try_into().unwrap()) as usize;
    // Walk to the last entry (flag 2) and give it a subnode (flag 1): this very block.
    let mut e = first;
    loop {
        let len = usize::from(u16::from_le_bytes([rec[e + 8], rec[e + 9]]));
        if rec[e + 12] & 2 != 0 {
            break;
        }
        e += len;
    }
    let len = usize::from(u16::from_le_bytes([rec[e + 8], rec[e + 9]]));
    rec[e + 8..e + 10].copy_from_slice(&((len + 8) as u16).to_le_bytes());
    rec[e + 12] |= 1;
    rec[e + len..e + len + 8].copy_from_slice(&vcn);
    rec[node + 4..node + 8].copy_from_slice(&((used + 8) as u32).to_le_bytes());
    rec[node + 12] |= 1;
    fixups(&mut rec, false);
    img[at..at + 4096].copy_from_slice(&rec);

    let fs = NtfsFs::open(Arc::new(img)).unwrap();
    use origami_introspect::fs::FileSystem;
    let e = fs.read_dir(b"/Many", 1000).unwrap_err();
    assert!(
        matches!(e, Error::LimitExceeded { .. } | Error::FileSystem { .. }),
        "{e:?}"
    );
}

/// A file whose non-resident `$DATA` is marked LZNT1-compressed (the attribute header's
/// flags) but has no compression unit (its header's exponent is 0: it was written plain)
/// is still listed, but reading it is an error naming the unit, not the stored clusters
/// passed off as its content. (Compressed files that are real: `ntfs_lznt1.rs`.)
#[test]
fn ntfs_compressed_data_is_reported_not_misread() {
    let mut img = template("ntfs.img");
    let name = utf16("big.bin");
    // big.bin's MFT record: a FILE record with a $FILE_NAME attribute naming it (a
    // directory's index names it too), and its unnamed $DATA attribute.
    let record = |at: usize| -> Option<(Vec<u8>, usize)> {
        if &img[at..at + 4] != b"FILE" {
            return None;
        }
        let mut rec = img[at..at + 1024].to_vec();
        fixups(&mut rec, true);
        let mut a = usize::from(u16::from_le_bytes([rec[0x14], rec[0x15]]));
        let (mut named, mut data) = (false, None);
        while a + 16 < rec.len() {
            let ty = u32::from_le_bytes(rec[a..a + 4].try_into().unwrap());
            let len = u32::from_le_bytes(rec[a + 4..a + 8].try_into().unwrap()) as usize;
            if ty == 0xffff_ffff || len == 0 {
                break;
            }
            if ty == 0x30 && rec[a + 8] == 0 {
                let v = a + usize::from(u16::from_le_bytes([rec[a + 0x14], rec[a + 0x15]]));
                named |= rec.get(v + 0x42..v + 0x42 + name.len()) == Some(&name[..])
                    && usize::from(rec[v + 0x40]) == 7;
            }
            if ty == 0x80 && rec[a + 9] == 0 {
                data = Some(a);
            }
            a += len;
        }
        Some((rec, data?)).filter(|_| named)
    };
    let (at, (mut rec, data)) = (0..img.len() - 1024)
        .step_by(512)
        .find_map(|i| record(i).map(|r| (i, r)))
        .expect("the MFT record of big.bin");
    assert_eq!(rec[data + 8], 1, "big.bin's $DATA is non-resident");
    rec[data + 0x0c] |= 1;
    fixups(&mut rec, false);
    img[at..at + 1024].copy_from_slice(&rec);

    let fs = NtfsFs::open(Arc::new(img)).unwrap();
    use origami_introspect::fs::FileSystem;
    let st = fs.lstat(b"/Windows/big.bin").unwrap();
    assert_eq!(st.size, 20000);
    let mut out = Vec::new();
    let e = match fs.open(b"/Windows/big.bin") {
        Ok(mut r) => std::io::Read::read_to_end(&mut r, &mut out).unwrap_err(),
        Err(e) => std::io::Error::other(e),
    };
    assert!(
        e.to_string().contains("compressed $DATA (header at offset")
            && e.to_string().contains("compression unit of 2^0 clusters"),
        "{e}"
    );
    // the other files still read
    assert!(fs.open(b"/Users/alice/Documents/notes.txt").is_ok());
}
