//! The `file` section: every file, directory, symlink and device of the guest tree, with
//! path, type, mode, owner, size, mtime, link target and, when asked, the sha256 of regular
//! files.
//!
//! The walk never follows symlinks and crosses into mounted file systems (the guest's view).
//! Paths matching an exclusion glob are left out, and an excluded directory is not entered.
//! A name that is not UTF-8 is shown lossily in `path`, with its raw bytes in `path_hex`.
//!
//! Regular files are hashed after the walk, on [`FileOptions::hash_threads`] threads that
//! share the one opened guest tree (file systems are `Send + Sync`; ext4's block cache is
//! shared by all of them).

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};

use globset::GlobSet;
use origami_frame::{FileItem, FileType};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::fs::{display_path, GuestTree, WalkControl, WalkLimits};
use crate::limits::{Budget, Deadline};

/// The most per-file errors (unreadable content) reported; the rest are counted.
const MAX_REPORTED: usize = 20;

/// What the file crawler does.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// Hash regular files with sha256.
    pub hash: bool,
    /// Files larger than this are not hashed (`None`: no bound).
    pub max_hash_size: Option<u64>,
    /// Paths to leave out (matched against the absolute guest path).
    pub exclude: GlobSet,
    /// Bounds of the walk.
    pub limits: WalkLimits,
    /// Threads hashing files, the calling thread included, all reading the one guest tree;
    /// 0 or 1 hashes on the calling thread.
    pub hash_threads: usize,
    /// The crawl's memory budget: each entry listed is reserved on it (its path and
    /// [`FileItem`]'s size, kept, as the frame holds it); an entry it cannot hold stops
    /// the walk.
    pub budget: Budget,
    /// When the section must stop (checked at each entry walked and each file hashed).
    pub deadline: Deadline,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            hash: false,
            max_hash_size: None,
            exclude: GlobSet::empty(),
            limits: WalkLimits::default(),
            hash_threads: 0,
            budget: Budget::unlimited(),
            deadline: Deadline::none(),
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// The sha256 of the regular file at canonical `path`, streamed.
pub fn sha256_file(tree: &GuestTree, path: &[u8], buf: &mut [u8]) -> crate::Result<String> {
    sha256_by_inode(tree, path, 0, buf)
}

