//! x86-64 paging: translating virtual addresses through 4- or 5-level page tables read
//! from guest physical memory, and a [`VirtualMemory`] view that reads across pages.
//!
//! A translation reads one entry per level (five at most), so its work is bounded whatever
//! the tables contain: there is no recursion and no loop to follow. 1 GiB (PDPT) and 2 MiB
//! (PD) pages are honoured; a non-present entry is [`Error::NotMapped`] naming the virtual
//! address, the level and the entry; a page-size bit where the architecture reserves it
//! (PML5/PML4) or a non-canonical address is [`Error::BadTranslation`].
//!
//! Limits: only what the walk needs is interpreted: access rights (R/W, U/S, NX),
//! protection keys and the accessed/dirty bits are ignored, as the hardware would for a
//! supervisor read. Physical addresses are taken as 52 bits (MAXPHYADDR's maximum).
//!
//! ```
//! use origami_core::memory::{MemoryDump, PhysicalMemory};
//! use origami_core::paging::{PagingMode, VirtualMemory};
//!
//! // A raw image: a PML4 at 0x1000 -> PDPT at 0x2000 -> a 1 GiB page at physical 0.
//! let mut ram = vec![0u8; 0x3000];
//! ram[0x1000..0x1008].copy_from_slice(&(0x2000u64 | 1).to_le_bytes());
//! ram[0x2000..0x2008].copy_from_slice(&(0x0u64 | 0x81).to_le_bytes());
//! ram[0x10..0x14].copy_from_slice(b"ping");
//! let phys = MemoryDump::from_bytes(ram, "ram")?;
//! let virt = VirtualMemory::new(&phys, 0x1000, PagingMode::Level4);
//! let mut word = [0u8; 4];
//! virt.read(0x10, &mut word)?;
//! assert_eq!(&word, b"ping");
//! assert!(virt.translate(0x4000_0000).is_err()); // PDPT entry 1 is not present
//! # Ok::<(), origami_core::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::memory::PhysicalMemory;

/// Bits 12..51 of an entry or of CR3: the physical frame.
pub(crate) const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const PRESENT: u64 = 1;
const PAGE_SIZE_BIT: u64 = 1 << 7;

/// The paging mode: how many levels of tables a translation walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PagingMode {
    /// 4-level paging (48-bit virtual addresses): PML4, PDPT, PD, PT.
    Level4,
    /// 5-level paging (LA57, 57-bit virtual addresses): PML5, PML4, PDPT, PD, PT.
    Level5,
}

impl PagingMode {
    /// The number of virtual-address bits (48 or 57).
    pub fn virtual_bits(self) -> u32 {
        match self {
            PagingMode::Level4 => 48,
            PagingMode::Level5 => 57,
        }
    }

    /// True when `vaddr` is canonical: its top bits copy bit `virtual_bits() - 1`.
    pub fn is_canonical(self, vaddr: u64) -> bool {
        let top = (vaddr as i64) >> (self.virtual_bits() - 1);
        top == 0 || top == -1
    }
}

/// The result of a translation: the physical address and the size of the page it lies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The physical address of the virtual address.
    pub phys: u64,
    /// The page's size: 4 KiB, 2 MiB or 1 GiB.
    pub page_size: u64,
}

/// One level of the walk: its name and the shift of its index in the virtual address.
const LEVELS: [(&str, u32); 5] = [
    ("PML5", 48),
    ("PML4", 39),
    ("PDPT", 30),
    ("PD", 21),
    ("PT", 12),
];

/// A virtual address space: physical memory seen through one page-table root.
#[derive(Debug, Clone)]
pub struct VirtualMemory<P: PhysicalMemory> {
    phys: P,
    root: u64,
    mode: PagingMode,
}

impl<P: PhysicalMemory> VirtualMemory<P> {
    /// A view through the tables at `root`, a CR3 value: its PCID and flag bits are masked.
    pub fn new(phys: P, root: u64, mode: PagingMode) -> Self {
        VirtualMemory {
            phys,
            root: root & ADDR_MASK,
            mode,
        }
    }

