//! File events: what changed in the guest's files between two crawls, from the two
//! frames' `file` sections and the inode of each item.
//!
//! - `file_created` / `file_deleted`: a path that appeared or went (a new hard link to an
//!   existing file is a created path; removing one of several links a deleted path);
//! - `file_renamed`: the same inode (number and generation) under a new path, the old path
//!   gone. A directory moved is **one** event for the directory: the paths below it that
//!   only follow it are not reported (a change to one of them is, under its new path);
//! - `file_modified`: content or size changed (sha256 when hashed, size, a symlink's target:
//!   a link retargeted, even by replacing it with a new link, is a modified link);
//! - `file_changed`: metadata only (mode, owner, group, modification time). A directory's
//!   modification time and size follow its entries, whose own events say what happened:
//!   they are not reported for directories.
//!
//! Each event carries the item under `file`, with the frame's field names, and the item as
//! it was under `previous` (modified, changed, renamed), like the memory watcher's events.

use std::collections::{BTreeMap, HashMap};

use origami_frame::{FileItem, FileType};
use serde::{Deserialize, Serialize};

use super::state::{FileRecord, InodeKey};

/// A change to the guest's files between two crawls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FileEvent {
    /// A path that the previous crawl did not have.
    FileCreated {
        /// The new item.
        file: FileItem,
    },
    /// A path that is gone.
    FileDeleted {
        /// The item as last seen.
        file: FileItem,
    },
    /// Content or size changed (a symlink's target included).
    FileModified {
        /// The item now.
        file: FileItem,
        /// The item before.
        previous: FileItem,
    },
    /// Metadata changed (mode, owner, group, modification time), content did not.
    FileChanged {
        /// The item now.
        file: FileItem,
        /// The item before.
        previous: FileItem,
    },
    /// The same file under a new path (moved or renamed).
    FileRenamed {
        /// The item under its new path.
        file: FileItem,
        /// The item under its old path.
        previous: FileItem,
    },
}

impl FileEvent {
    /// The event's name as serialized (`file_created`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            FileEvent::FileCreated { .. } => "file_created",
            FileEvent::FileDeleted { .. } => "file_deleted",
            FileEvent::FileModified { .. } => "file_modified",
            FileEvent::FileChanged { .. } => "file_changed",
            FileEvent::FileRenamed { .. } => "file_renamed",
        }
    }

    /// The item the event is about (its new form, or the deleted one).
    pub fn file(&self) -> &FileItem {
        match self {
            FileEvent::FileCreated { file }
            | FileEvent::FileDeleted { file }
            | FileEvent::FileModified { file, .. }
            | FileEvent::FileChanged { file, .. }
            | FileEvent::FileRenamed { file, .. } => file,
        }
    }
}

fn content_differs(a: &FileItem, b: &FileItem) -> bool {
    if a.file_type == FileType::Dir {
        return false;
    }
    a.size != b.size || a.sha256 != b.sha256 || a.link_target != b.link_target
}

fn metadata_differs(a: &FileItem, b: &FileItem) -> bool {
    let times = a.file_type != FileType::Dir && a.mtime != b.mtime;
    a.mode != b.mode || a.uid != b.uid || a.gid != b.gid || times || a.extra != b.extra
}

/// The modified or changed event between two forms of one file, if any.
fn compare(old: &FileItem, new: &FileItem, out: &mut Vec<FileEvent>) {
    if content_differs(old, new) {
        out.push(FileEvent::FileModified {
            file: new.clone(),
            previous: old.clone(),
        });
    } else if metadata_differs(old, new) {
        out.push(FileEvent::FileChanged {
            file: new.clone(),
            previous: old.clone(),
        });
    }
}

/// Whether `new` is where `old` lands when the directory renamed `from` -> `to` (one of
/// `dirs`) moves: then a rename of `old` to `new` says nothing more.
fn follows_a_directory(old: &str, new: &str, dirs: &HashMap<&str, &str>) -> bool {
    let mut cut = old.len();
    while let Some(i) = old[..cut].rfind('/') {
        if i == 0 {
            break;
        }
        if let Some(to) = dirs.get(&old[..i]) {
            return new.len() == to.len() + (old.len() - i)
                && new.starts_with(to)
                && new[to.len()..] == old[i..];
        }
        cut = i;
    }
    false
}

