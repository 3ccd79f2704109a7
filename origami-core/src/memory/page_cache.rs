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
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

use super::{PhysRange, PhysicalMemory};
use crate::error::Result;

const PAGE: u64 = 4096;
const PAGE_BYTES: usize = PAGE as usize;

/// The most pages one inner read fetches when a read spans several missing pages (a
/// table read whole): one system call for the run instead of one per page.
const MAX_RUN: usize = 16;

/// Hashes a page address with one multiplication: the keys are page-aligned addresses,
/// not attacker-chosen strings (the guest chooses which pages we read, but a collision
/// only costs a probe, and the map is bounded by [`PageCache::MAX_PAGES`]).
#[derive(Default)]
struct PageHasher(u64);

impl Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// One page's copy.
type Page = Box<[u8; PAGE_BYTES]>;

/// The cached pages by address, and spare copies kept across [`PageCache::clear`] so
/// that a crawl after the first allocates nothing.
#[derive(Default)]
struct Pages {
    index: HashMap<u64, Page, BuildHasherDefault<PageHasher>>,
    spare: Vec<Page>,
}

impl Pages {
    fn get(&self, base: u64) -> Option<&[u8; PAGE_BYTES]> {
        self.index.get(&base).map(|b| &**b)
    }

    /// A page buffer to read into (a spare one when there is one).
    fn take(&mut self) -> Page {
        self.spare
            .pop()
            .unwrap_or_else(|| Box::new([0u8; PAGE_BYTES]))
    }

    /// Keeps `page` (read at `base`); starts over when full.
    fn insert(&mut self, base: u64, page: Page) {
        if self.index.contains_key(&base) {
            self.spare.push(page);
            return;
        }
        if self.index.len() >= PageCache::<()>::MAX_PAGES {
            self.forget();
        }
        self.index.insert(base, page);
    }

    fn forget(&mut self) {
        let spare = &mut self.spare;
        spare.extend(self.index.drain().map(|(_, p)| p));
    }
}

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
pub struct PageCache<M> {
    inner: M,
    pages: Mutex<Pages>,
}

impl<M: std::fmt::Debug> std::fmt::Debug for PageCache<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageCache")
            .field("inner", &self.inner)
            .field("pages", &self.lock().index.len())
            .finish()
    }
}

impl<M> PageCache<M> {
    /// The most pages held (16 MiB); when full the cache starts over.
    pub const MAX_PAGES: usize = 4096;

    fn lock(&self) -> MutexGuard<'_, Pages> {
        // Pages are inserted whole: a poisoned lock still guards consistent data.
        self.pages.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<M: PhysicalMemory> PageCache<M> {
    /// An empty cache over `inner`.
    pub fn new(inner: M) -> PageCache<M> {
        PageCache {
            inner,
            pages: Mutex::new(Pages::default()),
        }
    }

    /// Forgets every page: the next reads go to the source again. (The copies' memory is
    /// kept for the next pages.)
    pub fn clear(&self) {
        self.lock().forget();
    }

    /// The source.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// Copies `out.len()` bytes at `addr` (within one page) from the cached page. False
    /// when the page is not cached.
    fn copy_cached(&self, addr: u64, out: &mut [u8]) -> bool {
        let base = addr & !(PAGE - 1);
        let at = (addr - base) as usize;
        match self.lock().get(base) {
            Some(page) => {
                out.copy_from_slice(&page[at..at + out.len()]);
                true
            }
            None => false,
        }
    }

    /// Reads the `pages` whole pages from `base` (none of them cached, all wanted) in one
    /// inner read, keeps them, and copies `out` (the wanted bytes from `addr`, inside the
    /// run) out of them. False when the run cannot be read whole.
    fn fetch_run(&self, base: u64, pages: usize, addr: u64, out: &mut [u8]) -> bool {
        let at = (addr - base) as usize;
        if pages == 1 {
            // Read straight into the copy that is kept (no second copy).
            let mut page = self.lock().take();
            if self.inner.read_phys(base, &mut page[..]).is_err() {
                self.lock().spare.push(page);
                return false;
            }
            out.copy_from_slice(&page[at..at + out.len()]);
            self.lock().insert(base, page);
            return true;
        }
        let mut buf = vec![0u8; pages * PAGE_BYTES];
        if self.inner.read_phys(base, &mut buf).is_err() {
            return false;
        }
        out.copy_from_slice(&buf[at..at + out.len()]);
        let mut cache = self.lock();
        for (i, chunk) in buf.chunks_exact(PAGE_BYTES).enumerate() {
            let mut page = cache.take();
            page.copy_from_slice(chunk);
            cache.insert(base + (i as u64) * PAGE, page);
        }
        true
    }
}

impl<M: PhysicalMemory> PhysicalMemory for PageCache<M> {
    fn read_phys(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        if addr.checked_add(buf.len() as u64).is_none() {
            return self.inner.read_phys(addr, buf);
        }
        let mut done = 0usize;
        // One turn per cached page touched, or per run of missing pages.
        while done < buf.len() {
            let cur = addr + done as u64;
            let in_page = (PAGE - (cur & (PAGE - 1))) as usize;
            let n = in_page.min(buf.len() - done);
            if self.copy_cached(cur, &mut buf[done..done + n]) {
                done += n;
                continue;
            }
            // A run of missing pages this read wants (bounded), read at once.
            let base = cur & !(PAGE - 1);
            let mut pages = 1usize;
            let mut end = done + n;
            while pages < MAX_RUN && end < buf.len() {
                let next = base + (pages as u64) * PAGE;
                if self.lock().get(next).is_some() {
                    break;
                }
                let m = (buf.len() - end).min(PAGE_BYTES);
                pages += 1;
                end += m;
            }
            if !self.fetch_run(base, pages, cur, &mut buf[done..end]) {
                // Not cacheable (a page partly outside the ranges): read the rest
                // straight, so the error names the right address.
                if pages == 1 || !self.fetch_run(base, 1, cur, &mut buf[done..done + n]) {
                    return self.inner.read_phys(cur, &mut buf[done..]);
                }
                end = done + n;
            }
            done = end;
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

    /// From the cached page when there is one, else the 8 bytes alone, not cached: a
    /// process's page tables are walked once per crawl, one entry per table page, so
    /// reading their pages whole would copy 4 KiB for 8 bytes.
    fn read_entry(&self, addr: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        if addr & (PAGE - 1) <= PAGE - 8 && self.copy_cached(addr, &mut b) {
            return Ok(u64::from_le_bytes(b));
        }
        self.inner.read_entry(addr)
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
