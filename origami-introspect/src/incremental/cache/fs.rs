//! The [`FileSystem`] an incremental crawl puts in front of an ext4 volume: it answers from
//! its [`VolumeCache`] what did not change and asks `ext4-view` (recording the answers)
//! for the rest.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{VolumeCache, MAX_CONTENT};
use crate::disk::file::hex;
use crate::error::{Error, Result};
use crate::fs::{display_path, DirEntry, FileSystem, FsInfo, Stat};
use crate::incremental::ext4_raw::ROOT_INO;
use crate::incremental::state::{Bytes, EntryRecord};

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
    /// The entries of directory `path` (inode `ino`) when its inode and blocks did not
    /// change but some entries' inodes did: the previous listing's names and inodes, the
    /// `lstat` of each changed entry read again. `None` (the caller lists it) otherwise, or
    /// at any error or bound, so that errors are those of a plain listing.
    fn patched_listing(&self, path: &[u8], ino: u64, limit: usize) -> Option<Vec<DirEntry>> {
        if !self.cache.patchable.contains(&ino) || !self.cache.clean(ino) {
            return None;
        }
        let list = self.cache.previous_listing(ino)?;
        if list.len() > limit {
            return None;
        }
        let mut out = Vec::with_capacity(list.len());
        for e in list {
            let stat = if self.cache.clean(e.ino) {
                stat_of(e, e.ino)
            } else {
                let at = crate::fs::join_path(path, &e.name.0);
                self.inner.lstat_by_inode(&at, e.ino).ok()?
            };
            out.push(DirEntry {
                name: e.name.0.clone(),
                stat,
            });
        }
        Some(out)
    }

    /// Keeps directory `ino`'s listing `out` for the next crawl (not when an entry is not
    /// ext4's).
    fn record_listing(&self, ino: u64, out: &[DirEntry]) {
        let list: Option<Vec<EntryRecord>> = out.iter().map(entry_record).collect();
        if let Some(list) = list {
            self.cache.record(ino, |r| r.listing = Some(list));
        }
    }

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
        if let Some(k) = key {
            if let Some(out) = self.patched_listing(path, k, limit) {
                self.cache.count(|r| r.dirs_patched += 1);
                self.record_listing(k, &out);
                return Ok(out);
            }
        }
        // Listed again; an entry whose inode did not change keeps the `lstat` the previous
        // listing of this directory gave it (it comes from the inode alone).
        let out = match key.and_then(|k| self.cache.previous_listing(k)) {
            Some(list) => {
                let by_ino: HashMap<u64, &EntryRecord> = list.iter().map(|e| (e.ino, e)).collect();
                let known = |i: u64, _: &[u8]| {
                    if !self.cache.clean(i) {
                        return None;
                    }
                    by_ino.get(&i).map(|e| stat_of(e, i))
                };
                self.inner.read_dir_known(path, ino, limit, &known)?
            }
            None => self.inner.read_dir_by_inode(path, ino, limit)?,
        };
        self.cache.count(|r| r.dirs_read += 1);
        if let Some(k) = key.or((path == b"/").then_some(ROOT_INO)) {
            self.record_listing(k, &out);
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
            path: key.is_none().then(|| path.to_vec()),
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
        // Small: most files a re-crawl hashes are (a large one costs its reads anyway).
        let mut buf = [0u8; 16 << 10];
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
    /// The file's path, to find its inode when the crawl ends (opened by path, its inode
    /// not known from the previous listings).
    path: Option<Vec<u8>>,
    data: Option<Vec<u8>>,
}

impl Read for Recorder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            match (self.ino, self.data.take(), self.path.take()) {
                (Some(ino), Some(data), _) => self.cache.record_content(ino, data),
                (None, Some(data), Some(path)) => self.cache.record_pending(path, data),
                _ => {}
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
