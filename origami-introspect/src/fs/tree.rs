//! The guest's assembled tree: a root file system and others mounted on it, with paths
//! resolved as the guest kernel would resolve them, but never leaving the guest.
//!
//! Resolution walks one component at a time: `..` pops a component and never climbs above
//! `/`; a symlink's target is spliced into the remaining components, an absolute target
//! restarting from the *guest's* root; more than [`MAX_SYMLINKS`] links (Linux's own
//! bound) ends with [`Error::SymlinkLoop`]. Nothing here opens a host path: every read goes
//! to a [`FileSystem`] of the guest.

use std::collections::{HashSet, VecDeque};
use std::io::Read;

use origami_frame::FileType;

use super::path::{components, display_path, from_components, join_path};
use super::{DirEntry, FileSystem, FsInfo, Stat};
use crate::error::{Error, Result};

/// The most symlinks one resolution follows (as Linux's `MAXSYMLINKS`).
pub const MAX_SYMLINKS: u32 = 40;
/// The longest symlink target accepted (Linux's `PATH_MAX`).
const MAX_LINK_TARGET: usize = 4096;
/// The most path components one resolution processes, links included.
const MAX_COMPONENTS: usize = 64 * 1024;

/// A file system placed at a point of the guest tree.
pub struct Mount {
    /// The mount point, an absolute guest path (`/`, `/boot/efi`).
    pub point: Vec<u8>,
    /// What the file system says about itself.
    pub info: FsInfo,
    fs: Box<dyn FileSystem>,
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("point", &display_path(&self.point))
            .field("info", &self.info)
            .finish()
    }
}

/// A guest path after resolution.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The canonical guest path: absolute, no `.`/`..`, no symlink in its directories
    /// (and none at the end when links were followed).
    pub path: Vec<u8>,
    /// The metadata of what it names.
    pub stat: Stat,
}

/// Bounds of a walk, so that a hostile or corrupt tree cannot make it endless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkLimits {
    /// The most entries visited in all.
    pub max_entries: u64,
    /// The deepest directory level entered.
    pub max_depth: usize,
    /// The most entries read from one directory.
    pub max_dir_entries: usize,
}

impl Default for WalkLimits {
    /// The walk bounds of [`crate::Limits::DEFAULT`].
    fn default() -> Self {
        crate::Limits::DEFAULT.walk
    }
}

/// One entry met by [`GuestTree::walk`].
#[derive(Debug)]
pub struct WalkEntry<'a> {
    /// Its canonical guest path.
    pub path: &'a [u8],
    /// Its metadata (symlinks not followed; a mount point shows the mounted root).
    pub stat: &'a Stat,
}

/// What the walk does after visiting an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkControl {
    /// Go on (into the entry when it is a directory).
    Continue,
    /// Do not enter this directory.
    SkipDir,
    /// End the walk.
    Stop,
}

/// The guest's file tree: a root file system plus file systems mounted on it.
#[derive(Debug)]
pub struct GuestTree {
    /// Sorted by mount point, so the last match of a path is its longest mount point.
    mounts: Vec<Mount>,
}

fn normalize_point(point: &[u8]) -> Vec<u8> {
    let parts: Vec<&[u8]> = components(point).filter(|c| *c != b".").collect();
    from_components(&parts)
}

impl GuestTree {
    /// A tree of one file system at `/`.
    pub fn single(root: Box<dyn FileSystem>) -> GuestTree {
        GuestTree {
            mounts: vec![Mount {
                point: b"/".to_vec(),
                info: root.info(),
                fs: root,
            }],
        }
    }

    /// Mounts `fs` at `point` (an absolute guest path); a later mount at the same point
    /// hides the earlier one, as in the guest.
    pub fn mount(&mut self, point: &[u8], fs: Box<dyn FileSystem>) {
        let point = normalize_point(point);
        self.mounts.retain(|m| m.point != point);
        self.mounts.push(Mount {
            point,
            info: fs.info(),
            fs,
        });
        self.mounts.sort_by(|a, b| a.point.cmp(&b.point));
    }

