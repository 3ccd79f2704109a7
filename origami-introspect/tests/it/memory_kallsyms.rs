//! kallsyms recovery on the fixture dumps, checked against the guest's own runtime symbol
//! addresses (truth.json `kernel.symbols_runtime`, read from /proc/kallsyms in the guest)
//! and against the kernel's System.map shifted by the guest's KASLR offset.

use origami_introspect::linux::kallsyms::{decode, find_tables, SymbolTable};

/// The test's own minimal reader of a QEMU ELF dump's PT_LOAD segments (physical addresses),
/// independent of the library's memory readers.
fn phys_window(elf: &[u8], start: u64, len: usize) -> Vec<u8> {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    let phoff = u64_at(0x20) as usize;
    let phnum = u16_at(0x38) as usize;
    let mut out = vec![0u8; len];
    for i in 0..phnum {
        let ph = phoff + 56 * i;
        if u32::from_le_bytes(elf[ph..ph + 4].try_into().unwrap()) != 1 {
            continue;
        }
        let (off, paddr, filesz) = (u64_at(ph + 8), u64_at(ph + 24), u64_at(ph + 32));
        let lo = start.max(paddr);
        let hi = (start + len as u64).min(paddr + filesz);
        if lo < hi {
            let src = (off + lo - paddr) as usize;
            let dst = (lo - start) as usize;
            out[dst..dst + (hi - lo) as usize].copy_from_slice(&elf[src..src + (hi - lo) as usize]);
        }
    }
    out
}

fn hex(v: &serde_json::Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn kallsyms_recovered_from_each_dump_match_the_guest() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let map = SymbolTable::parse_system_map(
        &std::fs::read_to_string(fx.path("memdump/kernel/System.map-6.1.0-56-amd64")).unwrap(),
    );
    for dump in ["memdump", "memdump-novmcoreinfo", "memdump-la57"] {
        let truth = fx.json(&format!("{dump}/truth.json"));
        let elf = std::fs::read(fx.path(&format!("{dump}/memory.elf"))).unwrap();
        // The whole of RAM below 256 MiB as one window: the search must find the tables
        // without being told where the kernel is.
        let w = phys_window(&elf, 0, 256 << 20);
        let t = find_tables(&w).unwrap_or_else(|e| panic!("{dump}: {e}"));
        let syms = SymbolTable::from_symbols(decode(&w, &t).unwrap());
        assert!(syms.len() >= truth["kernel"]["kallsyms_count"].as_u64().unwrap() as usize);
        let runtime = truth["kernel"]["symbols_runtime"].as_object().unwrap();
        for name in [
            "_text",
            "init_task",
            "linux_banner",
            "init_top_pgt",
            "init_uts_ns",
            "modules",
            "init_net",
            "page_offset_base",
            "current_task",
        ] {
            assert_eq!(syms.get(name), Some(hex(&runtime[name])), "{dump}: {name}");
        }
        let off = hex(&truth["kernel"]["kaslr"]["kernel_offset"]);
        let shifted = map.shifted(off);
        for name in [
            "socket_file_ops",
            "tcp_hashinfo",
            "_totalram_pages",
            "vm_zone_stat",
        ] {
            assert_eq!(syms.get(name), shifted.get(name), "{dump}: {name}");
        }
    }
}
