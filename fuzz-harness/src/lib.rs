//! The bodies of Origami's fuzz targets, one `pub fn TARGET(data: &[u8])` each.
//!
//! Two kinds of callers run them:
//! - the cargo-fuzz crates, whose targets are one line each
//!   (`fuzz_target!(|d| origami_fuzz_harness::qcow2(d))`): `fuzz/` for every target but
//!   `index_query` (built with the `guest` feature only, so without tantivy) and
//!   `fuzz/index/` for `index_query` (the `index` feature only);
//! - this crate's `tests/replay.rs`, run by `cargo test --workspace --release`, which feeds
//!   every committed input of `fuzz/seeds/TARGET/`, `fuzz/corpus/TARGET/` and
//!   `fuzz/regressions/TARGET/` through the same function, so an input that once crashed
//!   a parser keeps being checked long after the campaign that found it.
//!
//! A target passes an input when it returns. It fails by panicking (a panic that escapes
//! the library, or one of the target's own asserts), by an allocation over the limits the
//! campaigns use (`-malloc_limit_mb=256`, `-rss_limit_mb=1024`; the replay test checks both
//! with a counting allocator), or by not returning (`-timeout=10` under libFuzzer).
//!
//! Features: `guest` (origami-core, origami-introspect, origami-frame) and `index`
//! (origami-index); both are on by default.
#![forbid(unsafe_code)]

#[cfg(feature = "guest")]
mod disk;
#[cfg(feature = "guest")]
mod files;
#[cfg(feature = "guest")]
mod frame;
#[cfg(feature = "guest")]
mod fs;
#[cfg(feature = "index")]
mod index;
#[cfg(feature = "guest")]
mod linux;
#[cfg(feature = "guest")]
mod memory;
#[cfg(feature = "guest")]
mod packages;
#[cfg(feature = "guest")]
mod volume;
#[cfg(feature = "guest")]
mod windows;

#[cfg(feature = "guest")]
pub use disk::{gpt, mbr, qcow2, vhdx, vmdk};
#[cfg(feature = "guest")]
pub use files::{dpkg_status, os_release, passwd_group};
#[cfg(feature = "guest")]
pub use frame::frame_jsonl;
#[cfg(feature = "guest")]
pub use fs::{fs_btrfs, fs_ext4, fs_fat, fs_xfs};
#[cfg(feature = "index")]
pub use index::index_query;
#[cfg(feature = "guest")]
pub use linux::{linux_btf, linux_isf, linux_kallsyms};
#[cfg(feature = "guest")]
pub use memory::{memory_elf, memory_kdump, memory_lime, page_walk, vmcoreinfo};
#[cfg(feature = "guest")]
pub use packages::{apk_installed, rpm_db, rpm_header};
#[cfg(feature = "guest")]
pub use volume::{lvm_metadata, pv_with_metadata};
#[cfg(feature = "guest")]
pub use windows::{fs_ntfs, ntfs_lznt1, registry_hive};

/// A target's body: returns when the input passes, panics when it does not.
pub type Target = fn(&[u8]);

/// Every target built with the enabled features, by name (the name of its cargo-fuzz
/// binary and of its folders under `fuzz/`).
pub const TARGETS: &[(&str, Target)] = &[
    #[cfg(feature = "guest")]
    ("apk_installed", apk_installed),
    #[cfg(feature = "guest")]
    ("dpkg_status", dpkg_status),
    #[cfg(feature = "guest")]
    ("frame_jsonl", frame_jsonl),
    #[cfg(feature = "guest")]
    ("fs_ext4", fs_ext4),
    #[cfg(feature = "guest")]
    ("fs_btrfs", fs_btrfs),
    #[cfg(feature = "guest")]
    ("fs_fat", fs_fat),
    #[cfg(feature = "guest")]
    ("fs_xfs", fs_xfs),
    #[cfg(feature = "guest")]
    ("fs_ntfs", fs_ntfs),
    #[cfg(feature = "guest")]
    ("gpt", gpt),
    #[cfg(feature = "index")]
    ("index_query", index_query),
    #[cfg(feature = "guest")]
    ("linux_btf", linux_btf),
    #[cfg(feature = "guest")]
    ("linux_isf", linux_isf),
    #[cfg(feature = "guest")]
    ("linux_kallsyms", linux_kallsyms),
    #[cfg(feature = "guest")]
    ("lvm_metadata", lvm_metadata),
    #[cfg(feature = "guest")]
    ("mbr", mbr),
    #[cfg(feature = "guest")]
    ("memory_elf", memory_elf),
    #[cfg(feature = "guest")]
    ("memory_kdump", memory_kdump),
    #[cfg(feature = "guest")]
    ("memory_lime", memory_lime),
    #[cfg(feature = "guest")]
    ("ntfs_lznt1", ntfs_lznt1),
    #[cfg(feature = "guest")]
    ("os_release", os_release),
    #[cfg(feature = "guest")]
    ("page_walk", page_walk),
    #[cfg(feature = "guest")]
    ("passwd_group", passwd_group),
    #[cfg(feature = "guest")]
    ("qcow2", qcow2),
    #[cfg(feature = "guest")]
    ("rpm_db", rpm_db),
    #[cfg(feature = "guest")]
    ("rpm_header", rpm_header),
    #[cfg(feature = "guest")]
    ("vhdx", vhdx),
    #[cfg(feature = "guest")]
    ("vmcoreinfo", vmcoreinfo),
    #[cfg(feature = "guest")]
    ("registry_hive", registry_hive),
    #[cfg(feature = "guest")]
    ("vmdk", vmdk),
];
