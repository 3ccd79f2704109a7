//! Guest OS knowledge: turns the bytes `origami-core` reads into a frame.
//!
//! The [`Crawler`] takes a [`Target`] (a machine's disks, and optionally its memory) and
//! [`CrawlOptions`], and returns a [`frame::Frame`]. On the disk side ([`fs`], [`disk`])
//! the guest's file systems (ext4, FAT) are opened read-only, assembled into the guest's tree
//! from its own `/etc/fstab`, and crawled for the OS, packages, users, files and config
//! text; paths resolve inside the guest, never on the host. On the memory side ([`linux`])
//! the kernel, its symbols (kallsyms) and types (BTF) are found in the dump itself, then its
//! processes, connections and modules are read. A section that fails lands in
//! `_frame.errors` and the rest goes on. The [`fleet`] engine crawls many machines at once on
//! a bounded pool, with per-machine timeouts, handing each frame to the caller's sink.
//! The [`watch`] module follows a running guest's memory and reports what changes (processes
//! started and exited, connections, modules, host name) as typed events.
//!
//! A disk is an image file or any [`ReadAt`](origami_core::ReadAt) the caller holds (a
//! storage API, a snapshot service, bytes in memory); the memory is a dump file or the
//! caller's own [`PhysicalMemory`](origami_core::memory::PhysicalMemory) (see
//! [`MemorySource`]). Both forms crawl the same:
//!
//! ```
//! use std::sync::Arc;
//! use origami_introspect::{CrawlOptions, Crawler, Target};
//!
//! // One of the demo fleet's guest disks: a real ext4 root file system (zstd-compressed).
//! let zst = include_bytes!("../../examples/demo-fleet/web-02.img.zst");
//! let bytes: Vec<u8> = zstd::stream::decode_all(&zst[..])?;
//! let crawler = Crawler::new(CrawlOptions::builder().hash_files(true).build()?);
//!
//! // The disk held in memory, read through a `ReadAt` under a name of the caller's choice.
//! let frame = crawler.crawl(&Target::disk_reader("web-02.img", Arc::new(bytes.clone())))?;
//! assert_eq!(frame.system(), "web-02"); // the guest's own host name
//! assert_eq!(frame.os.id.as_deref(), Some("debian"));
//! assert!(frame.package.iter().any(|p| p.name == "nginx-light"));
//! assert!(frame.config.iter().any(|c| c.path == "/etc/nginx/sites-enabled/default"));
//! assert!(frame.meta.errors.is_empty());
//!
//! // The same disk as an image file.
//! let disk = std::env::temp_dir().join(format!("origami-doc-{}.img", std::process::id()));
//! std::fs::write(&disk, &bytes)?;
//! let from_file = crawler.crawl(&Target::disk(&disk))?;
//! std::fs::remove_file(&disk)?;
//! assert_eq!(from_file.package, frame.package);
//! assert_eq!(from_file.file, frame.file);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Memory read through the caller's hypervisor, with what it knows of the CPUs:
//!
//! ```no_run
//! use std::sync::Arc;
//! use origami_core::memory::{PhysRange, PhysicalMemory};
//! use origami_core::ReadAt;
//! use origami_introspect::{Crawler, MemorySource, Target};
//!
//! /// Guest RAM as the hypervisor hands it out (here: one range held in a buffer).
//! struct HypervisorRam(Vec<u8>);
//!
//! impl PhysicalMemory for HypervisorRam {
//!     fn read_phys(&self, addr: u64, buf: &mut [u8]) -> origami_core::Result<()> {
//!         self.0.read_at(addr, buf) // an error past the end, never made-up bytes
//!     }
//!     fn ranges(&self) -> Vec<PhysRange> {
//!         vec![PhysRange { start: 0, end: self.0.len() as u64 }]
//!     }
//!     fn name(&self) -> String {
//!         "vm-17 RAM".into()
//!     }
//! }
//!
//! let ram = HypervisorRam(std::fs::read("vm-17.ram")?);
//! let memory = MemorySource::new("vm-17 RAM", Arc::new(ram)); // .with_cpus(...) when known
//! let frame = Crawler::default().crawl(&Target::default().with_memory_source(memory))?;
//! println!("{} processes", frame.process.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod crawler;
pub mod disk;
mod error;
pub mod fleet;
pub mod fs;
pub mod incremental;
mod limits;
mod target;
mod timing;
mod volume_hook;

pub use crawler::{
    open_guest, CrawlOptions, CrawlOptionsBuilder, Crawler, DiskOptions, DISK_SECTIONS,
};
pub use error::{Error, Result};
pub use limits::{Bounds, Budget, Deadline, Limits, Reservation, EXT4_CACHE_BYTES};
/// The frame model, re-exported for callers that only link this crate.
pub use origami_frame as frame;
pub use target::{Disk, Memory, MemorySource, Target};
pub mod linux;
pub mod watch;
