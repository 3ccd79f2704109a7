//! The tantivy backend: item versions as documents, a per-system map of current versions,
//! and the compilation of parsed queries into tantivy queries.
//!
//! Each document is one version of one item: (system, section, key, content) with
//! `valid_from` / `valid_to` (nanoseconds since the epoch; `valid_to = u64::MAX` while
//! current). Adding a frame diffs its items against the system's current versions (a map
//! key hash -> content hash kept in memory and rebuilt from the index's fast columns on open,
//! so it always agrees with the last commit) and writes only new and changed items, plus the
//! old versions closed at the frame's time (tantivy documents are immutable, so a closed
//! version is deleted and written again with its `valid_to`) and one small frame record.
//! Each section is first hashed as a whole (xxh3-128 of its items' content bytes); a section
//! whose digest equals the one of the system's previous frame is unchanged and skipped, so
//! re-indexing an unchanged frame costs one pass over its bytes (digests are not persisted:
//! the first frame after an open diffs item by item).
//!
//! Limits: frames of one system must arrive in time order (an older or equal timestamp is
//! skipped and reported as stale). Closing a version reads it back from the last commit, so
//! when a system gets a second frame before the first was committed, the pending batch is
//! committed first. One process may write an index folder at a time (tantivy's lock).

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use origami_frame::{
    ConfigItem, Connection, FileItem, Frame, FrameDiff, KernelLogRecord, Module, Mount, Os,
    Package, Process, Section, Service, User,
};
use serde::Serialize;
use tantivy::collector::DocSetCollector;
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, Occur, PhraseQuery, Query, RangeQuery,
    RegexQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, INDEXED, STORED,
    STRING,
};
use tantivy::{
    DocAddress, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term,
};
use time::OffsetDateTime;

use crate::collect::{ColumnCache, GroupCollector};
use crate::doc::{self, HashContent, HashKey, ItemDoc, Resolve, SnippetTerms, StoredResolver};
use crate::query::{self, FieldName, Node, QueryError};
use crate::tokenizer::{query_words, OrigamiTokenizer, TOKENIZER_NAME};
use crate::{
    Error, Facets, FrameVersion, Hit, IndexStats, MachineResult, Result, SearchOptions,
    SearchResults,
};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// The `kind` of frame records (not an item section, so no query reaches it).
const FRAME_KIND: &str = "_frame";
/// `valid_to` of a current version.
const OPEN: u64 = u64::MAX;

/// How the writer is set up.
#[derive(Debug, Clone)]
pub struct IndexConfig {
    /// Indexing threads (default: the machine's cores, at most 8).
    pub writer_threads: usize,
    /// Memory budget of the writer, in bytes, shared by its threads (default 512 MiB; at
    /// least 16 MiB a thread).
    pub writer_memory: usize,
    /// Segments of similar size are merged once this many have accumulated (default 8; at
    /// least 2).
    pub merge_factor: usize,
    /// Segments with more documents than this are not merged any more (default 250,000).
    ///
    /// A bulk commit (a batch of whole frames) writes segments of hundreds of thousands of
    /// documents, and merging those rewrites every document again for little gain: measured
    /// on 1,000 machines (20M items), 43 unmerged segments answered the benchmark's query
    /// mix as fast as the merged index (p50 / p99 1.7 / 13.8 ms against 2.1 / 13.0 ms),
    /// while the merge threads took 11.5% of the ingest CPU. The
    /// small segments of frame-by-frame commits are still merged, 8 at a time, up to about
    /// 2M documents. The segment count grows with the index: on much larger fleets raise this.
    pub merge_max_docs: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            writer_threads: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(1, 8),
            writer_memory: 512 << 20,
            merge_factor: 8,
            merge_max_docs: 250_000,
        }
    }
}

impl IndexConfig {
    /// The merge policy of the writer (public so that the benchmark's raw tantivy floor
    /// writes with the same one).
    pub fn merge_policy(&self) -> Box<dyn tantivy::indexer::MergePolicy> {
        let mut p = tantivy::indexer::LogMergePolicy::default();
        p.set_min_num_segments(self.merge_factor.max(2));
        p.set_max_docs_before_merge(self.merge_max_docs);
        Box::new(p)
    }
}

/// The schema's fields.
#[derive(Clone, Copy)]
pub(crate) struct Fields {
    system: Field,
    host: Field,
    os: Field,
    kind: Field,
    key_hash: Field,
    content_hash: Field,
    valid_from: Field,
    valid_to: Field,
    first: Field,
    name: Field,
    path: Field,
    port: Field,
    pkg: Field,
    user: Field,
    exact: Field,
    text: Field,
    item: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text_opts = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER_NAME)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let f = Fields {
        // Stored only what a hit, a closed version or a frame record is rebuilt from: the system
        // is known to whoever reads a version back, the key and its hash follow from the item.
        system: b.add_text_field("system", STRING | FAST),
        host: b.add_text_field("host", STRING | FAST | STORED),
        os: b.add_text_field("os", STRING | FAST | STORED),
        kind: b.add_text_field("kind", STRING | FAST | STORED),
        key_hash: b.add_u64_field("key_hash", INDEXED | FAST),
        content_hash: b.add_u64_field("content_hash", FAST),
        // Ranges over valid_from read its fast column; no query looks a value up.
        valid_from: b.add_u64_field("valid_from", FAST | STORED),
        valid_to: b.add_u64_field("valid_to", INDEXED | FAST | STORED),
        // Only versions that did not come with the system's first frame carry `first = 0` (what
        // `changed:` looks for); the bulk of an index, first frames, carries nothing.
        first: b.add_u64_field("first", INDEXED | STORED),
        name: b.add_text_field("name", STRING | STORED),
        path: b.add_text_field("path", STRING),
        port: b.add_text_field("port", STRING),
        pkg: b.add_text_field("pkg", STRING | FAST),
        user: b.add_text_field("user", STRING | STORED),
        exact: b.add_text_field("exact", STRING),
        text: b.add_text_field("text", text_opts),
        item: b.add_text_field("item", STORED),
    };
    (b.build(), f)
}

fn to_ns(t: OffsetDateTime) -> u64 {
    t.unix_timestamp_nanos().clamp(0, i128::from(OPEN - 1)) as u64
}

