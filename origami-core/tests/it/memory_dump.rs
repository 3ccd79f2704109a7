//! Guest physical memory and paging over the fixture dumps, checked against the guest's own
//! ground truth (truth.json from the guest's /proc, QEMU's `info registers`, build.json).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use origami_core::memory::{DumpFormat, MemoryDump, PhysRange, PhysicalMemory};
use origami_core::paging::{PagingMode, VirtualMemory};
use origami_core::Error;
use serde_json::Value;

fn hex(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

fn version_string(truth: &Value) -> String {
    truth["kernel"]["version_string"]
        .as_str()
        .unwrap()
        .trim_end()
        .to_owned()
}

/// Every `Linux version ...` string in physical memory, up to its newline or NUL.
fn banners_in_physical(mem: &dyn PhysicalMemory) -> Vec<String> {
    const NEEDLE: &[u8] = b"Linux version ";
    const CHUNK: u64 = 4 << 20;
    let mut found = Vec::new();
    let mut buf = vec![0u8; CHUNK as usize + 512];
    for r in mem.ranges() {
        let mut at = r.start;
        while at < r.end {
            let n = (r.end - at).min(CHUNK + 512) as usize;
            mem.read_phys(at, &mut buf[..n]).unwrap();
            let hay = &buf[..n];
            let scan_end = n.min(CHUNK as usize);
            let mut i = 0;
            while let Some(p) = hay[i..].windows(NEEDLE.len()).position(|w| w == NEEDLE) {
                let start = i + p;
                if start >= scan_end {
                    break;
                }
                let tail = &hay[start..];
                let end = tail
                    .iter()
                    .position(|&c| c == b'\n' || c == 0)
                    .unwrap_or(tail.len());
                found.push(String::from_utf8_lossy(&tail[..end]).into_owned());
                i = start + 1;
            }
            at += CHUNK.min(r.end - at);
        }
    }
    found
}

fn banner_through_paging(dump: &MemoryDump, truth: &Value, cpu: usize) -> String {
    let want = version_string(truth);
    let state = &dump.cpus()[cpu];
    let mode = state
        .paging_mode()
        .expect("the CPU had long-mode paging on");
    let virt = VirtualMemory::new(dump, state.cr3, mode);
    let banner = hex(&truth["kernel"]["symbols_runtime"]["linux_banner"]);
    let mut got = vec![0u8; want.len()];
    virt.read(banner, &mut got).unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn elf_ranges_cover_the_guest_ram() {
    let fx = origami_testsupport::require_fixtures!();
    let truth = fx.json("memdump/truth.json");
    let dump = MemoryDump::open(fx.path("memdump/memory.elf")).unwrap();
    assert_eq!(dump.format(), DumpFormat::ElfCore);
    assert!(!dump.is_live());
    let ranges = dump.ranges();
    // The guest's RAM size as QEMU reported it (query-memory-size-summary).
    let ram = truth["dump"]["memory_size_summary"]["base-memory"]
        .as_u64()
        .unwrap();
    // RAM is every range that holds some of the guest's "System RAM" (its /proc/iomem);
    // the rest is firmware (the BIOS ROM QEMU also dumps).
    let system_ram: Vec<PhysRange> = truth["memory"]["iomem"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "System RAM" && e["depth"] == 0)
        .map(|e| PhysRange {
            start: hex(&e["start"]),
            end: hex(&e["end"]) + 1,
        })
        .collect();
    assert!(!system_ram.is_empty());
    for s in &system_ram {
        assert!(
            ranges.iter().any(|r| r.start <= s.start && s.end <= r.end),
            "System RAM {s:?} is not held by {ranges:?}"
        );
    }
    let ram_in_dump: u64 = ranges
        .iter()
        .filter(|r| {
            system_ram
                .iter()
                .any(|s| s.start < r.end && r.start < s.end)
        })
        .map(PhysRange::len)
        .sum();
    assert_eq!(ram_in_dump, ram);
    // And exactly the PT_LOADs the fixture recorded.
    let loads: Vec<PhysRange> = truth["dump"]["elf_load_segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let start = hex(&s["paddr"]);
            PhysRange {
                start,
                end: start + s["size"].as_u64().unwrap(),
            }
        })
        .collect();
    assert_eq!(ranges, loads);
}

#[test]
fn elf_reads_fail_across_holes_naming_the_address() {
    let fx = origami_testsupport::require_fixtures!();
    let dump = MemoryDump::open(fx.path("memdump/memory.elf")).unwrap();
    let end = dump.ranges()[0].end;
    let mut buf = [0u8; 16];
    match dump.read_phys(end - 8, &mut buf) {
        Err(Error::PhysicalHole { addr, start, .. }) => {
            assert_eq!(addr, end);
            assert_eq!(start, end - 8);
        }
        other => panic!("expected a hole error, got {other:?}"),
    }
    let msg = dump.read_phys(end, &mut buf).unwrap_err().to_string();
    assert!(msg.contains("memory.elf"), "{msg}");
    assert!(msg.contains(&format!("{end:#x}")), "{msg}");
}

#[test]
fn elf_banner_in_physical_memory_is_proc_version() {
    let fx = origami_testsupport::require_fixtures!();
    let truth = fx.json("memdump/truth.json");
    let dump = MemoryDump::open(fx.path("memdump/memory.elf")).unwrap();
    let banners = banners_in_physical(&dump);
    let want = version_string(&truth);
    assert!(
        banners.contains(&want),
        "{want:?} not among the banners found: {banners:?}"
    );
}

#[test]
fn elf_cpu_states_match_qemu_registers() {
    let fx = origami_testsupport::require_fixtures!();
    let truth = fx.json("memdump/truth.json");
    let dump = MemoryDump::open(fx.path("memdump/memory.elf")).unwrap();
    let regs = truth["dump"]["qemu_registers"].as_object().unwrap();
    assert_eq!(dump.cpus().len(), regs.len());
    for (i, cpu) in dump.cpus().iter().enumerate() {
        let r = &regs[&i.to_string()];
        assert_eq!(cpu.cr3, hex(&r["cr3"]), "cpu {i} cr3");
        assert_eq!(cpu.cr0, hex(&r["cr0"]), "cpu {i} cr0");
        assert_eq!(cpu.cr4, hex(&r["cr4"]), "cpu {i} cr4");
        assert_eq!(cpu.rip, hex(&r["rip"]), "cpu {i} rip");
        assert_eq!(cpu.rsp, hex(&r["rsp"]), "cpu {i} rsp");
        assert_eq!(cpu.gs_base, hex(&r["gs_base"]), "cpu {i} gs_base");
        // QEMU's note has no EFER: the LME|LMA part is reconstructed.
        assert_eq!(cpu.efer & 0x500, hex(&r["efer"]) & 0x500, "cpu {i} efer");
        assert_eq!(cpu.paging_mode(), Some(PagingMode::Level4));
    }
}

#[test]
fn elf_vmcoreinfo_equals_the_note_text() {
    let fx = origami_testsupport::require_fixtures!();
    let truth = fx.json("memdump/truth.json");
    let dump = MemoryDump::open(fx.path("memdump/memory.elf")).unwrap();
    let info = dump
        .vmcoreinfo()
        .expect("the fixture has a VMCOREINFO note");
    let want: BTreeMap<String, String> = truth["dump"]["vmcoreinfo"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let got: BTreeMap<String, String> = info
        .entries()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(got, want);
    let kernel = &truth["kernel"];
    assert_eq!(info.osrelease(), kernel["release"].as_str());
    assert_eq!(
        info.kernel_offset(),
        Some(hex(&kernel["kaslr"]["kernel_offset"]))
    );
    assert_eq!(
        info.symbol("init_top_pgt"),
        Some(hex(&kernel["symbols_runtime"]["init_top_pgt"]))
    );
    // phys_base: where the kernel image's link address 0xffffffff80000000 landed.
    let text = hex(&kernel["symbols_runtime"]["_text"]);
    let code_phys = hex(&kernel["phys_ranges"]["Kernel code"][0]);
    let phys_base = info.number("phys_base").unwrap();
    assert_eq!(
        (text - 0xffff_ffff_8000_0000).wrapping_add(phys_base as u64),
        code_phys
    );
}

#[test]
fn elf_banner_through_paging_with_each_cpus_cr3() {
    let fx = origami_testsupport::require_fixtures!();
    let truth = fx.json("memdump/truth.json");
    let dump = MemoryDump::open(fx.path("memdump/memory.elf")).unwrap();
    for cpu in 0..dump.cpus().len() {
        assert_eq!(
            banner_through_paging(&dump, &truth, cpu),
            version_string(&truth)
        );
    }
}

#[test]
fn elf_kernel_text_and_direct_map_translate_to_ground_truth() {
    let fx = origami_testsupport::require_fixtures!();
    let truth = fx.json("memdump/truth.json");
    let dump = MemoryDump::open(fx.path("memdump/memory.elf")).unwrap();
    let cpu = &dump.cpus()[0];
    let virt = VirtualMemory::new(&dump, cpu.cr3, PagingMode::Level4);
    let kernel = &truth["kernel"];
    // _text maps to the start of "Kernel code" in /proc/iomem.
    let text = hex(&kernel["symbols_runtime"]["_text"]);
    assert_eq!(
        virt.translate(text).unwrap(),
        hex(&kernel["phys_ranges"]["Kernel code"][0])
    );
    // The direct map: page_offset_base + p maps to p (large pages, typically 1 GiB/2 MiB).
    let pob = hex(&kernel["page_offset_base"]);
    for p in [0x1000u64, 0x0123_4567, 0x0ffd_e000] {
        assert_eq!(virt.translate(pob + p).unwrap(), p);
    }
    // A user-space address in the kernel's own tables is not mapped; the error names it.
    match virt.translate(0x1000) {
        Err(Error::NotMapped { vaddr, .. }) => assert_eq!(vaddr, 0x1000),
        other => panic!("{other:?}"),
    }
    // Non-canonical addresses are refused without a walk.
    assert!(matches!(
        virt.translate(0x0000_8000_0000_0000),
        Err(Error::BadTranslation { .. })
    ));
    // Reads across a page boundary agree with per-page reads.
    let banner = hex(&kernel["symbols_runtime"]["linux_banner"]);
    let start = (banner | 0xfff) - 7;
    let mut whole = [0u8; 16];
    virt.read(start, &mut whole).unwrap();
    let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
    dump.read_phys(virt.translate(start).unwrap(), &mut a)
        .unwrap();
    dump.read_phys(virt.translate(start + 8).unwrap(), &mut b)
        .unwrap();
    assert_eq!(&whole[..8], &a);
    assert_eq!(&whole[8..], &b);
}

#[test]
fn novmcoreinfo_dump_still_reads_the_banner() {
    let fx = origami_testsupport::require_fixtures!();
    let truth = fx.json("memdump-novmcoreinfo/truth.json");
    let dump = MemoryDump::open(fx.path("memdump-novmcoreinfo/memory.elf")).unwrap();
    assert!(dump.vmcoreinfo().is_none());
    assert_eq!(
        banner_through_paging(&dump, &truth, 0),
        version_string(&truth)
    );
}

#[test]
fn la57_dump_translates_with_five_levels() {
    let fx = origami_testsupport::require_fixtures!();
    let truth = fx.json("memdump-la57/truth.json");
    assert_eq!(truth["kernel"]["five_level_paging"], true);
    let dump = MemoryDump::open(fx.path("memdump-la57/memory.elf")).unwrap();
    for cpu in dump.cpus() {
        assert_eq!(cpu.paging_mode(), Some(PagingMode::Level5));
    }
    assert_eq!(
        banner_through_paging(&dump, &truth, 0),
        version_string(&truth)
    );
    // The same root walked as 4-level does not reach the banner.
    let cpu = &dump.cpus()[0];
    let four = VirtualMemory::new(&dump, cpu.cr3, PagingMode::Level4);
    let banner = hex(&truth["kernel"]["symbols_runtime"]["linux_banner"]);
    let mut got = vec![0u8; 14];
    let wrong = four.read(banner, &mut got).is_err() || got != b"Linux version ";
    assert!(wrong);
}

/// Compares every byte of `a`'s ranges with `b`, 4 MiB at a time.
fn assert_same_bytes(a: &dyn PhysicalMemory, b: &dyn PhysicalMemory) {
    assert_eq!(a.ranges(), b.ranges());
    let mut x = vec![0u8; 4 << 20];
    let mut y = vec![0u8; 4 << 20];
    for r in a.ranges() {
        let mut at = r.start;
        while at < r.end {
            let n = (r.end - at).min(x.len() as u64) as usize;
            a.read_phys(at, &mut x[..n]).unwrap();
            b.read_phys(at, &mut y[..n]).unwrap();
            assert!(x[..n] == y[..n], "bytes differ in {at:#x}..+{n:#x}");
            at += n as u64;
        }
    }
}

#[test]
fn kdump_holds_the_same_bytes_cpus_and_vmcoreinfo() {
    let fx = origami_testsupport::require_fixtures!();
    let elf = MemoryDump::open(fx.path("memdump/memory.elf")).unwrap();
    let kdump = MemoryDump::open(fx.path("memdump/memory.kdump")).unwrap();
    assert_eq!(kdump.format(), DumpFormat::Kdump);
    assert_same_bytes(&elf, &kdump);
    assert_eq!(kdump.cpus(), elf.cpus());
    assert_eq!(kdump.vmcoreinfo(), elf.vmcoreinfo());
    let truth = fx.json("memdump/truth.json");
    assert_eq!(
        banner_through_paging(&kdump, &truth, 0),
        version_string(&truth)
    );
}

/// A scratch file under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("origami-core-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir.join(name))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = self.0.parent().map(std::fs::remove_dir);
    }
}

