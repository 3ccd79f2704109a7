//! One pass over the matching documents: grouping by machine, ranking, facet counts.
//!
//! The collector reads only fast columns (system, kind, host, os, package, port, user,
//! valid_from), so a
//! query that matches a million items costs a column read per item, never a stored-document
//! read; stored documents are loaded afterwards for the few hits that are shown. Ranking
//! multiplies the engine's BM25 score by a kind weight (live state such as connections and
//! processes above a mention in a file) and a recency weight (newer versions above older).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Cardinality, Column, StrColumn};
use tantivy::index::SegmentId;
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

use origami_frame::Section;

/// How much an item kind weighs in the ranking.
pub(crate) fn kind_weight(kind: &str) -> f32 {
    match Section::from_name(kind) {
        Some(Section::Connection) => 3.0,
        Some(Section::Process) => 2.5,
        Some(
            Section::Package
            | Section::User
            | Section::Module
            | Section::Os
            | Section::Mount
            | Section::Service,
        ) => 1.6,
        Some(Section::File) => 1.2,
        Some(Section::Config | Section::KernelLog) | None => 1.0,
    }
}

/// Up to 25% more for a version seen today than for one seen long ago.
pub(crate) fn recency_weight(now_ns: u64, valid_from_ns: u64) -> f32 {
    let age_days = now_ns.saturating_sub(valid_from_ns) as f64 / 86_400e9;
    (1.0 + 0.25 / (1.0 + age_days)) as f32
}

/// The per-machine accumulator.
#[derive(Debug, Clone)]
pub(crate) struct MachineAcc<D> {
    pub(crate) count: u64,
    pub(crate) best: f32,
    /// The best hits, unordered, at most `k`.
    pub(crate) top: Vec<(f32, D)>,
    /// Some matching document, even when `k` is 0 (to name the machine).
    pub(crate) any: Option<D>,
}

impl<D> Default for MachineAcc<D> {
    fn default() -> Self {
        MachineAcc {
            count: 0,
            best: 0.0,
            top: Vec::new(),
            any: None,
        }
    }
}

impl<D: Copy> MachineAcc<D> {
    pub(crate) fn push(&mut self, score: f32, d: D, k: usize) {
        self.count += 1;
        if self.any.is_none() {
            self.any = Some(d);
        }
        if score > self.best || self.count == 1 {
            self.best = score;
        }
        if k == 0 {
            return;
        }
        if self.top.len() < k {
            self.top.push((score, d));
        } else if let Some((i, min)) = self
            .top
            .iter()
            .enumerate()
            .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
            .map(|(i, x)| (i, x.0))
        {
            if score > min {
                self.top[i] = (score, d);
            }
        }
    }
}

/// How many facets there are.
pub(crate) const FACETS: usize = 6;

/// The facet columns, in [`crate::Facets`] order. `port` and `user` are multi-valued (a
/// connection has a local and a remote port): a document counts once for each of its
/// distinct values. Indexes written before `port` and `user` were fast columns have no such
/// columns, and their port and user facets stay empty (the filters still work).
pub(crate) const FACET_FIELDS: [&str; FACETS] = ["kind", "host", "os", "pkg", "port", "user"];

/// The columns the collector reads from one segment, opened once.
///
/// Opening a column is not free (a blockwise-linear column deserialises its block table, a
/// dictionary column opens its dictionary), and on a large index it cost more than a
/// selective query itself; segments are immutable, so the opened columns are cached by
/// segment id for as long as the segment lives.
#[derive(Clone)]
pub(crate) struct SegmentColumns {
    system: Option<StrColumn>,
    kind_weights: Arc<[f32]>,
    valid_from: Column<u64>,
    facet_cols: [Option<StrColumn>; FACETS],
}

/// Opened columns by segment.
#[derive(Default)]
pub(crate) struct ColumnCache(Mutex<HashMap<SegmentId, SegmentColumns>>);

