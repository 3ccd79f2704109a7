//! Disk-side crawlers: each reads the guest tree ([`GuestTree`]) and
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

use crate::error::{Error, Result};
use crate::fs::{display_path, FileType, GuestTree};
use crate::limits::{Budget, Reservation};

/// Reads the regular file at guest `path` whole, when it is at most `limit` bytes and the
/// crawl's `budget` can hold it: the size the file system gives is checked against `limit`
/// ([`Error::TooLarge`]) and reserved on `budget` ([`Error::OverBudget`]) before a byte is
/// read. The reservation comes back with the bytes; dropping it gives the memory back.
pub fn read_whole(
    tree: &GuestTree,
    path: &[u8],
    limit: u64,
    budget: &Budget,
) -> Result<(Vec<u8>, Reservation)> {
    let r = tree.resolve(path, true)?;
    if r.stat.file_type != FileType::File {
        return Err(Error::Malformed {
            file: display_path(path),
            location: "inode".into(),
            what: format!(
                "a {} where a regular file is needed",
                r.stat.file_type.name()
            ),
        });
    }
    if r.stat.size > limit {
        return Err(Error::TooLarge {
            file: display_path(path),
            size: r.stat.size,
            limit,
        });
    }
    let held = budget.reserve(display_path(path), r.stat.size)?;
    let (data, _) = tree.read_prefix_canonical(&r.path, limit)?;
    Ok((data, held))
}