/// The ELF's PT_LOADs as the fixture recorded them: (paddr, size, file offset).
fn loads(truth: &Value) -> Vec<(u64, u64, u64)> {
    truth["dump"]["elf_load_segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                hex(&s["paddr"]),
                s["size"].as_u64().unwrap(),
                s["file_offset"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn copy_range(src: &mut std::fs::File, off: u64, len: u64, out: &mut impl Write) {
    use std::io::{Read, Seek, SeekFrom};
    src.seek(SeekFrom::Start(off)).unwrap();
    let copied = std::io::copy(&mut src.take(len), out).unwrap();
    assert_eq!(copied, len);
}

#[test]
fn lime_and_raw_made_from_the_elf_hold_the_same_bytes() {
    let fx = origami_testsupport::require_fixtures!();
    let truth = fx.json("memdump/truth.json");
    let elf_path = fx.path("memdump/memory.elf");
    let elf = MemoryDump::open(&elf_path).unwrap();
    let segs = loads(&truth);
    let mut src = std::fs::File::open(&elf_path).unwrap();

    // LiME: one EMiL header per PT_LOAD (inclusive end address), then its bytes.
    let lime = Scratch::new("memory.lime");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&lime.0).unwrap());
        for &(paddr, size, off) in &segs {
            out.write_all(&0x4C69_4D45u32.to_le_bytes()).unwrap();
            out.write_all(&1u32.to_le_bytes()).unwrap();
            out.write_all(&paddr.to_le_bytes()).unwrap();
            out.write_all(&(paddr + size - 1).to_le_bytes()).unwrap();
            out.write_all(&[0u8; 8]).unwrap();
            copy_range(&mut src, off, size, &mut out);
        }
        out.flush().unwrap();
    }
    let lime_dump = MemoryDump::open(&lime.0).unwrap();
    assert_eq!(lime_dump.format(), DumpFormat::Lime);
    assert_same_bytes(&elf, &lime_dump);
    drop(lime_dump);
    drop(lime);

    // Raw: the RAM segment at physical 0, flat (as `pmemsave` writes it).
    let &(paddr, size, off) = segs.iter().find(|s| s.0 == 0).unwrap();
    let raw = Scratch::new("memory.raw");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&raw.0).unwrap());
        copy_range(&mut src, off, size, &mut out);
        out.flush().unwrap();
    }
    let raw_dump = MemoryDump::open(&raw.0).unwrap();
    assert_eq!(raw_dump.format(), DumpFormat::Raw);
    assert_eq!(
        raw_dump.ranges(),
        vec![PhysRange {
            start: paddr,
            end: size
        }]
    );
    let mut a = vec![0u8; 1 << 20];
    let mut b = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < size {
        elf.read_phys(at, &mut a).unwrap();
        raw_dump.read_phys(at, &mut b).unwrap();
        assert!(a == b, "raw differs at {at:#x}");
        at += a.len() as u64;
    }
    assert_eq!(
        banner_through_paging_raw(&raw_dump, &elf, &truth),
        version_string(&truth)
    );
}