impl ColumnCache {
    fn get(&self, reader: &SegmentReader) -> tantivy::Result<SegmentColumns> {
        let id = reader.segment_id();
        if let Some(c) = self.0.lock().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(c);
        }
        let cols = open_columns(reader)?;
        if let Ok(mut m) = self.0.lock() {
            m.insert(id, cols.clone());
        }
        Ok(cols)
    }

    /// Forgets the segments that are not in `live` (merged away).
    pub(crate) fn retain(&self, live: &[SegmentId]) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|id, _| live.contains(id));
        }
    }
}

fn open_columns(reader: &SegmentReader) -> tantivy::Result<SegmentColumns> {
    let kind = str_col(reader, "kind")?;
    let mut kind_weights = Vec::new();
    if let Some(k) = &kind {
        let mut s = String::new();
        for ord in 0..k.num_terms() as u64 {
            s.clear();
            k.ord_to_str(ord, &mut s)?;
            kind_weights.push(kind_weight(&s));
        }
    }
    Ok(SegmentColumns {
        system: str_col(reader, "system")?,
        kind_weights: kind_weights.into(),
        valid_from: reader.fast_fields().u64("valid_from")?,
        facet_cols: [
            kind,
            str_col(reader, FACET_FIELDS[1])?,
            str_col(reader, FACET_FIELDS[2])?,
            str_col(reader, FACET_FIELDS[3])?,
            str_col(reader, FACET_FIELDS[4])?,
            str_col(reader, FACET_FIELDS[5])?,
        ],
    })
}

/// The collector.
pub(crate) struct GroupCollector<'c> {
    pub(crate) hits_per_machine: usize,
    pub(crate) now_ns: u64,
    pub(crate) columns: &'c ColumnCache,
    /// Whether to count facets other than `kind` (false when no facet is listed).
    pub(crate) count_facets: bool,
}

/// What the collector found.
#[derive(Default)]
pub(crate) struct Grouped {
    pub(crate) machines: HashMap<String, MachineAcc<DocAddress>>,
    pub(crate) facets: [HashMap<String, u64>; FACETS],
    pub(crate) total: u64,
}

pub(crate) struct SegmentFruit {
    machines: Vec<(String, MachineAcc<DocAddress>)>,
    facets: [Vec<(String, u64)>; FACETS],
    total: u64,
}

pub(crate) struct GroupSegment {
    segment: SegmentOrdinal,
    k: usize,
    now_ns: u64,
    system: Option<StrColumn>,
    kind_weights: Arc<[f32]>,
    valid_from: Column<u64>,
    facet_cols: [Option<StrColumn>; FACETS],
    facet_counts: [Vec<u64>; FACETS],
    machines: Vec<MachineAcc<DocId>>,
    total: u64,
    // Matches are buffered and their columns read in batches: a batched read decodes each
    // column block once instead of once per document.
    docs: Vec<DocId>,
    scores: Vec<f32>,
    vals: Vec<Option<u64>>,
    weights: Vec<f32>,
    // Scratch of multi-valued columns: each value's document and row, then its term ordinal.
    multi_docs: Vec<DocId>,
    multi_rows: Vec<u32>,
    multi_ords: Vec<u64>,
}

const BATCH: usize = 128;

