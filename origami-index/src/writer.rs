//! The writer: [`TantivyIndex`] adds frames as item versions and commits them.
//!
//! Adding a frame diffs its items against the system's current versions (a map key id ->
//! content hash kept in memory and rebuilt from the index's fast columns on open, so it
//! always agrees with the last commit) and writes only new and changed items, plus the old
//! versions closed at the frame's time (tantivy documents are immutable, so a closed version
//! is deleted and written again with its `valid_to`) and one small frame record.
//!
//! A frame is added in three steps: everything that can fail on its own (the diff, reading
//! back the versions it closes) comes first and changes nothing; then the documents go to
//! tantivy; then the system's state takes the frame on. When tantivy refuses a document
//! (its indexing threads died: an I/O error, a full disk), nothing added since the last
//! commit can be committed any more: the writer rolls back to the last commit and says how
//! many frames were dropped.
//!
//! Limits: frames of one system must arrive in time order (an older or equal timestamp is
//! skipped and reported as stale). One process may write an index folder at a time
//! (tantivy's lock); any number may read it ([`crate::ReadOnlyIndex`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use origami_frame::{Frame, FrameDiff};
use tantivy::directory::MmapDirectory;
use tantivy::{IndexWriter, ReloadPolicy, TantivyDocument};
use time::OffsetDateTime;

use crate::diff::{diff_frame, Scratch, SystemState};
use crate::pending::Pending;
use crate::read::ReadSide;
use crate::schema::{frame_record, from_ns, schema, to_ns, Ctx, Fields, IndexConfig, KeyId};
use crate::versions::{closed_versions, current_versions, recover};
use crate::{Error, FrameVersion, Index, IndexStats, Result, Search, SearchOptions, SearchResults};

/// A fault the tests inject into the next `add_frame`.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    /// After the diff and the read-back of closed versions, before any write.
    BeforeWrites,
    /// Tantivy refuses the document after this many of the frame's were written.
    AfterDocs(usize),
}

struct WriterState {
    writer: IndexWriter<TantivyDocument>,
    config: IndexConfig,
    systems: HashMap<String, SystemState>,
    pending: Pending,
    scratch: Scratch,
    last_commit: Instant,
    #[cfg(test)]
    fault: Option<Fault>,
}

/// The index writer, which searches too: see the module documentation. `Send + Sync`:
/// share it in an `Arc`.
pub struct TantivyIndex {
    read: ReadSide,
    state: Mutex<WriterState>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for TantivyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TantivyIndex")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TantivyIndex {
    /// Opens the index in `dir` for writing, creating the folder and the index when
    /// missing. Takes the folder's writer lock (one writer at a time) and reads every
    /// current version's key and content hash back (the recovery scan); to search only,
    /// open a [`crate::ReadOnlyIndex`].
    pub fn open_or_create(dir: impl AsRef<Path>) -> Result<TantivyIndex> {
        Self::open_or_create_with(dir, &IndexConfig::default())
    }

