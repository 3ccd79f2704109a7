//! Differences between two frames of one system, item by item, by key.
//!
//! This is the basis of incremental indexing (only changed items are written again) and of
//! "what changed on host H between T1 and T2".

use std::collections::BTreeMap;

use serde::Serialize;

use crate::frame::Frame;
use crate::items::{Item, Os, Section};

/// An item present in both frames whose content differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changed<T> {
    /// The item in the older frame.
    pub old: T,
    /// The item in the newer frame.
    pub new: T,
}

/// The difference of one section: items added, removed and changed, each sorted by key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SectionDiff<T> {
    /// Items whose key is only in the newer frame.
    pub added: Vec<T>,
    /// Items whose key is only in the older frame.
    pub removed: Vec<T>,
    /// Items whose key is in both, with different content.
    pub changed: Vec<Changed<T>>,
}

impl<T> Default for SectionDiff<T> {
    fn default() -> Self {
        SectionDiff {
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
        }
    }
}

impl<T: Item> SectionDiff<T> {
    /// Compares `older` with `newer` by item key.
    ///
    /// When a frame holds two items with one key (a malformed frame), the last one wins, as
    /// it would in an index keyed by item.
    pub fn between(older: &[T], newer: &[T]) -> SectionDiff<T> {
        let old: BTreeMap<String, &T> = older.iter().map(|i| (i.key(), i)).collect();
        let new: BTreeMap<String, &T> = newer.iter().map(|i| (i.key(), i)).collect();
        let mut diff = SectionDiff::default();
        for (key, n) in &new {
            match old.get(key) {
                None => diff.added.push((*n).clone()),
                Some(o) if o != n => diff.changed.push(Changed {
                    old: (*o).clone(),
                    new: (*n).clone(),
                }),
                Some(_) => {}
            }
        }
        for (key, o) in &old {
            if !new.contains_key(key) {
                diff.removed.push((*o).clone());
            }
        }
        diff
    }

    /// True when nothing was added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Keys of the added, removed and changed items, in that order.
    pub fn keys(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        (
            self.added.iter().map(Item::key).collect(),
            self.removed.iter().map(Item::key).collect(),
            self.changed.iter().map(|c| c.new.key()).collect(),
        )
    }
}

/// The difference between two frames, section by section.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FrameDiff {
    /// The `os` item, when it changed.
    pub os: Option<Changed<Os>>,
    /// File inventory.
    pub file: SectionDiff<crate::FileItem>,
    /// Configuration file contents.
    pub config: SectionDiff<crate::ConfigItem>,
    /// Packages.
    pub package: SectionDiff<crate::Package>,
    /// Users.
    pub user: SectionDiff<crate::User>,
    /// Processes.
    pub process: SectionDiff<crate::Process>,
    /// Connections.
    pub connection: SectionDiff<crate::Connection>,
    /// Kernel modules.
    pub module: SectionDiff<crate::Module>,
    /// Mounts.
    pub mount: SectionDiff<crate::Mount>,
    /// Kernel log records.
    pub kernel_log: SectionDiff<crate::KernelLogRecord>,
    /// Services.
    pub service: SectionDiff<crate::Service>,
}

/// How many items of one section were added, removed and changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiffCounts {
    /// Added items.
    pub added: usize,
    /// Removed items.
    pub removed: usize,
    /// Changed items.
    pub changed: usize,
}

impl FrameDiff {
    /// True when the two frames hold the same items.
    pub fn is_empty(&self) -> bool {
        Section::ALL
            .iter()
            .all(|s| self.counts(*s) == DiffCounts::default())
    }

    /// The added / removed / changed counts of one section.
    pub fn counts(&self, section: Section) -> DiffCounts {
        fn c<T>(d: &SectionDiff<T>) -> DiffCounts {
            DiffCounts {
                added: d.added.len(),
                removed: d.removed.len(),
                changed: d.changed.len(),
            }
        }
        match section {
            Section::Os => DiffCounts {
                changed: usize::from(self.os.is_some()),
                ..DiffCounts::default()
            },
            Section::File => c(&self.file),
            Section::Config => c(&self.config),
            Section::Package => c(&self.package),
            Section::User => c(&self.user),
            Section::Process => c(&self.process),
            Section::Connection => c(&self.connection),
            Section::Module => c(&self.module),
            Section::Mount => c(&self.mount),
            Section::KernelLog => c(&self.kernel_log),
            Section::Service => c(&self.service),
        }
    }
}

impl Frame {
    /// What changed from `older` to `self`, by item key, section by section.
    ///
    /// `_frame` metadata (time, timings) is not compared: two crawls of an unchanged machine
    /// diff empty.
    pub fn diff(&self, older: &Frame) -> FrameDiff {
        FrameDiff {
            os: (older.os != self.os).then(|| Changed {
                old: older.os.clone(),
                new: self.os.clone(),
            }),
            file: SectionDiff::between(&older.file, &self.file),
            config: SectionDiff::between(&older.config, &self.config),
            package: SectionDiff::between(&older.package, &self.package),
            user: SectionDiff::between(&older.user, &self.user),
            process: SectionDiff::between(&older.process, &self.process),
            connection: SectionDiff::between(&older.connection, &self.connection),
            module: SectionDiff::between(&older.module, &self.module),
            mount: SectionDiff::between(&older.mount, &self.mount),
            kernel_log: SectionDiff::between(&older.kernel_log, &self.kernel_log),
            service: SectionDiff::between(&older.service, &self.service),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Frame, KernelLogRecord, Mount, Section};

    fn log(seq: u64, message: &str) -> KernelLogRecord {
        KernelLogRecord {
            seq,
            time: seq * 1000,
            level: 6,
            message: message.into(),
            ..KernelLogRecord::default()
        }
    }

    #[test]
    fn mounts_and_log_records_diff_by_key() {
        let mut old = Frame::new("vm");
        let tmp = Mount {
            device: "tmpfs".into(),
            path: "/tmp".into(),
            fs_type: "tmpfs".into(),
            options: "rw".into(),
            ..Mount::default()
        };
        old.mount.push(tmp.clone());
        old.kernel_log = vec![log(0, "a"), log(1, "b")];
        let mut new = old.clone();
        // Remounted read-only, and a second file system mounted over /tmp.
        new.mount[0].options = "ro".into();
        new.mount.push(Mount {
            device: "/dev/vdb".into(),
            fs_type: "ext4".into(),
            stack: 1,
            ..tmp
        });
        // The ring dropped record 0 and gained record 2.
        new.kernel_log = vec![log(1, "b"), log(2, "c")];
        let d = new.diff(&old);
        assert_eq!(
            d.mount.keys(),
            (vec!["/tmp#1".into()], vec![], vec!["/tmp".into()])
        );
        assert_eq!(
            d.kernel_log.keys(),
            (vec!["2".into()], vec!["0".into()], vec![])
        );
        assert_eq!(d.counts(Section::Mount).changed, 1);
        assert_eq!(d.counts(Section::KernelLog).removed, 1);
        assert!(!d.is_empty());
        assert!(new.diff(&new).is_empty());
    }
}
