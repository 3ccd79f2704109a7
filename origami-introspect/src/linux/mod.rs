//! Linux guests from memory alone.
pub mod btf;
pub mod kallsyms;