fn from_ns(ns: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// One current item version, as the writer remembers it.
#[derive(Debug, Clone, Copy)]
struct Current {
    content_hash: u64,
    /// The frame generation that last saw the item (to find removed items).
    seen: u32,
    /// The item's section (`Section as u8`; [`NO_SECTION`] when unknown).
    section: u8,
}

/// The `Current::section` of an item whose section is unknown (never skipped).
const NO_SECTION: u8 = u8::MAX;

/// One section of a system's latest frame, summed up: when the next frame's section has the
/// same digest, every one of its items is unchanged and none is looked at again.
#[derive(Debug, Clone, Copy)]
struct SectionDigest {
    /// xxh3-128 of the content bytes of the section's items, in frame order.
    digest: u128,
    /// Items in the section.
    items: u64,
    /// Of which repeated an earlier key.
    duplicates: u64,
}

#[derive(Debug, Default)]
struct SystemState {
    items: doc::PrehashedMap<Current>,
    /// By `Section as usize`: the sections of the latest frame (unknown after a reopen).
    sections: [Option<SectionDigest>; Section::ALL.len()],
    last_ts: u64,
    frames: u64,
    generation: u32,
}

/// Buffers reused from frame to frame, so that hashing a frame allocates nothing.
#[derive(Debug, Default)]
struct Scratch {
    /// The content bytes of a run of one section's items, back to back.
    content: Vec<u8>,
    /// One item's key bytes.
    key: Vec<u8>,
}

struct WriterState {
    writer: IndexWriter<TantivyDocument>,
    systems: HashMap<String, SystemState>,
    /// Systems with frames added since the last commit.
    dirty: HashSet<String>,
    scratch: Scratch,
}

/// The frame context every item document of a frame carries.
struct Ctx<'a> {
    system: &'a str,
    host: String,
    os: String,
}

