//! The versions written since the last commit, kept so that a later frame of the same
//! system can close them before the commit: tantivy cannot read back a document it has not
//! committed, and closing a version means writing it again with its `valid_to`.
//!
//! What is kept is what the stored document holds (the item's JSON, the names it resolved,
//! its host, OS and times), in one buffer per system, until the next commit: with the
//! default commit interval, about a second of ingest.

use std::collections::HashMap;

use origami_frame::Section;

use crate::item_doc::ItemDoc;
use crate::schema::{KeyId, KeyMap, Version};
use crate::versions::StoredVersion;

/// `Entry::user` / `Entry::proc_name` when there is none.
const NONE: u32 = u32::MAX;

/// Where one version's bytes are, and its times.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The frame it came with (index into `PendingSystem::frames`).
    frame: u32,
    section: Section,
    content_hash: u64,
    /// Its bytes: the JSON, then the user name, then the process name.
    start: usize,
    json: u32,
    user: u32,
    proc_name: u32,
}

impl Entry {
    fn len(&self) -> usize {
        let opt = |n: u32| if n == NONE { 0 } else { n as usize };
        self.json as usize + opt(self.user) + opt(self.proc_name)
    }
}

/// The new versions of one frame, before the frame is written.
#[derive(Debug, Default)]
pub(crate) struct PendingBatch {
    bytes: Vec<u8>,
    entries: Vec<(KeyId, Entry)>,
}

impl PendingBatch {
    /// Keeps a new version: its key, its JSON and the names its document resolved.
    pub(crate) fn push(&mut self, key: KeyId, v: &Version, json: &str, d: &ItemDoc) {
        let start = self.bytes.len();
        let mut put = |s: Option<&str>| match s {
            // Items are bounded far below 4 GiB (frames are read with a line bound); a
            // longer string is cut, which only a closing before the commit would show.
            Some(s) => {
                let s = s.get(..s.len().min(NONE as usize - 1)).unwrap_or_default();
                self.bytes.extend_from_slice(s.as_bytes());
                s.len() as u32
            }
            None => NONE,
        };
        let json = put(Some(json));
        let user = put(d.users.first().map(String::as_str));
        let proc_name = put(d.proc_name.as_deref());
        self.entries.push((
            key,
            Entry {
                frame: 0,
                section: v.section,
                content_hash: v.content_hash,
                start,
                json,
                user,
                proc_name,
            },
        ));
    }
}

/// One frame's context.
#[derive(Debug)]
struct FrameCtx {
    host: String,
    os: String,
    valid_from: u64,
    first: bool,
}

/// The open versions of one system written since the last commit.
#[derive(Debug, Default)]
pub(crate) struct PendingSystem {
    bytes: Vec<u8>,
    frames: Vec<FrameCtx>,
    open: KeyMap<Entry>,
}

impl PendingSystem {
    /// The open version of `key`, when it was written since the last commit.
    pub(crate) fn version(&self, key: KeyId) -> Option<StoredVersion<'_>> {
        let e = self.open.get(&key)?;
        let ctx = self.frames.get(e.frame as usize)?;
        let bytes = self.bytes.get(e.start..e.start + e.len())?;
        let mut at = 0usize;
        let mut take = |n: u32| -> Option<Option<&str>> {
            if n == NONE {
                return Some(None);
            }
            let s = bytes.get(at..at + n as usize)?;
            at += n as usize;
            std::str::from_utf8(s).ok().map(Some)
        };
        let json = take(e.json)??;
        let user = take(e.user)?;
        let proc_name = take(e.proc_name)?;
        Some(StoredVersion {
            section: e.section,
            json,
            user,
            proc_name,
            host: &ctx.host,
            os: &ctx.os,
            content_hash: e.content_hash,
            valid_from: ctx.valid_from,
            first: ctx.first,
        })
    }

    /// Takes a written frame on: the versions it closed are no longer open, its new ones are.
    pub(crate) fn absorb(
        &mut self,
        closed: &[KeyId],
        batch: PendingBatch,
        host: String,
        os: String,
        valid_from: u64,
        first: bool,
    ) {
        for k in closed {
            self.open.remove(k);
        }
        if batch.entries.is_empty() {
            return;
        }
        let frame = self.frames.len() as u32;
        self.frames.push(FrameCtx {
            host,
            os,
            valid_from,
            first,
        });
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&batch.bytes);
        self.open.reserve(batch.entries.len());
        for (k, mut e) in batch.entries {
            e.frame = frame;
            e.start += base;
            self.open.insert(k, e);
        }
    }
}

/// The pending versions of every system, and how many frames wait for the commit.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    systems: HashMap<String, PendingSystem>,
    /// Frames added since the last commit.
    pub(crate) frames: u64,
}

impl Pending {
    /// The pending versions of `system`, if it has any.
    pub(crate) fn system(&self, system: &str) -> Option<&PendingSystem> {
        self.systems.get(system)
    }

    /// The pending versions of `system`, made when missing.
    pub(crate) fn system_mut(&mut self, system: &str) -> &mut PendingSystem {
        self.systems.entry(system.to_string()).or_default()
    }
}
