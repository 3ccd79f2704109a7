//! The index's layout: the writer's configuration, the tantivy schema and its fields, how
//! item keys are named, and the document one item version becomes.
//!
//! Each document is one version of one item: (system, section, key, content) with
//! `valid_from` / `valid_to` (nanoseconds since the epoch; `valid_to = u64::MAX` while
//! current). A frame adds one more document, its frame record (`kind = _frame`).

use std::time::Duration;

use origami_frame::{Frame, Section};
use tantivy::query::{Query, TermSetQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STORED, STRING,
};
use tantivy::{TantivyDocument, Term};
use time::OffsetDateTime;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use crate::item_doc::ItemDoc;
use crate::key_query::KeyIdQuery;
use crate::tokenizer::TOKENIZER_NAME;
use crate::{Error, Result};

/// The `kind` of frame records (not an item section, so no query reaches it).
pub(crate) const FRAME_KIND: &str = "_frame";
/// `valid_to` of a current version.
pub(crate) const OPEN: u64 = u64::MAX;

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
    /// Near-real-time: when frames are waiting and this long has passed since the last
    /// commit, the next [`add_frame`](crate::Index::add_frame) commits them before it adds
    /// its own frame, so that readers see new frames at least this often while frames
    /// arrive (default 1 s). `None`: only [`commit`](crate::Index::commit) commits (bulk
    /// loads that commit per batch).
    pub commit_interval: Option<Duration>,
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
            commit_interval: Some(Duration::from_secs(1)),
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

/// An item's identity within its system: a 128-bit hash of its section and key.
pub(crate) type KeyId = u128;

/// The fields that name item keys, and so the hash that makes key ids.
///
/// A guest chooses its keys (file paths, package names), and with 64-bit ids it could
/// compute two keys of equal id: the second item would be dropped as a repeat of the first,
/// and changing one would close the other's version. So a key id is xxh3-128 of the section
/// and the key. The index holds it in two u64 fields: `key_hash`, its low half, indexed (the
/// term that finds versions), and `key_hi`, its high half, a fast column; [`KeyIdQuery`]
/// finds versions by term and keeps those whose whole id matches, so two keys that share a
/// low half (which a guest can compute) stay apart. A 128-bit term (tantivy's IPv6-address
/// field) was measured 25% slower to index than this, its term dictionary being built from
/// 16 random bytes a version.
///
/// Indexes written before have `key_hash` alone, xxh3-64 of the same bytes. A tantivy schema
/// cannot change in place, so they keep working with 64-bit ids (a key id is then the
/// 64-bit hash, widened) until they are rebuilt into a new folder (`origami index` of the
/// frames, or a new crawl).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyField {
    /// xxh3-128: low half `lo` (indexed and fast), high half `hi` (fast).
    Id128 {
        /// `key_hash`.
        lo: Field,
        /// `key_hi`.
        hi: Field,
    },
    /// `key_hash`: xxh3-64, in indexes written before `key_hi`.
    Hash64(Field),
}

impl KeyField {
    /// The key id of `key` in `section`, with `buf` as scratch space (so no call allocates).
    pub(crate) fn id_in(self, section: Section, key: &str, buf: &mut Vec<u8>) -> KeyId {
        buf.clear();
        buf.extend_from_slice(section.name().as_bytes());
        buf.push(0);
        buf.extend_from_slice(key.as_bytes());
        match self {
            KeyField::Id128 { .. } => {
                let id = xxh3_128(buf);
                #[cfg(test)]
                let id = id & (KeyId::MAX << 64 | ((1 << LO_BITS.get()) - 1));
                id
            }
            KeyField::Hash64(_) => KeyId::from(xxh3_64(buf)),
        }
    }

    /// The key id of `key` in `section`.
    pub(crate) fn id(self, section: Section, key: &str) -> KeyId {
        self.id_in(section, key, &mut Vec::with_capacity(key.len() + 16))
    }

