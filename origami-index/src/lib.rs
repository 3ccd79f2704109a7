//! Origami's index: frames of a fleet, searchable like the Web.
//!
//! ```
//! use origami_index::frame::Frame;
//! assert_eq!(Frame::new("db-01").item_count(), 0);
//! ```
#![warn(missing_docs)]

/// The frame model, re-exported.
pub use origami_frame as frame;
