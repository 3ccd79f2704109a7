//! The `file` section of an incremental crawl, patched from the previous one instead of
//! walked again.
//!
//! [`GuestTree::walk`] emits, for each directory it enters (depth first, subdirectories in
//! name order), the items of that directory's entries as one run (its *block*). Where a
//! directory's block cannot have changed, the previous section's block is carried over
//! as is; every other directory is listed again (through the volume caches, so what did
//! not change still costs no read) and its entries' items made as
//! [`crate::disk::file::crawl`] makes them. A block is carried over only when all of
//! these hold, which are exactly the conditions under which the cache would answer the
//! walk from the previous state ([`VolumeCache::old_listing`]):
//!
//! - the previous state's section is complete (its walk met no error or bound) and was
//!   made with the same options, with no exclusion globs;
//! - the directory is at the same path, on the same ext4 volume, with the same inode
//!   (number and generation) as then, and that volume's cache has its clean listing
//!   (the directory's inode and blocks unchanged, and every entry's inode unchanged:
//!   the entries' `lstat`, link targets and content are the previous ones);
//! - no entry of the directory was or is a mount point (a mount point shows the mounted
//!   file system's root, which the directory's listing does not describe).
//!
//! The walk's bounds are checked as the walk checks them (entries in all, depth, a
//! directory met twice); any error, bound or unreadable entry gives up the patch and the
//! section is walked in full, so that its errors are the plain crawl's.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use origami_frame::FileType;

use super::cache::VolumeCache;
use super::state::{CrawlState, FileRecord, InodeKey};
use crate::disk::file::{entry_item, hash_all, FileOptions};
use crate::fs::{display_path, join_path, FsKind, GuestTree, Stat};

/// A patched `file` section.
pub(crate) struct Patched {
    /// The section's items with their inodes, in walk order (those carried over shared
    /// with the previous state).
    pub(crate) records: Vec<Arc<FileRecord>>,
    /// Indices in `records` of the items made again (not carried over).
    pub(crate) fresh: Vec<usize>,
    /// Per item of the previous section: whether it was carried over.
    pub(crate) carried: Vec<bool>,
    /// The records made again (filled by the caller before `records` moves on).
    pub(crate) made: Vec<Arc<FileRecord>>,
}

/// The raw bytes of a frame item's path (`path_hex` when the name is not UTF-8).
pub(crate) fn raw_path(item: &origami_frame::FileItem) -> Cow<'_, [u8]> {
    if let Some(h) = item.extra.get("path_hex").and_then(|v| v.as_str()) {
        let bytes: Option<Vec<u8>> = (0..h.len() / 2)
            .map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
        if let Some(b) = bytes {
            return Cow::Owned(b);
        }
    }
    Cow::Borrowed(item.path.as_bytes())
}

/// The directory holding `path` (`None` for the root).
fn parent(path: &[u8]) -> Option<&[u8]> {
    match path.iter().rposition(|&b| b == b'/')? {
        0 if path.len() > 1 => Some(b"/"),
        0 => None,
        i => Some(&path[..i]),
    }
}

/// Where each directory's block lies in a previous section: by raw path, the index of
/// the directory's own item and the range of its block. `None` when the section is not
/// a walk's output (a state made otherwise).
type Blocks<'a> = HashMap<&'a [u8], (usize, usize, usize)>;

/// The blocks of the previous section `files`, whose raw paths are `raws`.
fn old_blocks<'a>(files: &[Arc<FileRecord>], raws: &'a [Cow<'a, [u8]>]) -> Option<Blocks<'a>> {
    if raws.first().map(|r| &r[..]) != Some(b"/") || raws.len() != files.len() {
        return None;
    }
    let mut blocks = HashMap::new();
    if files[0].item.file_type != FileType::Dir {
        return (files.len() == 1).then_some(blocks);
    }
    // Each index is pushed at most once (blocks never overlap), so this ends.
    let mut stack = vec![0usize];
    let mut pos = 1;
    while let Some(d) = stack.pop() {
        let dir = &raws[d][..];
        let start = pos;
        while pos < raws.len() && parent(&raws[pos]) == Some(dir) {
            pos += 1;
        }
        if blocks.insert(dir, (d, start, pos)).is_some() {
            return None;
        }
        let mark = stack.len();
        stack.extend((start..pos).filter(|&i| files[i].item.file_type == FileType::Dir));
        stack[mark..].reverse();
    }
    (pos == files.len()).then_some(blocks)
}

/// The walk being patched.
struct Walk<'a> {
    tree: &'a GuestTree,
    options: &'a FileOptions,
    old: &'a [Arc<FileRecord>],
    /// The raw paths of `old`'s items.
    raws: &'a [Cow<'a, [u8]>],
    blocks: Blocks<'a>,
    caches: &'a [Arc<VolumeCache>],
    /// The directories holding a mount point (other than `/`).
    mount_parents: HashSet<Vec<u8>>,
    out: Patched,
    /// Regular files to hash: (item index, path, inode).
    jobs: Vec<(usize, Vec<u8>, u64)>,
    /// Directories entered, by (mount, inode), as the walk keeps them.
    entered: HashSet<(usize, u64)>,
    /// Directories to enter: (path, depth, inode).
    stack: Vec<(Vec<u8>, usize, u64)>,
}