    /// The indexed term of a key id (its low half).
    pub(crate) fn term(self, id: KeyId) -> Term {
        match self {
            KeyField::Id128 { lo, .. } | KeyField::Hash64(lo) => {
                Term::from_field_u64(lo, id as u64)
            }
        }
    }

    /// The versions whose key id is one of `ids`, exactly (unscored).
    pub(crate) fn any_of(self, ids: impl IntoIterator<Item = KeyId>) -> Box<dyn Query> {
        match self {
            KeyField::Id128 { .. } => Box::new(KeyIdQuery::new(self, ids)),
            KeyField::Hash64(_) => {
                Box::new(TermSetQuery::new(ids.into_iter().map(|id| self.term(id))))
            }
        }
    }

    fn add(self, doc: &mut TantivyDocument, id: KeyId) {
        match self {
            KeyField::Id128 { lo, hi } => {
                doc.add_u64(lo, id as u64);
                doc.add_u64(hi, (id >> 64) as u64);
            }
            KeyField::Hash64(f) => doc.add_u64(f, id as u64),
        }
    }
}

/// A map keyed by key ids.
///
/// Key ids are hashes of keys a guest chooses, so the map's own hash is keyed by a random
/// per-process seed: a guest that computed ids to fall into one bucket (the bucket bits of
/// an unkeyed map are a few bits of the id: 2^15 tries a key) would make each insert a walk
/// over all the others. The hash is a folded multiply of the id's halves, each mixed with a
/// half of the seed (foldhash's construction); std's SipHash made re-indexing a frame
/// measurably slower.
pub(crate) type KeyMap<V> = std::collections::HashMap<KeyId, V, KeySeed>;

/// The seed of [`KeyMap`]s: random, the same for every map of the process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeySeed(u64, u64);

impl Default for KeySeed {
    fn default() -> Self {
        static SEED: std::sync::OnceLock<KeySeed> = std::sync::OnceLock::new();
        *SEED.get_or_init(|| {
            use std::hash::BuildHasher;
            let r = std::collections::hash_map::RandomState::new();
            // Odd halves: a zero factor would send every id with that half to one bucket.
            KeySeed(r.hash_one(1u64) | 1, r.hash_one(2u64) | 1)
        })
    }
}

impl std::hash::BuildHasher for KeySeed {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            seed: *self,
            hash: 0,
        }
    }
}

/// The hasher of [`KeyMap`]s.
pub(crate) struct KeyHasher {
    seed: KeySeed,
    hash: u64,
}

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.hash
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `KeyId`s are hashed here (`write_u128`); anything else is folded in 8 bytes
        // at a time.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u128(KeyId::from(self.hash) << 64 | KeyId::from(u64::from_le_bytes(b)));
        }
    }
    fn write_u128(&mut self, v: u128) {
        let p = u128::from(v as u64 ^ self.seed.0) * u128::from((v >> 64) as u64 ^ self.seed.1);
        self.hash = (p as u64) ^ ((p >> 64) as u64);
    }
}

#[cfg(test)]
thread_local! {
    /// Tests: how many low bits of the indexed half of 128-bit key ids are kept (the rest
    /// are zero), so that many keys share it, as keys a guest computed would.
    pub(crate) static LO_BITS: std::cell::Cell<u32> = const { std::cell::Cell::new(64) };
}

/// The schema's fields.
#[derive(Clone, Copy)]
pub(crate) struct Fields {
    pub(crate) system: Field,
    pub(crate) host: Field,
    pub(crate) os: Field,
    pub(crate) kind: Field,
    pub(crate) key: KeyField,
    pub(crate) content_hash: Field,
    pub(crate) valid_from: Field,
    pub(crate) valid_to: Field,
    pub(crate) first: Field,
    pub(crate) name: Field,
    pub(crate) path: Field,
    pub(crate) port: Field,
    pub(crate) pkg: Field,
    pub(crate) user: Field,
    pub(crate) exact: Field,
    pub(crate) text: Field,
    pub(crate) item: Field,
}

