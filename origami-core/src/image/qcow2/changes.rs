//! Noticing that a qcow2 file changes while it is read (a running QEMU writes it): the
//! header's first 104 bytes and the L1 table as they were at open, and a CRC of every L2
//! table the first time it was read. A reader re-reads the header and the L1 table at most
//! every [`RECHECK`] during reads, compares every L2 table it reads again with its first
//! reading, and [`Qcow2Image::check_unchanged`] compares everything once more (call it
//! after a crawl). A difference is [`Error::ChangedWhileRead`]: what was read may mix two
//! states of the image.
//!
//! Limits: a guest overwriting data in clusters that stay where they are changes no
//! metadata and is not seen; only a point-in-time view (a fleecing export, a snapshot) is
//! consistent for that.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{lock, Qcow2Image};
use crate::error::{Error, Result};

/// How often reads re-check the header and the L1 table.
pub(super) const RECHECK: Duration = Duration::from_millis(50);

/// The header bytes compared: the fixed header of versions 2 and 3 (sizes, table
/// offsets, snapshot count, feature bits).
const HEADER: usize = 104;

/// What the image looked like when it was opened, and the L2 tables seen since.
pub(super) struct Seen {
    header: Vec<u8>,
    l1: u32,
    l2: Mutex<HashMap<u64, u32>>,
    checked: Mutex<Instant>,
}

impl Seen {
    pub(super) fn new(header: Vec<u8>, l1_raw: &[u8]) -> Seen {
        Seen {
            header,
            l1: crc32fast::hash(l1_raw),
            l2: Mutex::new(HashMap::new()),
            checked: Mutex::new(Instant::now()),
        }
    }

    /// The header bytes to keep at open.
    pub(super) fn read_header(image: &dyn crate::ReadAt) -> Result<Vec<u8>> {
        let mut h = vec![0u8; (image.len() as usize).min(HEADER)];
        image.read_at(0, &mut h)?;
        Ok(h)
    }
}

impl Qcow2Image {
    fn changed(&self, what: String) -> Error {
        Error::ChangedWhileRead {
            source_name: self.file.name(),
            what,
        }
    }

    /// Records the CRC of the L2 table at `offset`, or fails when an earlier reading of it
    /// differs.
    pub(super) fn seen_l2(&self, offset: u64, raw: &[u8]) -> Result<()> {
        let crc = crc32fast::hash(raw);
        let mut seen = lock(&self.seen.l2);
        match seen.get(&offset) {
            Some(&c) if c != crc => Err(self.changed(format!("the L2 table at {offset:#x}"))),
            Some(_) => Ok(()),
            None => {
                seen.insert(offset, crc);
                Ok(())
            }
        }
    }

    fn header_and_l1_unchanged(&self) -> Result<()> {
        if Seen::read_header(&*self.file)? != self.seen.header {
            return Err(self.changed("the header".into()));
        }
        let mut raw = vec![0u8; self.l1.len() * 8];
        self.file.read_at(self.header.l1_table_offset, &mut raw)?;
        if crc32fast::hash(&raw) != self.seen.l1 {
            return Err(self.changed(format!(
                "the L1 table at {:#x}",
                self.header.l1_table_offset
            )));
        }
        Ok(())
    }

    /// During reads: the header and L1 table re-checked when [`RECHECK`] has passed.
    pub(super) fn recheck_now_and_then(&self) -> Result<()> {
        {
            let mut at = lock(&self.seen.checked);
            if at.elapsed() < RECHECK {
                return Ok(());
            }
            *at = Instant::now();
        }
        self.header_and_l1_unchanged()
    }

    /// Fails with [`Error::ChangedWhileRead`] when the header, the L1 table or any L2 table
    /// read so far is not what it was when first read: something writes the image, and
    /// what was read from it may mix two states. Call it after reading what must be
    /// consistent (a crawl); see the module docs for what it cannot see.
    pub fn check_unchanged(&self) -> Result<()> {
        self.header_and_l1_unchanged()?;
        let tables: Vec<(u64, u32)> = lock(&self.seen.l2).iter().map(|(o, c)| (*o, *c)).collect();
        let mut raw = vec![0u8; self.cluster_size as usize];
        for (offset, crc) in tables {
            self.file.read_at(offset, &mut raw)?;
            if crc32fast::hash(&raw) != crc {
                return Err(self.changed(format!("the L2 table at {offset:#x}")));
            }
        }
        Ok(())
    }
}
