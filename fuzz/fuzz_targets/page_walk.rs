//! Page-table walks over arbitrary bytes: the first 17 bytes pick the root (CR3), a virtual
//! address and the mode; the rest is guest-physical memory from address 0. Every walk ends
//! (bounded levels) with a translation or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origami_core::memory::MemoryDump;
use origami_core::paging::{PagingMode, VirtualMemory};

fuzz_target!(|data: &[u8]| {
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
});
