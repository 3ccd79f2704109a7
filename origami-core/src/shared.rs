//! Copying bytes out of memory that another process may write while we read: a running
//! VM's RAM file mapped shared (QEMU's vCPUs write it), or a disk image mapped while
//! something else still writes it.
//!
//! Rust assumes the bytes behind a `&[u8]` do not change while the reference lives, so no
//! reference to such memory is ever formed. Bytes are copied out with volatile loads,
//! word by word, into the caller's own buffer: the compiler must perform each load once,
//! exactly where it is written, and may not assume the value stable, merge loads or re-read
//! the source later. From then on the bytes are ordinary values in our memory.
//!
//! What this does not give: a consistent copy. A write landing during the copy leaves a
//! *torn* buffer (some words old, some new); every bit pattern is a valid `u8`, and the
//! callers treat guest bytes as hostile and live reads as possibly torn
//! ([`crate::memory::PhysicalMemory::is_live`], `MemoryDump::read_phys_stable`). Nor does
//! Rust's memory model define a race with a process outside the program: volatile loads
//! are the established practice for memory shared with another process or a device (the
//! Linux kernel's `READ_ONCE`, rust-vmm's `vm-memory` for guest RAM), and atomics cannot
//! be used here because the mapping is read-only (`AtomicU64::from_ptr` requires memory
//! valid for writes).

const WORD: usize = std::mem::size_of::<u64>();

/// Copies `dst.len()` bytes from `src` into `dst` with volatile loads (8-byte words where
/// `src` is aligned, single bytes at the edges).
///
/// # Safety
///
/// `src..src + dst.len()` must be valid for reads for the whole call (inside one live
/// mapping) and must not overlap `dst`. Other processes may write it meanwhile.
pub(crate) unsafe fn copy_from_shared(src: *const u8, dst: &mut [u8]) {
    let len = dst.len();
    let head = src.align_offset(WORD).min(len);
    let mut i = 0;
    while i < head {
        // SAFETY: `i < len`, so `src + i` lies in the readable range (the caller's promise).
        dst[i] = unsafe { src.add(i).read_volatile() };
        i += 1;
    }
    while i + WORD <= len {
        // SAFETY: `src + i` is 8-byte aligned (the head brought it there, and `i` grows in
        // words) and `src + i .. src + i + 8` lies in the readable range.
        let w = unsafe { src.add(i).cast::<u64>().read_volatile() };
        dst[i..i + WORD].copy_from_slice(&w.to_ne_bytes());
        i += WORD;
    }
    while i < len {
        // SAFETY: as in the head loop.
        dst[i] = unsafe { src.add(i).read_volatile() };
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_any_alignment_and_length() {
        let src: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for start in 0..17 {
            for len in [0usize, 1, 7, 8, 9, 15, 16, 17, 64, 200] {
                let mut dst = vec![0u8; len];
                // SAFETY: `start + len <= 300` and `dst` is a separate allocation.
                unsafe { copy_from_shared(src.as_ptr().add(start), &mut dst) };
                assert_eq!(dst, &src[start..start + len], "{start} {len}");
            }
        }
    }
}