    /// [`TantivyIndex::open_or_create`] with a writer configuration.
    pub fn open_or_create_with(
        dir: impl AsRef<Path>,
        config: &IndexConfig,
    ) -> Result<TantivyIndex> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mmap = MmapDirectory::open(dir).map_err(tantivy::TantivyError::from)?;
        // An existing index is opened with its own schema (see `schema::fields_of`).
        let index = if tantivy::Index::exists(&mmap).map_err(tantivy::TantivyError::from)? {
            tantivy::Index::open(mmap)?
        } else {
            tantivy::Index::create(mmap, schema(), tantivy::IndexSettings::default())?
        };
        Self::from_index(index, config, Some(dir.to_path_buf()))
    }

    /// A fresh index in memory (for tests and short-lived tools).
    pub fn in_ram() -> Result<TantivyIndex> {
        let config = IndexConfig {
            writer_threads: 1,
            writer_memory: 64 << 20,
            ..IndexConfig::default()
        };
        Self::from_index(tantivy::Index::create_in_ram(schema()), &config, None)
    }

    fn from_index(
        index: tantivy::Index,
        config: &IndexConfig,
        path: Option<PathBuf>,
    ) -> Result<TantivyIndex> {
        let read = ReadSide::new(&index, ReloadPolicy::Manual)?;
        let threads = config.writer_threads.max(1);
        let memory = config.writer_memory.max(threads * (16 << 20));
        let writer = index.writer_with_num_threads(threads, memory)?;
        writer.set_merge_policy(config.merge_policy());
        let systems = recover(&read.f, &read.searcher())?;
        Ok(TantivyIndex {
            read,
            state: Mutex::new(WriterState {
                writer,
                config: config.clone(),
                systems,
                pending: Pending::default(),
                scratch: Scratch::default(),
                last_commit: Instant::now(),
                #[cfg(test)]
                fault: None,
            }),
            path,
        })
    }

    /// The folder of an on-disk index.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The systems known to the index (including frames not yet committed) and the time of
    /// each one's latest frame, sorted by system.
    pub fn systems(&self) -> Result<Vec<(String, OffsetDateTime)>> {
        let st = self.lock()?;
        let mut v: Vec<_> = st
            .systems
            .iter()
            .map(|(s, st)| (s.clone(), from_ns(st.last_ts)))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Documents in the last commit (item versions and frame records).
    pub fn num_docs(&self) -> u64 {
        self.read.num_docs()
    }

    /// Frames added since the last commit.
    pub fn uncommitted_frames(&self) -> Result<u64> {
        Ok(self.lock()?.pending.frames)
    }

    /// Commits when frames wait and [`IndexConfig::commit_interval`] has passed since the
    /// last commit (for a caller whose frames stop arriving: call it from a timer); returns
    /// whether it committed.
    pub fn commit_due(&self) -> Result<bool> {
        let mut st = self.lock()?;
        if !commit_is_due(&st) {
            return Ok(false);
        }
        self.commit_locked(&mut st)?;
        Ok(true)
    }

    fn lock(&self) -> Result<MutexGuard<'_, WriterState>> {
        self.state.lock().map_err(|_| Error::Poisoned)
    }

    fn commit_locked(&self, st: &mut WriterState) -> Result<()> {
        st.writer.commit()?;
        self.read.reload()?;
        st.pending = Pending::default();
        st.last_commit = Instant::now();
        Ok(())
    }

    /// After tantivy refused a write: back to the last commit, with the state recovered
    /// from it.
    fn roll_back(&self, st: &mut WriterState, source: tantivy::TantivyError) -> Error {
        let frames = st.pending.frames + 1;
        st.pending = Pending::default();
        if let Err(e) = st.writer.rollback() {
            return Error::RolledBack { frames, source: e };
        }
        st.writer.set_merge_policy(st.config.merge_policy());
        match recover(&self.read.f, &self.read.searcher()) {
            Ok(systems) => st.systems = systems,
            Err(e) => {
                // Unknown state: every system starts over (its next frame is a first one).
                st.systems.clear();
                return e;
            }
        }
        Error::RolledBack { frames, source }
    }

    /// Injects a fault into the next `add_frame`.
    #[cfg(test)]
    pub(crate) fn inject(&self, fault: Fault) {
        if let Ok(mut st) = self.lock() {
            st.fault = Some(fault);
        }
    }
}

fn commit_is_due(st: &WriterState) -> bool {
    st.pending.frames > 0
        && st
            .config
            .commit_interval
            .is_some_and(|i| st.last_commit.elapsed() >= i)
}

/// The documents of one frame, in the order tantivy must see them.
struct FrameDocs {
    /// The versions the frame closes (deleted, then written again closed).
    closes: Vec<KeyId>,
    closed: Vec<TantivyDocument>,
    /// New versions, then the frame record.
    new: Vec<TantivyDocument>,
}

impl FrameDocs {
    /// Hands the documents to tantivy; `fail_after` documents at most (tests).
    fn write(
        self,
        writer: &IndexWriter<TantivyDocument>,
        f: &Fields,
        system: &str,
        fail_after: usize,
    ) -> tantivy::Result<u64> {
        let mut written = 0u64;
        // Closes first: a delete applies to the documents added before it, and the new
        // versions share (system, key, valid_to = open) with the versions they replace.
        if !self.closes.is_empty() {
            writer.delete_query(current_versions(f, system, &self.closes))?;
        }
        for d in self.closed.into_iter().chain(self.new) {
            if written as usize >= fail_after {
                return Err(tantivy::TantivyError::InternalError(
                    "injected fault".into(),
                ));
            }
            writer.add_document(d)?;
            written += 1;
        }
        Ok(written)
    }
}

