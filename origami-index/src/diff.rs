//! The writer's diffing: one frame against its system's current items, into a plan of what
//! to write. Nothing of the system's state changes here (but the marks of which items the
//! frame saw, which only the frame's own generation reads), so a frame that fails before
//! its plan is applied leaves the state as it was.
//!
//! Each section is first hashed as a whole (xxh3-128 of its items' content bytes); a
//! section whose digest equals the one of the system's previous frame is unchanged and
//! skipped, so re-indexing an unchanged frame costs one pass over its bytes (digests are not
//! persisted: the first frame after an open diffs item by item). Otherwise each item is
//! looked up by key id and compared by content hash.

use origami_frame::{Frame, Os, Section};
use serde::Serialize;
use tantivy::TantivyDocument;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::content_hash::HashContent;
use crate::item_doc::{self, ItemDoc};
use crate::pending::PendingBatch;
use crate::schema::{build_doc, frame_host, frame_os, Ctx, Fields, KeyId, KeyMap, Version, OPEN};
use crate::IndexStats;

/// One current item version, as the writer remembers it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Current {
    pub(crate) content_hash: u64,
    /// The frame generation that last saw the item (to find removed items).
    pub(crate) seen: u32,
    /// The item's section (`Section as u8`; [`NO_SECTION`] when unknown).
    pub(crate) section: u8,
}

/// The `Current::section` of an item whose section is unknown (never skipped).
pub(crate) const NO_SECTION: u8 = u8::MAX;

/// One section of a system's latest frame, summed up: when the next frame's section has the
/// same digest, every one of its items is unchanged and none is looked at again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SectionDigest {
    /// xxh3-128 of the content bytes of the section's items, in frame order.
    digest: u128,
    /// Items in the section.
    items: u64,
    /// Of which repeated an earlier key.
    duplicates: u64,
}

/// What the writer knows of one system: its current items (keyed by the ids of keys a
/// guest chooses, so the map is seeded: [`KeyMap`]), and its latest frame.
#[derive(Debug, Default)]
pub(crate) struct SystemState {
    pub(crate) items: KeyMap<Current>,
    /// By `Section as usize`: the sections of the latest frame (unknown after a reopen).
    pub(crate) sections: [Option<SectionDigest>; Section::ALL.len()],
    pub(crate) last_ts: u64,
    pub(crate) frames: u64,
    pub(crate) generation: u32,
}

/// Buffers reused from frame to frame, so that hashing a frame allocates little.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// The content bytes of a run of one section's items, back to back.
    content: Vec<u8>,
    /// One item's key bytes.
    key: Vec<u8>,
    /// One item's JSON.
    json: Vec<u8>,
}

/// What one frame changes: the documents to write and the state to take on once they are.
pub(crate) struct FramePlan {
    pub(crate) stats: IndexStats,
    /// The frame's host and OS labels.
    pub(crate) host: String,
    pub(crate) os: String,
    /// Items new or changed in this frame, with their new state.
    fresh: KeyMap<Current>,
    /// Items gone since the previous frame.
    removed: Vec<KeyId>,
    /// The current versions to close: changed and removed items.
    pub(crate) closes: Vec<KeyId>,
    /// By section: the digests computed (`None`: the section was skipped as unchanged).
    digests: [Option<SectionDigest>; Section::ALL.len()],
    /// The new versions' documents.
    pub(crate) docs: Vec<TantivyDocument>,
    /// The new versions, as a later frame before the next commit would close them.
    pub(crate) pending: PendingBatch,
}

impl FramePlan {
    /// Takes the plan's state on, once its documents are written.
    pub(crate) fn apply(self, state: &mut SystemState, ts: u64) -> (IndexStats, PendingBatch) {
        for k in &self.removed {
            state.items.remove(k);
        }
        if state.items.is_empty() {
            state.items = self.fresh;
        } else {
            state.items.extend(self.fresh);
        }
        for (slot, d) in state.sections.iter_mut().zip(self.digests) {
            if d.is_some() {
                *slot = d;
            }
        }
        state.frames += 1;
        state.last_ts = ts;
        (self.stats, self.pending)
    }
}

/// Diffs `frame` (time `ts`, generation `state.generation`) against `state`.
pub(crate) fn diff_frame(
    f: &Fields,
    frame: &Frame,
    state: &mut SystemState,
    scratch: &mut Scratch,
    ts: u64,
) -> FramePlan {
    let system = frame.system();
    let (host, os) = (frame_host(frame), frame_os(frame));
    let resolver = item_doc::FrameResolver::new(frame);
    let (gen, first) = (state.generation, state.frames == 0);
    let mut d = Differ {
        f,
        ctx: Ctx {
            system,
            host: &host,
            os: &os,
        },
        ts,
        gen,
        first,
        state,
        scratch,
        stats: IndexStats {
            system: system.to_string(),
            ..IndexStats::default()
        },
        fresh: KeyMap::default(),
        closes: Vec::new(),
        digests: [None; Section::ALL.len()],
        docs: Vec::new(),
        pending: PendingBatch::default(),
        skipped: [false; Section::ALL.len()],
    };
    let os_items: &[Os] = if frame.os.is_empty() {
        &[]
    } else {
        std::slice::from_ref(&frame.os)
    };
    d.section(os_items, item_doc::os_doc);
    d.section(&frame.file, |x| item_doc::file_doc(x, &resolver));
    d.section(&frame.config, item_doc::config_doc);
    d.section(&frame.package, item_doc::package_doc);
    d.section(&frame.user, item_doc::user_doc);
    d.section(&frame.process, |x| item_doc::process_doc(x, &resolver));
    d.section(&frame.connection, |x| {
        item_doc::connection_doc(x, &resolver)
    });
    d.section(&frame.module, item_doc::module_doc);
    d.section(&frame.mount, item_doc::mount_doc);
    d.section(&frame.kernel_log, item_doc::kernel_log_doc);
    d.section(&frame.service, item_doc::service_doc);
    let plan = d.finish();
    FramePlan { host, os, ..plan }
}