/// The tantivy index: see the module documentation. `Send + Sync`: share it in an `Arc`.
pub struct TantivyIndex {
    f: Fields,
    reader: IndexReader,
    state: Mutex<WriterState>,
    columns: ColumnCache,
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
    /// Opens the index in `dir`, creating the folder and the index when missing.
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
        // An existing index is opened with its own schema: one written before fields lost
        // flags they did not need (stored keys...) holds a superset of what is read, and
        // [`fields_of`] checks that every field is there.
        let index = if tantivy::Index::exists(&mmap).map_err(tantivy::TantivyError::from)? {
            tantivy::Index::open(mmap)?
        } else {
            let (schema, _) = schema();
            tantivy::Index::create(mmap, schema, tantivy::IndexSettings::default())?
        };
        Self::from_index(index, config, Some(dir.to_path_buf()))
    }

    /// A fresh index in memory (for tests and short-lived tools).
    pub fn in_ram() -> Result<TantivyIndex> {
        let (schema, _) = schema();
        let config = IndexConfig {
            writer_threads: 1,
            writer_memory: 64 << 20,
            ..IndexConfig::default()
        };
        Self::from_index(tantivy::Index::create_in_ram(schema), &config, None)
    }

    fn from_index(
        index: tantivy::Index,
        config: &IndexConfig,
        path: Option<PathBuf>,
    ) -> Result<TantivyIndex> {
        index
            .tokenizers()
            .register(TOKENIZER_NAME, OrigamiTokenizer::default());
        let f = fields_of(&index.schema())?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let threads = config.writer_threads.max(1);
        let memory = config.writer_memory.max(threads * (16 << 20));
        let writer = index.writer_with_num_threads(threads, memory)?;
        writer.set_merge_policy(config.merge_policy());
        let systems = recover(&reader.searcher())?;
        Ok(TantivyIndex {
            f,
            reader,
            state: Mutex::new(WriterState {
                writer,
                systems,
                dirty: HashSet::new(),
                scratch: Scratch::default(),
            }),
            columns: ColumnCache::default(),
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
        self.reader.searcher().num_docs()
    }

    fn lock(&self) -> Result<MutexGuard<'_, WriterState>> {
        self.state.lock().map_err(|_| Error::Poisoned)
    }

    fn commit_locked(&self, st: &mut WriterState) -> Result<()> {
        st.writer.commit()?;
        self.reader.reload()?;
        st.dirty.clear();
        let live: Vec<_> = self
            .reader
            .searcher()
            .segment_readers()
            .iter()
            .map(|s| s.segment_id())
            .collect();
        self.columns.retain(&live);
        Ok(())
    }

    /// Reads the current versions of items back and writes them again closed at `valid_to`;
    /// returns how many were found. Must come before the new versions are added (the delete
    /// would remove them too).
    fn close_versions(
        &self,
        st: &mut WriterState,
        system: &str,
        key_hashes: &[u64],
        valid_to: u64,
    ) -> Result<u64> {
        // A current version is (system, key, valid_to = open); no unique id is indexed, since
        // a term per document would make the term dictionary as large as the index. One
        // query finds all of a frame's, whatever the number of segments.
        let current = || -> Box<dyn Query> {
            let term = |t: Term| -> Box<dyn Query> {
                Box::new(TermQuery::new(t, IndexRecordOption::Basic))
            };
            Box::new(BooleanQuery::new(vec![
                (
                    Occur::Must,
                    term(Term::from_field_text(self.f.system, system)),
                ),
                (
                    Occur::Must,
                    term(Term::from_field_u64(self.f.valid_to, OPEN)),
                ),
                (
                    Occur::Must,
                    Box::new(TermSetQuery::new(
                        key_hashes
                            .iter()
                            .map(|&kh| Term::from_field_u64(self.f.key_hash, kh)),
                    )),
                ),
            ]))
        };
        let searcher = self.reader.searcher();
        let mut found: Vec<DocAddress> = searcher
            .search(&current(), &DocSetCollector)?
            .into_iter()
            .collect();
        if found.is_empty() {
            return Ok(0);
        }
        found.sort();
        let mut rebuilt = Vec::with_capacity(found.len());
        for addr in found {
            let old: TantivyDocument = searcher.doc(addr)?;
            rebuilt.push(self.rebuild(&old, system, valid_to)?);
        }
        st.writer.delete_query(current())?;
        let n = rebuilt.len() as u64;
        for d in rebuilt {
            st.writer.add_document(d)?;
        }
        Ok(n)
    }

    fn rebuild(
        &self,
        old: &TantivyDocument,
        system: &str,
        valid_to: u64,
    ) -> Result<TantivyDocument> {
        let f = self.f;
        let s = |field: Field| {
            old.get_first(field)
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        let u = |field: Field| old.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
        let corrupt = |message: String| Error::Corrupt {
            system: system.to_string(),
            message,
        };
        let kind = s(f.kind);
        let section =
            Section::from_name(&kind).ok_or_else(|| corrupt(format!("unknown kind `{kind}`")))?;
        let json = s(f.item);
        let resolver = StoredResolver {
            user: old
                .get_first(f.user)
                .and_then(|v| v.as_str().map(str::to_string)),
            proc_name: (section == Section::Connection)
                .then(|| {
                    old.get_first(f.name)
                        .and_then(|v| v.as_str().map(str::to_string))
                })
                .flatten(),
        };
        let (d, key_hash) = item_doc_from_json(section, &json, &resolver)
            .map_err(|e| corrupt(format!("{kind} item: {e}")))?;
        let ctx = Ctx {
            system,
            host: s(f.host),
            os: s(f.os),
        };
        // `first` is 1 in indexes written before it became sparse, missing since.
        let first = old
            .get_first(f.first)
            .and_then(|v| v.as_u64())
            .is_none_or(|v| v == 1);
        Ok(build_doc(
            self.f,
            &ctx,
            section,
            &d,
            &json,
            key_hash,
            u(f.content_hash),
            u(f.valid_from),
            valid_to,
            first,
        ))
    }

    fn compile(
        &self,
        node: &Node,
        terms: &mut SnippetTerms,
        negated: bool,
    ) -> Result<Box<dyn Query>> {
        let f = self.f;
        Ok(match node {
            Node::Word { text, column } => {
                if text.contains(['*', '?']) {
                    let glob = text.to_lowercase();
                    if !negated {
                        terms.globs.push(glob.clone());
                    }
                    let re = glob_to_regex(&glob);
                    let rq = |field| {
                        RegexQuery::from_pattern(&re, field).map_err(|e| QueryError {
                            column: *column,
                            message: format!("bad wildcard `{text}`: {e}"),
                        })
                    };
                    Box::new(BooleanQuery::new(vec![
                        (Occur::Should, Box::new(rq(f.text)?) as Box<dyn Query>),
                        (
                            Occur::Should,
                            Box::new(BoostQuery::new(Box::new(rq(f.exact)?), 2.0)),
                        ),
                    ]))
                } else {
                    self.words_query(text, *column, terms, negated)?
                }
            }
            Node::Phrase { text, column } => self.words_query(text, *column, terms, negated)?,
            Node::Field {
                field,
                value,
                quoted,
                column,
            } => {
                let wild = !quoted && value.contains(['*', '?']);
                let raw_case = matches!(field, FieldName::System | FieldName::Key);
                let v = if raw_case {
                    value.clone()
                } else {
                    value.to_lowercase()
                };
                if !negated && !matches!(field, FieldName::Type | FieldName::Os) {
                    if wild {
                        terms.globs.push(v.to_lowercase());
                    } else {
                        terms.exact.extend(query_words(&v));
                        terms.exact.push(v.to_lowercase());
                    }
                }
                if *field == FieldName::Key {
                    if wild {
                        return Err(QueryError {
                            column: *column,
                            message: "`key:` takes an exact key, without wildcards".into(),
                        }
                        .into());
                    }
                    let alts = Section::ALL
                        .iter()
                        .map(|s| {
                            let t = Term::from_field_u64(f.key_hash, doc::key_hash(*s, &v));
                            (
                                Occur::Should,
                                Box::new(TermQuery::new(t, IndexRecordOption::Basic))
                                    as Box<dyn Query>,
                            )
                        })
                        .collect();
                    return Ok(Box::new(BoostQuery::new(
                        Box::new(BooleanQuery::new(alts)),
                        3.0,
                    )));
                }
                let targets: &[Field] = match field {
                    FieldName::Host => &[f.host, f.system],
                    FieldName::System => &[f.system],
                    FieldName::Type => &[f.kind],
                    FieldName::Name => &[f.name],
                    FieldName::Path => &[f.path],
                    FieldName::Port => &[f.port],
                    FieldName::Pkg => &[f.pkg],
                    FieldName::User => &[f.user],
                    FieldName::Os => &[f.os],
                    FieldName::Key => &[],
                };
                let mut alts: Vec<(Occur, Box<dyn Query>)> = Vec::new();
                for &target in targets {
                    let q: Box<dyn Query> = if wild || *field == FieldName::Os {
                        let mut re = if wild {
                            glob_to_regex(&v)
                        } else {
                            regex_escape(&v)
                        };
                        if *field == FieldName::Os {
                            // `os:debian` matches `debian 12`.
                            re.push_str("( .*)?");
                        }
                        Box::new(
                            RegexQuery::from_pattern(&re, target).map_err(|e| QueryError {
                                column: *column,
                                message: format!("bad value `{value}`: {e}"),
                            })?,
                        )
                    } else {
                        Box::new(TermQuery::new(
                            Term::from_field_text(target, &v),
                            IndexRecordOption::Basic,
                        ))
                    };
                    // An exact field match ranks above a text match.
                    alts.push((Occur::Should, Box::new(BoostQuery::new(q, 3.0))));
                }
                if alts.len() == 1 {
                    alts.pop()
                        .map_or_else(|| Box::new(AllQuery) as Box<dyn Query>, |(_, q)| q)
                } else {
                    Box::new(BooleanQuery::new(alts))
                }
            }
            Node::Not(inner) => {
                let q = self.compile(inner, terms, !negated)?;
                Box::new(BooleanQuery::new(vec![
                    (
                        Occur::Must,
                        Box::new(ConstScoreQuery::new(Box::new(AllQuery), 0.0)),
                    ),
                    (Occur::MustNot, q),
                ]))
            }
            Node::And(children) => {
                let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
                let mut positive = false;
                for c in children {
                    if let Node::Not(inner) = c {
                        clauses.push((Occur::MustNot, self.compile(inner, terms, !negated)?));
                    } else {
                        positive = true;
                        clauses.push((Occur::Must, self.compile(c, terms, negated)?));
                    }
                }
                if !positive {
                    clauses.push((
                        Occur::Must,
                        Box::new(ConstScoreQuery::new(Box::new(AllQuery), 0.0)),
                    ));
                }
                Box::new(BooleanQuery::new(clauses))
            }
            Node::Or(children) => {
                let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
                for c in children {
                    clauses.push((Occur::Should, self.compile(c, terms, negated)?));
                }
                Box::new(BooleanQuery::new(clauses))
            }
        })
    }

    /// A bare word or a phrase: one whole token matches as a term (and ranks higher as a
    /// whole field value), several as a phrase of whole tokens.
    fn words_query(
        &self,
        text: &str,
        column: usize,
        terms: &mut SnippetTerms,
        negated: bool,
    ) -> Result<Box<dyn Query>> {
        let words = query_words(text);
        if !negated {
            terms.exact.extend(words.iter().cloned());
        }
        match words.as_slice() {
            [] => Err(QueryError {
                column,
                message: format!("`{text}` holds nothing searchable"),
            }
            .into()),
            [w] => Ok(Box::new(BooleanQuery::new(vec![
                (
                    Occur::Should,
                    Box::new(TermQuery::new(
                        Term::from_field_text(self.f.text, w),
                        IndexRecordOption::WithFreqs,
                    )) as Box<dyn Query>,
                ),
                (
                    Occur::Should,
                    Box::new(BoostQuery::new(
                        Box::new(TermQuery::new(
                            Term::from_field_text(self.f.exact, w),
                            IndexRecordOption::Basic,
                        )),
                        2.0,
                    )),
                ),
                (
                    Occur::Should,
                    Box::new(BoostQuery::new(
                        Box::new(TermQuery::new(
                            Term::from_field_text(self.f.path, w),
                            IndexRecordOption::Basic,
                        )),
                        2.0,
                    )),
                ),
            ]))),
            many => Ok(Box::new(PhraseQuery::new(
                many.iter()
                    .map(|w| Term::from_field_text(self.f.text, w))
                    .collect(),
            ))),
        }
    }

    /// The time scope: latest state, the state at `as_of`, or versions that began or ended
    /// within `changed` before the reference instant.
    fn time_filter(
        &self,
        as_of: Option<OffsetDateTime>,
        changed: Option<time::Duration>,
        reference: OffsetDateTime,
    ) -> Box<dyn Query> {
        let f = self.f;
        let t = |field, v| Term::from_field_u64(field, v);
        let range = |field, lo: Bound<u64>, hi: Bound<u64>| -> Box<dyn Query> {
            Box::new(RangeQuery::new(
                lo.map(|v| t(field, v)),
                hi.map(|v| t(field, v)),
            ))
        };
        let q: Box<dyn Query> = match (as_of, changed) {
            (None, None) => Box::new(TermQuery::new(
                t(f.valid_to, OPEN),
                IndexRecordOption::Basic,
            )),
            (Some(at), None) => {
                let at = to_ns(at);
                Box::new(BooleanQuery::new(vec![
                    (
                        Occur::Must,
                        range(f.valid_from, Bound::Unbounded, Bound::Included(at)),
                    ),
                    (
                        Occur::Must,
                        range(f.valid_to, Bound::Excluded(at), Bound::Unbounded),
                    ),
                ]))
            }
            (_, Some(d)) => {
                let end = to_ns(reference);
                let start = to_ns(reference - d);
                // Versions that began in the window (not with the system's first frame) and
                // are still current at its end, and versions that ended in it.
                let began = BooleanQuery::new(vec![
                    (
                        Occur::Must,
                        range(f.valid_from, Bound::Included(start), Bound::Included(end)),
                    ),
                    (
                        Occur::Must,
                        range(f.valid_to, Bound::Excluded(end), Bound::Unbounded),
                    ),
                    (
                        Occur::Must,
                        Box::new(TermQuery::new(t(f.first, 0), IndexRecordOption::Basic)),
                    ),
                ]);
                let ended = range(f.valid_to, Bound::Included(start), Bound::Included(end));
                Box::new(BooleanQuery::new(vec![
                    (Occur::Should, Box::new(began) as Box<dyn Query>),
                    (Occur::Should, ended),
                ]))
            }
        };
        Box::new(ConstScoreQuery::new(q, 0.0))
    }

    fn load_hit(
        &self,
        searcher: &Searcher,
        addr: DocAddress,
        score: f32,
        terms: &SnippetTerms,
    ) -> Result<(Hit, String, String)> {
        let d: TantivyDocument = searcher.doc(addr)?;
        let s = |field: Field| {
            d.get_first(field)
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        let kind = s(self.f.kind);
        let corrupt = |message: String| Error::Corrupt {
            system: String::new(),
            message,
        };
        let section =
            Section::from_name(&kind).ok_or_else(|| corrupt(format!("unknown kind `{kind}`")))?;
        let json = s(self.f.item);
        let key =
            doc::item_key(section, &json).map_err(|e| corrupt(format!("{kind} item: {e}")))?;
        let vf = d
            .get_first(self.f.valid_from)
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        let vt = d
            .get_first(self.f.valid_to)
            .and_then(|v| v.as_u64())
            .unwrap_or(OPEN);
        let hit = Hit {
            kind: section,
            key,
            snippet: doc::snippet(section, &json, terms),
            score,
            valid_from: from_ns(vf),
            valid_to: (vt != OPEN).then(|| from_ns(vt)),
        };
        Ok((hit, s(self.f.host), s(self.f.os)))
    }

    /// Stored documents matching `q`, all of them.
    fn all_docs(&self, searcher: &Searcher, q: &dyn Query) -> Result<Vec<TantivyDocument>> {
        let mut addrs: Vec<DocAddress> =
            searcher.search(q, &DocSetCollector)?.into_iter().collect();
        addrs.sort();
        addrs
            .into_iter()
            .map(|a| searcher.doc(a).map_err(Error::from))
            .collect()
    }

    fn system_term(&self, system: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(self.f.system, system),
            IndexRecordOption::Basic,
        ))
    }
}

