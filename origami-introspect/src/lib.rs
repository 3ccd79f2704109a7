//! Guest OS knowledge: turns the bytes `origami-core` reads into a frame.
//!
//! The [`Crawler`] takes a [`Target`] (a machine's disk images, and optionally its memory)
//! and [`CrawlOptions`], and returns a [`frame::Frame`]. On the disk side ([`fs`], [`disk`])
//! the guest's file systems (ext4, FAT) are opened read-only, assembled into the guest's tree
//! from its own `/etc/fstab`, and crawled for the OS, packages, users, files and config
//! text; paths resolve inside the guest, never on the host. On the memory side ([`linux`])
//! the kernel, its symbols (kallsyms) and types (BTF) are found in the dump itself, then its
//! processes, connections and modules are read. A section that fails lands in
//! `_frame.errors` and the rest goes on. The [`fleet`] engine crawls many machines at once on
//! a bounded pool, with per-machine timeouts, handing each frame to the caller's sink.
//!
//! ```
//! use origami_introspect::{CrawlOptions, Crawler, Target};
//!
//! // One of the demo fleet's guest disks: a real ext4 root file system (zstd-compressed).
//! let zst = include_bytes!("../../examples/demo-fleet/web-02.img.zst");
//! let disk = std::env::temp_dir().join(format!("origami-doc-{}.img", std::process::id()));
//! std::fs::write(&disk, zstd::stream::decode_all(&zst[..])?)?;
//!
//! let options = CrawlOptions::builder().hash_files(true).build()?;
//! let frame = Crawler::new(options).crawl(&Target::disk(&disk))?;
//! std::fs::remove_file(&disk)?;
//!
//! assert_eq!(frame.system(), "web-02"); // the guest's own host name
//! assert_eq!(frame.os.id.as_deref(), Some("debian"));
//! assert!(frame.package.iter().any(|p| p.name == "nginx-light"));
//! assert!(frame.config.iter().any(|c| c.path == "/etc/nginx/sites-enabled/default"));
//! assert!(frame.meta.errors.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod crawler;
pub mod disk;
mod error;
pub mod fleet;
pub mod fs;
mod limits;

pub use crawler::{
    open_guest, CrawlOptions, CrawlOptionsBuilder, Crawler, DiskOptions, Target, DISK_SECTIONS,
};
pub use error::{Error, Result};
pub use limits::Limits;
/// The frame model, re-exported for callers that only link this crate.
pub use origami_frame as frame;
pub mod linux;
