//! The fast integration tests of `origami-introspect`, one module per former test file, in
//! one test binary: each separate binary re-instantiated the same generic code of this crate
//! and its dependencies, and their codegen was most of the CI build.
//!
//! Kept as binaries of their own: the suites that boot QEMU guests or wait on kernels being
//! fetched and dumped (`memory_qemu_pid`, `memory_live`, `disk_incremental_guest`,
//! `memory_kernels`, `memory_layout_sources`), that build guests (`disk_lvm_rpm`,
//! `disk_incremental_guest`), and `disk_hostile` (it measures its own process's peak
//! resident memory, which other tests would raise).

#[path = "../memory_truth/mod.rs"]
mod memory_truth;

mod fs_images;
mod windows_fixture;

mod crawler_target;
mod disk_btrfs;
mod disk_debian;
mod disk_fs;
mod disk_fstab;
mod disk_hash_threads;
mod disk_incremental_patch;
mod disk_incremental_state;
mod disk_windows;
mod disk_xfs;
mod limits_memory;
mod memory_btf;
mod memory_cache_poison;
mod memory_crawl;
mod memory_hostile;
mod memory_kallsyms;
mod memory_mounts_log;
mod memory_watch;
mod ntfs_lznt1;
mod package_rpmdb;
mod windows_hostile;