impl Index for TantivyIndex {
    fn add_frame(&self, frame: &Frame) -> Result<IndexStats> {
        let system = frame.system();
        if system.is_empty() {
            return Err(Error::NoSystem);
        }
        let ts = to_ns(frame.meta.timestamp);
        let mut guard = self.lock()?;
        let st = &mut *guard;
        if commit_is_due(st) {
            self.commit_locked(st)?;
        }
        let mut state = st.systems.remove(system).unwrap_or_default();
        let known = state.frames > 0;
        if known && ts <= state.last_ts {
            st.systems.insert(system.to_string(), state);
            return Ok(IndexStats {
                system: system.to_string(),
                items: frame.item_count() as u64,
                stale: true,
                ..IndexStats::default()
            });
        }
        // A new generation even if the frame fails: its marks of seen items are then stale.
        state.generation = state.generation.wrapping_add(1);
        let f = &self.read.f;
        let mut plan = diff_frame(f, frame, &mut state, &mut st.scratch, ts);
        let closed = closed_versions(
            f,
            &self.read.searcher(),
            st.pending.system(system),
            system,
            &plan.closes,
            ts,
        );
        #[cfg(test)]
        let closed = match st.fault {
            Some(Fault::BeforeWrites) => {
                st.fault = None;
                Err(Error::Corrupt {
                    system: system.to_string(),
                    message: "injected fault".into(),
                })
            }
            _ => closed,
        };
        let closed = match closed {
            Ok(c) => c,
            Err(e) => {
                if known {
                    st.systems.insert(system.to_string(), state);
                }
                return Err(e);
            }
        };
        let record = FrameVersion {
            system: system.to_string(),
            hostname: plan.host.clone(),
            timestamp: frame.meta.timestamp,
            items: plan.stats.items,
            added: plan.stats.added,
            changed: plan.stats.changed,
            removed: plan.stats.removed,
            duration_ms: frame.meta.duration_ms,
            source: frame.meta.source.clone(),
            errors: frame.meta.errors.clone(),
        };
        let ctx = Ctx {
            system,
            host: &plan.host,
            os: &plan.os,
        };
        let json = serde_json::to_string(&record).unwrap_or_default();
        let mut new = std::mem::take(&mut plan.docs);
        new.push(frame_record(f, &ctx, ts, &json));
        let docs = FrameDocs {
            closes: plan.closes.clone(),
            closed,
            new,
        };
        #[cfg(test)]
        let fail_after = match st.fault.take() {
            Some(Fault::AfterDocs(n)) => n,
            _ => usize::MAX,
        };
        #[cfg(not(test))]
        let fail_after = usize::MAX;
        let written = match docs.write(&st.writer, f, system, fail_after) {
            Ok(n) => n,
            // `state` is dropped: every system's is recovered from the last commit.
            Err(e) => return Err(self.roll_back(st, e)),
        };
        let first = !known;
        let (host, os) = (plan.host.clone(), plan.os.clone());
        let closes = std::mem::take(&mut plan.closes);
        let (mut stats, batch) = plan.apply(&mut state, ts);
        stats.docs_written = written;
        st.pending
            .system_mut(system)
            .absorb(&closes, batch, host, os, ts, first);
        st.pending.frames += 1;
        st.systems.insert(system.to_string(), state);
        Ok(stats)
    }

    fn commit(&self) -> Result<()> {
        let mut st = self.lock()?;
        self.commit_locked(&mut st)
    }
}

impl Search for TantivyIndex {
    fn search(&self, query: &str, options: &SearchOptions) -> Result<SearchResults> {
        self.read.search(query, options)
    }

    fn history(&self, system: &str) -> Result<Vec<FrameVersion>> {
        self.read.history(system)
    }

    fn changes(&self, system: &str, from: OffsetDateTime, to: OffsetDateTime) -> Result<FrameDiff> {
        self.read.changes(system, from, to)
    }
}

#[cfg(test)]
mod tests;
