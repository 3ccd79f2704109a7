//! The read side: searches, history and changes over the last commit, shared by the
//! writer ([`TantivyIndex`](crate::TantivyIndex)) and the read-only handle
//! ([`ReadOnlyIndex`]).

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use origami_frame::{Frame, FrameDiff, Section};
use tantivy::collector::DocSetCollector;
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, Occur, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::{DocAddress, IndexReader, ReloadPolicy, Searcher, TantivyDocument, Term};
use time::OffsetDateTime;

use crate::collect::{ColumnCache, GroupCollector, MachineAcc};
use crate::compile::Compiler;
use crate::schema::{fields_of, from_ns, to_ns, Fields, FRAME_KIND, OPEN};
use crate::snippet::{self, SnippetTerms};
use crate::tokenizer::{OrigamiTokenizer, TOKENIZER_NAME};
use crate::{
    query, Error, Facets, FrameVersion, Hit, MachineResult, Result, Search, SearchOptions,
    SearchResults,
};

/// Registers Origami's tokenizer on an opened tantivy index.
pub(crate) fn register_tokenizer(index: &tantivy::Index) {
    index
        .tokenizers()
        .register(TOKENIZER_NAME, OrigamiTokenizer::default());
}

/// A searcher over the last commit of an index, and what its searches reuse.
pub(crate) struct ReadSide {
    pub(crate) f: Fields,
    reader: IndexReader,
    columns: ColumnCache,
    /// The searcher generation the column cache was last trimmed for.
    trimmed: AtomicU64,
}

impl ReadSide {
    /// A read side of `index` that reloads as `policy` says.
    pub(crate) fn new(index: &tantivy::Index, policy: ReloadPolicy) -> Result<ReadSide> {
        register_tokenizer(index);
        let f = fields_of(&index.schema())?;
        let reader = index.reader_builder().reload_policy(policy).try_into()?;
        Ok(ReadSide {
            f,
            reader,
            columns: ColumnCache::default(),
            trimmed: AtomicU64::new(u64::MAX),
        })
    }

    /// The searcher of the last commit this side has loaded. Column caches of segments that
    /// left the index (merged away) are dropped when the generation moves.
    pub(crate) fn searcher(&self) -> Searcher {
        let searcher = self.reader.searcher();
        let generation = searcher.generation().generation_id();
        if self.trimmed.swap(generation, Ordering::Relaxed) != generation {
            let live: Vec<_> = searcher
                .segment_readers()
                .iter()
                .map(|s| s.segment_id())
                .collect();
            self.columns.retain(&live);
        }
        searcher
    }

    /// Loads the last commit.
    pub(crate) fn reload(&self) -> Result<()> {
        self.reader.reload()?;
        Ok(())
    }

    /// Documents in the last commit loaded.
    pub(crate) fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The systems of the last commit loaded, with the time of each one's latest frame,
    /// sorted by system (from the frame records' fast columns).
    pub(crate) fn systems(&self) -> Result<Vec<(String, OffsetDateTime)>> {
        let searcher = self.searcher();
        let q = TermQuery::new(
            Term::from_field_text(self.f.kind, FRAME_KIND),
            IndexRecordOption::Basic,
        );
        let mut addrs: Vec<DocAddress> =
            searcher.search(&q, &DocSetCollector)?.into_iter().collect();
        addrs.sort();
        let mut latest: std::collections::BTreeMap<String, u64> = Default::default();
        let mut name = String::new();
        for seg in addrs.chunk_by(|a, b| a.segment_ord == b.segment_ord) {
            let reader = searcher.segment_reader(seg[0].segment_ord);
            let ff = reader.fast_fields();
            let Some(sys) = ff.str("system")? else {
                continue;
            };
            let valid_from = ff.u64("valid_from")?;
            for a in seg {
                let Some(ord) = sys.ords().first(a.doc_id) else {
                    continue;
                };
                name.clear();
                if !sys
                    .ord_to_str(ord, &mut name)
                    .map_err(tantivy::TantivyError::from)?
                {
                    continue;
                }
                let ts = valid_from.first(a.doc_id).unwrap_or(0);
                let e = latest.entry(name.clone()).or_insert(ts);
                *e = (*e).max(ts);
            }
        }
        Ok(latest.into_iter().map(|(s, t)| (s, from_ns(t))).collect())
    }

