//! What to crawl: a [`Target`] names one machine's disks and memory, each as a file or
//! through the caller's own reader ([`Disk`], [`Memory`], [`MemorySource`]).
//!
//! A control plane that reads disks over its own storage API (RBD, NBD, a snapshot
//! service) hands the crawler an [`origami_core::ReadAt`]; one that reads memory through
//! its hypervisor hands it a [`PhysicalMemory`] with what it knows of the CPUs and the
//! kernel's `VMCOREINFO`. Paths and readers crawl the same.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use origami_core::memory::{CpuState, PhysicalMemory, VmcoreInfo};
use origami_core::ReadAt;

use crate::linux::DumpView;

/// One disk of a [`Target`].
#[derive(Clone)]
pub enum Disk {
    /// A disk image file (raw, qcow2, VMDK, VHDX; backing chains followed), opened by the
    /// crawler.
    Path(PathBuf),
    /// The disk's bytes as the guest sees them, read through the caller's own reader (a
    /// storage API, a snapshot service, bytes held in memory).
    Reader {
        /// How the frame (`_frame.source`) and errors name the disk.
        name: String,
        /// The bytes.
        reader: Arc<dyn ReadAt>,
    },
}

impl Disk {
    /// A disk read through `reader`, named `name`.
    pub fn reader(name: impl Into<String>, reader: Arc<dyn ReadAt>) -> Disk {
        Disk::Reader {
            name: name.into(),
            reader,
        }
    }

    /// How the frame and errors name the disk: its path, or the reader's name.
    pub fn name(&self) -> String {
        match self {
            Disk::Path(p) => p.display().to_string(),
            Disk::Reader { name, .. } => name.clone(),
        }
    }
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Disk::Path(p) => f.debug_tuple("Path").field(p).finish(),
            Disk::Reader { name, reader } => f
                .debug_struct("Reader")
                .field("name", name)
                .field("len", &reader.len())
                .finish(),
        }
    }
}

impl From<PathBuf> for Disk {
    fn from(path: PathBuf) -> Disk {
        Disk::Path(path)
    }
}

impl From<&Path> for Disk {
    fn from(path: &Path) -> Disk {
        Disk::Path(path.to_path_buf())
    }
}

/// Guest physical memory the caller reads itself (through its hypervisor, or a dump it
/// has opened), with what it knows of the machine.
#[derive(Clone)]
pub struct MemorySource {
    /// How the frame (`_frame.source`) and errors name the memory.
    pub name: String,
    /// The guest's physical memory.
    pub phys: Arc<dyn PhysicalMemory>,
    /// The CPUs' registers when known (they point discovery at the running kernel; without
    /// them RAM is searched).
    pub cpus: Vec<CpuState>,
    /// The `VMCOREINFO` note when the memory comes with one.
    pub vmcoreinfo: Option<VmcoreInfo>,
}

impl MemorySource {
    /// Memory read through `phys`, named `name`, with no CPU state and no `VMCOREINFO`.
    pub fn new(name: impl Into<String>, phys: Arc<dyn PhysicalMemory>) -> MemorySource {
        MemorySource {
            name: name.into(),
            phys,
            cpus: Vec::new(),
            vmcoreinfo: None,
        }
    }

    /// Adds the CPUs' registers.
    pub fn with_cpus(mut self, cpus: Vec<CpuState>) -> MemorySource {
        self.cpus = cpus;
        self
    }

    /// Adds the `VMCOREINFO` note.
    pub fn with_vmcoreinfo(mut self, vmcoreinfo: VmcoreInfo) -> MemorySource {
        self.vmcoreinfo = Some(vmcoreinfo);
        self
    }
}

impl<'a> From<&'a MemorySource> for DumpView<'a> {
    fn from(m: &'a MemorySource) -> DumpView<'a> {
        DumpView {
            phys: &*m.phys,
            vmcoreinfo: m.vmcoreinfo.as_ref(),
            cpus: &m.cpus,
        }
    }
}

impl std::fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySource")
            .field("name", &self.name)
            .field("cpus", &self.cpus.len())
            .field("vmcoreinfo", &self.vmcoreinfo.is_some())
            .finish()
    }
}

/// A machine's memory, for a [`Target`].
#[derive(Debug, Clone)]
pub enum Memory {
    /// A memory dump file (QEMU ELF, kdump, LiME, raw) or a running VM's memory file.
    Path(PathBuf),
    /// Memory the caller reads itself.
    Source(MemorySource),
}

impl Memory {
    /// How the frame and errors name the memory: its path, or the source's name.
    pub fn name(&self) -> String {
        match self {
            Memory::Path(p) => p.display().to_string(),
            Memory::Source(s) => s.name.clone(),
        }
    }
}

/// What to crawl: one machine's disks and, optionally, its memory, each given as a file
/// or through the caller's own reader.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The machine's disks, in the order the guest sees them (`vda`, `vdb`, ...).
    pub disks: Vec<Disk>,
    /// The memory of the same machine (a dump, a running VM's memory).
    pub memory: Option<Memory>,
    /// The guest kernel's `System.map`, when the caller has it.
    pub system_map: Option<PathBuf>,
    /// The guest kernel's type layouts from a DWARF `vmlinux` or a Volatility ISF (or a
    /// folder of them), for kernels without usable BTF.
    pub kernel_layouts: Option<crate::linux::LayoutSource>,
}

impl Target {
    /// A target of one disk image file.
    pub fn disk(path: impl Into<PathBuf>) -> Target {
        Target::default().with_disk(path)
    }

    /// A target of one disk read through `reader` (see [`Disk::Reader`]).
    pub fn disk_reader(name: impl Into<String>, reader: Arc<dyn ReadAt>) -> Target {
        Target::default().with_disk_reader(name, reader)
    }

    /// Adds a disk image file.
    pub fn with_disk(mut self, path: impl Into<PathBuf>) -> Target {
        self.disks.push(Disk::Path(path.into()));
        self
    }

    /// Adds a disk read through `reader`.
    pub fn with_disk_reader(mut self, name: impl Into<String>, reader: Arc<dyn ReadAt>) -> Target {
        self.disks.push(Disk::reader(name, reader));
        self
    }

    /// Sets the memory: a dump file or a running VM's memory file.
    pub fn with_memory(mut self, path: impl Into<PathBuf>) -> Target {
        self.memory = Some(Memory::Path(path.into()));
        self
    }

    /// Sets the memory: the caller's own [`PhysicalMemory`].
    pub fn with_memory_source(mut self, source: MemorySource) -> Target {
        self.memory = Some(Memory::Source(source));
        self
    }

    /// Sets the `System.map`.
    pub fn with_system_map(mut self, path: impl Into<PathBuf>) -> Target {
        self.system_map = Some(path.into());
        self
    }

    /// Sets where the kernel's type layouts come from (a DWARF `vmlinux`, an ISF, or a
    /// folder of either) instead of its BTF.
    pub fn with_kernel_layouts(mut self, source: crate::linux::LayoutSource) -> Target {
        self.kernel_layouts = Some(source);
        self
    }
}
