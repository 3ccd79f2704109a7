//! rpm's sqlite database (`rpmdb.sqlite`, rpm 4.16+: Fedora 33+, RHEL 9, CBL-Mariner): the
//! table `Packages(hnum INTEGER PRIMARY KEY, blob BLOB)` holds one header blob per package.
//!
//! The file is handed to SQLite through `sqlite3_deserialize` (an in-memory database,
//! read-only): nothing of the guest is written to the host. rpm keeps the database in WAL
//! mode; the in-memory VFS has no WAL, so the header's two version bytes are set to the
//! legacy (rollback-journal) value as the bytes are copied. What sits in a `-wal` file not
//! yet checkpointed is not seen (rpm checkpoints when a transaction ends).

use std::io::Read;

use super::{Blob, DbError};

/// Where the two file-format version bytes of an SQLite header are.
const VERSION_BYTES: std::ops::Range<u64> = 18..20;

/// A reader that sets the SQLite header's write/read versions to 1 (legacy) as it copies,
/// and keeps the 100-byte header it copied.
struct LegacyJournal<R> {
    inner: R,
    pos: u64,
    head: std::rc::Rc<std::cell::RefCell<[u8; 100]>>,
}

impl<R: Read> Read for LegacyJournal<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        {
            let mut head = self.head.borrow_mut();
            for (i, b) in buf[..n].iter().enumerate() {
                match head.get_mut(self.pos as usize + i) {
                    Some(h) => *h = *b,
                    None => break,
                }
            }
        }
        for (i, b) in buf[..n].iter_mut().enumerate() {
            if VERSION_BYTES.contains(&(self.pos + i as u64)) && *b == 2 {
                *b = 1;
            }
            if self.pos + i as u64 >= VERSION_BYTES.end {
                break;
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// A file cut short is an error, even where SQLite would read what is left: its length must
/// be whole pages, and at least the pages its header counts (when that count is valid: the
/// change counter equals the version-valid-for number).
fn check_whole(head: &[u8; 100], len: usize) -> Result<(), DbError> {
    if len < head.len() {
        return Err(DbError::Malformed {
            location: "offset 0".into(),
            what: format!("{len} bytes: shorter than an SQLite header"),
        });
    }
    let page = match u32::from(u16::from_be_bytes([head[16], head[17]])) {
        1 => 65_536,
        p => p,
    };
    if !(512..=65_536).contains(&page) || !page.is_power_of_two() {
        return Err(DbError::Malformed {
            location: "offset 16".into(),
            what: format!("page size {page}"),
        });
    }
    let page = page as usize;
    let counted = u32::from_be_bytes([head[28], head[29], head[30], head[31]]) as usize;
    let valid = head[24..28] == head[92..96];
    if !len.is_multiple_of(page) || (valid && counted.saturating_mul(page) > len) {
        return Err(DbError::Malformed {
            location: format!("offset {len:#x}"),
            what: format!(
                "truncated: {len} bytes, not the {} pages of {page} bytes the header counts",
                counted
            ),
        });
    }
    Ok(())
}

fn sq(e: rusqlite::Error) -> DbError {
    DbError::Sqlite(e.to_string())
}

/// The header blobs of an `rpmdb.sqlite` of `len` bytes read from `reader`, at most
/// `max_packages` of them.
pub fn read(reader: impl Read, len: usize, max_packages: usize) -> Result<Vec<Blob>, DbError> {
    use rusqlite::{Connection, OpenFlags};
    let mut conn = Connection::open_in_memory_with_flags(
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sq)?;
    // Hostile files: no triggers or views run from the guest's schema, and cells are checked.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .map_err(sq)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA,
        false,
    )
    .map_err(sq)?;
    let head = std::rc::Rc::new(std::cell::RefCell::new([0u8; 100]));
    conn.deserialize_read_exact(
        rusqlite::MAIN_DB,
        LegacyJournal {
            inner: reader,
            pos: 0,
            head: head.clone(),
        },
        len,
        true,
    )
    .map_err(sq)?;
    check_whole(&head.borrow(), len)?;
    conn.pragma_update(None, "cell_size_check", true)
        .map_err(sq)?;
    let mut stmt = conn
        .prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")
        .map_err(sq)?;
    let mut rows = stmt.query([]).map_err(sq)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sq)? {
        if out.len() >= max_packages {
            return Err(DbError::TooManyPackages {
                limit: max_packages,
            });
        }
        let hnum: i64 = row.get(0).map_err(sq)?;
        let bytes: Vec<u8> = match row.get_ref(1).map_err(sq)? {
            rusqlite::types::ValueRef::Blob(b) => b.to_vec(),
            other => {
                return Err(DbError::Malformed {
                    location: format!("Packages row hnum {hnum}"),
                    what: format!("blob column of type {:?}", other.data_type()),
                })
            }
        };
        out.push(Blob {
            location: format!("Packages row hnum {hnum}"),
            bytes,
        });
    }
    Ok(out)
}