    pub(crate) fn search(&self, query: &str, options: &SearchOptions) -> Result<SearchResults> {
        let started = Instant::now();
        let parsed = query::parse(query)?;
        let as_of = parsed.as_of.or(options.as_of);
        let now = options.now.unwrap_or_else(OffsetDateTime::now_utc);
        let reference = as_of.unwrap_or(now);
        let mut terms = SnippetTerms::default();
        let compiler = Compiler { f: &self.f };
        let user_q: Box<dyn Query> = match &parsed.root {
            Some(n) => compiler.compile(n, &mut terms, false)?,
            None => Box::new(ConstScoreQuery::new(Box::new(AllQuery), 1.0)),
        };
        let full = BooleanQuery::new(vec![
            (Occur::Must, user_q),
            (
                Occur::Must,
                compiler.time_filter(as_of, parsed.changed, reference),
            ),
        ]);
        let searcher = self.searcher();
        let grouped = searcher.search(
            &full,
            &GroupCollector {
                hits_per_machine: options.hits_per_machine,
                now_ns: to_ns(reference),
                columns: &self.columns,
                count_facets: options.facet_limit > 0,
            },
        )?;
        let mut machines: Vec<(String, f32, MachineAcc<DocAddress>)> = grouped
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
        let [kind, host, os, package, port, user] = grouped.facets.map(|m| {
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
                port,
                user,
            },
            took: started.elapsed(),
        })
    }

    pub(crate) fn history(&self, system: &str) -> Result<Vec<FrameVersion>> {
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
        let searcher = self.searcher();
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

    pub(crate) fn changes(
        &self,
        system: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<FrameDiff> {
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
        let searcher = self.searcher();
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
            snippet::item_key(section, &json).map_err(|e| corrupt(format!("{kind} item: {e}")))?;
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
            snippet: snippet::snippet(section, &json, terms),
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

/// A read-only handle on an index folder: it searches while another process (or thread)
/// writes the same folder, and never waits on that writer.
///
/// Opening takes no writer lock and does no recovery scan: it reads the list of committed
/// segments and maps their files, so it costs milliseconds whatever the index's size. The
/// handle follows the writer: it reloads on its own shortly after a commit lands (tantivy
/// watches `meta.json`), or at once with [`ReadOnlyIndex::reload`]. The only lock is
/// tantivy's meta lock, held for the instant of opening segment files so that the writer's
/// clean-up does not delete them under the reader.
///
/// ```
/// use origami_index::frame::{Frame, Process};
/// use origami_index::{Index, ReadOnlyIndex, Search, SearchOptions, TantivyIndex};
///
/// let dir = std::env::temp_dir().join(format!("origami-ro-doc-{}", std::process::id()));
/// let writer = TantivyIndex::open_or_create(&dir)?;
/// let mut f = Frame::new("web-01");
/// f.process.push(Process { pid: 42, name: "nginx".into(), ..Default::default() });
/// writer.add_frame(&f)?;
/// writer.commit()?;
///
/// // While the writer holds the folder.
/// let reader = ReadOnlyIndex::open(&dir)?;
/// let found = reader.search("name:nginx", &SearchOptions::default())?;
/// assert_eq!(found.machines[0].system, "web-01");
/// # drop((reader, writer)); let _ = std::fs::remove_dir_all(&dir);
/// # Ok::<(), origami_index::Error>(())
/// ```
pub struct ReadOnlyIndex {
    read: ReadSide,
    path: PathBuf,
}

impl std::fmt::Debug for ReadOnlyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyIndex")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ReadOnlyIndex {
    /// Opens the index in `dir` for searching ([`Error::NoIndex`] when there is none).
    pub fn open(dir: impl AsRef<Path>) -> Result<ReadOnlyIndex> {
        let dir = dir.as_ref();
        let no_index = || Error::NoIndex {
            path: dir.to_path_buf(),
        };
        if !dir.is_dir() {
            return Err(no_index());
        }
        let mmap = MmapDirectory::open(dir).map_err(tantivy::TantivyError::from)?;
        if !tantivy::Index::exists(&mmap).map_err(tantivy::TantivyError::from)? {
            return Err(no_index());
        }
        let index = tantivy::Index::open(mmap)?;
        Ok(ReadOnlyIndex {
            read: ReadSide::new(&index, ReloadPolicy::OnCommitWithDelay)?,
            path: dir.to_path_buf(),
        })
    }

    /// Loads the last commit now (without waiting for the automatic reload).
    pub fn reload(&self) -> Result<()> {
        self.read.reload()
    }

    /// The index folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The systems of the commit loaded and the time of each one's latest frame, sorted by
    /// system.
    pub fn systems(&self) -> Result<Vec<(String, OffsetDateTime)>> {
        self.read.systems()
    }

    /// Documents in the commit loaded (item versions and frame records).
    pub fn num_docs(&self) -> u64 {
        self.read.num_docs()
    }
}

impl Search for ReadOnlyIndex {
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

pub(crate) fn push_item(frame: &mut Frame, section: Section, json: &str) -> serde_json::Result<()> {
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
