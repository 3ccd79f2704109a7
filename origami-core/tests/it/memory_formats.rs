//! Small dumps built from the formats' descriptions (the fuzz seeds under fuzz/seeds, made by
//! fuzz/seeds/make-seeds.py): uncompressed kdump pages, LiME ranges with gaps, a hand-made
//! page-table chain with a 2 MiB page, and hostile variants of each.

use std::path::PathBuf;

use origami_core::memory::{DumpFormat, MemoryDump, PhysRange, PhysicalMemory};
use origami_core::paging::{PagingMode, VirtualMemory};
use origami_core::Error;

fn seed(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn kdump_with_zlib_and_raw_pages() {
    let dump = MemoryDump::from_bytes(seed("memory_kdump/four-pages.kdump"), "k").unwrap();
    assert_eq!(dump.format(), DumpFormat::Kdump);
    assert_eq!(
        dump.ranges(),
        vec![PhysRange {
            start: 0,
            end: 0x4000
        }]
    );
    let mut page = vec![0u8; 0x1000];
    dump.read_phys(0, &mut page).unwrap();
    assert!(page.iter().all(|&b| b == 0));
    // Across the page 1/2 boundary: raw pages of 1s and 2s.
    let mut b = [0u8; 4];
    dump.read_phys(0x1ffe, &mut b).unwrap();
    assert_eq!(b, [1, 1, 2, 2]);
    match dump.read_phys(0x3ffe, &mut b) {
        Err(Error::PhysicalHole { addr, .. }) => assert_eq!(addr, 0x4000),
        other => panic!("{other:?}"),
    }
    let info = dump.vmcoreinfo().unwrap();
    assert_eq!(info.osrelease(), Some("6.1.0"));
    assert!(dump.cpus().is_empty());
}

#[test]
fn kdump_lies_are_errors() {
    let good = seed("memory_kdump/four-pages.kdump");
    // Bitmap blocks past the end of the file.
    let mut b = good.clone();
    b[436..440].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    assert!(MemoryDump::from_bytes(b, "k").is_err());
    // A block size that is no page size.
    let mut b = good.clone();
    b[428..432].copy_from_slice(&1000u32.to_le_bytes());
    assert!(MemoryDump::from_bytes(b, "k").is_err());
    // A page descriptor pointing past the end: opening works, reading that page names it.
    let mut b = good.clone();
    let desc = 4 * 4096 + 24;
    b[desc..desc + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let d = MemoryDump::from_bytes(b, "k").unwrap();
    let mut x = [0u8; 8];
    assert!(d.read_phys(0x1000, &mut x).is_err());
    // A corrupt zlib page.
    let mut b = good;
    let data = 4 * 4096 + 4 * 24;
    b[data..data + 4].copy_from_slice(b"junk");
    let d = MemoryDump::from_bytes(b, "k").unwrap();
    let e = d.read_phys(0, &mut x).unwrap_err();
    assert!(e.to_string().contains("zlib"), "{e}");
}

#[test]
fn lime_ranges_with_a_gap() {
    let dump = MemoryDump::from_bytes(seed("memory_lime/two-ranges.lime"), "l").unwrap();
    assert_eq!(dump.format(), DumpFormat::Lime);
    assert_eq!(
        dump.ranges(),
        vec![
            PhysRange {
                start: 0x1000,
                end: 0x1040
            },
            PhysRange {
                start: 0x100000,
                end: 0x100020
            }
        ]
    );
    let mut b = [0u8; 2];
    dump.read_phys(0x100000, &mut b).unwrap();
    assert_eq!(&b, b"BB");
    assert!(dump.read_phys(0x103f, &mut b).is_err());
}

#[test]
fn hand_made_tables_translate_4k_and_2m_pages() {
    let input = seed("page_walk/four-levels");
    let ram = input[17..].to_vec();
    let phys = MemoryDump::from_bytes(ram, "tables").unwrap();
    let v = VirtualMemory::new(
        &phys,
        0x1000 | 0x18, /* PCID bits, masked */
        PagingMode::Level4,
    );
    assert_eq!(v.root(), 0x1000);
    let t = v.translate_page(0x10).unwrap();
    assert_eq!((t.phys, t.page_size), (0x5010, 4096));
    let mut b = [0u8; 16];
    v.read(0, &mut b).unwrap();
    assert_eq!(&b, b"Linux version 6.");
    // PD entry 1 is a 2 MiB page at physical 0: vaddr 0x200000 + x -> x.
    let t = v.translate_page(0x20_1234).unwrap();
    assert_eq!((t.phys, t.page_size), (0x1234, 2 << 20));
    // PT entry 1 is not present: the error names the address and the level.
    match v.translate(0x1000) {
        Err(Error::NotMapped {
            vaddr,
            level,
            entry_addr,
            ..
        }) => {
            assert_eq!((vaddr, level, entry_addr), (0x1000, "PT", 0x4008));
        }
        other => panic!("{other:?}"),
    }
    // A self-referencing PML4 (a cycle in hostile tables) still ends after four reads.
    let mut ram = vec![0u8; 0x2000];
    ram[0x1000..0x1008].copy_from_slice(&0x1003u64.to_le_bytes());
    let looped = MemoryDump::from_bytes(ram, "loop").unwrap();
    let v = VirtualMemory::new(&looped, 0x1000, PagingMode::Level5);
    assert_eq!(v.translate(0).unwrap(), 0x1000);
    // PS set in a PML4 entry is reserved.
    let mut ram = vec![0u8; 0x2000];
    ram[0x1000..0x1008].copy_from_slice(&0x0083u64.to_le_bytes());
    let bad = MemoryDump::from_bytes(ram, "ps").unwrap();
    let v = VirtualMemory::new(&bad, 0x1000, PagingMode::Level4);
    assert!(matches!(v.translate(0), Err(Error::BadTranslation { .. })));
    // Tables outside physical memory: the error names the level and the physical address.
    let v = VirtualMemory::new(&bad, 0x10_0000, PagingMode::Level4);
    let e = v.translate(0).unwrap_err().to_string();
    assert!(e.contains("PML4") && e.contains("0x100000"), "{e}");
}

#[test]
fn elf_seed_keeps_the_fixture_notes() {
    let dump = MemoryDump::from_bytes(seed("memory_elf/qemu-shrunk.elf"), "e").unwrap();
    assert_eq!(dump.format(), DumpFormat::ElfCore);
    assert_eq!(dump.cpus().len(), 2);
    assert_eq!(dump.ranges().len(), 2);
    assert!(dump.vmcoreinfo().is_some());
}
