//! Reading the kernel's virtual address space out of guest physical memory.
//!
//! Two regions are linear and are translated by arithmetic, which is what makes a crawl
//! fast: the kernel image (`__START_KERNEL_map` + offset, placed at `phys_base`) and the
//! direct map of all RAM (`page_offset_base` + physical address). Everything else (vmalloc,
//! modules, user space) goes through the page tables with `origami_core::paging`. Reads
//! that leave RAM fail with an error naming the virtual address; list walks are bounded and
//! cycle-checked, and on live memory a read that looks torn is retried before it is reported.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use origami_core::bytes::le64;
use origami_core::memory::PhysicalMemory;
use origami_core::paging::{PagingMode, VirtualMemory};

use crate::error::{Error, Result};
use crate::limits::Deadline;

/// `__START_KERNEL_map`: where x86-64 maps the kernel image.
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;

/// The size of the kernel image mapping (KERNEL_IMAGE_SIZE with KASLR).
pub const KERNEL_IMAGE_SIZE: u64 = 1 << 30;

/// Bytes of one list_head (`next`, `prev`).
const LIST_HEAD: usize = 16;

/// A kernel address space over guest physical memory.
pub struct Kmem<'a> {
    phys: &'a dyn PhysicalMemory,
    vm: VirtualMemory<&'a dyn PhysicalMemory>,
    /// Physical address of `__START_KERNEL_map` (the runtime `phys_base`).
    image_phys: u64,
    page_offset_base: u64,
    /// One past the highest guest-physical address of RAM.
    ram_end: u64,
    mode: PagingMode,
    live: bool,
    /// Translations of the pages outside the linear regions (vmalloc, modules) made by
    /// this view: each page is walked once per view (a view lives for one crawl or one
    /// tick, so a page table the guest changes is read again by the next).
    tlb: Mutex<HashMap<u64, u64>>,
}

/// The most translations a view keeps (then it starts over).
const MAX_TLB: usize = 4096;

/// x86-64's small page.
const PAGE: u64 = 4096;

impl std::fmt::Debug for Kmem<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kmem")
            .field("image_phys", &format_args!("{:#x}", self.image_phys))
            .field(
                "page_offset_base",
                &format_args!("{:#x}", self.page_offset_base),
            )
            .field("ram_end", &format_args!("{:#x}", self.ram_end))
            .finish()
    }
}

/// An error for a kernel structure found wanting at `addr`.
pub fn bad(what: impl Into<String>, addr: u64, why: impl Into<String>) -> Error {
    Error::Malformed {
        file: what.into(),
        location: format!("address {addr:#x}"),
        what: why.into(),
    }
}