/// The fields of an opened index's schema (an index made by another program is refused).
fn fields_of(schema: &Schema) -> Result<Fields> {
    let get = |name: &str| {
        schema.get_field(name).map_err(|_| Error::Corrupt {
            system: String::new(),
            message: format!("the index has no field `{name}`: not an Origami index"),
        })
    };
    let f = Fields {
        system: get("system")?,
        host: get("host")?,
        os: get("os")?,
        kind: get("kind")?,
        key_hash: get("key_hash")?,
        content_hash: get("content_hash")?,
        valid_from: get("valid_from")?,
        valid_to: get("valid_to")?,
        first: get("first")?,
        name: get("name")?,
        path: get("path")?,
        port: get("port")?,
        pkg: get("pkg")?,
        user: get("user")?,
        exact: get("exact")?,
        text: get("text")?,
        item: get("item")?,
    };
    Ok(f)
}

/// Rebuilds the writer's per-system state from the committed index's fast columns.
fn recover(searcher: &Searcher) -> Result<HashMap<String, SystemState>> {
    let mut systems: HashMap<String, SystemState> = HashMap::new();
    for seg in searcher.segment_readers() {
        let ff = seg.fast_fields();
        let (Some(sys), Some(kind)) = (ff.str("system")?, ff.str("kind")?) else {
            continue;
        };
        let valid_to = ff.u64("valid_to")?;
        let valid_from = ff.u64("valid_from")?;
        let key_hash = ff.u64("key_hash")?;
        let content_hash = ff.u64("content_hash")?;
        let mut frame_kind_ord = None;
        let mut sections = Vec::with_capacity(kind.num_terms());
        let mut s = String::new();
        for ord in 0..kind.num_terms() as u64 {
            s.clear();
            let found = kind
                .ord_to_str(ord, &mut s)
                .map_err(tantivy::TantivyError::from)?;
            if found && s == FRAME_KIND {
                frame_kind_ord = Some(ord);
            }
            sections.push(
                Section::from_name(&s)
                    .filter(|_| found)
                    .map_or(NO_SECTION, |s| s as u8),
            );
        }
        let mut names: Vec<Option<String>> = vec![None; sys.num_terms()];
        for doc in 0..seg.max_doc() {
            if seg.is_deleted(doc) {
                continue;
            }
            let Some(sord) = sys.ords().first(doc) else {
                continue;
            };
            let Some(slot) = names.get_mut(sord as usize) else {
                continue;
            };
            let name = match slot {
                Some(n) => n.clone(),
                None => {
                    let mut n = String::new();
                    sys.ord_to_str(sord, &mut n)
                        .map_err(tantivy::TantivyError::from)?;
                    *slot = Some(n.clone());
                    n
                }
            };
            let state = systems.entry(name).or_default();
            let vf = valid_from.first(doc).unwrap_or(0);
            let kind_ord = kind.ords().first(doc);
            if kind_ord == frame_kind_ord && frame_kind_ord.is_some() {
                state.frames += 1;
                state.last_ts = state.last_ts.max(vf);
            } else if valid_to.first(doc) == Some(OPEN) {
                if let (Some(kh), Some(ch)) = (key_hash.first(doc), content_hash.first(doc)) {
                    state.items.insert(
                        kh,
                        Current {
                            content_hash: ch,
                            seen: 0,
                            section: kind_ord
                                .and_then(|o| sections.get(o as usize).copied())
                                .unwrap_or(NO_SECTION),
                        },
                    );
                }
            }
        }
    }
    Ok(systems)
}