    /// The physical address of the top-level table.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The paging mode.
    pub fn mode(&self) -> PagingMode {
        self.mode
    }

    /// The physical memory underneath.
    pub fn phys(&self) -> &P {
        &self.phys
    }

    /// Gives back the physical memory.
    pub fn into_inner(self) -> P {
        self.phys
    }

    /// The physical address `vaddr` maps to.
    pub fn translate(&self, vaddr: u64) -> Result<u64> {
        self.translate_page(vaddr).map(|t| t.phys)
    }

    /// The physical address `vaddr` maps to and the size of its page.
    pub fn translate_page(&self, vaddr: u64) -> Result<Translation> {
        if !self.mode.is_canonical(vaddr) {
            return Err(Error::BadTranslation {
                source_name: self.phys.name(),
                vaddr,
                reason: format!(
                    "not canonical for {}-bit addresses",
                    self.mode.virtual_bits()
                ),
            });
        }
        let levels = match self.mode {
            PagingMode::Level5 => &LEVELS[..],
            PagingMode::Level4 => &LEVELS[1..],
        };
        let mut table = self.root;
        for &(level, shift) in levels {
            let index = (vaddr >> shift) & 0x1ff;
            let entry_addr = table | (index * 8);
            let entry = self
                .phys
                .read_entry(entry_addr)
                .map_err(|e| Error::VirtualRead {
                    vaddr,
                    what: level,
                    source: Box::new(e),
                })?;
            if entry & PRESENT == 0 {
                return Err(Error::NotMapped {
                    source_name: self.phys.name(),
                    vaddr,
                    level,
                    entry,
                    entry_addr,
                });
            }
            if entry & PAGE_SIZE_BIT != 0 {
                // PS is reserved above the PDPT; at PDPT it means 1 GiB, at PD 2 MiB; in a PT
                // the same bit is PAT and the entry maps a 4 KiB page as usual.
                match shift {
                    30 | 21 => {
                        let page_size = 1u64 << shift;
                        let base = entry & ADDR_MASK & !(page_size - 1);
                        return Ok(Translation {
                            phys: base | (vaddr & (page_size - 1)),
                            page_size,
                        });
                    }
                    12 => {}
                    _ => {
                        return Err(Error::BadTranslation {
                            source_name: self.phys.name(),
                            vaddr,
                            reason: format!(
                                "{level} entry {entry:#x} at physical {entry_addr:#x} sets the reserved page-size bit"
                            ),
                        })
                    }
                }
            }
            table = entry & ADDR_MASK;
        }
        Ok(Translation {
            phys: table | (vaddr & 0xfff),
            page_size: 4096,
        })
    }

    /// Fills `buf` from virtual `vaddr..vaddr + buf.len()`, translating each page it
    /// crosses; fails at the first page that does not translate or read, naming its
    /// virtual address.
    pub fn read(&self, vaddr: u64, buf: &mut [u8]) -> Result<()> {
        let total = buf.len();
        let mut done = 0usize;
        // Each pass consumes at least one byte up to a page end, so the loop runs once per
        // page crossed.
        while done < total {
            let va = vaddr
                .checked_add(done as u64)
                .ok_or_else(|| Error::BadTranslation {
                    source_name: self.phys.name(),
                    vaddr,
                    reason: format!("a read of {total} bytes passes the end of the address space"),
                })?;
            let t = self.translate_page(va)?;
            let left_in_page = t.page_size - (va & (t.page_size - 1));
            let n = usize::try_from(left_in_page)
                .unwrap_or(usize::MAX)
                .min(total - done);
            let Some(dst) = buf.get_mut(done..done + n) else {
                break;
            };
            self.phys
                .read_phys(t.phys, dst)
                .map_err(|e| Error::VirtualRead {
                    vaddr: va,
                    what: "data",
                    source: Box::new(e),
                })?;
            done += n;
        }
        Ok(())
    }

    /// Reads a little-endian `u64` at `vaddr` (pointers in kernel structures).
    pub fn read_u64(&self, vaddr: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(vaddr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a little-endian `u32` at `vaddr`.
    pub fn read_u32(&self, vaddr: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(vaddr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}
