//! Incremental crawls: a crawl that saves a [`CrawlState`] lets the next one read only what
//! changed, and says what changed as [`FileEvent`]s.
//!
//! For each ext4 volume the state keeps the digests of its inode tables
//! ([`ext4_raw::RawExt4`]) and what the crawl derived from each inode it read (a
//! directory's entries with their `lstat`, a symlink's target, a file's sha256, a small
//! file's content). The next crawl finds the changed inodes, from a [`DirtyMap`] of the
//! disk (a qcow2 persistent dirty bitmap, an external snapshot's overlay, an NBD dirty
//! bitmap: only the marked inode-table blocks are read) or, without one, by digesting every
//! used inode again; it then runs the very same sections as a full crawl, on file systems
//! that answer from the state for what did not change ([`cache`]), except the `file`
//! section, which carries the previous section's items over for every directory and entry
//! the cache would answer from the state and makes the rest again (`patch.rs`; any walk
//! error or bound means a plain walk). The frame is therefore the full crawl's, field by
//! field; what it costs is the inode tables (or their dirty blocks), the changed
//! directories and files, and the other sections' own work on cached bytes.
//!
//! Limits: ext4 only (FAT, XFS, btrfs and NTFS volumes are read in full, and a note says
//! so); a file system whose journal needs replaying is read in full (its inode tables may
//! be older than its files); a dirty map must cover every write since the state was saved
//! (a map saying more is safe, one saying less is not, which is why a qcow2 bitmap QEMU
//! left in use is refused).
//!
//! ```no_run
//! use origami_introspect::incremental::{self, CrawlState};
//! use origami_introspect::{CrawlOptions, Crawler, Target};
//!
//! let crawler = Crawler::new(CrawlOptions::builder().hash_files(true).build()?);
//! let target = Target::disk("web-01.qcow2");
//! let first = incremental::crawl(&crawler, &target, None, &[])?;
//! // ... the guest runs, writes ...
//! let next = incremental::crawl(&crawler, &target, Some(&first.state), &[])?;
//! for e in &next.events {
//!     println!("{}", serde_json::to_string(e)?);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cache;
pub mod events;
pub mod ext4_raw;
mod patch;
pub mod state;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use origami_core::dirty::DirtyMap;
use origami_core::ReadAt;
use origami_frame::{FileItem, Frame};

pub use cache::{ChangeSource, VolumeReport};
pub use events::{file_events, FileEvent};
pub use state::{CrawlState, FileRecord, InodeKey, StateError, VolumeState};

use crate::disk::file::FileOptions;
use crate::error::{Error, Result};
use crate::fs::{FileSystem, FsKind, GuestTree};
use crate::volume_hook::VolumeHook;
use crate::{Crawler, Target};
use cache::{CachedFs, VolumeCache};

/// The result of an incremental crawl.
#[derive(Debug)]
pub struct Incremental {
    /// The frame: the one a full crawl of the same disks gives.
    pub frame: Frame,
    /// The state to save for the next crawl.
    pub state: CrawlState,
    /// The file events since the previous state (none without a usable one).
    pub events: Vec<FileEvent>,
    /// What was read and why.
    pub report: Report,
}

/// What an incremental crawl did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Why something was read in full, or events not computed.
    pub notes: Vec<String>,
    /// Per ext4 volume: how changes were found and what was read.
    pub volumes: Vec<VolumeReport>,
    /// Whether `events` compares with the previous state (same file systems and options).
    pub events: bool,
    /// Whether the `file` section was patched from the previous state's (its unchanged
    /// directories' items carried over) rather than walked in full.
    pub file_patched: bool,
    /// Items of the `file` section carried over from the previous state.
    pub file_items_carried: u64,
    /// Items of the `file` section made again (0 when walked in full: all were).
    pub file_items_made: u64,
}

/// A mount of the assembled tree: its point, its file system's UUID and kind.
type MountRow = (Vec<u8>, Option<String>, FsKind);

