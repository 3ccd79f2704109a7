//! The cache an incremental crawl puts in front of one ext4 volume: a [`FileSystem`](crate::fs::FileSystem) that
//! answers from the previous crawl's [`VolumeState`] for every inode that did not change,
//! and asks `ext4-view` (recording what it says) for the rest.
//!
//! "Did not change" is decided before the crawl, from the raw inode tables
//! ([`RawExt4`]): an inode is clean when its digest equals the previous crawl's. The
//! digests are recomputed for the whole used part of every inode table (the digest
//! fallback) or, given a [`DirtyMap`], only for the inode-table blocks it marks. A
//! directory's listing is reused only when the directory and every entry's inode are clean:
//! ext4 updates a directory's modification and change times whenever an entry is added,
//! removed or renamed, and an entry's `lstat` comes from its own inode. A file's content
//! (its sha256, or the bytes of a small file read whole) is reused when its inode is clean,
//! or when only its metadata changed (a chmod, a chown, a new link: the inode's content
//! digest, over its size, map, modification time and generation, is the previous one):
//! every write through the file system updates the inode's modification time or map (a
//! write to the block device behind the file system's back is not seen, as no file system
//! would see it).

mod fs;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use origami_core::dirty::DirtyMap;
use origami_core::ReadAt;
use sha2::{Digest, Sha256};

use super::ext4_raw::{digest_ranges, InodeDigests, Previous, RawExt4, Scanned, ROOT_INO};
use super::state::{Bytes, DirBlocks, EntryRecord, GroupDigests, InodeRecord, VolumeState};
use crate::error::{Error, Result};
use crate::fs::FsInfo;

/// The largest file whose content is kept in the state.
pub const MAX_CONTENT: usize = 1 << 20;
/// The most content bytes kept per volume.
pub const MAX_CONTENT_TOTAL: u64 = 64 << 20;
/// The largest directory (its blocks) whose listing is kept.
pub const MAX_DIR_BYTES: u64 = 64 << 20;

/// How the changed inodes of a volume were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeSource {
    /// No usable previous state: everything read.
    Full,
    /// Every used inode digested and compared.
    Digests,
    /// Only the inode-table blocks a dirty map marks digested.
    DirtyMap,
}

/// What happened on one volume, for the crawl's report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VolumeReport {
    /// The file-system UUID.
    pub uuid: String,
    /// How the changes were found (`None` until known).
    pub source: Option<ChangeSource>,
    /// Inode-table blocks read and digested (all of them, or those a dirty map marks).
    pub table_blocks_read: u64,
    /// Inodes digested one by one: those of the blocks read whose digest changed.
    pub inodes_scanned: u64,
    /// Inodes found changed (new, removed or modified).
    pub inodes_changed: u64,
    /// Directories whose listing was read again.
    pub dirs_read: u64,
    /// Directories whose blocks did not change but some entries' inodes did: listed from
    /// the previous listing, only the changed entries' metadata read.
    pub dirs_patched: u64,
    /// Regular files whose content was read (hashed or read whole).
    pub files_read: u64,
    /// Directories whose inode was unchanged but whose blocks were not (a writer that
    /// did not update the directory's times).
    pub dirs_changed_blocks: u64,
    /// Answers given from the previous state.
    pub cache_hits: u64,
}

/// A set of inode numbers, sorted and searched by bisection (a guest chooses which inodes
/// change: no hash function for it to defeat).
#[derive(Debug, Default)]
struct InoSet(Vec<u64>);

impl From<Vec<u64>> for InoSet {
    fn from(mut v: Vec<u64>) -> Self {
        v.sort_unstable();
        v.dedup();
        InoSet(v)
    }
}

