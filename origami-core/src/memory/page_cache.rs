//! A page cache over guest-physical memory, for crawling a running guest through a source
//! where each read costs a system call (`/proc/PID/mem`).
//!
//! A crawl reads a few thousand small fields that fall in a few hundred pages; through
//! [`PageCache`] each page is read once, whole, and the fields are copied out of the copy.
//! The caller decides how long a copy stays true: [`PageCache::clear`] between crawls (a
//! new "epoch"), so a crawl never sees bytes older than its own start.
//!
//! What it changes for a live guest: within one epoch a page reads the same each time,
//! as of the moment it was first read (so two fields of one page are consistent with each
//! other, and a retry of a torn read sees the same bytes: retries only help across
//! epochs). [`PhysicalMemory::is_live`] still says the source is live.
//!
//! Limits: holds at most [`PageCache::MAX_PAGES`] pages (16 MiB); when full it starts over.
//! A page that is not wholly in the source's ranges is not cached (read through).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::{PhysRange, PhysicalMemory};
use crate::error::Result;

const PAGE: u64 = 4096;

/// Guest-physical memory read a whole page at a time, each page once until
/// [`PageCache::clear`].
///
/// ```no_run
/// use origami_core::memory::{MemoryDump, PageCache, PhysicalMemory};
///
/// let live = MemoryDump::attach_qemu_pid(4242)?;
/// let cached = PageCache::new(&live);
/// let mut word = [0u8; 8];
/// cached.read_phys(0x1000, &mut word)?; // reads the page at 0x1000 once
/// cached.read_phys(0x1008, &mut word)?; // from the copy
/// cached.clear(); // the next crawl reads the guest again
/// # Ok::<(), origami_core::Error>(())
/// ```
#[derive(Debug)]
pub struct PageCache<M> {
    inner: M,
    pages: Mutex<HashMap<u64, Box<[u8]>>>,
}

impl<M: PhysicalMemory> PageCache<M> {
    /// The most pages held (16 MiB); when full the cache starts over.
    pub const MAX_PAGES: usize = 4096;

    /// An empty cache over `inner`.
    pub fn new(inner: M) -> PageCache<M> {
        PageCache {
            inner,
            pages: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets every page: the next reads go to the source again.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The source.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Box<[u8]>>> {
        // Pages are inserted whole: a poisoned lock still guards consistent data.
        self.pages.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Copies `out.len()` bytes at `addr` (within one page) from the cached page, reading
    /// the page first if needed. False when the page cannot be read whole.
    fn copy_from_page(&self, addr: u64, out: &mut [u8]) -> bool {
        let base = addr & !(PAGE - 1);
        let at = (addr - base) as usize;
        if let Some(page) = self.lock().get(&base) {
            out.copy_from_slice(&page[at..at + out.len()]);
            return true;
        }
        let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
        if self.inner.read_phys(base, &mut page).is_err() {
            return false;
        }
        out.copy_from_slice(&page[at..at + out.len()]);
        let mut pages = self.lock();
        if pages.len() >= Self::MAX_PAGES {
            pages.clear();
        }
        pages.insert(base, page);
        true
    }
}

impl<M: PhysicalMemory> PhysicalMemory for PageCache<M> {
    fn read_phys(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0usize;
        // One turn per page touched.
        while done < buf.len() {
            let cur = addr.wrapping_add(done as u64);
            let in_page = (PAGE - (cur & (PAGE - 1))) as usize;
            let n = in_page.min(buf.len() - done);
            let out = &mut buf[done..done + n];
            if cur.checked_add(n as u64).is_none() || !self.copy_from_page(cur, out) {
                // Not cacheable (a page partly outside the ranges, the end of the address
                // space): read the rest straight, so the error names the right address.
                return self.inner.read_phys(cur, &mut buf[done..]);
            }
            done += n;
        }
        Ok(())
    }

    fn ranges(&self) -> Vec<PhysRange> {
        self.inner.ranges()
    }

    fn name(&self) -> String {
        self.inner.name()
    }

    fn is_live(&self) -> bool {
        self.inner.is_live()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::memory::{MemoryDump, RamLayout, RamRegion};

    #[test]
    fn reads_equal_the_source_and_holes_still_fail() {
        let bytes: Vec<u8> = (0..3 * PAGE as usize).map(|i| (i % 251) as u8).collect();
        // Two pages at 0 and one (plus a half page gap) at 0x10000.
        let layout = RamLayout::from_regions(vec![
            RamRegion {
                guest_phys: 0,
                file_offset: 0,
                len: 2 * PAGE,
            },
            RamRegion {
                guest_phys: 0x10000,
                file_offset: 2 * PAGE,
                len: PAGE / 2,
            },
        ])
        .unwrap();
        let dir = std::env::temp_dir().join(format!("origami-pagecache-{}", std::process::id()));
        std::fs::write(&dir, &bytes).unwrap();
        let dump = MemoryDump::open_raw(&dir, &layout).unwrap();
        let cached = PageCache::new(&dump);
        for (addr, len) in [
            (0u64, 8usize),
            (4090, 12),
            (0, 8192),
            (100, 3000),
            (0x10010, 64),
        ] {
            let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
            dump.read_phys(addr, &mut a).unwrap();
            cached.read_phys(addr, &mut b).unwrap();
            assert_eq!(a, b, "{addr:#x} {len}");
        }
        // The half page at 0x10000 is read through, and its hole still fails there.
        let mut b = [0u8; 16];
        match cached.read_phys(0x107f8, &mut b) {
            Err(Error::PhysicalHole { addr, .. }) => assert_eq!(addr, 0x10800),
            other => panic!("{other:?}"),
        }
        match cached.read_phys(2 * PAGE - 8, &mut b) {
            Err(Error::PhysicalHole { addr, .. }) => assert_eq!(addr, 2 * PAGE),
            other => panic!("{other:?}"),
        }
        assert!(cached.read_phys(u64::MAX - 4, &mut b).is_err());
        cached.clear();
        let _ = std::fs::remove_file(&dir);
    }
}