/// As [`sha256_file`], for a file met by the walk whose inode number is `ino`.
fn sha256_by_inode(
    tree: &GuestTree,
    path: &[u8],
    ino: u64,
    buf: &mut [u8],
) -> crate::Result<String> {
    if let Some(known) = tree.sha256_by_inode(path, ino) {
        return known;
    }
    let mut reader = tree.open_by_inode(path, ino)?;
    let mut hasher = Sha256::new();
    loop {
        let n = reader.read(buf).map_err(|e| Error::FileSystem {
            source_name: tree.source_of(path),
            fs: "guest",
            path: Some(display_path(path)),
            what: e.to_string(),
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Hashes the files of `jobs` (item index, canonical path, inode number) on `threads`
/// threads (the calling thread one of them), all reading `tree`.
pub(crate) fn hash_all(
    tree: &GuestTree,
    jobs: &[(usize, Vec<u8>, u64)],
    threads: usize,
    deadline: &Deadline,
) -> (Vec<(usize, crate::Result<String>)>, Vec<Error>) {
    let next = AtomicUsize::new(0);
    let work = |t: &GuestTree| {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 256 << 10];
        loop {
            // Past the section's time, no further file is hashed (the caller reports it).
            if deadline.passed() {
                break;
            }
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((item, path, ino)) = jobs.get(i) else {
                break;
            };
            out.push((*item, sha256_by_inode(t, path, *ino, &mut buf)));
        }
        out
    };
    let threads = threads.min(jobs.len());
    if threads <= 1 {
        return (work(tree), Vec::new());
    }
    std::thread::scope(|s| {
        let workers: Vec<_> = (1..threads).map(|_| s.spawn(|| work(tree))).collect();
        let mut done = work(tree);
        let mut errors = Vec::new();
        for w in workers {
            match w.join() {
                Ok(part) => done.extend(part),
                Err(_) => errors.push(Error::LimitExceeded {
                    what: "a hashing thread stopped".into(),
                    limit: 0,
                }),
            }
        }
        (done, errors)
    })
}

/// The NTFS fields of a file item: creation and access times (seconds since the epoch),
/// attribute letters, hard links (when more than one), reparse tag, alternate streams.
fn ntfs_fields(extra: &mut serde_json::Map<String, Value>, n: &crate::fs::NtfsMeta) {
    extra.insert("created".into(), n.created.into());
    extra.insert("accessed".into(), n.accessed.into());
    extra.insert("attributes".into(), n.attribute_letters().into());
    if n.hard_links > 1 {
        extra.insert("hard_links".into(), n.hard_links.into());
    }
    if let Some(tag) = n.reparse_tag {
        extra.insert("reparse_tag".into(), format!("{tag:#010x}").into());
    }
    if !n.streams.is_empty() {
        let streams: Vec<Value> = n
            .streams
            .iter()
            .map(|(name, size)| serde_json::json!({"name": name, "size": size}))
            .collect();
        extra.insert("streams".into(), Value::Array(streams));
    }
}

/// The item of the entry at canonical `path` (shown as `text`) whose metadata is `st`,
/// without its link target or sha256.
pub(crate) fn entry_item(text: String, path: &[u8], st: &crate::fs::Stat) -> FileItem {
    let mut item = FileItem {
        path: text,
        file_type: st.file_type,
        mode: st.mode,
        uid: st.uid,
        gid: st.gid,
        size: st.size,
        mtime: st.mtime,
        ..FileItem::default()
    };
    if std::str::from_utf8(path).is_err() {
        item.extra
            .insert("path_hex".into(), Value::String(hex(path)));
    }
    if !st.fat_attrs.is_empty() {
        item.extra
            .insert("fat_attrs".into(), Value::String(st.fat_attrs.clone()));
    }
    if let Some(n) = &st.ntfs {
        ntfs_fields(&mut item.extra, n);
    }
    item
}

/// Lists the guest tree, with the problems met (unreadable directories or files, bounds).
/// Files are hashed on `options.hash_threads` threads sharing `tree`.
pub fn crawl(tree: &GuestTree, options: &FileOptions) -> (Vec<FileItem>, Vec<Error>) {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    let mut unreported = 0usize;
    let mut jobs: Vec<(usize, Vec<u8>, u64)> = Vec::new();
    let mut stopped: Option<Error> = None;
    let walk_errors = tree.walk(b"/", &options.limits, &mut |entry| {
        if let Err(e) = options.deadline.check() {
            stopped = Some(e);
            return WalkControl::Stop;
        }
        let text = display_path(entry.path);
        if !options.exclude.is_empty() && options.exclude.is_match(&text) {
            return WalkControl::SkipDir;
        }
        let item_bytes = (std::mem::size_of::<FileItem>() + text.len()) as u64;
        match options.budget.reserve(&text, item_bytes) {
            Ok(held) => held.keep(),
            Err(e) => {
                stopped = Some(e);
                return WalkControl::Stop;
            }
        }
        let st = entry.stat;
        let mut item = entry_item(text, entry.path, st);
        let mut problem = None;
        match st.file_type {
            FileType::Symlink => match tree.read_link_by_inode(entry.path, st.ino) {
                Ok(t) => item.link_target = Some(String::from_utf8_lossy(&t).into_owned()),
                Err(e) => problem = Some(e),
            },
            FileType::File
                if options.hash && options.max_hash_size.is_none_or(|m| st.size <= m) =>
            {
                jobs.push((items.len(), entry.path.to_vec(), st.ino));
            }
            _ => {}
        }
        if let Some(e) = problem {
            if errors.len() < MAX_REPORTED {
                errors.push(e);
            } else {
                unreported += 1;
            }
        }
        items.push(item);
        WalkControl::Continue
    });
    errors.extend(walk_errors);
    let (hashes, thread_errors) = match stopped {
        // A section stopped by its time or memory hashes nothing more.
        Some(e) => {
            errors.push(e);
            (Vec::new(), Vec::new())
        }
        None => {
            let (h, e) = hash_all(tree, &jobs, options.hash_threads, &options.deadline);
            if h.len() < jobs.len() && options.deadline.passed() {
                errors.push(options.deadline.error());
            }
            (h, e)
        }
    };
    errors.extend(thread_errors);
    for (i, hash) in hashes {
        match (hash, items.get_mut(i)) {
            (Ok(h), Some(item)) => item.sha256 = Some(h),
            (Err(e), _) if errors.len() < MAX_REPORTED => errors.push(e),
            (Err(_), _) => unreported += 1,
            (Ok(_), None) => {}
        }
    }
    if unreported > 0 {
        errors.push(Error::LimitExceeded {
            what: format!("{unreported} further unreadable files not listed"),
            limit: MAX_REPORTED as u64,
        });
    }
    (items, errors)
}