impl GroupSegment {
    fn flush(&mut self) {
        let n = self.docs.len();
        if n == 0 {
            return;
        }
        self.vals.clear();
        self.vals.resize(n, None);
        self.weights.clear();
        self.weights.resize(n, 1.0);
        // Facets; the kind column also gives the kind weight.
        for (i, (col, counts)) in self
            .facet_cols
            .iter()
            .zip(self.facet_counts.iter_mut())
            .enumerate()
        {
            let Some(col) = col else { continue };
            if counts.is_empty() {
                continue;
            }
            if col.ords().get_cardinality() == Cardinality::Multivalued {
                count_multi(
                    col.ords(),
                    &self.docs,
                    counts,
                    (&mut self.multi_docs, &mut self.multi_rows),
                    &mut self.multi_ords,
                );
                continue;
            }
            // `first_vals` leaves the slots of documents without a value untouched.
            self.vals.fill(None);
            col.ords().first_vals(&self.docs, &mut self.vals);
            for (j, v) in self.vals.iter().enumerate() {
                if let Some(ord) = *v {
                    if let Some(c) = counts.get_mut(ord as usize) {
                        *c += 1;
                    }
                    if i == 0 {
                        if let (Some(w), Some(x)) =
                            (self.kind_weights.get(ord as usize), self.weights.get_mut(j))
                        {
                            *x = *w;
                        }
                    }
                }
            }
        }
        self.vals.fill(None);
        self.valid_from.first_vals(&self.docs, &mut self.vals);
        for (w, vf) in self.weights.iter_mut().zip(&self.vals) {
            if let Some(vf) = vf {
                *w *= recency_weight(self.now_ns, *vf);
            }
        }
        if let Some(sys) = &self.system {
            self.vals.fill(None);
            sys.ords().first_vals(&self.docs, &mut self.vals);
            for j in 0..n {
                let (Some(Some(ord)), Some(doc), Some(score), Some(w)) = (
                    self.vals.get(j),
                    self.docs.get(j),
                    self.scores.get(j),
                    self.weights.get(j),
                ) else {
                    continue;
                };
                if let Some(m) = self.machines.get_mut(*ord as usize) {
                    m.push(score.max(0.01) * w, *doc, self.k);
                }
            }
        }
        self.docs.clear();
        self.scores.clear();
    }
}

/// Calls `f` with each of `items` (term ordinals, ascending, each with a value) and the term
/// of its ordinal in `col`, reading the dictionary once from the first ordinal to the last
/// (`ord_to_str` decodes a term's dictionary block from its start for each term: with a
/// thousand machines a segment, 12% of the serve benchmark's search profile).
/// Ordinals the dictionary does not hold end the walk.
fn names_of<T>(
    col: &StrColumn,
    items: impl Iterator<Item = (usize, T)>,
    mut f: impl FnMut(T, String),
) -> std::io::Result<bool> {
    let (ords, values): (Vec<u64>, Vec<T>) = items.map(|(o, v)| (o as u64, v)).unzip();
    let mut values = values.into_iter();
    col.dictionary()
        .sorted_ords_to_term_cb(ords.into_iter(), |term| {
            if let Some(v) = values.next() {
                f(v, String::from_utf8_lossy(term).into_owned());
            }
            Ok(())
        })
}

/// Counts every distinct value of each of `docs` in a multi-valued column (a document with
/// ports 5432 and 51000 counts once under each; a value repeated within one document once).
fn count_multi(
    col: &Column<u64>,
    docs: &[DocId],
    counts: &mut [u64],
    (doc_of, rows): (&mut Vec<DocId>, &mut Vec<u32>),
    ords: &mut Vec<u64>,
) {
    doc_of.clear();
    rows.clear();
    col.row_ids_for_docs(docs, doc_of, rows);
    ords.clear();
    ords.resize(rows.len(), 0);
    col.values.get_vals(rows, ords);
    // The values of one document are adjacent; a document holds a handful (a connection's
    // two ports), and sorting its run makes repeats adjacent whatever their number.
    let mut start = 0;
    while start < ords.len() {
        let doc = doc_of.get(start).copied();
        let mut end = start + 1;
        while end < ords.len() && doc_of.get(end).copied() == doc {
            end += 1;
        }
        if let Some(run) = ords.get_mut(start..end) {
            run.sort_unstable();
            let mut prev = None;
            for &ord in run.iter() {
                if prev != Some(ord) {
                    if let Some(c) = counts.get_mut(ord as usize) {
                        *c += 1;
                    }
                    prev = Some(ord);
                }
            }
        }
        start = end;
    }
}