/// The banner through a source without CPU notes, using the ELF's CR3.
fn banner_through_paging_raw(raw: &MemoryDump, elf: &MemoryDump, truth: &Value) -> String {
    let want = version_string(truth);
    let virt = VirtualMemory::new(raw, elf.cpus()[0].cr3, PagingMode::Level4);
    let mut got = vec![0u8; want.len()];
    virt.read(
        hex(&truth["kernel"]["symbols_runtime"]["linux_banner"]),
        &mut got,
    )
    .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn truncated_and_corrupted_elf_cores_are_errors() {
    let fx = origami_testsupport::require_fixtures!();
    let path = fx.path("memdump/memory.elf");
    let head = read_head(&path, 8192);
    // Cut inside the program headers, then inside the notes: each an error or a dump whose
    // reads fail, never a panic.
    for cut in [16usize, 63, 64, 100, 200, 1000, 4000, 5292, 6000] {
        match MemoryDump::from_bytes(head[..cut].to_vec(), "cut.elf") {
            Err(e) => assert!(e.to_string().contains("cut.elf"), "{e}"),
            Ok(d) => panic!("a {cut}-byte ELF opened: {:?}", d.ranges()),
        }
    }
    // A program header count far beyond the file.
    let mut many = head.clone();
    many[56..58].copy_from_slice(&0xfff0u16.to_le_bytes());
    assert!(MemoryDump::from_bytes(many, "many.elf").is_err());
}

fn read_head(path: &Path, n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut v = vec![0u8; n];
    std::fs::File::open(path)
        .unwrap()
        .read_exact(&mut v)
        .unwrap();
    v
}