impl InoSet {
    fn contains(&self, ino: &u64) -> bool {
        self.0.binary_search(ino).is_ok()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One volume's previous state, its fresh digests, and what this crawl records.
pub(crate) struct VolumeCache {
    source: Arc<dyn ReadAt>,
    uuid: String,
    raw: RawExt4,
    key: [u8; 32],
    old: Option<Arc<VolumeState>>,
    groups: Vec<GroupDigests>,
    changed: InoSet,
    dirty_dirs: InoSet,
    /// Directories listed again from their previous listing (see `prepare`).
    patchable: InoSet,
    recorded: Mutex<HashMap<u64, InodeRecord>>,
    /// Contents read by path whose inode was not known then: (path, bytes).
    pending: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
    content_bytes: AtomicU64,
    report: Mutex<VolumeReport>,
}

impl VolumeCache {
    /// Reads `source`'s inode tables (those `dirty` marks, when given with a matching
    /// `previous`) and compares them with `previous`. Notes on why a previous state was not
    /// used go to `notes`.
    pub(crate) fn prepare(
        volume: &Arc<dyn ReadAt>,
        info: &FsInfo,
        key: &[u8; 32],
        previous: Option<&Arc<VolumeState>>,
        dirty: Option<&DirtyMap>,
        threads: usize,
        notes: &mut Vec<String>,
    ) -> Result<VolumeCache> {
        let source = &**volume;
        let raw = RawExt4::open(source)?;
        let name = source.name();
        if info.uuid.as_deref() != Some(raw.uuid.as_str()) {
            return Err(Error::FileSystem {
                source_name: name,
                fs: "ext4",
                path: None,
                what: format!(
                    "raw superblock UUID {} is not the file system's {:?}",
                    raw.uuid, info.uuid
                ),
            });
        }
        let mut old = previous.cloned();
        if let Some(o) = &old {
            if o.block_size != raw.block_size
                || o.blocks != raw.blocks
                || o.inodes_per_group != raw.inodes_per_group
                || o.inode_size != raw.inode_size
                || o.groups.len() != raw.groups.len()
            {
                notes.push(format!(
                    "{name}: the saved state of ext4 {} describes another geometry \
                     (block size, blocks or inodes changed): read in full",
                    raw.uuid
                ));
                old = None;
            }
        }
        if raw.needs_recovery && old.is_some() {
            notes.push(format!(
                "{name}: ext4 {} has a journal to replay, so its inode tables may be older \
                 than the files: read in full",
                raw.uuid
            ));
            old = None;
        }
        let mut report = VolumeReport {
            uuid: raw.uuid.clone(),
            ..VolumeReport::default()
        };
        let dirty = dirty.filter(|_| old.is_some());
        report.source = Some(match (&old, dirty) {
            (None, _) => ChangeSource::Full,
            (Some(_), None) => ChangeSource::Digests,
            (Some(_), Some(_)) => ChangeSource::DirtyMap,
        });
        let mut groups = Vec::with_capacity(raw.groups.len());
        let mut changed: Vec<u64> = Vec::new();
        let pb = raw.per_block();
        // The inode-table blocks to read, as (group, range of blocks) pieces scanned on
        // `threads` threads.
        let mut jobs: Vec<(usize, std::ops::Range<u32>)> = Vec::new();
        // Per group: how many first blocks keep the previous digests unless read again.
        let mut known: Vec<u32> = Vec::with_capacity(raw.groups.len());
        for (g, table) in raw.groups.iter().enumerate() {
            let used = table.used;
            let nblocks = used.div_ceil(pb);
            let prev = old.as_ref().and_then(|o| o.groups.get(g));
            // Start from the previous digests where they cover the same inodes: what is not
            // read again (a block the dirty map does not mark, or that holds what it held)
            // keeps them.
            let mut d = GroupDigests {
                digests: vec![0; used as usize],
                content: vec![0; used as usize],
                generations: vec![0; used as usize],
                blocks: vec![0; nblocks as usize],
            };
            let mut first_unknown = 0;
            if let Some(p) = prev {
                let known = p.digests.len().min(used as usize);
                if p.content.len() >= known && p.generations.len() >= known {
                    d.digests[..known].copy_from_slice(&p.digests[..known]);
                    d.content[..known].copy_from_slice(&p.content[..known]);
                    d.generations[..known].copy_from_slice(&p.generations[..known]);
                    // Only blocks whose used inodes all were known keep their digest.
                    first_unknown = known_blocks(known as u32, used, pb, p.blocks.len());
                    let k = first_unknown as usize;
                    d.blocks[..k].copy_from_slice(&p.blocks[..k]);
                }
            }
            // Which blocks to read: with a dirty map the marked ones and those the
            // previous crawl did not know; else all of them.
            let mut to_read: Vec<std::ops::Range<u32>> = Vec::new();
            match (prev, dirty) {
                (Some(_), Some(map)) => {
                    for b in 0..first_unknown {
                        if map.intersects(raw.table_bytes(g, raw.block_inodes(g, b))) {
                            match to_read.last_mut() {
                                Some(r) if r.end == b => r.end = b + 1,
                                _ => to_read.push(b..b + 1),
                            }
                        }
                    }
                    if first_unknown < nblocks {
                        to_read.push(first_unknown..nblocks);
                    }
                }
                _ => to_read.push(0..nblocks),
            }
            let job = (SCAN_JOB / pb).max(1);
            for r in to_read {
                let mut at = r.start;
                while at < r.end {
                    let end = r.end.min(at.saturating_add(job));
                    jobs.push((g, at..end));
                    at = end;
                }
            }
            groups.push(d);
            known.push(first_unknown);
        }
        let previous_block = |g: usize, b: u32| {
            if b < *known.get(g)? {
                old.as_ref()?.groups.get(g)?.blocks.get(b as usize).copied()
            } else {
                None
            }
        };
        let previous_inode = |g: usize, i: u32| {
            let p = old.as_ref()?.groups.get(g)?;
            let i = i as usize;
            Some(InodeDigests {
                all: *p.digests.get(i)?,
                content: *p.content.get(i)?,
                generation: *p.generations.get(i)?,
            })
        };
        let scanned = scan_all(
            &raw,
            source,
            key,
            &jobs,
            threads,
            &previous_block,
            &previous_inode,
        )?;
        for (g, found) in scanned {
            let Some(d) = groups.get_mut(g) else { continue };
            report.table_blocks_read += found.blocks.len() as u64;
            for (b, digest) in found.blocks {
                if let Some(slot) = d.blocks.get_mut(b as usize) {
                    *slot = digest;
                }
            }
            report.inodes_scanned += found.inodes.len() as u64;
            for (i, x) in found.inodes {
                let i = i as usize;
                if i < d.digests.len() {
                    d.digests[i] = x.all;
                    d.content[i] = x.content;
                    d.generations[i] = x.generation;
                }
            }
        }
        for (g, d) in groups.iter().enumerate() {
            let used = d.digests.len() as u32;
            let prev = old.as_ref().and_then(|o| o.groups.get(g));
            let Some(p) = prev else {
                changed.extend((0..used).map(|i| raw.ino(g, i)));
                continue;
            };
            for i in 0..used {
                if p.digests.get(i as usize) != Some(&d.digests[i as usize]) {
                    changed.push(raw.ino(g, i));
                }
            }
            // Inodes used before and no longer in the used part: changed too.
            for i in used..p.digests.len() as u32 {
                changed.push(raw.ino(g, i));
            }
        }
        let changed = InoSet::from(changed);
        let mut dirty_dirs: Vec<u64> = changed.0.clone();
        // Directories whose own inode and blocks are unchanged but some entry's inode is
        // not: their entries (names, inodes) are the previous ones; only those entries'
        // `lstat` is read again ([`CachedFs`]).
        let mut patchable: Vec<u64> = Vec::new();
        // A listing is reused (or patched) only if the directory's blocks (and extent-tree
        // blocks) still hold what they held: digested again, unless a dirty map says they
        // were not written. (One pass over the records: each is a pointer to follow.)
        if let Some(o) = &old {
            for (dir, rec) in &o.inodes {
                let Some(list) = &rec.listing else { continue };
                if changed.contains(dir) {
                    continue;
                }
                let same = match &rec.dir_blocks {
                    None => false,
                    Some(b) => {
                        let untouched = dirty
                            .is_some_and(|m| !b.ranges.iter().any(|&(s, e)| m.intersects(s..e)));
                        untouched || {
                            let ranges: Vec<std::ops::Range<u64>> =
                                b.ranges.iter().map(|&(s, e)| s..e).collect();
                            digest_ranges(source, key, &ranges, MAX_DIR_BYTES)? == Some(b.digest)
                        }
                    }
                };
                if !same {
                    dirty_dirs.push(*dir);
                    report.dirs_changed_blocks += 1;
                } else if list.iter().any(|e| changed.contains(&e.ino)) {
                    dirty_dirs.push(*dir);
                    patchable.push(*dir);
                }
            }
        }
        let (dirty_dirs, patchable) = (InoSet::from(dirty_dirs), InoSet::from(patchable));
        report.inodes_changed = if old.is_some() {
            changed.0.len() as u64
        } else {
            0
        };
        Ok(VolumeCache {
            source: volume.clone(),
            uuid: raw.uuid.clone(),
            raw,
            key: *key,
            old,
            groups,
            changed,
            dirty_dirs,
            patchable,
            recorded: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            content_bytes: AtomicU64::new(0),
            report: Mutex::new(report),
        })
    }

    /// The volume's UUID.
    pub(crate) fn uuid(&self) -> &str {
        &self.uuid
    }

    /// The generation of inode `ino`, as the inode tables say now.
    pub(crate) fn generation(&self, ino: u64) -> Option<u32> {
        let (g, i) = self.place(ino)?;
        self.groups.get(g)?.generations.get(i).copied()
    }

    fn place(&self, ino: u64) -> Option<(usize, usize)> {
        let ipg = u64::from(self.raw.inodes_per_group);
        let idx = ino.checked_sub(1)?;
        Some(((idx / ipg) as usize, (idx % ipg) as usize))
    }

    /// Whether inode `ino` lies in the used part of an inode table.
    fn in_tables(&self, ino: u64) -> bool {
        self.place(ino)
            .is_some_and(|(g, i)| self.groups.get(g).is_some_and(|d| i < d.digests.len()))
    }

    /// Whether inode `ino` is unchanged since the previous crawl.
    fn clean(&self, ino: u64) -> bool {
        self.old.is_some() && !self.changed.contains(&ino) && self.in_tables(ino)
    }

    /// Whether inode `ino`'s content is unchanged since the previous crawl: it is clean,
    /// or only its metadata changed (its content digest, which covers its size, map,
    /// modification time and generation, is the previous one).
    pub(crate) fn content_clean(&self, ino: u64) -> bool {
        if self.clean(ino) {
            return true;
        }
        let (Some(old), Some((g, i))) = (&self.old, self.place(ino)) else {
            return false;
        };
        match (old.groups.get(g), self.groups.get(g)) {
            (Some(p), Some(n)) => i < n.content.len() && p.content.get(i) == n.content.get(i),
            _ => false,
        }
    }

    /// The previous crawl's record of inode `ino`'s content (its sha256, content or link
    /// target), when that content is unchanged.
    fn old_record(&self, ino: u64) -> Option<&InodeRecord> {
        if !self.content_clean(ino) {
            return None;
        }
        self.old.as_ref()?.inodes.get(&ino).map(|r| &**r)
    }

    /// The previous listing of directory `ino`, when it and all its entries are clean.
    pub(crate) fn old_listing(&self, ino: u64) -> Option<&Vec<EntryRecord>> {
        if self.dirty_dirs.contains(&ino) || !self.clean(ino) {
            return None;
        }
        self.old.as_ref()?.inodes.get(&ino)?.listing.as_ref()
    }

    /// The previous listing of directory `ino`, whether or not it still holds (its entries'
    /// `lstat` hold for those whose inode is clean).
    fn previous_listing(&self, ino: u64) -> Option<&Vec<EntryRecord>> {
        self.old.as_ref()?.inodes.get(&ino)?.listing.as_ref()
    }

    /// The inode of the file-system path `path`, found through clean listings only.
    fn resolve(&self, path: &[u8]) -> Option<u64> {
        walk_names(path, |ino| self.names(ino))
    }

    /// The previous listing of directory `ino` when its names and inodes still hold: a
    /// clean listing, or one patched because only some entries' inodes changed (the
    /// entries' `lstat` then holds only for clean inodes).
    fn names(&self, ino: u64) -> Option<&Vec<EntryRecord>> {
        if self.patchable.contains(&ino) && self.clean(ino) {
            return self.previous_listing(ino);
        }
        self.old_listing(ino)
    }

    /// The entry for `path` in its parent's listing, when its inode is clean (so that its
    /// `lstat` holds).
    fn entry(&self, path: &[u8]) -> Option<&EntryRecord> {
        let cut = path.iter().rposition(|&b| b == b'/')?;
        let (parent, name) = (&path[..cut.max(1)], &path[cut + 1..]);
        if name.is_empty() || name == b"." || name == b".." {
            return None;
        }
        let dir = self.resolve(parent)?;
        let e = self.names(dir)?.iter().find(|e| e.name.0 == name)?;
        self.clean(e.ino).then_some(e)
    }

    fn record(&self, ino: u64, f: impl FnOnce(&mut InodeRecord)) {
        f(lock(&self.recorded).entry(ino).or_default());
    }

    fn count(&self, f: impl FnOnce(&mut VolumeReport)) {
        f(&mut lock(&self.report));
    }

    /// Keeps the content of the file at `path` (read whole, its inode unknown) until
    /// [`VolumeCache::finish`] finds its inode in this crawl's listings.
    fn record_pending(&self, path: Vec<u8>, data: Vec<u8>) {
        let n = data.len() as u64;
        if self.content_bytes.fetch_add(n, Ordering::Relaxed) + n > MAX_CONTENT_TOTAL {
            return;
        }
        lock(&self.pending).push((path, data));
    }

    fn record_content(&self, ino: u64, data: Vec<u8>) {
        let n = data.len() as u64;
        if self.content_bytes.fetch_add(n, Ordering::Relaxed) + n > MAX_CONTENT_TOTAL {
            return;
        }
        let sha: [u8; 32] = Sha256::digest(&data).into();
        self.record(ino, |r| {
            r.sha256 = Some(sha);
            r.content = Some(Bytes(data));
        });
    }

    /// What this crawl knows of the volume, for the next one: the fresh digests, the
    /// previous records of the inodes that did not change (shared, not copied; a
    /// directory's listing only when it is still valid; only the content's records of an
    /// inode whose metadata alone changed), and everything read this time.
    pub(crate) fn finish(&self) -> VolumeState {
        // The previous map, shared; then only what changed is updated. Every inode whose
        // record no longer holds is in `dirty_dirs` (which holds the changed inodes), but
        // for records of inodes outside the used part of the tables (which no crawl
        // makes: a state from elsewhere), which `clean` never lets be used.
        let mut inodes = self
            .old
            .as_ref()
            .map(|o| o.inodes.clone())
            .unwrap_or_default();
        for &ino in &self.dirty_dirs.0 {
            let Some(rec) = inodes.get(&ino).cloned() else {
                continue;
            };
            if self.clean(ino) {
                if rec.listing.is_some() {
                    let mut r = (*rec).clone();
                    r.listing = None;
                    r.dir_blocks = None;
                    inodes.insert(ino, Arc::new(r));
                }
            } else if self.content_clean(ino) {
                let r = InodeRecord {
                    link: rec.link.clone(),
                    sha256: rec.sha256,
                    content: rec.content.clone(),
                    ..InodeRecord::default()
                };
                inodes.insert(ino, Arc::new(r));
            } else {
                inodes.remove(&ino);
            }
        }
        let recorded = std::mem::take(&mut *lock(&self.recorded));
        for (ino, rec) in recorded {
            if !self.in_tables(ino) {
                continue;
            }
            let slot = Arc::make_mut(inodes.entry(ino).or_default());
            if rec.listing.is_some() {
                slot.listing = rec.listing;
                // A patched listing's blocks were found unchanged: their record holds.
                slot.dir_blocks = match self.patchable.contains(&ino) {
                    true => self
                        .old
                        .as_ref()
                        .and_then(|o| o.inodes.get(&ino))
                        .and_then(|r| r.dir_blocks.clone()),
                    false => self.dir_blocks(ino),
                };
            }
            if rec.link.is_some() {
                slot.link = rec.link;
            }
            if rec.sha256.is_some() {
                slot.sha256 = rec.sha256;
            }
            if rec.content.is_some() {
                slot.content = rec.content;
            }
        }
        // Contents read by path: their inode from this crawl's listings (all of them are
        // this crawl's view: carried because unchanged, or read again).
        for (path, data) in std::mem::take(&mut *lock(&self.pending)) {
            let found = walk_names(&path, |i| inodes.get(&i)?.listing.as_ref());
            let Some(ino) = found.filter(|&i| self.in_tables(i)) else {
                continue;
            };
            let slot = Arc::make_mut(inodes.entry(ino).or_default());
            if slot.content.is_none() {
                slot.sha256 = Some(Sha256::digest(&data).into());
                slot.content = Some(Bytes(data));
            }
        }
        VolumeState {
            uuid: self.uuid.clone(),
            block_size: self.raw.block_size,
            blocks: self.raw.blocks,
            inodes_per_group: self.raw.inodes_per_group,
            inode_size: self.raw.inode_size,
            groups: self.groups.clone(),
            inodes,
        }
    }

    /// Where directory `ino`'s blocks lie now and their digest (`None` when they cannot be
    /// known: a block-mapped directory, a tree past the bounds, a read error).
    fn dir_blocks(&self, ino: u64) -> Option<DirBlocks> {
        let source = &*self.source;
        let raw = self.raw.read_inode(source, ino).ok()?;
        let ranges = self.raw.extent_ranges(source, &raw).ok()??;
        let digest = digest_ranges(source, &self.key, &ranges, MAX_DIR_BYTES).ok()??;
        Some(DirBlocks {
            ranges: ranges.iter().map(|r| (r.start, r.end)).collect(),
            digest,
        })
    }

    /// The report so far.
    pub(crate) fn report(&self) -> VolumeReport {
        lock(&self.report).clone()
    }
}

/// The inode of file-system path `path`, from the root through the listings `names` gives
/// (`None` when a directory on the way has none, a name is not found, or a part is `.` or
/// `..`).
fn walk_names<'a>(path: &[u8], names: impl Fn(u64) -> Option<&'a Vec<EntryRecord>>) -> Option<u64> {
    let mut ino = ROOT_INO;
    for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        if part == b"." || part == b".." {
            return None;
        }
        ino = names(ino)?.iter().find(|e| e.name.0 == part)?.ino;
    }
    Some(ino)
}