impl Walk<'_> {
    /// The ext4 volume cache of the mount holding `path`, when `path` is not the mount
    /// point itself (the root of a mount has no key, as [`super::crawl`] keys items).
    fn volume(&self, path: &[u8]) -> Option<&VolumeCache> {
        let m = self.tree.mounts().get(self.tree.mount_index(path))?;
        if m.point == path || m.info.kind != FsKind::Ext4 {
            return None;
        }
        let uuid = m.info.uuid.as_deref()?;
        self.caches.iter().find(|c| c.uuid() == uuid).map(|c| &**c)
    }

    fn key(&self, path: &[u8], ino: u64) -> Option<InodeKey> {
        let cache = self.volume(path)?;
        Some(InodeKey {
            volume: cache.uuid().to_string(),
            ino,
            generation: cache.generation(ino)?,
        })
    }

    /// The previous block of directory `path` (inode `ino`), when it is still the block.
    fn carried_block(&self, path: &[u8], ino: u64) -> Option<(usize, usize)> {
        if ino == 0 || self.mount_parents.contains(path) {
            return None;
        }
        let cache = self.volume(path)?;
        cache.old_listing(ino)?;
        let &(own, start, end) = self.blocks.get(path)?;
        let key = self.old.get(own)?.key.as_ref()?;
        if key.volume != cache.uuid()
            || key.ino != ino
            || Some(key.generation) != cache.generation(ino)
        {
            return None;
        }
        let same_volume = self.old.get(start..end)?.iter().all(|r| {
            r.key
                .as_ref()
                .is_some_and(|k| k.volume == cache.uuid() && k.ino != 0)
        });
        same_volume.then_some((start, end))
    }

    /// Whether the previous item `i` is the item of the entry at `path` whose metadata is
    /// `st`: the same path, inode (number and generation) and metadata, on an ext4
    /// volume whose cache says the inode's content did not change (so its link target
    /// and sha256 are the previous ones).
    fn same_entry(&self, i: usize, path: &[u8], st: &Stat) -> bool {
        let Some(old) = self.old.get(i) else {
            return false;
        };
        let (Some(key), Some(cache)) = (&old.key, self.volume(path)) else {
            return false;
        };
        let it = &old.item;
        st.ino != 0
            && key.volume == cache.uuid()
            && key.ino == st.ino
            && Some(key.generation) == cache.generation(st.ino)
            && cache.content_clean(st.ino)
            && st.fat_attrs.is_empty()
            && st.ntfs.is_none()
            && *self.raws[i] == *path
            && (it.file_type, it.mode, it.uid, it.gid, it.size, it.mtime)
                == (st.file_type, st.mode, st.uid, st.gid, st.size, st.mtime)
    }

    /// Counts an item and, for a directory, queues it as the walk does; `None` at a bound
    /// or a directory met twice (the walk would report it).
    fn push(
        &mut self,
        record: Arc<FileRecord>,
        path: Vec<u8>,
        depth: usize,
        ino: u64,
    ) -> Option<()> {
        let dir = record.item.file_type == FileType::Dir;
        self.out.records.push(record);
        if self.out.records.len() as u64 > self.options.limits.max_entries {
            return None;
        }
        if dir {
            if depth + 1 >= self.options.limits.max_depth {
                return None;
            }
            if ino != 0 && !self.entered.insert((self.tree.mount_index(&path), ino)) {
                return None;
            }
            self.stack.push((path, depth + 1, ino));
        }
        Some(())
    }

    /// The item of an entry met again, as the plain walk makes it (its sha256 later).
    fn fresh(&mut self, path: &[u8], st: &Stat) -> Option<FileRecord> {
        let mut item = entry_item(display_path(path), path, st);
        match st.file_type {
            FileType::Symlink => {
                let t = self.tree.read_link_by_inode(path, st.ino).ok()?;
                item.link_target = Some(String::from_utf8_lossy(&t).into_owned());
            }
            FileType::File
                if self.options.hash && self.options.max_hash_size.is_none_or(|m| st.size <= m) =>
            {
                self.jobs
                    .push((self.out.records.len(), path.to_vec(), st.ino));
            }
            _ => {}
        }
        self.out.fresh.push(self.out.records.len());
        let key = if path == b"/" {
            None
        } else {
            self.key(path, st.ino)
        };
        Some(FileRecord { item, key })
    }

    fn run(&mut self) -> Option<()> {
        let start = self.tree.resolve(b"/", true).ok()?;
        let root = self.fresh(&start.path, &start.stat)?;
        self.out.records.push(Arc::new(root));
        if start.stat.file_type != FileType::Dir {
            return Some(());
        }
        if start.stat.ino != 0 {
            self.entered
                .insert((self.tree.mount_index(&start.path), start.stat.ino));
        }
        self.stack.push((start.path, 0, start.stat.ino));
        while let Some((dir, depth, ino)) = self.stack.pop() {
            let mark = self.stack.len();
            if let Some((s, e)) = self.carried_block(&dir, ino) {
                for i in s..e {
                    let r = Arc::clone(&self.old[i]);
                    self.out.carried[i] = true;
                    let path = if r.item.file_type == FileType::Dir {
                        self.raws[i].to_vec()
                    } else {
                        Vec::new()
                    };
                    let ino = r.key.as_ref().map_or(0, |k| k.ino);
                    self.push(r, path, depth, ino)?;
                }
            } else {
                let limit = self.options.limits.max_dir_entries;
                let entries = self.tree.read_dir_by_inode(&dir, ino, limit).ok()?;
                // The previous block at this path, to carry the items of entries that did
                // not change over (both are in name order).
                let (mut j, end) = match self.blocks.get(dir.as_slice()) {
                    Some(&(_, s, e)) if !self.mount_parents.contains(&dir) => (s, e),
                    _ => (0, 0),
                };
                for entry in entries {
                    let path = join_path(&dir, &entry.name);
                    while j < end && *self.raws[j] < *path {
                        j += 1;
                    }
                    if j < end && self.same_entry(j, &path, &entry.stat) {
                        let r = Arc::clone(&self.old[j]);
                        self.out.carried[j] = true;
                        self.push(r, path, depth, entry.stat.ino)?;
                        continue;
                    }
                    let r = self.fresh(&path, &entry.stat)?;
                    self.push(Arc::new(r), path, depth, entry.stat.ino)?;
                }
            }
            // Pushed in name order: reversed, so that they pop in name order.
            self.stack[mark..].reverse();
        }
        Some(())
    }
}

