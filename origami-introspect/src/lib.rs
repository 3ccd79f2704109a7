//! Guest OS knowledge: turns the bytes `origami-core` reads into a frame.
//!
//! ```
//! use origami_introspect::frame::Frame;
//! let f = Frame::new("web-01");
//! assert_eq!(f.system(), "web-01");
//! ```
#![warn(missing_docs)]

mod crawler;
pub mod disk;
mod error;
pub mod fs;

pub use crawler::{
    open_guest, CrawlOptions, CrawlOptionsBuilder, Crawler, DiskOptions, Target, DISK_SECTIONS,
};
pub use error::{Error, Result};
/// The frame model, re-exported for callers that only link this crate.
pub use origami_frame as frame;
pub mod linux;