/// The schema of a new index.
pub(crate) fn schema() -> Schema {
    let mut b = Schema::builder();
    let text_opts = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER_NAME)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    // Stored only what a hit, a closed version or a frame record is rebuilt from: the system
    // is known to whoever reads a version back, the key and its id follow from the item.
    b.add_text_field("system", STRING | FAST);
    b.add_text_field("host", STRING | FAST | STORED);
    b.add_text_field("os", STRING | FAST | STORED);
    b.add_text_field("kind", STRING | FAST | STORED);
    // A key id is 128 bits: its low half is the indexed term that finds versions, its high
    // half a fast column that [`KeyIdQuery`] checks (see [`KeyField`]).
    b.add_u64_field("key_hash", INDEXED | FAST);
    b.add_u64_field("key_hi", FAST);
    b.add_u64_field("content_hash", FAST);
    // Ranges over valid_from read its fast column; no query looks a value up.
    b.add_u64_field("valid_from", FAST | STORED);
    b.add_u64_field("valid_to", INDEXED | FAST | STORED);
    // Only versions that did not come with the system's first frame carry `first = 0` (what
    // `changed:` looks for); the bulk of an index, first frames, carries nothing.
    b.add_u64_field("first", INDEXED | STORED);
    b.add_text_field("name", STRING | STORED);
    b.add_text_field("path", STRING);
    // Facets read `port` and `user` as (multi-valued) fast columns. An index written before
    // they were fast keeps its own schema (a tantivy schema cannot change in place): its
    // `port:` and `user:` filters work, its port and user facets stay empty until it is
    // rebuilt into a new folder (`origami index` of the frames, or a new crawl).
    b.add_text_field("port", STRING | FAST);
    b.add_text_field("pkg", STRING | FAST);
    b.add_text_field("user", STRING | FAST | STORED);
    b.add_text_field("exact", STRING);
    b.add_text_field("text", text_opts);
    b.add_text_field("item", STORED);
    b.build()
}

/// The fields of an opened index's schema (an index made by another program is refused).
///
/// An existing index is opened with its own schema: one written before fields lost flags
/// they did not need (stored keys...) holds a superset of what is read.
pub(crate) fn fields_of(schema: &Schema) -> Result<Fields> {
    let get = |name: &str| {
        schema.get_field(name).map_err(|_| Error::Corrupt {
            system: String::new(),
            message: format!("the index has no field `{name}`: not an Origami index"),
        })
    };
    let key = match schema.get_field("key_hi") {
        Ok(hi) => KeyField::Id128 {
            lo: get("key_hash")?,
            hi,
        },
        Err(_) => KeyField::Hash64(get("key_hash")?),
    };
    Ok(Fields {
        system: get("system")?,
        host: get("host")?,
        os: get("os")?,
        kind: get("kind")?,
        key,
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
    })
}

/// Nanoseconds since the epoch, as the index stores instants.
pub(crate) fn to_ns(t: OffsetDateTime) -> u64 {
    t.unix_timestamp_nanos().clamp(0, i128::from(OPEN - 1)) as u64
}

/// The instant of [`to_ns`]'s nanoseconds.
pub(crate) fn from_ns(ns: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The frame context every item document of a frame carries.
pub(crate) struct Ctx<'a> {
    pub(crate) system: &'a str,
    pub(crate) host: &'a str,
    pub(crate) os: &'a str,
}

/// The host name a frame is shown under (lowercased): `_frame.hostname`, `os.hostname`, or
/// the system id.
pub(crate) fn frame_host(frame: &Frame) -> String {
    frame
        .meta
        .hostname
        .as_deref()
        .or(frame.os.hostname.as_deref())
        .unwrap_or(frame.system())
        .to_lowercase()
}