/// The `file` section of `tree` patched from `old`'s, or `None` when it must be walked
/// in full (see the module's documentation).
pub(crate) fn patch(
    tree: &GuestTree,
    options: &FileOptions,
    old: &CrawlState,
    caches: &[Arc<VolumeCache>],
) -> Option<Patched> {
    if !old.files_complete || !options.exclude.is_empty() || options.deadline.passed() {
        return None;
    }
    let raws: Vec<Cow<'_, [u8]>> = old.files.iter().map(|r| raw_path(&r.item)).collect();
    let blocks = old_blocks(&old.files, &raws)?;
    let mount_parents = tree
        .mounts()
        .iter()
        .filter(|m| m.point != b"/")
        .filter_map(|m| parent(&m.point).map(<[u8]>::to_vec))
        .collect();
    let mut walk = Walk {
        tree,
        options,
        old: &old.files,
        raws: &raws,
        blocks,
        caches,
        mount_parents,
        out: Patched {
            records: Vec::with_capacity(old.files.len() + 64),
            fresh: Vec::new(),
            carried: vec![false; old.files.len()],
            made: Vec::new(),
        },
        jobs: Vec::new(),
        entered: HashSet::new(),
        stack: Vec::new(),
    };
    walk.run()?;
    let (hashes, thread_errors) =
        hash_all(tree, &walk.jobs, options.hash_threads, &options.deadline);
    if !thread_errors.is_empty() || hashes.len() != walk.jobs.len() {
        return None;
    }
    let mut out = walk.out;
    for (i, h) in hashes {
        // Made here, not shared yet.
        Arc::get_mut(out.records.get_mut(i)?)?.item.sha256 = Some(h.ok()?);
    }
    // What the walk reserves entry by entry, reserved at once.
    let bytes: u64 = out
        .records
        .iter()
        .map(|r| (std::mem::size_of::<origami_frame::FileItem>() + r.item.path.len()) as u64)
        .sum();
    options.budget.reserve("file section", bytes).ok()?.keep();
    Some(out)
}