    /// The mounts, sorted by mount point (`/` first).
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The index in `mounts` of the mount holding canonical `path` (its longest mount point).
    pub(crate) fn mount_index(&self, path: &[u8]) -> usize {
        let mut best: Option<(usize, &Mount)> = None;
        for (i, m) in self.mounts.iter().enumerate() {
            let inside = m.point == b"/"
                || path == m.point.as_slice()
                || (path.starts_with(&m.point) && path.get(m.point.len()) == Some(&b'/'));
            if inside && best.is_none_or(|(_, b)| m.point.len() > b.point.len()) {
                best = Some((i, m));
            }
        }
        // `mounts` always holds `/` (it is built with one), so `best` is set; fall back to
        // the first mount rather than panic should that ever change.
        best.map_or(0, |(i, _)| i)
    }

    /// The mount holding canonical `path`, and the path inside that file system.
    fn locate<'t>(&'t self, path: &[u8]) -> (&'t Mount, Vec<u8>) {
        let m = &self.mounts[self.mount_index(path)];
        let rest = if m.point == b"/" {
            path.to_vec()
        } else {
            let r = &path[m.point.len()..];
            if r.is_empty() {
                b"/".to_vec()
            } else {
                r.to_vec()
            }
        };
        (m, rest)
    }

    /// The image or partition holding canonical `path`, for messages.
    pub fn source_of(&self, path: &[u8]) -> String {
        self.locate(path).0.info.source.clone()
    }

    /// `lstat` of a canonical path (no symlink among its directories).
    pub fn lstat_canonical(&self, path: &[u8]) -> Result<Stat> {
        let (m, inner) = self.locate(path);
        m.fs.lstat(&inner).map_err(|e| rename(e, path))
    }

    /// Resolves `path` inside the guest. A relative path is taken from the root. With
    /// `follow_final`, a symlink at the end is followed too.
    pub fn resolve(&self, path: &[u8], follow_final: bool) -> Result<Resolved> {
        let mut pending: VecDeque<Vec<u8>> = components(path).map(<[u8]>::to_vec).collect();
        let mut current: Vec<Vec<u8>> = Vec::new();
        let mut links = 0u32;
        let mut processed = 0usize;
        let mut stat = self.lstat_canonical(b"/")?;
        while let Some(part) = pending.pop_front() {
            processed += 1;
            if processed > MAX_COMPONENTS {
                return Err(Error::LimitExceeded {
                    what: format!("path components resolving {}", display_path(path)),
                    limit: MAX_COMPONENTS as u64,
                });
            }
            if stat.file_type != FileType::Dir {
                return Err(Error::NotADirectory {
                    path: display_path(&from_components(&current)),
                });
            }
            match part.as_slice() {
                b"." => continue,
                b".." => {
                    // `..` of the root is the root: the guest's tree has no outside.
                    current.pop();
                    stat = self.lstat_canonical(&from_components(&current))?;
                    continue;
                }
                _ => {}
            }
            current.push(part);
            let here = from_components(&current);
            let st = self.lstat_canonical(&here)?;
            let last = pending.is_empty();
            if st.file_type == FileType::Symlink && (!last || follow_final) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Error::SymlinkLoop {
                        path: display_path(path),
                        limit: MAX_SYMLINKS,
                    });
                }
                let target = self.read_link_canonical(&here)?;
                current.pop();
                if target.first() == Some(&b'/') {
                    current.clear();
                }
                for c in components(&target).rev() {
                    pending.push_front(c.to_vec());
                }
                stat = self.lstat_canonical(&from_components(&current))?;
                continue;
            }
            stat = st;
        }
        Ok(Resolved {
            path: from_components(&current),
            stat,
        })
    }

    /// The target of the symlink at canonical `path` (as given by [`GuestTree::walk`]).
    pub fn read_link_canonical(&self, path: &[u8]) -> Result<Vec<u8>> {
        self.read_link_by_inode(path, 0)
    }

    /// As [`GuestTree::read_link_canonical`], for an entry met by [`GuestTree::walk`] whose
    /// [`Stat::ino`] is `ino`: read by inode where the file system can (see
    /// [`FileSystem`] on the `*_by_inode` names).
    pub fn read_link_by_inode(&self, path: &[u8], ino: u64) -> Result<Vec<u8>> {
        let (m, inner) = self.locate(path);
        let target =
            m.fs.read_link_by_inode(&inner, ino)
                .map_err(|e| rename(e, path))?;
        if target.len() > MAX_LINK_TARGET {
            return Err(Error::TooLarge {
                file: display_path(path),
                size: target.len() as u64,
                limit: MAX_LINK_TARGET as u64,
            });
        }
        Ok(target)
    }

    /// The metadata of `path`, following symlinks (as `stat`).
    pub fn stat(&self, path: &[u8]) -> Result<Stat> {
        Ok(self.resolve(path, true)?.stat)
    }

    /// The metadata of `path` itself (as `lstat`).
    pub fn lstat(&self, path: &[u8]) -> Result<Stat> {
        Ok(self.resolve(path, false)?.stat)
    }

    /// True when `path` resolves to something.
    pub fn exists(&self, path: &[u8]) -> bool {
        self.resolve(path, true).is_ok()
    }

    /// The target of symlink `path`, as stored.
    pub fn read_link(&self, path: &[u8]) -> Result<Vec<u8>> {
        let r = self.resolve(path, false)?;
        self.read_link_canonical(&r.path)
    }

    /// The entries of directory `path` (followed), with mount points showing the mounted
    /// file system's root, sorted by name; at most `limit` entries.
    pub fn read_dir(&self, path: &[u8], limit: usize) -> Result<Vec<DirEntry>> {
        let r = self.resolve(path, true)?;
        if r.stat.file_type != FileType::Dir {
            return Err(Error::NotADirectory {
                path: display_path(path),
            });
        }
        self.read_dir_by_inode(&r.path, r.stat.ino, limit)
    }

    /// The entries of the directory at canonical `dir`, whose [`Stat::ino`] is `ino` (0
    /// when unknown), mounted file systems shown at their mount points, sorted by name.
    pub(crate) fn read_dir_by_inode(
        &self,
        dir: &[u8],
        ino: u64,
        limit: usize,
    ) -> Result<Vec<DirEntry>> {
        let (m, inner) = self.locate(dir);
        let mut entries =
            m.fs.read_dir_by_inode(&inner, ino, limit)
                .map_err(|e| rename(e, dir))?;
        for other in &self.mounts {
            if other.point == b"/" {
                continue;
            }
            let (parent, name) = match other.point.iter().rposition(|&b| b == b'/') {
                Some(0) => (&b"/"[..], &other.point[1..]),
                Some(i) => (&other.point[..i], &other.point[i + 1..]),
                None => continue,
            };
            if parent != dir {
                continue;
            }
            let stat = other.fs.lstat(b"/")?;
            match entries.iter_mut().find(|e| e.name == name) {
                Some(e) => e.stat = stat,
                None => entries.push(DirEntry {
                    name: name.to_vec(),
                    stat,
                }),
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// A reader of the regular file `path` (links followed).
    pub fn open(&self, path: &[u8]) -> Result<Box<dyn Read + '_>> {
        let r = self.resolve(path, true)?;
        self.open_canonical(&r.path)
    }

    /// A reader of the regular file at canonical `path` (as given by [`GuestTree::walk`]).
    pub fn open_canonical(&self, path: &[u8]) -> Result<Box<dyn Read + '_>> {
        self.open_by_inode(path, 0)
    }

    /// As [`GuestTree::open_canonical`], for an entry met by [`GuestTree::walk`] whose
    /// [`Stat::ino`] is `ino`: opened by inode where the file system can.
    pub fn open_by_inode(&self, path: &[u8], ino: u64) -> Result<Box<dyn Read + '_>> {
        let (m, inner) = self.locate(path);
        m.fs.open_by_inode(&inner, ino).map_err(|e| rename(e, path))
    }

    /// The sha256 of the regular file at canonical `path` (inode `ino`) when its file
    /// system can give it without the content being streamed (see
    /// [`FileSystem::sha256_by_inode`]).
    pub fn sha256_by_inode(&self, path: &[u8], ino: u64) -> Option<Result<String>> {
        let (m, inner) = self.locate(path);
        m.fs.sha256_by_inode(&inner, ino)
            .map(|r| r.map_err(|e| rename(e, path)))
    }

    /// The whole content of regular file `path`, which must be at most `limit` bytes
    /// (else [`Error::TooLarge`], before anything is read).
    pub fn read_file(&self, path: &[u8], limit: u64) -> Result<Vec<u8>> {
        let r = self.resolve(path, true)?;
        if r.stat.file_type != FileType::File {
            return Err(Error::Malformed {
                file: display_path(path),
                location: "inode".into(),
                what: format!(
                    "a {} where a regular file is needed",
                    r.stat.file_type.name()
                ),
            });
        }
        if r.stat.size > limit {
            return Err(Error::TooLarge {
                file: display_path(path),
                size: r.stat.size,
                limit,
            });
        }
        let (data, _) = self.read_prefix_canonical(&r.path, limit)?;
        Ok(data)
    }

    /// Up to `limit` bytes of the regular file at canonical `path`, and whether there was
    /// more.
    pub fn read_prefix_canonical(&self, path: &[u8], limit: u64) -> Result<(Vec<u8>, bool)> {
        self.read_prefix_by_inode(path, 0, limit)
    }

    /// As [`GuestTree::read_prefix_canonical`], for a file met by [`GuestTree::walk`] whose
    /// [`Stat::ino`] is `ino`: read by inode where the file system can.
    pub fn read_prefix_by_inode(
        &self,
        path: &[u8],
        ino: u64,
        limit: u64,
    ) -> Result<(Vec<u8>, bool)> {
        let reader = self.open_by_inode(path, ino)?;
        let mut data = Vec::new();
        let read_err = |e: std::io::Error| Error::FileSystem {
            source_name: self.source_of(path),
            fs: self.locate(path).0.info.kind.name(),
            path: Some(display_path(path)),
            what: e.to_string(),
        };
        reader
            .take(limit.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(read_err)?;
        let more = data.len() as u64 > limit;
        data.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok((data, more))
    }

    /// Visits every entry under `root` (itself first, then depth-first, names sorted),
    /// never following symlinks, crossing into mounted file systems. Errors met on the
    /// way (an unreadable directory, a bound reached) are returned; the walk goes on past
    /// each one where it can.
    pub fn walk(
        &self,
        root: &[u8],
        limits: &WalkLimits,
        visit: &mut dyn FnMut(WalkEntry<'_>) -> WalkControl,
    ) -> Vec<Error> {
        let mut errors = Vec::new();
        let start = match self.resolve(root, true) {
            Ok(r) => r,
            Err(e) => return vec![e],
        };
        let mut seen = 1u64;
        match visit(WalkEntry {
            path: &start.path,
            stat: &start.stat,
        }) {
            WalkControl::Continue if start.stat.file_type == FileType::Dir => {}
            _ => return errors,
        }
        // Directories entered, by (mount, inode): a corrupt or hostile file system whose
        // directory links to an ancestor is entered once, not until the depth bound.
        let mut entered: HashSet<(usize, u64)> = HashSet::new();
        if start.stat.ino != 0 {
            entered.insert((self.mount_index(&start.path), start.stat.ino));
        }
        let mut stack: Vec<(Vec<u8>, usize, u64)> = vec![(start.path, 0, start.stat.ino)];
        while let Some((dir, depth, ino)) = stack.pop() {
            let entries = match self.read_dir_by_inode(&dir, ino, limits.max_dir_entries) {
                Ok(e) => e,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let mut subdirs = Vec::new();
            for entry in entries {
                seen += 1;
                if seen > limits.max_entries {
                    errors.push(Error::LimitExceeded {
                        what: "entries walked".into(),
                        limit: limits.max_entries,
                    });
                    return errors;
                }
                let path = join_path(&dir, &entry.name);
                match visit(WalkEntry {
                    path: &path,
                    stat: &entry.stat,
                }) {
                    WalkControl::Stop => return errors,
                    WalkControl::SkipDir => continue,
                    WalkControl::Continue => {}
                }
                if entry.stat.file_type == FileType::Dir {
                    if depth + 1 >= limits.max_depth {
                        errors.push(Error::LimitExceeded {
                            what: format!("directory depth at {}", display_path(&path)),
                            limit: limits.max_depth as u64,
                        });
                        continue;
                    }
                    let ino = entry.stat.ino;
                    if ino != 0 && !entered.insert((self.mount_index(&path), ino)) {
                        errors.push(Error::Malformed {
                            file: display_path(&path),
                            location: format!("inode {ino}"),
                            what: "a directory met twice (a directory hard link or a loop); \
                                   not entered again"
                                .into(),
                        });
                        continue;
                    }
                    subdirs.push((path, depth + 1, ino));
                }
            }
            // Reversed, so the stack pops them in name order.
            stack.extend(subdirs.into_iter().rev());
        }
        errors
    }
}

/// Gives a file system's error the guest path (the file system only knew its own path).
fn rename(e: Error, guest: &[u8]) -> Error {
    match e {
        Error::NotFound { .. } => Error::NotFound {
            path: display_path(guest),
        },
        Error::NotADirectory { .. } => Error::NotADirectory {
            path: display_path(guest),
        },
        other => other,
    }
}
