//! The `origami` command's library side: the fleet manifest (read into the library's
//! [`origami_introspect::fleet::Machine`]s), the sink that indexes a fleet's frames, the demo
//! fleet, text rendering, and `origami watch` ([`watch`]). The binary is `src/bin/origami.rs`.
//!
//! ```
//! use origami_examples::manifest::Manifest;
//! let m = Manifest::parse("[[machine]]\nname = \"web-01\"\ndisks = [\"web-01.qcow2\"]\n",
//!                         std::path::Path::new("/fleet"),
//!                         &origami_introspect::CrawlOptions::builder()).unwrap();
//! assert!(matches!(&m.machines[0].target.disks[0],
//!                  origami_introspect::Disk::Path(p) if p == std::path::Path::new("/fleet/web-01.qcow2")));
//! ```
#![warn(missing_docs)]

pub mod demo;
pub mod fleece;
pub mod fleet;
pub mod incremental;
pub mod index_url;
pub mod manifest;
pub mod render;
pub mod serve;
pub mod watch;

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
