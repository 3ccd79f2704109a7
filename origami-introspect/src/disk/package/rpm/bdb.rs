//! rpm's Berkeley DB database (`/var/lib/rpm/Packages`, rpm before 4.16: RHEL/CentOS 5 to 8,
//! Amazon Linux 2, older Fedora and SUSE): a DB hash file whose values are the header blobs,
//! keyed by a 4-byte package number.
//!
//! Only the structures rpm's files use are read: the hash meta page (page 0: magic
//! `0x061561`, its byte order telling the file's, the page size, the last page number),
//! hash pages (types 2 and 13) whose items come in key/value pairs, and the overflow pages
//! (type 7) chained from a value's off-page item (`H_OFFPAGE`: first page, total length).
//! Values stored on the hash page itself (`H_KEYDATA`) are taken too when they are large
//! enough to be a header. Every page number, offset and length is checked, and an overflow
//! chain visits each page at most once.

use super::{Blob, DbError};

/// The hash access method's magic number.
const HASH_MAGIC: u32 = 0x0006_1561;
/// The page header's size (`PAGE` in db_page.h).
const PAGE_HEADER: usize = 26;
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASH: u8 = 13;
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;
/// The smallest value taken as a header blob (preamble and one index entry).
const MIN_BLOB: usize = 24;

#[derive(Clone, Copy)]
struct Order {
    swapped: bool,
}

impl Order {
    fn u32(self, b: &[u8], at: usize) -> u32 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&b[at..at + 4]);
        if self.swapped {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    }
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let w = [b[at], b[at + 1]];
        if self.swapped {
            u16::from_be_bytes(w)
        } else {
            u16::from_le_bytes(w)
        }
    }
}

fn bad(offset: u64, what: impl Into<String>) -> DbError {
    DbError::Malformed {
        location: format!("offset {offset:#x}"),
        what: what.into(),
    }
}

/// The header blobs of a Berkeley DB `Packages` file, with the problems of the records
/// skipped; at most `max_packages` blobs, none over `max_blob` bytes.
pub fn read(data: &[u8], max_packages: usize, max_blob: usize) -> (Vec<Blob>, Vec<DbError>) {
    let mut blobs = Vec::new();
    let mut errors = Vec::new();
    if data.len() < 512 {
        errors.push(bad(0, "shorter than a Berkeley DB meta page"));
        return (blobs, errors);
    }
    let le = Order { swapped: false };
    let order = if le.u32(data, 12) == HASH_MAGIC {
        le
    } else if (Order { swapped: true }).u32(data, 12) == HASH_MAGIC {
        Order { swapped: true }
    } else {
        errors.push(bad(12, "not a Berkeley DB hash file (magic 0x061561)"));
        return (blobs, errors);
    };
    let page_size = order.u32(data, 20) as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        errors.push(bad(20, format!("page size {page_size}")));
        return (blobs, errors);
    }
    let pages = data.len() / page_size;
    let last = order.u32(data, 32) as usize;
    if last >= pages {
        errors.push(bad(
            32,
            format!("last page {last} is past the file's {pages} pages"),
        ));
    }
    let db = Db {
        data,
        page_size,
        pages: pages.min(last.saturating_add(1)),
        order,
    };
    'pages: for p in 1..db.pages {
        let page = db.page(p);
        let kind = page[25];
        if kind != P_HASH && kind != P_HASH_UNSORTED {
            continue;
        }
        let entries = usize::from(order.u16(page, 20));
        if PAGE_HEADER + 2 * entries > page_size {
            errors.push(bad(
                (p * page_size) as u64 + 20,
                format!("hash page {p}: {entries} entries do not fit the page"),
            ));
            continue;
        }
        // Items are laid out from the end of the page downwards; an item ends where the
        // previous one (by index) starts.
        for i in (1..entries).step_by(2) {
            let start = usize::from(order.u16(page, PAGE_HEADER + 2 * i));
            let end = usize::from(order.u16(page, PAGE_HEADER + 2 * (i - 1)));
            let here = (p * page_size + start) as u64;
            if start < PAGE_HEADER + 2 * entries || start >= page_size {
                errors.push(bad(here, format!("hash page {p}: item {i} offset {start}")));
                continue;
            }
            match page[start] {
                H_OFFPAGE => {
                    if start + 12 > page_size {
                        errors.push(bad(here, "off-page item overruns its page"));
                        continue;
                    }
                    if blobs.len() >= max_packages {
                        errors.push(DbError::TooManyPackages {
                            limit: max_packages,
                        });
                        break 'pages;
                    }
                    let first = order.u32(page, start + 4) as usize;
                    let total = order.u32(page, start + 8) as usize;
                    match db.overflow(first, total, max_blob) {
                        Ok(bytes) => blobs.push(Blob {
                            location: format!("hash page {p} item {i}, overflow page {first}"),
                            bytes,
                        }),
                        Err(e) => errors.push(e),
                    }
                }
                H_KEYDATA => {
                    // An item ends where the previous one starts (the key before it,
                    // for a value); an end below the start is a broken page.
                    if end <= start || end > page_size {
                        continue;
                    }
                    let value = &page[start + 1..end];
                    if value.len() >= MIN_BLOB && super::header::Header::parse(value).is_ok() {
                        if blobs.len() >= max_packages {
                            errors.push(DbError::TooManyPackages {
                                limit: max_packages,
                            });
                            break 'pages;
                        }
                        blobs.push(Blob {
                            location: format!("hash page {p} item {i}"),
                            bytes: value.to_vec(),
                        });
                    }
                }
                _ => {}
            }
        }
    }
    (blobs, errors)
}