impl<'a> Kmem<'a> {
    /// A view of the kernel's address space: `root` is the physical address of the top
    /// page table, `image_phys` the physical address `__START_KERNEL_map` corresponds to.
    pub fn new(
        phys: &'a dyn PhysicalMemory,
        root: u64,
        mode: PagingMode,
        image_phys: u64,
        page_offset_base: u64,
    ) -> Kmem<'a> {
        let ram_end = phys.ranges().iter().map(|r| r.end).max().unwrap_or(0);
        Kmem {
            phys,
            vm: VirtualMemory::new(phys, root, mode),
            image_phys,
            page_offset_base,
            ram_end,
            mode,
            live: phys.is_live(),
            tlb: Mutex::new(HashMap::new()),
        }
    }

    /// The physical address of the 4 KiB page at `page` (page-aligned, not linear),
    /// walked once per view.
    fn translate_cached(&self, page: u64) -> Result<u64> {
        let lock = || self.tlb.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&p) = lock().get(&page) {
            return Ok(p);
        }
        let p = self.vm.translate(page)?;
        let mut tlb = lock();
        if tlb.len() >= MAX_TLB {
            tlb.clear();
        }
        tlb.insert(page, p);
        Ok(p)
    }

    /// The physical memory underneath.
    pub fn phys(&self) -> &'a dyn PhysicalMemory {
        self.phys
    }

    /// The paging mode (4 or 5 levels).
    pub fn mode(&self) -> PagingMode {
        self.mode
    }

    /// The direct map's base.
    pub fn page_offset_base(&self) -> u64 {
        self.page_offset_base
    }

    /// True when the memory is a running guest's (reads may be torn).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The physical address of a direct-map address, when it is one.
    pub fn direct_to_phys(&self, v: u64) -> Option<u64> {
        let p = v.checked_sub(self.page_offset_base)?;
        (p < self.ram_end).then_some(p)
    }

    /// Where `v` lives when it is linear (image or direct map), else `None`.
    fn linear(&self, v: u64) -> Option<u64> {
        if (START_KERNEL_MAP..START_KERNEL_MAP + KERNEL_IMAGE_SIZE).contains(&v) {
            return Some((v - START_KERNEL_MAP).wrapping_add(self.image_phys));
        }
        self.direct_to_phys(v)
    }

    /// Translates a kernel virtual address.
    pub fn translate(&self, v: u64) -> Result<u64> {
        match self.linear(v) {
            Some(p) => Ok(p),
            None => Ok(self.translate_cached(v & !(PAGE - 1))? | (v & (PAGE - 1))),
        }
    }

    /// Reads `buf.len()` bytes at kernel virtual address `v`.
    pub fn read(&self, v: u64, buf: &mut [u8]) -> Result<()> {
        if let Some(p) = self.linear(v) {
            // Linear regions are physically contiguous for their whole length.
            if self.linear(v.wrapping_add(buf.len() as u64).saturating_sub(1))
                == Some(p.wrapping_add((buf.len() as u64).saturating_sub(1)))
            {
                return Ok(self.phys.read_phys(p, buf)?);
            }
        }
        if v.checked_add(buf.len() as u64).is_none() {
            // Let the page walker say how the read passes the end of the address space.
            return Ok(self.vm.read(v, buf)?);
        }
        let mut done = 0usize;
        // One turn per page crossed.
        while done < buf.len() {
            let va = v + done as u64;
            let at = va & (PAGE - 1);
            let n = ((PAGE - at) as usize).min(buf.len() - done);
            let base = self.translate_cached(va - at)?;
            self.phys
                .read_phys(base | at, &mut buf[done..done + n])
                .map_err(|e| origami_core::Error::VirtualRead {
                    vaddr: va,
                    what: "data",
                    source: Box::new(e),
                })?;
            done += n;
        }
        Ok(())
    }

    /// Reads a little-endian u64.
    pub fn u64(&self, v: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(v, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a little-endian u32.
    pub fn u32(&self, v: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(v, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian unsigned integer of `size` bytes (a field whose width the
    /// kernel's BTF gives; clamped to 1..=8).
    pub fn uint(&self, v: u64, size: u64) -> Result<u64> {
        let n = usize::try_from(size).unwrap_or(8).clamp(1, 8);
        let mut b = [0u8; 8];
        self.read(v, b.get_mut(..n).unwrap_or_default())?;
        Ok(le64(&b, 0))
    }

    /// Reads bytes into a new buffer of `len` (callers bound `len`).
    pub fn bytes(&self, v: u64, len: usize) -> Result<Vec<u8>> {
        let mut b = vec![0u8; len];
        self.read(v, &mut b)?;
        Ok(b)
    }

    /// Reads a NUL-terminated string of at most `max` bytes.
    pub fn cstr(&self, v: u64, max: usize) -> Result<String> {
        let b = self.bytes(v, max)?;
        let end = memchr::memchr(0, &b).unwrap_or(b.len());
        Ok(String::from_utf8_lossy(b.get(..end).unwrap_or_default()).into_owned())
    }

    /// Walks a circular `list_head` list from its head at `head`, returning the address of
    /// each node (not the head), at most `max` of them.
    ///
    /// The walk checks each node's back link (`next->prev == node`), re-reading on live
    /// memory; it stops at a cycle that does not return to the head, at a pointer that leaves
    /// RAM, or at the bound, returning what it found and the error that stopped it.
    pub fn list(&self, what: &str, head: u64, max: usize) -> (Vec<u64>, Option<Error>) {
        self.list_until(what, head, max, &Deadline::none())
    }

    /// As [`Kmem::list`], stopping too at `deadline` ([`Error::OverTime`]); the bound is an
    /// [`Error::LimitExceeded`] naming the list.
    pub fn list_until(
        &self,
        what: &str,
        head: u64,
        max: usize,
        deadline: &Deadline,
    ) -> (Vec<u64>, Option<Error>) {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut cur = head;
        loop {
            if let Err(e) = deadline.check() {
                return (out, Some(e));
            }
            let next = match self.next_checked(cur) {
                Ok(n) => n,
                Err(e) => return (out, Some(e)),
            };
            if next == head {
                return (out, None);
            }
            if !seen.insert(next) {
                return (
                    out,
                    Some(bad(what, next, "list loops without returning to its head")),
                );
            }
            if out.len() >= max {
                return (
                    out,
                    Some(Error::LimitExceeded {
                        what: format!("{what} list at {head:#x}: entries"),
                        limit: max as u64,
                    }),
                );
            }
            out.push(next);
            cur = next;
        }
    }

    /// `node->next`, checked by `next->prev == node`, retried on live memory.
    fn next_checked(&self, node: u64) -> Result<u64> {
        let tries = if self.live { 4 } else { 1 };
        let mut last = None;
        for _ in 0..tries {
            let next = self.u64(node)?;
            let mut b = [0u8; LIST_HEAD];
            match self.read(next, &mut b) {
                Ok(()) => {
                    let prev = le64(&b, 8);
                    if prev == node {
                        return Ok(next);
                    }
                    last = Some(bad(
                        "list_head",
                        next,
                        format!("prev is {prev:#x}, not {node:#x} (torn or corrupt list)"),
                    ));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| bad("list_head", node, "unreadable")))
    }
}