#[allow(clippy::too_many_arguments)]
fn build_doc(
    f: Fields,
    ctx: &Ctx<'_>,
    section: Section,
    d: &ItemDoc,
    json: &str,
    key_hash: u64,
    content_hash: u64,
    valid_from: u64,
    valid_to: u64,
    first: bool,
) -> TantivyDocument {
    let mut doc = TantivyDocument::new();
    doc.add_text(f.system, ctx.system);
    doc.add_text(f.host, &ctx.host);
    doc.add_text(f.os, &ctx.os);
    doc.add_text(f.kind, section.name());
    doc.add_u64(f.key_hash, key_hash);
    doc.add_u64(f.content_hash, content_hash);
    doc.add_u64(f.valid_from, valid_from);
    doc.add_u64(f.valid_to, valid_to);
    if !first {
        doc.add_u64(f.first, 0);
    }
    for v in &d.names {
        doc.add_text(f.name, v);
    }
    for v in &d.paths {
        doc.add_text(f.path, v);
    }
    for p in &d.ports {
        doc.add_text(f.port, p.to_string());
    }
    if let Some(p) = &d.pkg {
        doc.add_text(f.pkg, p);
    }
    for v in &d.users {
        doc.add_text(f.user, v);
    }
    for v in &d.exact {
        if !v.is_empty() && v.len() <= 1024 {
            doc.add_text(f.exact, v);
        }
    }
    doc.add_text(f.text, &d.text);
    doc.add_text(f.item, json);
    doc
}

/// The document of a stored item and its key hash.
fn item_doc_from_json(
    section: Section,
    json: &str,
    r: &dyn Resolve,
) -> std::result::Result<(ItemDoc, u64), serde_json::Error> {
    fn parse<T: serde::de::DeserializeOwned + HashKey>(
        json: &str,
        make: impl FnOnce(&T) -> ItemDoc,
    ) -> std::result::Result<(ItemDoc, u64), serde_json::Error> {
        let x: T = serde_json::from_str(json)?;
        Ok((make(&x), x.key_hash_in(&mut Vec::new())))
    }
    match section {
        Section::Os => parse::<Os>(json, doc::os_doc),
        Section::File => parse::<FileItem>(json, |x| doc::file_doc(x, r)),
        Section::Config => parse::<ConfigItem>(json, doc::config_doc),
        Section::Package => parse::<Package>(json, doc::package_doc),
        Section::User => parse::<User>(json, doc::user_doc),
        Section::Process => parse::<Process>(json, |x| doc::process_doc(x, r)),
        Section::Connection => parse::<Connection>(json, |x| doc::connection_doc(x, r)),
        Section::Module => parse::<Module>(json, doc::module_doc),
        Section::Mount => parse::<Mount>(json, doc::mount_doc),
        Section::KernelLog => parse::<KernelLogRecord>(json, doc::kernel_log_doc),
        Section::Service => parse::<Service>(json, doc::service_doc),
    }
}

