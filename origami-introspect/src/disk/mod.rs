//! Disk-side crawlers: each reads the guest tree ([`GuestTree`](crate::fs::GuestTree)) and
//! yields one frame section, plus the problems it met (which the crawler records in
//! `_frame.errors` while the other sections go on).
//!
//! Every guest file is read with a size bound chosen per parser, so a hostile guest cannot
//! make a crawler allocate more than that bound.

pub mod config;
pub mod file;
pub mod os;
pub mod package;
pub mod user;
pub mod windows;
