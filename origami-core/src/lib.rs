//! Origami's bottom layer: the bytes of a virtual machine, read from outside.
//!
//! Everything above reads through [`ReadAt`]: positional, `&self` reads that many threads
//! share, which fail with an error naming the source and offset rather than invent bytes.
//! A [`FileSource`] reads a host file with `pread`; a [`Slice`] is a sub-range (a partition).
//!
//! Guest memory has its own seam: [`memory::PhysicalMemory`] reads guest-physical addresses
//! over the sparse ranges of a dump or a running VM ([`memory::MemoryDump`]: QEMU ELF cores,
//! kdump, LiME, raw, a live RAM file, a running QEMU attached by process id), and
//! [`paging::VirtualMemory`] translates x86-64 virtual addresses through the guest's page
//! tables.
//!
//! ```
//! use origami_core::{ReadAt, Slice};
//!
//! let disk: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
//! let part = Slice::new(disk, 512, 1024, "p1")?;
//! let mut sector = [0u8; 4];
//! part.read_at(0, &mut sector)?;
//! assert_eq!(sector, [0, 1, 2, 3]);
//! assert!(part.read_at(1022, &mut sector).is_err()); // past the end: an error, not zeros
//! # Ok::<(), origami_core::Error>(())
//! ```
#![warn(missing_docs)]

pub mod bytes;
mod cache;
pub mod dirty;
mod error;
pub mod image;
pub mod memory;
mod mmap;
pub mod nbd;
pub mod paging;
pub mod partition;
pub mod qmp;
mod read;
mod shared;
pub mod volume;

pub use error::{AttachProblem, Error, Result};
pub use read::{check_range, FileSource, ReadAt, Slice};

pub use cache::BlockCache;
pub use image::{Image, ImageFormat, ImageOptions, Qcow2Image, VhdxImage, VmdkImage};
pub use mmap::MmapSource;
