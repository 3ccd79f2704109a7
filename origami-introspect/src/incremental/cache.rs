//! The cache an incremental crawl puts in front of one ext4 volume: a [`FileSystem`] that
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

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use origami_core::dirty::DirtyMap;
use origami_core::ReadAt;
use sha2::{Digest, Sha256};

use super::ext4_raw::{digest_ranges, RawExt4, ROOT_INO};
use super::state::{Bytes, DirBlocks, EntryRecord, GroupDigests, InodeRecord, VolumeState};
use crate::disk::file::hex;
use crate::error::{Error, Result};
use crate::fs::{display_path, DirEntry, FileSystem, FsInfo, Stat};

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
    /// Inodes whose raw bytes were read and digested.
    pub inodes_scanned: u64,
    /// Inodes found changed (new, removed or modified).
    pub inodes_changed: u64,
    /// Directories whose listing was read again.
    pub dirs_read: u64,
    /// Regular files whose content was read (hashed or read whole).
    pub files_read: u64,
    /// Directories whose inode was unchanged but whose blocks were not (a writer that
    /// did not update the directory's times).
    pub dirs_changed_blocks: u64,
    /// Answers given from the previous state.
    pub cache_hits: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One volume's previous state, its fresh digests, and what this crawl records.
pub(crate) struct VolumeCache {
    source: Arc<dyn ReadAt>,
    uuid: String,
    raw: RawExt4,
    old: Option<VolumeState>,
    groups: Vec<GroupDigests>,
    changed: HashSet<u64>,
    dirty_dirs: HashSet<u64>,
    recorded: Mutex<HashMap<u64, InodeRecord>>,
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
        previous: Option<&VolumeState>,
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
        let mut changed = HashSet::new();
        // The inodes to read, as (group, range) pieces scanned on `threads` threads.
        let mut jobs: Vec<(usize, std::ops::Range<u32>)> = Vec::new();
        for (g, table) in raw.groups.iter().enumerate() {
            let used = table.used;
            let prev = old.as_ref().and_then(|o| o.groups.get(g));
            let mut d = GroupDigests {
                digests: vec![0; used as usize],
                content: vec![0; used as usize],
                generations: vec![0; used as usize],
            };
            // Which used inodes to read: all of them, or with a dirty map only those in the
            // marked blocks and those the previous crawl did not have.
            let mut to_read: Vec<std::ops::Range<u32>> = Vec::new();
            match (prev, dirty) {
                (Some(p), Some(map)) => {
                    let known = (p.digests.len() as u32).min(used);
                    let k = known as usize;
                    d.digests[..k].copy_from_slice(&p.digests[..k]);
                    d.content[..k].copy_from_slice(&p.content[..k]);
                    d.generations[..k].copy_from_slice(&p.generations[..k]);
                    let per_block = (raw.block_size / u64::from(raw.inode_size)).max(1) as u32;
                    let mut i = 0;
                    while i < known {
                        let end = (i + per_block).min(known);
                        if map.intersects(raw.table_bytes(g, i..end)) {
                            match to_read.last_mut() {
                                Some(r) if r.end == i => r.end = end,
                                _ => to_read.push(i..end),
                            }
                        }
                        i = end;
                    }
                    if known < used {
                        to_read.push(known..used);
                    }
                }
                _ => to_read.push(0..used),
            }
            for r in to_read {
                report.inodes_scanned += u64::from(r.end - r.start);
                let mut at = r.start;
                while at < r.end {
                    let end = r.end.min(at.saturating_add(SCAN_JOB));
                    jobs.push((g, at..end));
                    at = end;
                }
            }
            groups.push(d);
        }
        for (g, start, found) in scan_all(&raw, source, &jobs, threads)? {
            let Some(d) = groups.get_mut(g) else { continue };
            for (k, x) in found.into_iter().enumerate() {
                let i = start as usize + k;
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
            for i in 0..used {
                let same =
                    prev.is_some_and(|p| p.digests.get(i as usize) == Some(&d.digests[i as usize]));
                if !same {
                    changed.insert(raw.ino(g, i));
                }
            }
            // Inodes used before and no longer in the used part: changed too.
            if let Some(p) = prev {
                for i in used..p.digests.len() as u32 {
                    changed.insert(raw.ino(g, i));
                }
            }
        }
        let mut dirty_dirs: HashSet<u64> = changed.clone();
        if let Some(o) = &old {
            for (dir, rec) in &o.inodes {
                if let Some(list) = &rec.listing {
                    if list.iter().any(|e| changed.contains(&e.ino)) {
                        dirty_dirs.insert(*dir);
                    }
                }
            }
        }
        // A listing is reused only if the directory's blocks (and extent-tree blocks)
        // still hold what they held: digested again, unless a dirty map says they were not
        // written.
        if let Some(o) = &old {
            for (dir, rec) in &o.inodes {
                if rec.listing.is_none() || dirty_dirs.contains(dir) {
                    continue;
                }
                let same = match &rec.dir_blocks {
                    None => false,
                    Some(b) => {
                        let ranges: Vec<std::ops::Range<u64>> =
                            b.ranges.iter().map(|&(s, e)| s..e).collect();
                        let untouched =
                            dirty.is_some_and(|m| !ranges.iter().any(|r| m.intersects(r.clone())));
                        untouched
                            || digest_ranges(source, &ranges, MAX_DIR_BYTES)? == Some(b.digest)
                    }
                };
                if !same {
                    dirty_dirs.insert(*dir);
                    report.dirs_changed_blocks += 1;
                }
            }
        }
        report.inodes_changed = if old.is_some() {
            changed.len() as u64
        } else {
            0
        };
        Ok(VolumeCache {
            source: volume.clone(),
            uuid: raw.uuid.clone(),
            raw,
            old,
            groups,
            changed,
            dirty_dirs,
            recorded: Mutex::new(HashMap::new()),
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

    /// Whether inode `ino` is unchanged since the previous crawl.
    fn clean(&self, ino: u64) -> bool {
        self.old.is_some()
            && !self.changed.contains(&ino)
            && self
                .place(ino)
                .is_some_and(|(g, i)| self.groups.get(g).is_some_and(|d| i < d.digests.len()))
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

    /// The inode of the file-system path `path`, found through clean listings only.
    fn resolve(&self, path: &[u8]) -> Option<u64> {
        let mut ino = ROOT_INO;
        for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            if part == b"." || part == b".." {
                return None;
            }
            ino = self
                .old_listing(ino)?
                .iter()
                .find(|e| e.name.0 == part)?
                .ino;
        }
        Some(ino)
    }

    /// The entry for `path` in its parent's clean listing.
    fn entry(&self, path: &[u8]) -> Option<&EntryRecord> {
        let cut = path.iter().rposition(|&b| b == b'/')?;
        let (parent, name) = (&path[..cut.max(1)], &path[cut + 1..]);
        if name.is_empty() || name == b"." || name == b".." {
            return None;
        }
        let dir = self.resolve(parent)?;
        self.old_listing(dir)?.iter().find(|e| e.name.0 == name)
    }

    fn record(&self, ino: u64, f: impl FnOnce(&mut InodeRecord)) {
        f(lock(&self.recorded).entry(ino).or_default());
    }

    fn count(&self, f: impl FnOnce(&mut VolumeReport)) {
        f(&mut lock(&self.report));
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
        let mut inodes: std::collections::BTreeMap<u64, Arc<InodeRecord>> = match &self.old {
            Some(o) => o
                .inodes
                .iter()
                .filter_map(|(ino, rec)| {
                    if self.clean(*ino) {
                        if self.dirty_dirs.contains(ino) && rec.listing.is_some() {
                            let mut r = (**rec).clone();
                            r.listing = None;
                            r.dir_blocks = None;
                            return Some((*ino, Arc::new(r)));
                        }
                        Some((*ino, rec.clone()))
                    } else if self.content_clean(*ino) {
                        let r = InodeRecord {
                            link: rec.link.clone(),
                            sha256: rec.sha256,
                            content: rec.content.clone(),
                            ..InodeRecord::default()
                        };
                        Some((*ino, Arc::new(r)))
                    } else {
                        None
                    }
                })
                .collect(),
            None => std::collections::BTreeMap::new(),
        };
        let recorded = std::mem::take(&mut *lock(&self.recorded));
        for (ino, rec) in recorded {
            let slot = Arc::make_mut(inodes.entry(ino).or_default());
            if rec.listing.is_some() {
                slot.listing = rec.listing;
                slot.dir_blocks = self.dir_blocks(ino);
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
        let digest = digest_ranges(source, &ranges, MAX_DIR_BYTES).ok()??;
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

/// The most inodes one scanning job reads.
const SCAN_JOB: u32 = 1024;

/// The digests of the inodes of `jobs` (group, range of its table), read and digested on
/// `threads` threads (the calling thread one of them): per job, its group, first inode and
/// digests; the first read error fails it all.
fn scan_all(
    raw: &RawExt4,
    source: &dyn ReadAt,
    jobs: &[(usize, std::ops::Range<u32>)],
    threads: usize,
) -> Result<Vec<(usize, u32, Vec<super::ext4_raw::InodeDigests>)>> {
    let next = AtomicU64::new(0);
    let work = || -> Result<Vec<(usize, u32, Vec<super::ext4_raw::InodeDigests>)>> {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed) as usize;
            let Some((g, r)) = jobs.get(i) else {
                return Ok(out);
            };
            let mut found = Vec::with_capacity((r.end - r.start) as usize);
            raw.scan(source, *g, r.clone(), &mut |_, x| found.push(x))?;
            out.push((*g, r.start, found));
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

fn entry_record(e: &DirEntry) -> Option<EntryRecord> {
    if !e.stat.fat_attrs.is_empty() || e.stat.ntfs.is_some() {
        return None;
    }
    Some(EntryRecord {
        name: Bytes(e.name.clone()),
        ino: e.stat.ino,
        file_type: e.stat.file_type,
        mode: e.stat.mode,
        uid: e.stat.uid,
        gid: e.stat.gid,
        size: e.stat.size,
        mtime: e.stat.mtime,
    })
}

fn stat_of(e: &EntryRecord, ino: u64) -> Stat {
    Stat {
        file_type: e.file_type,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        size: e.size,
        mtime: e.mtime,
        ino,
        fat_attrs: String::new(),
        ntfs: None,
    }
}

/// An ext4 file system behind the cache of an incremental crawl.
pub(crate) struct CachedFs {
    pub(crate) inner: Box<dyn FileSystem>,
    pub(crate) cache: Arc<VolumeCache>,
}

impl CachedFs {
    /// The inode to key `path` by: the caller's, else found through clean listings.
    fn key(&self, path: &[u8], ino: u64) -> Option<u64> {
        if ino != 0 {
            Some(ino)
        } else {
            self.cache.resolve(path)
        }
    }
}

impl FileSystem for CachedFs {
    fn info(&self) -> FsInfo {
        self.inner.info()
    }

    fn lstat(&self, path: &[u8]) -> Result<Stat> {
        // ext4's own lstat gives no inode number (see fs/ext4.rs): neither does this.
        if let Some(e) = self.cache.entry(path) {
            self.cache.count(|r| r.cache_hits += 1);
            return Ok(stat_of(e, 0));
        }
        self.inner.lstat(path)
    }

    fn read_dir(&self, path: &[u8], limit: usize) -> Result<Vec<DirEntry>> {
        self.read_dir_by_inode(path, 0, limit)
    }

    fn read_dir_by_inode(&self, path: &[u8], ino: u64, limit: usize) -> Result<Vec<DirEntry>> {
        let key = self.key(path, ino);
        if let Some(list) = key.and_then(|k| self.cache.old_listing(k)) {
            if list.len() > limit {
                return Err(Error::LimitExceeded {
                    what: format!("entries of directory {}", display_path(path)),
                    limit: limit as u64,
                });
            }
            // Kept for the next crawl by `finish`, which keeps every clean listing.
            self.cache.count(|r| r.cache_hits += 1);
            return Ok(list
                .iter()
                .map(|e| DirEntry {
                    name: e.name.0.clone(),
                    stat: stat_of(e, e.ino),
                })
                .collect());
        }
        let out = self.inner.read_dir_by_inode(path, ino, limit)?;
        self.cache.count(|r| r.dirs_read += 1);
        if let Some(k) = key.or((path == b"/").then_some(ROOT_INO)) {
            let list: Option<Vec<EntryRecord>> = out.iter().map(entry_record).collect();
            if let Some(list) = list {
                self.cache.record(k, |r| r.listing = Some(list));
            }
        }
        Ok(out)
    }

    fn read_link(&self, path: &[u8]) -> Result<Vec<u8>> {
        self.read_link_by_inode(path, 0)
    }

    fn read_link_by_inode(&self, path: &[u8], ino: u64) -> Result<Vec<u8>> {
        let key = self.key(path, ino);
        if let Some(k) = key {
            if let Some(link) = self.cache.old_record(k).and_then(|r| r.link.as_ref()) {
                self.cache.count(|r| r.cache_hits += 1);
                return Ok(link.0.clone());
            }
        }
        let target = self.inner.read_link_by_inode(path, ino)?;
        if let Some(k) = key {
            self.cache
                .record(k, |r| r.link = Some(Bytes(target.clone())));
        }
        Ok(target)
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + '_>> {
        self.open_by_inode(path, 0)
    }

    fn open_by_inode(&self, path: &[u8], ino: u64) -> Result<Box<dyn Read + '_>> {
        let key = self.key(path, ino);
        if let Some(k) = key {
            if let Some(data) = self.cache.old_record(k).and_then(|r| r.content.as_ref()) {
                // Served from the previous state, which `finish` carries over.
                self.cache.count(|r| r.cache_hits += 1);
                return Ok(Box::new(&data.0[..]));
            }
        }
        let inner = self.inner.open_by_inode(path, ino)?;
        self.cache.count(|r| r.files_read += 1);
        Ok(Box::new(Recorder {
            inner,
            cache: &self.cache,
            ino: key,
            data: Some(Vec::new()),
        }))
    }

    fn sha256_by_inode(&self, path: &[u8], ino: u64) -> Option<Result<String>> {
        let key = self.key(path, ino)?;
        if let Some(sha) = self.cache.old_record(key).and_then(|r| r.sha256) {
            self.cache.count(|r| r.cache_hits += 1);
            return Some(Ok(hex(&sha)));
        }
        // Read and hashed here; on any error the caller reads the file itself, so that the
        // error it reports is the one a plain crawl reports.
        let mut reader = self.inner.open_by_inode(path, ino).ok()?;
        self.cache.count(|r| r.files_read += 1);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(_) => return None,
            }
        }
        let sha: [u8; 32] = hasher.finalize().into();
        self.cache.record(key, |r| r.sha256 = Some(sha));
        Some(Ok(hex(&sha)))
    }
}

/// A reader of a file read through `ext4-view` that keeps the content of a small file read
/// to its end for the next crawl.
struct Recorder<'a> {
    inner: Box<dyn Read + 'a>,
    cache: &'a VolumeCache,
    ino: Option<u64>,
    data: Option<Vec<u8>>,
}

impl Read for Recorder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let (Some(ino), Some(data)) = (self.ino, self.data.take()) {
                self.cache.record_content(ino, data);
            }
        } else if let Some(d) = &mut self.data {
            if d.len() + n > MAX_CONTENT {
                self.data = None;
            } else {
                d.extend_from_slice(&buf[..n]);
            }
        }
        Ok(n)
    }
}
