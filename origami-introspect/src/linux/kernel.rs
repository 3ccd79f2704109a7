//! The kernel discovery finds, and what discovery reads: guest physical memory with what
//! the dump says about itself ([`DumpView`]), and the [`Kernel`] (placement, page tables,
//! symbols, layouts) the feature crawlers read through.

use origami_core::memory::{CpuState, MemoryDump, PhysicalMemory, VmcoreInfo};
use origami_core::paging::PagingMode;

use super::kallsyms::SymbolTable;
use super::kmem::Kmem;
use super::layout::Layout;
use crate::error::{Error, Result};

/// What discovery reads: physical memory and what the dump says about itself.
#[derive(Clone, Copy)]
pub struct DumpView<'a> {
    /// Guest physical memory.
    pub phys: &'a dyn PhysicalMemory,
    /// The `VMCOREINFO` note, when the dump has one.
    pub vmcoreinfo: Option<&'a VmcoreInfo>,
    /// The CPUs' registers, when the dump has them.
    pub cpus: &'a [CpuState],
}

impl<'a> From<&'a MemoryDump> for DumpView<'a> {
    fn from(dump: &'a MemoryDump) -> DumpView<'a> {
        DumpView {
            phys: dump,
            vmcoreinfo: dump.vmcoreinfo(),
            cpus: dump.cpus(),
        }
    }
}

impl std::fmt::Debug for DumpView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DumpView")
            .field("phys", &self.phys.name())
            .field("vmcoreinfo", &self.vmcoreinfo.is_some())
            .field("cpus", &self.cpus.len())
            .finish()
    }
}

/// Where the symbols came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolSource {
    /// Recovered from the kernel's kallsyms tables in memory.
    Kallsyms,
    /// A `System.map` the caller gave, shifted by the KASLR offset.
    SystemMap,
    /// The discovery cache (symbols first recovered from kallsyms).
    Cache,
    /// The symbol table of the DWARF `vmlinux` or ISF the caller gave for the layouts
    /// (used when kallsyms cannot be recovered), shifted by the KASLR offset.
    LayoutFile,
}

/// A kernel found in memory, ready for the feature crawlers.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The `Linux version ...` banner.
    pub banner: String,
    /// The release (`6.1.0-56-amd64`), from the banner.
    pub release: String,
    /// Physical address of the banner (`linux_banner`).
    pub banner_phys: u64,
    /// Physical address corresponding to `__START_KERNEL_map` (the runtime `phys_base`).
    pub image_phys: u64,
    /// The virtual KASLR shift: runtime `_text` minus its link address.
    pub kaslr_offset: u64,
    /// The direct map's base.
    pub page_offset_base: u64,
    /// 4- or 5-level paging.
    pub mode: PagingMode,
    /// Physical address of the kernel's top page table.
    pub root: u64,
    /// Runtime symbol addresses.
    pub symbols: SymbolTable,
    /// Struct layouts (from the kernel's BTF, the caller's DWARF or ISF, or the cache).
    pub layout: Layout,
    /// The DWARF or ISF file the layouts came from (`None`: the kernel's BTF, or the cache).
    pub layout_file: Option<std::path::PathBuf>,
    /// Where the symbols came from.
    pub symbol_source: SymbolSource,
    /// True when symbols and layouts came from the cache.
    pub from_cache: bool,
    /// True when the dump had a VMCOREINFO note.
    pub had_vmcoreinfo: bool,
    /// How long each discovery step took, in milliseconds.
    pub timings: Vec<(String, f64)>,
}

impl Kernel {
    /// The runtime address of `name`, or an error naming the symbol.
    pub fn symbol(&self, name: &str) -> Result<u64> {
        self.symbols.get(name).ok_or_else(|| Error::Malformed {
            file: "kernel symbols".into(),
            location: name.into(),
            what: "symbol not found".into(),
        })
    }

    /// A view of the kernel's address space.
    pub fn kmem<'a>(&self, phys: &'a dyn PhysicalMemory) -> Kmem<'a> {
        Kmem::new(
            phys,
            self.root,
            self.mode,
            self.image_phys,
            self.page_offset_base,
        )
    }
}

/// An error for evidence of a kernel that memory does not hold.
pub(super) fn nodata(what: impl Into<String>) -> Error {
    Error::Malformed {
        file: "guest memory".into(),
        location: "kernel discovery".into(),
        what: what.into(),
    }
}