/// The events that turn `old` into `new` (both a frame's `file` section, with inodes).
pub fn file_events<R: std::borrow::Borrow<FileRecord>>(old: &[R], new: &[R]) -> Vec<FileEvent> {
    let old: Vec<&FileRecord> = old.iter().map(|r| r.borrow()).collect();
    let new: Vec<&FileRecord> = new.iter().map(|r| r.borrow()).collect();
    let old_paths: HashMap<&str, &FileRecord> =
        old.iter().map(|r| (r.item.path.as_str(), *r)).collect();
    let new_paths: HashMap<&str, &FileRecord> =
        new.iter().map(|r| (r.item.path.as_str(), *r)).collect();
    let mut out = Vec::new();
    for &n in &new {
        if let Some(o) = old_paths.get(n.item.path.as_str()) {
            if o.item.file_type != n.item.file_type {
                out.push(FileEvent::FileDeleted {
                    file: o.item.clone(),
                });
                out.push(FileEvent::FileCreated {
                    file: n.item.clone(),
                });
            } else {
                compare(&o.item, &n.item, &mut out);
            }
        }
    }
    // Gone paths by inode, to pair with appeared ones.
    let mut gone: BTreeMap<&InodeKey, Vec<&FileRecord>> = BTreeMap::new();
    for &o in &old {
        if !new_paths.contains_key(o.item.path.as_str()) {
            if let Some(k) = &o.key {
                gone.entry(k).or_default().push(o);
            }
        }
    }
    let mut renames: Vec<(&FileRecord, &FileRecord)> = Vec::new();
    let mut paired: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for &n in &new {
        if old_paths.contains_key(n.item.path.as_str()) {
            continue;
        }
        let Some(k) = &n.key else { continue };
        if let Some(list) = gone.get_mut(k) {
            if let Some(o) = list.pop() {
                if o.item.file_type == n.item.file_type {
                    paired.insert(o.item.path.as_str());
                    paired.insert(n.item.path.as_str());
                    renames.push((o, n));
                }
            }
        }
    }
    let dirs: HashMap<&str, &str> = renames
        .iter()
        .filter(|(o, _)| o.item.file_type == FileType::Dir)
        .map(|(o, n)| (o.item.path.as_str(), n.item.path.as_str()))
        .collect();
    for (o, n) in &renames {
        if !follows_a_directory(&o.item.path, &n.item.path, &dirs) {
            out.push(FileEvent::FileRenamed {
                file: n.item.clone(),
                previous: o.item.clone(),
            });
        }
        compare(&o.item, &n.item, &mut out);
    }
    for o in old {
        let p = o.item.path.as_str();
        if !new_paths.contains_key(p) && !paired.contains(p) {
            out.push(FileEvent::FileDeleted {
                file: o.item.clone(),
            });
        }
    }
    for n in new {
        let p = n.item.path.as_str();
        if !old_paths.contains_key(p) && !paired.contains(p) {
            out.push(FileEvent::FileCreated {
                file: n.item.clone(),
            });
        }
    }
    out.sort_by(|a, b| (a.file().path.as_str(), a.name()).cmp(&(b.file().path.as_str(), b.name())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, ty: FileType, ino: u64, size: u64) -> FileRecord {
        FileRecord {
            item: FileItem {
                path: path.into(),
                file_type: ty,
                size,
                mode: 0o644,
                ..FileItem::default()
            },
            key: Some(InodeKey {
                volume: "v".into(),
                ino,
                generation: 1,
            }),
        }
    }

    #[test]
    fn a_moved_directory_is_one_event() {
        let old = vec![
            rec("/a", FileType::Dir, 10, 0),
            rec("/a/x", FileType::File, 11, 5),
            rec("/a/y", FileType::File, 12, 5),
            rec("/gone", FileType::File, 13, 1),
        ];
        let new = vec![
            rec("/b", FileType::Dir, 10, 0),
            rec("/b/x", FileType::File, 11, 5),
            rec("/b/y", FileType::File, 12, 9),
            rec("/made", FileType::File, 14, 1),
        ];
        let names: Vec<(&str, String)> = file_events(&old, &new)
            .iter()
            .map(|e| (e.name(), e.file().path.clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("file_renamed", "/b".to_string()),
                ("file_modified", "/b/y".into()),
                ("file_deleted", "/gone".into()),
                ("file_created", "/made".into()),
            ]
        );
    }

    #[test]
    fn a_reused_inode_is_not_a_rename() {
        let old = vec![rec("/a", FileType::File, 10, 1)];
        let mut n = rec("/b", FileType::File, 10, 1);
        n.key.as_mut().unwrap().generation = 2;
        let names: Vec<&str> = file_events(&old, &[n]).iter().map(|e| e.name()).collect();
        assert_eq!(names, vec!["file_deleted", "file_created"]);
    }
}
