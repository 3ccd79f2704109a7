//! The `origami` command's library side: what its subcommands share.
//!
//! ```
//! assert!(origami_examples::VERSION.starts_with("0."));
//! ```
#![warn(missing_docs)]

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