/// The host name a frame is shown under (lowercased): `_frame.hostname`, `os.hostname`, or
/// the system id.
fn frame_host(frame: &Frame) -> String {
    frame
        .meta
        .hostname
        .as_deref()
        .or(frame.os.hostname.as_deref())
        .unwrap_or(frame.system())
        .to_lowercase()
}

/// The OS label of a frame (lowercased): `id version`, e.g. `debian 12`.
fn frame_os(frame: &Frame) -> String {
    let os = &frame.os;
    let base = os.id.as_deref().or(os.name.as_deref()).unwrap_or("unknown");
    match &os.version {
        Some(v) => format!("{base} {v}").to_lowercase(),
        None => base.to_lowercase(),
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~\"<>@%".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A `*`/`?` wildcard as a regex over a whole term.
fn glob_to_regex(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 8);
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            c => out.push_str(&regex_escape(&c.to_string())),
        }
    }
    out
}

/// Counters and pending work of one `add_frame`.
struct FrameWrite<'a> {
    ctx: Ctx<'a>,
    ts: u64,
    gen: u32,
    first: bool,
    stats: IndexStats,
    /// Key hashes of the current versions to close.
    closes: Vec<u64>,
    docs: Vec<TantivyDocument>,
    json: Vec<u8>,
    /// By `Section as usize`: sections found unchanged as a whole (their items were not
    /// looked at, so they are not marked seen).
    skipped: [bool; Section::ALL.len()],
}