/// Counters and pending work of one frame's diff.
struct Differ<'a> {
    f: &'a Fields,
    ctx: Ctx<'a>,
    ts: u64,
    gen: u32,
    first: bool,
    state: &'a mut SystemState,
    scratch: &'a mut Scratch,
    stats: IndexStats,
    fresh: KeyMap<Current>,
    closes: Vec<KeyId>,
    digests: [Option<SectionDigest>; Section::ALL.len()],
    docs: Vec<TantivyDocument>,
    pending: PendingBatch,
    /// By `Section as usize`: sections found unchanged as a whole (their items were not
    /// looked at, so they are not marked seen).
    skipped: [bool; Section::ALL.len()],
}

impl Differ<'_> {
    /// Diffs one section: one pass lays out the content bytes of all its items and hashes
    /// them (xxh3-128); when that digest equals the one of the system's previous frame, the
    /// whole section is unchanged and done with. Otherwise each item is looked up by key id
    /// and compared by content hash (xxh3 of its own bytes, which the index stores).
    fn section<T: HashContent + Serialize>(&mut self, items: &[T], make: impl Fn(&T) -> ItemDoc) {
        let si = T::SECTION as usize;
        let n = items.len() as u64;
        // The content bytes are hashed by chunks that stay in cache (a streaming digest does
        // not depend on where the chunks end).
        const CHUNK: usize = 64 << 10;
        let prev = self.state.sections.get(si).copied().flatten();
        if let Some(prev) = prev.filter(|p| p.items == n) {
            let buf = &mut self.scratch.content;
            let mut h = Xxh3::new();
            buf.clear();
            for x in items {
                x.write_content(buf);
                if buf.len() >= CHUNK {
                    h.update(buf);
                    buf.clear();
                }
            }
            h.update(buf);
            if h.digest128() == prev.digest {
                self.stats.items += n;
                self.stats.duplicates += prev.duplicates;
                self.stats.unchanged += n - prev.duplicates;
                if let Some(s) = self.skipped.get_mut(si) {
                    *s = true;
                }
                return;
            }
        }
        // Item by item, with the same digest computed on the way for the next frame.
        let duplicates = self.stats.duplicates;
        let mut h = Xxh3::new();
        self.scratch.content.clear();
        for x in items {
            let start = self.scratch.content.len();
            x.write_content(&mut self.scratch.content);
            let ch = xxh3_64(self.scratch.content.get(start..).unwrap_or_default());
            let key = self
                .f
                .key
                .id_in(T::SECTION, &x.key(), &mut self.scratch.key);
            self.item(x, key, ch, &make);
            if self.scratch.content.len() >= CHUNK {
                h.update(&self.scratch.content);
                self.scratch.content.clear();
            }
        }
        h.update(&self.scratch.content);
        if let Some(slot) = self.digests.get_mut(si) {
            *slot = Some(SectionDigest {
                digest: h.digest128(),
                items: n,
                duplicates: self.stats.duplicates - duplicates,
            });
        }
    }

    fn item<T: HashContent + Serialize>(
        &mut self,
        item: &T,
        key: KeyId,
        ch: u64,
        make: impl FnOnce(&T) -> ItemDoc,
    ) {
        self.stats.items += 1;
        let now = Current {
            content_hash: ch,
            seen: self.gen,
            section: T::SECTION as u8,
        };
        match self.state.items.get_mut(&key) {
            Some(cur) if cur.seen == self.gen => {
                self.stats.duplicates += 1;
                return;
            }
            Some(cur) if cur.content_hash == ch => {
                cur.seen = self.gen;
                self.stats.unchanged += 1;
                return;
            }
            Some(cur) => {
                // Marked seen so that a repeat of the key is a duplicate and the item is not
                // taken for removed; its new state waits in `fresh`.
                cur.seen = self.gen;
                self.closes.push(key);
                self.fresh.insert(key, now);
                self.stats.changed += 1;
            }
            None => {
                if self.fresh.contains_key(&key) {
                    self.stats.duplicates += 1;
                    return;
                }
                self.fresh.insert(key, now);
                self.stats.added += 1;
            }
        }
        let json = &mut self.scratch.json;
        json.clear();
        // Serialising into a Vec cannot fail for these types (string map keys only).
        let _ = serde_json::to_writer(&mut *json, item);
        let json = String::from_utf8_lossy(json);
        let d = make(item);
        let v = Version {
            section: T::SECTION,
            key,
            content_hash: ch,
            valid_from: self.ts,
            valid_to: OPEN,
            first: self.first,
        };
        self.docs.push(build_doc(self.f, &self.ctx, &v, &d, &json));
        self.pending.push(key, &v, &json, &d);
    }

    /// Finds the removed items (not seen, in a section that was looked at).
    fn finish(self) -> FramePlan {
        let (gen, skipped) = (self.gen, self.skipped);
        let mut stats = self.stats;
        let mut closes = self.closes;
        let mut removed = Vec::new();
        for (&k, cur) in &self.state.items {
            if cur.seen != gen && skipped.get(usize::from(cur.section)) != Some(&true) {
                removed.push(k);
                closes.push(k);
                stats.removed += 1;
            }
        }
        FramePlan {
            stats,
            host: String::new(),
            os: String::new(),
            fresh: self.fresh,
            removed,
            closes,
            digests: self.digests,
            docs: self.docs,
            pending: self.pending,
        }
    }
}