/// The hook that puts a cache in front of each ext4 volume.
struct Hook<'a> {
    previous: Option<&'a CrawlState>,
    /// The key of the state's digests.
    key: [u8; 32],
    /// The digest of this crawl's options.
    options: String,
    /// Threads to scan inode tables on (the crawler's).
    threads: usize,
    /// The `file` section, when patched from the previous one.
    patched: Mutex<Option<patch::Patched>>,
    /// Whether the `file` section was made whole (no error or bound met).
    complete: std::sync::atomic::AtomicBool,
    dirty: &'a [Option<DirtyMap>],
    caches: Mutex<Vec<Arc<VolumeCache>>>,
    notes: Mutex<Vec<String>>,
    mounts: Mutex<Vec<MountRow>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl VolumeHook for Hook<'_> {
    fn wrap(
        &self,
        fs: Box<dyn FileSystem>,
        source: &Arc<dyn ReadAt>,
        disk: usize,
        offset: Option<u64>,
    ) -> Box<dyn FileSystem> {
        let info = fs.info();
        let mut notes = Vec::new();
        if info.kind != FsKind::Ext4 {
            lock(&self.notes).push(format!(
                "{}: {} file system read in full (incremental crawls cover ext4)",
                info.source,
                info.kind.name()
            ));
            return fs;
        }
        let previous = self.previous.and_then(|p| {
            p.volumes
                .iter()
                .find(|v| Some(v.uuid.as_str()) == info.uuid.as_deref())
        });
        if self.previous.is_some() && previous.is_none() {
            notes.push(format!(
                "{}: the state holds nothing of ext4 {}: read in full",
                info.source,
                info.uuid.as_deref().unwrap_or("?")
            ));
        }
        let dirty = match (self.dirty.get(disk).and_then(Option::as_ref), offset) {
            (Some(map), Some(at)) => Some(map.slice(at, source.len())),
            (Some(_), None) => {
                notes.push(format!(
                    "{}: a logical volume has no one place on its disk: the dirty map is \
                     not used, inode digests are compared",
                    info.source
                ));
                None
            }
            _ => None,
        };
        let prepared = VolumeCache::prepare(
            source,
            &info,
            &self.key,
            previous,
            dirty.as_ref(),
            self.threads,
            &mut notes,
        );
        let out: Box<dyn FileSystem> = match prepared {
            Ok(cache) => {
                let cache = Arc::new(cache);
                lock(&self.caches).push(cache.clone());
                Box::new(CachedFs { inner: fs, cache })
            }
            Err(e) => {
                notes.push(format!("{e}: read in full, no state kept"));
                fs
            }
        };
        lock(&self.notes).extend(notes);
        out
    }

    fn assembled(&self, tree: &GuestTree) {
        *lock(&self.mounts) = tree
            .mounts()
            .iter()
            .map(|m| (m.point.clone(), m.info.uuid.clone(), m.info.kind))
            .collect();
    }

    fn file_section(&self, tree: &GuestTree, options: &FileOptions) -> (Vec<FileItem>, Vec<Error>) {
        use std::sync::atomic::Ordering;
        if let Some(prev) = self.previous.filter(|p| p.options == self.options) {
            let caches = lock(&self.caches).clone();
            if let Some(p) = patch::patch(tree, options, prev, &caches) {
                let items = p.records.iter().map(|r| r.item.clone()).collect();
                *lock(&self.patched) = Some(p);
                self.complete.store(true, Ordering::Relaxed);
                return (items, Vec::new());
            }
        }
        let (items, errors) = crate::disk::file::crawl(tree, options);
        self.complete.store(errors.is_empty(), Ordering::Relaxed);
        (items, errors)
    }
}

/// A new key for a state's digests: from the operating system's random source (and, should
/// that fail, from what differs between two crawls: the time, the process, an address).
fn new_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    if getrandom::fill(&mut key).is_err() {
        let mut h = blake3::Hasher::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        h.update(&now.as_nanos().to_le_bytes());
        h.update(&std::process::id().to_le_bytes());
        h.update(&(std::ptr::addr_of!(key) as usize).to_le_bytes());
        key = *h.finalize().as_bytes();
    }
    key
}

/// A digest of the options that shape the frame's `file` section.
fn options_digest(crawler: &Crawler) -> String {
    blake3::hash(crawler.options().file_fingerprint().as_bytes())
        .to_hex()
        .to_string()
}

/// Each file-system path of `state`'s listings, from the root, with its inode.
fn paths_of(state: &VolumeState) -> HashMap<Vec<u8>, u64> {
    let mut out = HashMap::new();
    let mut stack = vec![(Vec::new(), ext4_raw::ROOT_INO)];
    let mut seen = std::collections::HashSet::new();
    while let Some((path, ino)) = stack.pop() {
        if !seen.insert(ino) {
            continue;
        }
        let Some(list) = state.inodes.get(&ino).and_then(|r| r.listing.as_ref()) else {
            continue;
        };
        for e in list {
            let mut p = path.clone();
            p.push(b'/');
            p.extend_from_slice(&e.name.0);
            if e.file_type == crate::fs::FileType::Dir {
                stack.push((p.clone(), e.ino));
            }
            out.insert(p, e.ino);
        }
    }
    out
}

