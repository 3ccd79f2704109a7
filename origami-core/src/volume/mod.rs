//! Volume managers: layers between partitions and file systems. [`lvm`] reads LVM2 physical
//! volumes, assembles their volume groups across the disks of one machine, and serves each
//! logical volume as a [`crate::ReadAt`].

pub mod lvm;
