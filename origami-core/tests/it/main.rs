//! The fast integration tests of `origami-core`, one module per former test file, in one
//! test binary: each separate binary re-instantiated the same generic code of this crate and
//! its dependencies, and their codegen was most of the CI build.
//!
//! Kept as binaries of their own: `memory_live` (boots a QEMU guest) and `nbd_hostile`
//! (measures its own process's peak resident memory, which other tests would raise).

mod disk_backing_rule;
mod disk_hostile;
mod disk_images;
mod disk_partitions;
mod disk_qcow2_bitmap;
mod disk_qemu;
mod memory_dump;
mod memory_formats;
mod nbd_qemu;
mod qcow2_changing;