impl FrameWrite<'_> {
    /// Diffs one section against the system's current items: one pass lays out the content
    /// bytes of all its items and hashes them (xxh3-128); when that digest equals the one of
    /// the system's previous frame, the whole section is unchanged and done with. Otherwise each
    /// item is looked up by key hash and compared by content hash (xxh3 of its own bytes, the
    /// same as [`HashContent::content_hash`], which the index stores).
    fn section<T: HashKey + HashContent + Serialize>(
        &mut self,
        f: Fields,
        state: &mut SystemState,
        scratch: &mut Scratch,
        items: &[T],
        make: impl Fn(&T) -> ItemDoc,
    ) {
        let si = T::SECTION as usize;
        let n = items.len() as u64;
        // The content bytes are hashed by chunks that stay in cache (a streaming digest does
        // not depend on where the chunks end).
        const CHUNK: usize = 64 << 10;
        let buf = &mut scratch.content;
        let prev = state.sections.get(si).copied().flatten();
        if let Some(prev) = prev.filter(|p| p.items == n) {
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
        buf.clear();
        for x in items {
            let start = buf.len();
            x.write_content(buf);
            let ch = xxh3_64(buf.get(start..).unwrap_or_default());
            let kh = x.key_hash_in(&mut scratch.key);
            self.item(f, state, x, kh, ch, &make);
            if buf.len() >= CHUNK {
                h.update(buf);
                buf.clear();
            }
        }
        h.update(buf);
        let digest = h.digest128();
        if let Some(slot) = state.sections.get_mut(si) {
            *slot = Some(SectionDigest {
                digest,
                items: n,
                duplicates: self.stats.duplicates - duplicates,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn item<T: HashKey + Serialize>(
        &mut self,
        f: Fields,
        state: &mut SystemState,
        item: &T,
        kh: u64,
        ch: u64,
        make: impl FnOnce(&T) -> ItemDoc,
    ) {
        self.stats.items += 1;
        let section = T::SECTION as u8;
        match state.items.get_mut(&kh) {
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
                self.closes.push(kh);
                *cur = Current {
                    content_hash: ch,
                    seen: self.gen,
                    section,
                };
                self.stats.changed += 1;
            }
            None => {
                state.items.insert(
                    kh,
                    Current {
                        content_hash: ch,
                        seen: self.gen,
                        section,
                    },
                );
                self.stats.added += 1;
            }
        }
        self.json.clear();
        // Serialising into a Vec cannot fail for these types (string map keys only).
        let _ = serde_json::to_writer(&mut self.json, item);
        let json = String::from_utf8_lossy(&self.json);
        let d = make(item);
        self.docs.push(build_doc(
            f,
            &self.ctx,
            T::SECTION,
            &d,
            &json,
            kh,
            ch,
            self.ts,
            OPEN,
            self.first,
        ));
    }
}

impl crate::Index for TantivyIndex {
    fn add_frame(&self, frame: &Frame) -> Result<IndexStats> {
        let system = frame.system();
        if system.is_empty() {
            return Err(Error::NoSystem);
        }
        let ts = to_ns(frame.meta.timestamp);
        let mut st = self.lock()?;
        if st.dirty.contains(system) {
            // Closing versions reads them from the last commit: make the pending ones visible.
            self.commit_locked(&mut st)?;
        }
        let f = self.f;
        let mut state = st.systems.remove(system).unwrap_or_default();
        if state.frames > 0 && ts <= state.last_ts {
            st.systems.insert(system.to_string(), state);
            return Ok(IndexStats {
                system: system.to_string(),
                items: frame.item_count() as u64,
                stale: true,
                ..IndexStats::default()
            });
        }
        state.generation = state.generation.wrapping_add(1);
        let resolver = doc::FrameResolver::new(frame);
        let mut w = FrameWrite {
            ctx: Ctx {
                system,
                host: frame_host(frame),
                os: frame_os(frame),
            },
            ts,
            gen: state.generation,
            first: state.frames == 0,
            stats: IndexStats {
                system: system.to_string(),
                ..IndexStats::default()
            },
            closes: Vec::new(),
            docs: Vec::new(),
            json: Vec::new(),
            skipped: [false; Section::ALL.len()],
        };
        let mut scratch = std::mem::take(&mut st.scratch);
        let sc = &mut scratch;
        let os: &[Os] = if frame.os.is_empty() {
            &[]
        } else {
            std::slice::from_ref(&frame.os)
        };
        w.section(f, &mut state, sc, os, doc::os_doc);
        w.section(f, &mut state, sc, &frame.file, |x| {
            doc::file_doc(x, &resolver)
        });
        w.section(f, &mut state, sc, &frame.config, doc::config_doc);
        w.section(f, &mut state, sc, &frame.package, doc::package_doc);
        w.section(f, &mut state, sc, &frame.user, doc::user_doc);
        w.section(f, &mut state, sc, &frame.process, |x| {
            doc::process_doc(x, &resolver)
        });
        w.section(f, &mut state, sc, &frame.connection, |x| {
            doc::connection_doc(x, &resolver)
        });
        w.section(f, &mut state, sc, &frame.module, doc::module_doc);
        w.section(f, &mut state, sc, &frame.mount, doc::mount_doc);
        w.section(f, &mut state, sc, &frame.kernel_log, doc::kernel_log_doc);
        w.section(f, &mut state, sc, &frame.service, doc::service_doc);
        st.scratch = scratch;
        let (gen, skipped) = (w.gen, w.skipped);
        state.items.retain(|&kh, cur| {
            if cur.seen == gen || skipped.get(usize::from(cur.section)) == Some(&true) {
                true
            } else {
                w.closes.push(kh);
                w.stats.removed += 1;
                false
            }
        });
        let mut written = 0u64;
        // Closes first: a delete applies to the documents added before it, and the new
        // versions share (system, key, valid_to = open) with the versions they replace.
        if !w.closes.is_empty() {
            written += self.close_versions(&mut st, system, &w.closes, ts)?;
        }
        for d in w.docs.drain(..) {
            st.writer.add_document(d)?;
            written += 1;
        }
        // The frame record: what `history` lists.
        let record = FrameVersion {
            system: system.to_string(),
            hostname: w.ctx.host.clone(),
            timestamp: frame.meta.timestamp,
            items: w.stats.items,
            added: w.stats.added,
            changed: w.stats.changed,
            removed: w.stats.removed,
            duration_ms: frame.meta.duration_ms,
            source: frame.meta.source.clone(),
            errors: frame.meta.errors.clone(),
        };
        let mut rd = TantivyDocument::new();
        rd.add_text(f.system, system);
        rd.add_text(f.host, &w.ctx.host);
        rd.add_text(f.os, &w.ctx.os);
        rd.add_text(f.kind, FRAME_KIND);
        rd.add_u64(f.valid_from, ts);
        rd.add_text(f.item, serde_json::to_string(&record).unwrap_or_default());
        st.writer.add_document(rd)?;
        written += 1;
        w.stats.docs_written = written;
        state.frames += 1;
        state.last_ts = ts;
        st.systems.insert(system.to_string(), state);
        st.dirty.insert(system.to_string());
        Ok(w.stats)
    }

    fn commit(&self) -> Result<()> {
        let mut st = self.lock()?;
        self.commit_locked(&mut st)
    }

    fn search(&self, query: &str, options: &SearchOptions) -> Result<SearchResults> {
        let started = Instant::now();
        let parsed = query::parse(query)?;
        let as_of = parsed.as_of.or(options.as_of);
        let now = options.now.unwrap_or_else(OffsetDateTime::now_utc);
        let reference = as_of.unwrap_or(now);
        let mut terms = SnippetTerms::default();
        let user_q: Box<dyn Query> = match &parsed.root {
            Some(n) => self.compile(n, &mut terms, false)?,
            None => Box::new(ConstScoreQuery::new(Box::new(AllQuery), 1.0)),
        };
        let full = BooleanQuery::new(vec![
            (Occur::Must, user_q),
            (
                Occur::Must,
                self.time_filter(as_of, parsed.changed, reference),
            ),
        ]);
        let searcher = self.reader.searcher();
        let grouped = searcher.search(
            &full,
            &GroupCollector {
                hits_per_machine: options.hits_per_machine,
                now_ns: to_ns(reference),
                columns: &self.columns,
            },
        )?;
        let mut machines: Vec<(String, f32, crate::collect::MachineAcc<DocAddress>)> = grouped
            .machines
            .into_iter()
            .map(|(name, acc)| {
                let score = acc.best * (1.0 + 0.1 * (acc.count as f32).ln());
                (name, score, acc)
            })
            .collect();
        machines.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let total_machines = machines.len() as u64;
        let mut out = Vec::new();
        for (system, score, mut acc) in machines
            .into_iter()
            .skip(options.offset)
            .take(options.limit)
        {
            acc.top.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut hits = Vec::new();
            let (mut hostname, mut os) = (String::new(), String::new());
            for (s, addr) in acc.top {
                let (hit, h, o) = self.load_hit(&searcher, addr, s, &terms)?;
                hostname = h;
                os = o;
                hits.push(hit);
            }
            if hits.is_empty() {
                if let Some(addr) = acc.any {
                    (_, hostname, os) = self.load_hit(&searcher, addr, 0.0, &terms)?;
                }
            }
            out.push(MachineResult {
                system,
                hostname,
                os,
                score,
                matched: acc.count,
                hits,
            });
        }
        let limit = options.facet_limit;
        let [kind, host, os, package] = grouped.facets.map(|m| {
            let mut v: Vec<(String, u64)> = m.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(limit);
            v
        });
        Ok(SearchResults {
            query: parsed
                .root
                .as_ref()
                .map(|n| n.to_string())
                .unwrap_or_default(),
            machines: out,
            total_machines,
            total_hits: grouped.total,
            facets: Facets {
                kind,
                host,
                os,
                package,
            },
            took: started.elapsed(),
        })
    }

    fn history(&self, system: &str) -> Result<Vec<FrameVersion>> {
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.system_term(system)),
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.f.kind, FRAME_KIND),
                    IndexRecordOption::Basic,
                )),
            ),
        ]);
        let searcher = self.reader.searcher();
        let mut out = Vec::new();
        for d in self.all_docs(&searcher, &q)? {
            let json = d
                .get_first(self.f.item)
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let v: FrameVersion = serde_json::from_str(&json).map_err(|e| Error::Corrupt {
                system: system.to_string(),
                message: format!("frame record: {e}"),
            })?;
            out.push(v);
        }
        out.sort_by_key(|v| v.timestamp);
        Ok(out)
    }

    fn changes(&self, system: &str, from: OffsetDateTime, to: OffsetDateTime) -> Result<FrameDiff> {
        if from > to {
            return Err(Error::BadRange { from, to });
        }
        let (a, b) = (to_ns(from), to_ns(to));
        let f = self.f;
        let t = |v| Term::from_field_u64(f.valid_from, v);
        let t2 = |v| Term::from_field_u64(f.valid_to, v);
        // Only versions that began or ended between the two instants can differ.
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.system_term(system)),
            (
                Occur::Must,
                Box::new(BooleanQuery::new(vec![
                    (
                        Occur::Should,
                        Box::new(RangeQuery::new(
                            Bound::Excluded(t(a)),
                            Bound::Included(t(b)),
                        )) as Box<dyn Query>,
                    ),
                    (
                        Occur::Should,
                        Box::new(RangeQuery::new(
                            Bound::Excluded(t2(a)),
                            Bound::Included(t2(b)),
                        )),
                    ),
                ])),
            ),
        ]);
        let searcher = self.reader.searcher();
        let mut old = Frame::default();
        let mut new = Frame::default();
        for d in self.all_docs(&searcher, &q)? {
            let s = |field: Field| {
                d.get_first(field)
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            };
            let Some(section) = Section::from_name(&s(f.kind)) else {
                continue;
            };
            let vf = d
                .get_first(f.valid_from)
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            let vt = d
                .get_first(f.valid_to)
                .and_then(|v| v.as_u64())
                .unwrap_or(OPEN);
            let json = s(f.item);
            let corrupt = |e: serde_json::Error| Error::Corrupt {
                system: system.to_string(),
                message: format!("{section} item: {e}"),
            };
            for (frame, at) in [(&mut old, a), (&mut new, b)] {
                if vf <= at && at < vt {
                    push_item(frame, section, &json).map_err(corrupt)?;
                }
            }
        }
        Ok(new.diff(&old))
    }
}

