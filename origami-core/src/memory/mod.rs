//! Guest physical memory: reads at guest-physical addresses over the sparse ranges a dump
//! or a running VM holds.
//!
//! [`PhysicalMemory`] is the seam: `&self` reads that many threads share, failing with an
//! error that names the source and the first missing address when a read crosses a hole
//! (never zeros invented). [`MemoryDump`] implements it for the sources it sniffs by magic:
//! QEMU `dump-guest-memory` ELF cores, QEMU's kdump-compressed output (zlib pages), LiME
//! and raw images, (through [`MemoryDump::open_live`]) the RAM file of a running QEMU
//! VM started with `-object memory-backend-file,...,share=on`, and (through
//! [`MemoryDump::attach_qemu_pid`]) the RAM of any running QEMU, found by its process id
//! and read through `/proc/PID/mem` or QEMU's own memfd, without stopping it.
//!
//! Limits: x86-64 guests; a live VM's memory changes while it is read, so a read can be
//! *torn* (bytes from before and after a guest write); [`PhysicalMemory::is_live`] says
//! so, [`MemoryDump::read_phys_stable`] retries until two reads agree, and
//! [`MemoryDump::snapshot`] copies everything once (consistent only as far as the guest
//! was quiet during the copy; pause the VM for a true snapshot).
//!
//! ```no_run
//! use origami_core::memory::{MemoryDump, PhysicalMemory};
//! use origami_core::paging::VirtualMemory;
//!
//! let dump = MemoryDump::open("memory.elf")?;
//! // CR3 of the first vCPU, from QEMU's CPU-state note.
//! if let Some(mode) = dump.cpus().first().and_then(|c| Some((c.cr3, c.paging_mode()?))) {
//!     let kernel = VirtualMemory::new(&dump, mode.0, mode.1);
//!     let mut banner = [0u8; 14];
//!     kernel.read(0xffff_ffff_8160_0000, &mut banner)?;
//! }
//! # Ok::<(), origami_core::Error>(())
//! ```

mod elf;
mod kdump;
mod layout;
mod lime;
mod notes;
mod page_cache;
mod qemu;
mod segments;
mod store;
mod vmcoreinfo;

use std::path::Path;
use std::sync::Arc;

pub use layout::{RamLayout, RamRegion};
pub use notes::{CpuState, CpuStateSource};
pub use page_cache::PageCache;
pub use vmcoreinfo::VmcoreInfo;

use crate::error::{Error, Result};
use segments::{Segment, SegmentMap};
use store::Store;

/// A half-open range of guest-physical addresses, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhysRange {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
}

impl PhysRange {
    /// The number of bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True when the range holds no byte.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// True when `addr` lies in the range.
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

/// Reads of guest-physical memory.
pub trait PhysicalMemory: Send + Sync {
    /// Fills `buf` with the bytes at guest-physical `addr..addr + buf.len()`.
    ///
    /// Fails with [`Error::PhysicalHole`] naming the first missing address when any part of
    /// the range is not held by the source.
    fn read_phys(&self, addr: u64, buf: &mut [u8]) -> Result<()>;

    /// The ranges the source holds, sorted, with adjacent ranges merged.
    fn ranges(&self) -> Vec<PhysRange>;

    /// A short name for errors (the file's path).
    fn name(&self) -> String;

    /// True when the memory belongs to a running guest, so reads may be torn.
    fn is_live(&self) -> bool {
        false
    }