/// Crawls `target` as [`Crawler::crawl`] does, using `previous` (a state an earlier crawl
/// of the same disks returned) to read only what changed, and `dirty` (per disk of the
/// target, in order: the map of what changed on it since `previous`, when known). Without
/// a previous state every volume is read in full and the state for the next crawl is made.
pub fn crawl(
    crawler: &Crawler,
    target: &Target,
    previous: Option<&CrawlState>,
    dirty: &[Option<DirtyMap>],
) -> Result<Incremental> {
    let options = options_digest(crawler);
    let key = previous.map_or_else(new_key, |p| p.key);
    let hook = Hook {
        previous,
        key,
        options: options.clone(),
        threads: crawler.options().threads(),
        patched: Mutex::new(None),
        complete: std::sync::atomic::AtomicBool::new(false),
        dirty,
        caches: Mutex::new(Vec::new()),
        notes: Mutex::new(Vec::new()),
        mounts: Mutex::new(Vec::new()),
    };
    let frame = crawler.crawl_hooked(target, &hook)?;
    let caches = std::mem::take(&mut *lock(&hook.caches));
    let mut notes = std::mem::take(&mut *lock(&hook.notes));
    let mounts = std::mem::take(&mut *lock(&hook.mounts));
    let volumes: Vec<Arc<VolumeState>> = caches.iter().map(|c| Arc::new(c.finish())).collect();
    let complete = hook.complete.load(std::sync::atomic::Ordering::Relaxed);
    let mut patched = lock(&hook.patched).take();
    let files = match &mut patched {
        // Moved out: the events below need only the fresh ones, cloned first.
        Some(p) => {
            p.made = p
                .fresh
                .iter()
                .filter_map(|&i| p.records.get(i).cloned())
                .collect();
            std::mem::take(&mut p.records)
        }
        None => keyed(&frame, &volumes, &caches, &mounts),
    };
    let mut comparable = false;
    let events = match previous {
        Some(p) if p.options != options => {
            notes.push("the state was saved by a crawl with other options: no file events".into());
            Vec::new()
        }
        Some(p) => {
            let all_known = caches
                .iter()
                .all(|c| p.volumes.iter().any(|v| v.uuid == c.uuid()));
            if all_known && !caches.is_empty() {
                comparable = true;
                match &patched {
                    // The items carried over are the same, at the same paths, on both
                    // sides: the events are those of the rest.
                    Some(x) => {
                        let gone: Vec<Arc<FileRecord>> = p
                            .files
                            .iter()
                            .zip(&x.carried)
                            .filter(|(_, &c)| !c)
                            .map(|(r, _)| Arc::clone(r))
                            .collect();
                        file_events(&gone, &x.made)
                    }
                    None => file_events(&p.files, &files),
                }
            } else {
                notes.push(
                    "the state describes other file systems than these: no file events".into(),
                );
                Vec::new()
            }
        }
        None => Vec::new(),
    };
    let report = Report {
        notes,
        volumes: caches.iter().map(|c| c.report()).collect(),
        events: comparable,
        file_patched: patched.is_some(),
        file_items_carried: patched
            .as_ref()
            .map_or(0, |p| p.carried.iter().filter(|&&c| c).count() as u64),
        file_items_made: patched.as_ref().map_or(0, |p| p.fresh.len() as u64),
    };
    Ok(Incremental {
        frame,
        state: CrawlState {
            options,
            key,
            volumes,
            files,
            files_complete: complete,
        },
        events,
        report,
    })
}

/// The frame's `file` items, each with its inode where the listings of `volumes` say it.
fn keyed(
    frame: &Frame,
    volumes: &[Arc<VolumeState>],
    caches: &[Arc<VolumeCache>],
    mounts: &[MountRow],
) -> Vec<Arc<FileRecord>> {
    let paths: HashMap<&str, HashMap<Vec<u8>, u64>> = volumes
        .iter()
        .map(|v| (v.uuid.as_str(), paths_of(v)))
        .collect();
    frame
        .file
        .iter()
        .map(|item| {
            let raw = patch::raw_path(item);
            let key = mount_of(mounts, &raw).and_then(|(point, uuid)| {
                let inner = inner_path(&raw, point);
                let ino = *paths.get(uuid)?.get(&inner)?;
                let cache = caches.iter().find(|c| c.uuid() == uuid)?;
                Some(InodeKey {
                    volume: uuid.to_string(),
                    ino,
                    generation: cache.generation(ino)?,
                })
            });
            Arc::new(FileRecord {
                item: item.clone(),
                key,
            })
        })
        .collect()
}

/// The ext4 mount holding guest path `path` (its longest mount point), with the volume's
/// UUID.
fn mount_of<'m>(mounts: &'m [MountRow], path: &[u8]) -> Option<(&'m [u8], &'m str)> {
    let best = mounts
        .iter()
        .filter(|(point, _, _)| {
            point == b"/"
                || path == point.as_slice()
                || (path.starts_with(point) && path.get(point.len()) == Some(&b'/'))
        })
        .max_by_key(|(point, _, _)| point.len())?;
    match best {
        (point, Some(uuid), FsKind::Ext4) => Some((point.as_slice(), uuid.as_str())),
        _ => None,
    }
}

/// `path` inside the file system mounted at `point` (`/` itself as the empty path, as
/// [`paths_of`] names the root).
fn inner_path(path: &[u8], point: &[u8]) -> Vec<u8> {
    let rest = if point == b"/" {
        path
    } else {
        &path[point.len()..]
    };
    if rest == b"/" {
        Vec::new()
    } else {
        rest.to_vec()
    }
}

/// Reads the state at `path` for [`crawl`]: `None`, with a note saying why, when there is
/// none or it cannot be used (missing, foreign, corrupt): the crawl is then a full one.
pub fn load_state(path: &Path) -> (Option<CrawlState>, Option<String>) {
    match CrawlState::load(path) {
        Ok(s) => (Some(s), None),
        Err(StateError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => (
            None,
            Some(format!(
                "{}: no crawl state yet: full crawl",
                path.display()
            )),
        ),
        Err(e) => (None, Some(format!("{e}: full crawl"))),
    }
}
