//! Guest physical memory: dump formats, VMCOREINFO and page-table walks (origami-core).

use origami_core::memory::{MemoryDump, PhysicalMemory, VmcoreInfo};
use origami_core::paging::{PagingMode, VirtualMemory};

/// Exercises an opened dump the way a caller would: reads at the edges of its ranges and
/// past its end, translated reads through each CPU's page tables, VMCOREINFO look-ups and
/// a snapshot.
fn exercise(dump: &MemoryDump) {
    let ranges = dump.ranges();
    let mut buf = [0u8; 64];
    for r in ranges.iter().take(8) {
        let _ = dump.read_phys(r.start, &mut buf);
        let _ = dump.read_phys(r.end.saturating_sub(8), &mut buf);
    }
    let _ = dump.read_phys(u64::MAX - 4, &mut buf);
    for cpu in dump.cpus().iter().take(4) {
        if let Some(mode) = cpu.paging_mode() {
            let v = VirtualMemory::new(dump, cpu.cr3, mode);
            let _ = v.read(cpu.rip, &mut buf);
            let _ = v.read(cpu.gs_base, &mut buf);
        }
    }
    if let Some(info) = dump.vmcoreinfo() {
        let _ = info.symbol("init_top_pgt");
        let _ = info.number("phys_base");
    }
    let _ = dump.snapshot();
}

/// Any bytes, with `magic` written over their start, through [`MemoryDump`].
fn dump_with_magic(data: &[u8], magic: &[u8]) {
    let mut bytes = data.to_vec();
    if bytes.len() >= magic.len() {
        bytes[..magic.len()].copy_from_slice(magic);
    }
    if let Ok(dump) = MemoryDump::from_bytes(bytes, "fuzz") {
        exercise(&dump);
    }
}

/// Any bytes, given the ELF magic, through MemoryDump: errors, never panics, and reads of
/// whatever opens stay in bounds.
pub fn memory_elf(data: &[u8]) {
    dump_with_magic(data, b"\x7fELF");
}

/// Any bytes, given the kdump magic, through MemoryDump: errors, never panics, and reads of
/// whatever opens stay in bounds.
pub fn memory_kdump(data: &[u8]) {
    dump_with_magic(data, b"KDUMP   ");
}

/// Any bytes, given the LiME magic, through MemoryDump: errors, never panics, and reads of
/// whatever opens stay in bounds.
pub fn memory_lime(data: &[u8]) {
    dump_with_magic(data, b"EMiL");
}

/// Page-table walks over arbitrary bytes: the first 17 bytes pick the root (CR3), a virtual
/// address and the mode; the rest is guest-physical memory from address 0. Every walk ends
/// (bounded levels) with a translation or an error, never a panic.
pub fn page_walk(data: &[u8]) {
    let Some((head, ram)) = data.split_at_checked(17) else {
        return;
    };
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[i..i + 8]);
        u64::from_le_bytes(b)
    };
    // Keep the root inside the small memory most of the time so walks go deep.
    let root = word(0) % (ram.len() as u64 + 1);
    let vaddr = word(8);
    let mode = if head[16] & 1 == 0 {
        PagingMode::Level4
    } else {
        PagingMode::Level5
    };
    let Ok(phys) = MemoryDump::from_bytes(ram.to_vec(), "fuzz") else {
        return;
    };
    let virt = VirtualMemory::new(&phys, root, mode);
    let _ = virt.translate(vaddr);
    let mut buf = [0u8; 8200];
    let _ = virt.read(vaddr, &mut buf);
    let _ = virt.read(vaddr.wrapping_add(4090), &mut buf[..16]);
}

/// Any bytes through the VMCOREINFO parser and its typed getters: errors, never panics.
pub fn vmcoreinfo(data: &[u8]) {
    if let Ok(info) = VmcoreInfo::parse(data) {
        for (k, _) in info.entries().take(16) {
            let _ = info.get(k);
        }
        let _ = info.symbol("init_task");
        let _ = info.number("phys_base");
        let _ = info.size("page");
        let _ = info.offset("page.flags");
        let _ = info.length("mem_section");
        let _ = info.kernel_offset();
        let _ = info.page_size();
    }
}