struct Db<'a> {
    data: &'a [u8],
    page_size: usize,
    pages: usize,
    order: Order,
}

impl Db<'_> {
    fn page(&self, p: usize) -> &[u8] {
        &self.data[p * self.page_size..(p + 1) * self.page_size]
    }

    /// The `total` bytes of an overflow chain starting at page `first`.
    fn overflow(&self, first: usize, total: usize, max_blob: usize) -> Result<Vec<u8>, DbError> {
        let at = |p: usize| (p * self.page_size) as u64;
        if total > max_blob {
            return Err(DbError::Malformed {
                location: format!("overflow page {first}"),
                what: format!("value of {total} bytes is over the {max_blob}-byte bound"),
            });
        }
        // Each page holds at most page_size - 26 bytes: a longer total than the file's
        // pages can hold is refused before anything is allocated.
        if total > self.pages.saturating_mul(self.page_size - PAGE_HEADER) {
            return Err(bad(
                at(first),
                format!("value of {total} bytes is longer than the file"),
            ));
        }
        let mut out = Vec::with_capacity(total);
        let mut p = first;
        let mut steps = 0usize;
        while out.len() < total {
            if p == 0 || p >= self.pages {
                return Err(bad(
                    at(first),
                    format!("overflow chain from page {first} leads to page {p}, outside the file, after {} of {total} bytes", out.len()),
                ));
            }
            steps += 1;
            if steps > self.pages {
                return Err(bad(
                    at(first),
                    format!("overflow chain from page {first} loops"),
                ));
            }
            let page = self.page(p);
            if page[25] != P_OVERFLOW {
                return Err(bad(
                    at(p) + 25,
                    format!("page {p} of an overflow chain has type {}", page[25]),
                ));
            }
            let used = usize::from(self.order.u16(page, 22));
            if used == 0 || PAGE_HEADER + used > self.page_size {
                return Err(bad(
                    at(p) + 22,
                    format!("overflow page {p} claims {used} bytes"),
                ));
            }
            let take = used.min(total - out.len());
            out.extend_from_slice(&page[PAGE_HEADER..PAGE_HEADER + take]);
            p = self.order.u32(page, 16) as usize;
        }
        Ok(out)
    }
}
