//! Linux guests from memory alone.
pub mod btf;