    /// Reads the little-endian `u64` at `addr`: a page-table entry, read once per walk
    /// (a cache may read it alone rather than its whole page; the default is
    /// [`PhysicalMemory::read_phys`]).
    fn read_entry(&self, addr: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read_phys(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

impl<T: PhysicalMemory + ?Sized> PhysicalMemory for Arc<T> {
    fn read_phys(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_phys(addr, buf)
    }
    fn ranges(&self) -> Vec<PhysRange> {
        (**self).ranges()
    }
    fn name(&self) -> String {
        (**self).name()
    }
    fn is_live(&self) -> bool {
        (**self).is_live()
    }
    fn read_entry(&self, addr: u64) -> Result<u64> {
        (**self).read_entry(addr)
    }
}

impl<T: PhysicalMemory + ?Sized> PhysicalMemory for &T {
    fn read_phys(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_phys(addr, buf)
    }
    fn ranges(&self) -> Vec<PhysRange> {
        (**self).ranges()
    }
    fn name(&self) -> String {
        (**self).name()
    }
    fn is_live(&self) -> bool {
        (**self).is_live()
    }
    fn read_entry(&self, addr: u64) -> Result<u64> {
        (**self).read_entry(addr)
    }
}

impl<T: PhysicalMemory + ?Sized> PhysicalMemory for Box<T> {
    fn read_phys(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_phys(addr, buf)
    }
    fn ranges(&self) -> Vec<PhysRange> {
        (**self).ranges()
    }
    fn name(&self) -> String {
        (**self).name()
    }
    fn is_live(&self) -> bool {
        (**self).is_live()
    }
    fn read_entry(&self, addr: u64) -> Result<u64> {
        (**self).read_entry(addr)
    }
}

/// The kind of source a [`MemoryDump`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DumpFormat {
    /// QEMU `dump-guest-memory` ELF core (`\x7fELF`).
    ElfCore,
    /// kdump-compressed (`KDUMP   `), as QEMU's `dump-guest-memory -z` / `kdump-raw-zlib`.
    Kdump,
    /// LiME (`EMiL` range headers).
    Lime,
    /// Raw guest-physical bytes, flat or with a [`RamLayout`].
    Raw,
    /// A running VM's RAM file (QEMU `memory-backend-file`, `share=on`).
    Live,
    /// A running QEMU's guest RAM, attached by process id
    /// ([`MemoryDump::attach_qemu_pid`]).
    QemuProcess,
    /// A copy made by [`MemoryDump::snapshot`].
    Snapshot,
}

#[derive(Debug)]
enum Body {
    Segments(SegmentMap),
    Kdump(kdump::KdumpPages),
}

/// Guest physical memory from a dump file or a running VM, with what the dump records of
/// the CPUs and the kernel.
#[derive(Debug)]
pub struct MemoryDump {
    name: String,
    format: DumpFormat,
    store: Store,
    body: Body,
    cpus: Vec<CpuState>,
    vmcoreinfo: Option<VmcoreInfo>,
}

/// `ELF` magic.
const ELF_MAGIC: &[u8] = b"\x7fELF";
/// kdump-compressed (diskdump) signature.
const KDUMP_MAGIC: &[u8] = b"KDUMP   ";
/// makedumpfile's flattened format (`-F`, QEMU's old `kdump-zlib` to a pipe).
const FLAT_MAGIC: &[u8] = b"makedumpfile";

impl MemoryDump {
    /// Opens a dump file, sniffing its format by magic: ELF core, kdump-compressed, LiME,
    /// or else raw guest-physical bytes from address 0.
    ///
    /// The file is mapped read-only and parsed in place: no process may modify or truncate
    /// it while the dump is open (a write would break what the parsers were promised, a
    /// truncation raises `SIGBUS`). When that cannot be promised, read the file into memory
    /// and use [`MemoryDump::from_bytes`]; a running VM's RAM file is opened with
    /// [`MemoryDump::open_live`], which copes with a writer.
    pub fn open(path: impl AsRef<Path>) -> Result<MemoryDump> {
        let path = path.as_ref();
        let store = Store::map_file(path)?;
        Self::sniff(store, path.display().to_string())
    }

    /// Parses a dump held in memory (same sniffing as [`MemoryDump::open`]); `name` names it
    /// in errors.
    pub fn from_bytes(bytes: Vec<u8>, name: impl Into<String>) -> Result<MemoryDump> {
        Self::sniff(Store::Owned(bytes), name.into())
    }

    /// Opens a raw image whose bytes are laid out by `layout` (e.g. a RAM file saved from a
    /// VM with more RAM than fits below the PCI hole).
    pub fn open_raw(path: impl AsRef<Path>, layout: &RamLayout) -> Result<MemoryDump> {
        let path = path.as_ref();
        let store = Store::map_file(path)?;
        Self::with_layout(store, path.display().to_string(), layout, DumpFormat::Raw)
    }

    /// Maps the RAM file of a running VM (QEMU `-object memory-backend-file,
    /// mem-path=FILE,share=on -machine memory-backend=...`) and reads it while the guest
    /// runs. `layout` places the file in guest-physical space: [`RamLayout::q35`] or
    /// [`RamLayout::pc_i440fx`] with the VM's RAM size, or [`RamLayout::flat`].
    ///
    /// Reads are *torn* when the guest writes meanwhile ([`PhysicalMemory::is_live`] is
    /// true); see [`MemoryDump::read_phys_stable`] and [`MemoryDump::snapshot`]. The file
    /// must not shrink while mapped (QEMU keeps it at the RAM size).
    pub fn open_live(path: impl AsRef<Path>, layout: RamLayout) -> Result<MemoryDump> {
        let path = path.as_ref();
        let store = Store::map_live(path)?;
        Self::with_layout(store, path.display().to_string(), &layout, DumpFormat::Live)
    }

    /// Attaches to the guest RAM of the running QEMU process `pid`, read-only, without
    /// stopping the guest or QEMU: the RAM mapping is found from `/proc/PID/maps` (its size
    /// from the `-m` of `/proc/PID/cmdline`), the guest-physical layout from the machine
    /// type (split around the PCI hole for large guests, [`RamLayout::for_qemu_machine`]),
    /// and the bytes are read with `pread` on `/proc/PID/mem`, or, for shared memfd and file
    /// backends, from QEMU's own descriptor of the RAM file mapped read-only.
    ///
    /// Needs the right to trace the process (its user or root; no stop happens). Fails with
    /// [`Error::QemuAttach`] saying what was looked for: no such process, not an x86 QEMU,
    /// no permission, no guest RAM found, an unknown machine type. Reads are torn when the
    /// guest writes meanwhile ([`PhysicalMemory::is_live`] is true), as for
    /// [`MemoryDump::open_live`]. The heuristic that finds the RAM and its limits are
    /// described in the source (`memory/qemu/maps.rs`): one RAM block of exactly the RAM
    /// size; NUMA nodes with several backends and hot-plugged DIMMs are not read.
    pub fn attach_qemu_pid(pid: u32) -> Result<MemoryDump> {
        let (plan, opened) = qemu::attach(pid)?;
        let what = plan.mapping.kind();
        let machine = plan.machine.clone();
        match opened {
            qemu::Opened::SharedFile { path, offset } => {
                let store = Store::map_live(&path)?;
                let name = format!("qemu pid {pid} ({machine}, RAM file {what})");
                let layout = plan.layout.shifted(offset)?;
                Self::with_layout(store, name, &layout, DumpFormat::QemuProcess)
            }
            qemu::Opened::ProcessMemory { mem, path, base } => {
                let len = plan.mapping.len();
                let store = Store::Process {
                    mem,
                    path,
                    base,
                    len,
                };
                let name = format!("qemu pid {pid} ({machine}, {what} RAM at host {base:#x})");
                Self::with_layout(store, name, &plan.layout, DumpFormat::QemuProcess)
            }
        }
    }

    fn with_layout(
        store: Store,
        name: String,
        layout: &RamLayout,
        format: DumpFormat,
    ) -> Result<MemoryDump> {
        let segs = layout
            .regions()
            .iter()
            .map(|r| Segment {
                start: r.guest_phys,
                len: r.len,
                offset: r.file_offset,
            })
            .collect();
        let map = SegmentMap::new(segs, store.len(), &|| name.clone())?;
        Ok(MemoryDump {
            name,
            format,
            store,
            body: Body::Segments(map),
            cpus: Vec::new(),
            vmcoreinfo: None,
        })
    }

    fn sniff(store: Store, name: String) -> Result<MemoryDump> {
        let Some(bytes) = store.bytes() else {
            return Err(Error::BadDump {
                source_name: name,
                offset: 0,
                reason: "a live memory file is opened with open_live".into(),
            });
        };
        let named = || name.clone();
        if bytes.starts_with(ELF_MAGIC) {
            let core = elf::parse(bytes, &named)?;
            let map = SegmentMap::new(core.segments, store.len(), &named)?;
            return Ok(MemoryDump {
                format: DumpFormat::ElfCore,
                body: Body::Segments(map),
                cpus: core.cpus,
                vmcoreinfo: core.vmcoreinfo,
                store,
                name,
            });
        }
        if bytes.starts_with(KDUMP_MAGIC) {
            let k = kdump::parse(bytes, &named)?;
            return Ok(MemoryDump {
                format: DumpFormat::Kdump,
                body: Body::Kdump(k.pages),
                cpus: k.cpus,
                vmcoreinfo: k.vmcoreinfo,
                store,
                name,
            });
        }
        if bytes.starts_with(FLAT_MAGIC) {
            return Err(Error::BadDump {
                source_name: name,
                offset: 0,
                reason: "makedumpfile flattened format: convert it with `makedumpfile -R` first"
                    .into(),
            });
        }
        if bytes.starts_with(lime::MAGIC) {
            let segs = lime::parse(bytes, &named)?;
            let map = SegmentMap::new(segs, store.len(), &named)?;
            return Ok(MemoryDump {
                format: DumpFormat::Lime,
                body: Body::Segments(map),
                cpus: Vec::new(),
                vmcoreinfo: None,
                store,
                name,
            });
        }
        let len = store.len();
        Self::with_layout(store, name, &RamLayout::flat(len), DumpFormat::Raw)
    }

    /// The source's format.
    pub fn format(&self) -> DumpFormat {
        self.format
    }

    /// The virtual CPUs' register states, in CPU order; empty when the source records none
    /// (LiME, raw, live).
    pub fn cpus(&self) -> &[CpuState] {
        &self.cpus
    }

    /// The kernel's `VMCOREINFO`, when the dump carries it.
    pub fn vmcoreinfo(&self) -> Option<&VmcoreInfo> {
        self.vmcoreinfo.as_ref()
    }

    /// Reads like [`PhysicalMemory::read_phys`], but for live memory repeats the read until
    /// two successive reads agree (at most `tries` reads, at least 2), so a structure is
    /// not returned half-updated. Fails with [`Error::TornRead`] when it never settles. For
    /// a dump that does not change this is one plain read.
    pub fn read_phys_stable(&self, addr: u64, buf: &mut [u8], tries: u32) -> Result<()> {
        self.read_phys(addr, buf)?;
        if !self.is_live() {
            return Ok(());
        }
        let mut again = vec![0u8; buf.len()];
        for _ in 1..tries.max(2) {
            self.read_phys(addr, &mut again)?;
            if again == buf {
                return Ok(());
            }
            buf.copy_from_slice(&again);
        }
        Err(Error::TornRead {
            source_name: self.name.clone(),
            addr,
            tries: tries.max(2),
        })
    }

    /// Copies every range into memory once, giving a source that no longer changes (a
    /// live VM's RAM keeps running; pause it for a copy that is consistent as a whole).
    /// The copy is as large as the ranges, which lie in the mapped file.
    ///
    /// A kdump file is already immutable and compressed; it is not copied (an error).
    pub fn snapshot(&self) -> Result<MemoryDump> {
        let Body::Segments(map) = &self.body else {
            return Err(Error::BadDump {
                source_name: self.name.clone(),
                offset: 0,
                reason: "a kdump file does not change; it needs no snapshot".into(),
            });
        };
        let total = map
            .segments()
            .iter()
            .try_fold(0u64, |a, s| a.checked_add(s.len))
            .filter(|&t| t <= self.store.len())
            .ok_or_else(|| Error::BadDump {
                source_name: self.name.clone(),
                offset: 0,
                reason: "ranges larger than the file".into(),
            })?;
        let mut bytes = vec![0u8; usize::try_from(total).unwrap_or(usize::MAX)];
        let mut segs = Vec::with_capacity(map.segments().len());
        let mut at = 0u64;
        let named = || self.name.clone();
        for s in map.segments() {
            let end = at + s.len;
            let dst = usize::try_from(at)
                .ok()
                .zip(usize::try_from(end).ok())
                .and_then(|(a, e)| bytes.get_mut(a..e));
            let Some(dst) = dst else {
                return Err(Error::BadDump {
                    source_name: self.name.clone(),
                    offset: s.offset,
                    reason: "segment larger than memory".into(),
                });
            };
            self.store.read(&named, s.offset, dst)?;
            segs.push(Segment {
                start: s.start,
                len: s.len,
                offset: at,
            });
            at = end;
        }
        let name = format!("{} (snapshot)", self.name);
        let map = SegmentMap::new(segs, total, &|| name.clone())?;
        Ok(MemoryDump {
            name,
            format: DumpFormat::Snapshot,
            store: Store::Owned(bytes),
            body: Body::Segments(map),
            cpus: self.cpus.clone(),
            vmcoreinfo: self.vmcoreinfo.clone(),
        })
    }
}

impl PhysicalMemory for MemoryDump {
    fn read_phys(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        let named = || self.name.clone();
        match &self.body {
            Body::Segments(map) => map.read(&self.store, &named, addr, buf),
            Body::Kdump(pages) => pages.read(&self.store, &named, addr, buf),
        }
    }

    fn ranges(&self) -> Vec<PhysRange> {
        match &self.body {
            Body::Segments(map) => map.ranges(),
            Body::Kdump(pages) => pages.ranges(),
        }
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn is_live(&self) -> bool {
        self.store.is_live()
    }
}