fn push_item(frame: &mut Frame, section: Section, json: &str) -> serde_json::Result<()> {
    match section {
        Section::Os => frame.os = serde_json::from_str(json)?,
        Section::File => frame.file.push(serde_json::from_str(json)?),
        Section::Config => frame.config.push(serde_json::from_str(json)?),
        Section::Package => frame.package.push(serde_json::from_str(json)?),
        Section::User => frame.user.push(serde_json::from_str(json)?),
        Section::Process => frame.process.push(serde_json::from_str(json)?),
        Section::Connection => frame.connection.push(serde_json::from_str(json)?),
        Section::Module => frame.module.push(serde_json::from_str(json)?),
        Section::Mount => frame.mount.push(serde_json::from_str(json)?),
        Section::KernelLog => frame.kernel_log.push(serde_json::from_str(json)?),
        Section::Service => frame.service.push(serde_json::from_str(json)?),
    }
    Ok(())
}

/// Raw tantivy ingest of the very documents [`TantivyIndex`] writes, without versioning: the
/// floor the benchmark compares against. Not a stable API.
pub mod raw {
    use super::*;

    /// A plain tantivy index with Origami's schema and tokenizer.
    pub struct RawIndex {
        /// The tantivy index.
        pub index: tantivy::Index,
        f: Fields,
    }

    impl RawIndex {
        /// Creates the index in `dir` (which must be empty or missing).
        pub fn create(dir: &Path) -> Result<RawIndex> {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            let (schema, f) = schema();
            let index = tantivy::Index::create_in_dir(dir, schema)?;
            index
                .tokenizers()
                .register(TOKENIZER_NAME, OrigamiTokenizer::default());
            Ok(RawIndex { index, f })
        }

        /// Every item of `frame` as the document a first indexing writes.
        pub fn documents(&self, frame: &Frame) -> Vec<TantivyDocument> {
            let resolver = doc::FrameResolver::new(frame);
            let ctx = Ctx {
                system: frame.system(),
                host: frame_host(frame),
                os: frame_os(frame),
            };
            let ts = to_ns(frame.meta.timestamp);
            let mut out = Vec::with_capacity(frame.item_count());
            fn section<T: HashKey + HashContent + Serialize>(
                out: &mut Vec<TantivyDocument>,
                (f, ctx, ts): (Fields, &Ctx<'_>, u64),
                items: &[T],
                make: impl Fn(&T) -> ItemDoc,
            ) {
                let mut key = Vec::new();
                for x in items {
                    let json = serde_json::to_string(x).unwrap_or_default();
                    let (kh, ch) = (x.key_hash_in(&mut key), x.content_hash());
                    let d = make(x);
                    out.push(build_doc(
                        f,
                        ctx,
                        T::SECTION,
                        &d,
                        &json,
                        kh,
                        ch,
                        ts,
                        OPEN,
                        true,
                    ));
                }
            }
            let os: &[Os] = if frame.os.is_empty() {
                &[]
            } else {
                std::slice::from_ref(&frame.os)
            };
            let (o, c) = (&mut out, (self.f, &ctx, ts));
            section(o, c, os, doc::os_doc);
            section(o, c, &frame.file, |x| doc::file_doc(x, &resolver));
            section(o, c, &frame.config, doc::config_doc);
            section(o, c, &frame.package, doc::package_doc);
            section(o, c, &frame.user, doc::user_doc);
            section(o, c, &frame.process, |x| doc::process_doc(x, &resolver));
            section(o, c, &frame.connection, |x| {
                doc::connection_doc(x, &resolver)
            });
            section(o, c, &frame.module, doc::module_doc);
            section(o, c, &frame.mount, doc::mount_doc);
            section(o, c, &frame.kernel_log, doc::kernel_log_doc);
            section(o, c, &frame.service, doc::service_doc);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<TantivyIndex>();
    }

    #[test]
    fn regexes() {
        assert_eq!(glob_to_regex("web-*"), "web\\-.*");
        assert_eq!(glob_to_regex("10.0.0.?"), "10\\.0\\.0\\..");
    }
}