/// The OS label of a frame (lowercased): `id version`, e.g. `debian 12`.
pub(crate) fn frame_os(frame: &Frame) -> String {
    let os = &frame.os;
    let base = os.id.as_deref().or(os.name.as_deref()).unwrap_or("unknown");
    match &os.version {
        Some(v) => format!("{base} {v}").to_lowercase(),
        None => base.to_lowercase(),
    }
}

/// One item version's time and identity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Version {
    pub(crate) section: Section,
    pub(crate) key: KeyId,
    pub(crate) content_hash: u64,
    pub(crate) valid_from: u64,
    pub(crate) valid_to: u64,
    /// True when the version came with the system's first frame.
    pub(crate) first: bool,
}

/// The document of one item version.
pub(crate) fn build_doc(
    f: &Fields,
    ctx: &Ctx<'_>,
    v: &Version,
    d: &ItemDoc,
    json: &str,
) -> TantivyDocument {
    let mut doc = TantivyDocument::new();
    doc.add_text(f.system, ctx.system);
    doc.add_text(f.host, ctx.host);
    doc.add_text(f.os, ctx.os);
    doc.add_text(f.kind, v.section.name());
    f.key.add(&mut doc, v.key);
    doc.add_u64(f.content_hash, v.content_hash);
    doc.add_u64(f.valid_from, v.valid_from);
    doc.add_u64(f.valid_to, v.valid_to);
    if !v.first {
        doc.add_u64(f.first, 0);
    }
    for s in &d.names {
        doc.add_text(f.name, s);
    }
    for s in &d.paths {
        doc.add_text(f.path, s);
    }
    for p in &d.ports {
        doc.add_text(f.port, p.to_string());
    }
    if let Some(p) = &d.pkg {
        doc.add_text(f.pkg, p);
    }
    for s in &d.users {
        doc.add_text(f.user, s);
    }
    for s in &d.exact {
        if !s.is_empty() && s.len() <= 1024 {
            doc.add_text(f.exact, s);
        }
    }
    doc.add_text(f.text, &d.text);
    doc.add_text(f.item, json);
    doc
}

/// The frame record of a frame: what `history` lists.
pub(crate) fn frame_record(f: &Fields, ctx: &Ctx<'_>, ts: u64, json: &str) -> TantivyDocument {
    let mut rd = TantivyDocument::new();
    rd.add_text(f.system, ctx.system);
    rd.add_text(f.host, ctx.host);
    rd.add_text(f.os, ctx.os);
    rd.add_text(f.kind, FRAME_KIND);
    rd.add_u64(f.valid_from, ts);
    rd.add_text(f.item, json);
    rd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_128_bit_in_new_indexes_and_64_bit_in_former_ones() {
        let s = schema();
        let f = fields_of(&s).unwrap();
        assert!(matches!(f.key, KeyField::Id128 { .. }));
        let id = f.key.id(Section::File, "/etc/passwd");
        assert!(id > u128::from(u64::MAX), "a 128-bit id: {id:x}");
        assert_ne!(id, f.key.id(Section::Config, "/etc/passwd"));
        let mut b = Schema::builder();
        let h = b.add_u64_field("key_hash", INDEXED | FAST);
        let legacy = KeyField::Hash64(h);
        assert_eq!(
            legacy.id(Section::File, "/etc/passwd"),
            u128::from(xxh3_64(b"file\0/etc/passwd"))
        );
    }

    #[test]
    fn key_maps_hash_both_halves_of_an_id() {
        use std::hash::BuildHasher;
        let seed = KeySeed::default();
        for shift in [0, 64] {
            let hashes: std::collections::HashSet<u64> = (0..10_000u128)
                .map(|i| seed.hash_one(i << shift ^ 7 << 70))
                .collect();
            assert!(hashes.len() > 9_990, "shift {shift}: {}", hashes.len());
        }
    }
}
