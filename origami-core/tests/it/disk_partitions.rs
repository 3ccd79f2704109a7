//! Partition tables against sfdisk's own reading of the fixtures (`images.json`).

use origami_core::partition::{read_partitions, TableKind};
use origami_core::{Image, ReadAt};

fn artifact<'a>(images: &'a serde_json::Value, file: &str) -> &'a serde_json::Value {
    images["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["file"] == file)
        .unwrap_or_else(|| panic!("{file} not in images.json"))
}

/// Checks a table read from `disk` against sfdisk's JSON.
fn check(disk: &dyn ReadAt, truth: &serde_json::Value, what: &str) {
    let table = read_partitions(disk).unwrap();
    let parts = truth["partitions"].as_array().unwrap();
    let sector = truth["sectorsize"].as_u64().unwrap();
    assert_eq!(table.partitions.len(), parts.len(), "{what}: {table:?}");
    match truth["label"].as_str().unwrap() {
        "gpt" => {
            assert_eq!(table.kind, TableKind::Gpt, "{what}");
            assert_eq!(
                table.disk_id.as_deref(),
                Some(truth["id"].as_str().unwrap().to_lowercase().as_str())
            );
        }
        "dos" => {
            assert_eq!(table.kind, TableKind::Mbr, "{what}");
            let id = truth["id"].as_str().unwrap().trim_start_matches("0x");
            assert_eq!(table.disk_id.as_deref(), Some(id));
        }
        l => panic!("label {l}"),
    }
    assert!(table.warnings.is_empty(), "{what}: {:?}", table.warnings);
    for (p, t) in table.partitions.iter().zip(parts) {
        assert_eq!(u64::from(p.number), t["number"].as_u64().unwrap(), "{what}");
        assert_eq!(
            p.start,
            t["start"].as_u64().unwrap() * sector,
            "{what} p{}",
            p.number
        );
        assert_eq!(
            p.start,
            t["start_byte"].as_u64().unwrap(),
            "{what} p{}",
            p.number
        );
        assert_eq!(
            p.size,
            t["size_bytes"].as_u64().unwrap(),
            "{what} p{}",
            p.number
        );
        let ty = t["type"].as_str().unwrap().to_lowercase();
        if table.kind == TableKind::Gpt {
            assert_eq!(p.type_id, ty, "{what} p{}", p.number);
            assert_eq!(
                p.uuid.as_deref(),
                Some(t["uuid"].as_str().unwrap().to_lowercase().as_str())
            );
            assert_eq!(p.label.as_deref(), t["name"].as_str());
        } else {
            assert_eq!(p.type_id, format!("0x{:0>2}", ty), "{what} p{}", p.number);
            let id = truth["id"].as_str().unwrap().trim_start_matches("0x");
            assert_eq!(p.uuid, Some(format!("{id}-{:02x}", p.number)));
        }
        assert_eq!(
            p.bootable,
            t["bootable"].as_bool().unwrap_or(false),
            "{what} p{}",
            p.number
        );
        assert_ne!(p.type_name, "Unknown", "{what} p{}", p.number);
        // Each partition is a readable slice of the disk, exactly its size.
        let slice = p.open(disk).unwrap();
        assert_eq!(slice.len(), p.size);
        let mut last = [0u8; 1];
        slice.read_at(p.size - 1, &mut last).unwrap();
        assert!(slice.read_at(p.size, &mut last).is_err());
    }
}

#[test]
fn tables_equal_sfdisk() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let images = fx.json("images.json");
    for file in [
        "synth/gpt.img",
        "synth/mbr.img",
        "debian/disk-gpt.raw",
        "debian/disk-mbr.raw",
    ] {
        let disk = Image::open(fx.path(file)).unwrap();
        check(&disk, &artifact(&images, file)["partition_table"], file);
    }
    // The same table read through the qcow2 conversions and the backing chain.
    for (file, truth) in [
        ("synth/gpt-zstd.qcow2", "synth/gpt.img"),
        ("synth/gpt.vmdk", "synth/gpt.img"),
        ("synth/gpt.vhdx", "synth/gpt.img"),
        ("debian/disk-gpt-compressed.qcow2", "debian/disk-gpt.raw"),
        ("debian/disk-overlay.qcow2", "debian/disk-gpt.raw"),
    ] {
        let disk = Image::open(fx.path(file)).unwrap();
        check(&disk, &artifact(&images, truth)["partition_table"], file);
    }
}

#[test]
fn type_names_follow_util_linux() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let names = |file: &str| -> Vec<String> {
        let disk = Image::open(fx.path(file)).unwrap();
        read_partitions(&disk)
            .unwrap()
            .partitions
            .into_iter()
            .map(|p| p.type_name)
            .collect()
    };
    assert_eq!(
        names("debian/disk-gpt.raw"),
        ["EFI System", "Linux filesystem", "Linux swap"]
    );
    assert_eq!(
        names("debian/disk-mbr.raw"),
        [
            "W95 FAT32 (LBA)",
            "Extended",
            "Linux",
            "Linux swap / Solaris"
        ]
    );
    assert_eq!(
        names("synth/gpt.img"),
        ["Microsoft basic data", "Linux filesystem"]
    );
}

#[test]
fn bare_file_systems_have_no_table() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    for file in [
        "synth/fat16.img",
        "synth/fat12.img",
        "synth/ext4-4k.img",
        "synth/fat32.img",
    ] {
        let disk = Image::open(fx.path(file)).unwrap();
        let t = read_partitions(&disk).unwrap();
        assert_eq!(t.kind, TableKind::None, "{file}: {t:?}");
        assert!(t.partitions.is_empty());
    }
}