/// The string column `name`; `None` when the segment has none, or when the field is not a
/// fast field in this index's schema (`port` and `user` of indexes written before they were).
fn str_col(reader: &SegmentReader, name: &str) -> tantivy::Result<Option<StrColumn>> {
    let schema = reader.schema();
    match schema.get_field(name) {
        Ok(f) if schema.get_field_entry(f).is_fast() => reader.fast_fields().str(name),
        _ => Ok(None),
    }
}

impl Collector for GroupCollector<'_> {
    type Fruit = Grouped;
    type Child = GroupSegment;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<GroupSegment> {
        let c = self.columns.get(reader)?;
        // Uncounted facets get no counters, and `flush` skips a facet without counters.
        let mut i = 0;
        let facet_counts = c.facet_cols.each_ref().map(|c| {
            let counted = i == 0 || self.count_facets;
            i += 1;
            vec![
                0u64;
                if counted {
                    c.as_ref().map_or(0, |c| c.num_terms())
                } else {
                    0
                }
            ]
        });
        let machines = vec![MachineAcc::default(); c.system.as_ref().map_or(0, |c| c.num_terms())];
        Ok(GroupSegment {
            segment,
            k: self.hits_per_machine,
            now_ns: self.now_ns,
            system: c.system,
            kind_weights: c.kind_weights,
            valid_from: c.valid_from,
            facet_cols: c.facet_cols,
            facet_counts,
            machines,
            total: 0,
            docs: Vec::with_capacity(BATCH),
            scores: Vec::with_capacity(BATCH),
            vals: Vec::with_capacity(BATCH),
            weights: Vec::with_capacity(BATCH),
            multi_docs: Vec::new(),
            multi_rows: Vec::new(),
            multi_ords: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, fruits: Vec<SegmentFruit>) -> tantivy::Result<Grouped> {
        let mut g = Grouped::default();
        for f in fruits {
            g.total += f.total;
            for (name, acc) in f.machines {
                let m = g.machines.entry(name).or_default();
                if acc.best > m.best || m.count == 0 {
                    m.best = acc.best;
                }
                m.count += acc.count;
                m.any = m.any.or(acc.any);
                m.top.extend(acc.top);
                m.top.sort_by(|a, b| b.0.total_cmp(&a.0));
                m.top.truncate(self.hits_per_machine);
            }
            for (i, counts) in f.facets.into_iter().enumerate() {
                for (v, n) in counts {
                    *g.facets[i].entry(v).or_default() += n;
                }
            }
        }
        Ok(g)
    }
}

impl SegmentCollector for GroupSegment {
    type Fruit = SegmentFruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.total += 1;
        self.docs.push(doc);
        self.scores.push(score);
        if self.docs.len() >= BATCH {
            self.flush();
        }
    }

    fn harvest(mut self) -> SegmentFruit {
        self.flush();
        let mut machines = Vec::new();
        if let Some(sys) = &self.system {
            let segment = self.segment;
            let mut accs = self
                .machines
                .into_iter()
                .enumerate()
                .filter(|(_, acc)| acc.count > 0);
            // The names of the machines that matched, in one pass over the dictionary.
            let _ = names_of(sys, accs.by_ref(), |acc, name| {
                machines.push((
                    name,
                    MachineAcc {
                        count: acc.count,
                        best: acc.best,
                        top: acc
                            .top
                            .into_iter()
                            .map(|(s, d)| (s, DocAddress::new(segment, d)))
                            .collect(),
                        any: acc.any.map(|d| DocAddress::new(segment, d)),
                    },
                ));
            });
        }
        let facets = std::array::from_fn(|i| {
            let mut out = Vec::new();
            if let (Some(col), Some(counts)) = (&self.facet_cols[i], self.facet_counts.get(i)) {
                let nonzero = counts.iter().copied().enumerate().filter(|(_, n)| *n > 0);
                let _ = names_of(col, nonzero, |n, name| out.push((name, n)));
            }
            out
        });
        SegmentFruit {
            machines,
            facets,
            total: self.total,
        }
    }
}