/// How many of a group's first inode-table blocks had all their used inodes known to the
/// previous crawl, which saw `known` of the `used` inodes now used and kept `blocks` block
/// digests (the last block counts when it is partial and all of it was known: its
/// previous digest then covers the same bytes, or differs).
fn known_blocks(known: u32, used: u32, per_block: u32, blocks: usize) -> u32 {
    let whole = if known >= used {
        used.div_ceil(per_block)
    } else {
        known / per_block
    };
    whole.min(u32::try_from(blocks).unwrap_or(u32::MAX))
}

/// The most inodes one scanning job reads.
const SCAN_JOB: u32 = 1024;

/// The inode-table blocks of `jobs` (group, range of its blocks), read and digested on
/// `threads` threads (the calling thread one of them), `previous(group, block)` giving
/// the digests a block had ([`RawExt4::scan`]): per job, its group and what was found; the
/// first read error fails it all.
fn scan_all(
    raw: &RawExt4,
    source: &dyn ReadAt,
    key: &[u8; 32],
    jobs: &[(usize, std::ops::Range<u32>)],
    threads: usize,
    previous: &(dyn Fn(usize, u32) -> Option<u64> + Sync),
    previous_inode: &(dyn Fn(usize, u32) -> Option<InodeDigests> + Sync),
) -> Result<Vec<(usize, Scanned)>> {
    let next = AtomicU64::new(0);
    let work = || -> Result<Vec<(usize, Scanned)>> {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed) as usize;
            let Some((g, r)) = jobs.get(i) else {
                return Ok(out);
            };
            let mut found = Scanned::default();
            let known = Previous {
                block: &|b| previous(*g, b),
                inode: &|i| previous_inode(*g, i),
            };
            raw.scan(source, key, *g, r.clone(), &known, &mut found)?;
            out.push((*g, found));
        }
    };
    let threads = threads.min(jobs.len());
    if threads <= 1 {
        return work();
    }
    std::thread::scope(|s| {
        let others: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut all = work()?;
        for t in others {
            match t.join() {
                Ok(part) => all.extend(part?),
                Err(_) => {
                    return Err(Error::LimitExceeded {
                        what: "an inode-scanning thread stopped".into(),
                        limit: 0,
                    })
                }
            }
        }
        Ok(all)
    })
}

pub(crate) use fs::CachedFs;
