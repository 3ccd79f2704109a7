//! Item versions read back: the current versions a frame closes (from the last commit or
//! from the versions written since), rebuilt with their `valid_to`; and the writer's state
//! recovered from the last commit when an index is opened for writing.
//!
//! A current version is (system, key, `valid_to` = open); no unique id is indexed, since a
//! term per document would make the term dictionary as large as the index. One query finds
//! all the versions a frame closes, whatever the number of segments.

use std::collections::HashMap;

use origami_frame::Section;
use tantivy::collector::DocSetCollector;
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{DocAddress, Searcher, TantivyDocument, Term};

use crate::diff::{Current, SystemState, NO_SECTION};
use crate::item_doc::{item_doc_from_json, StoredResolver};
use crate::pending::PendingSystem;
use crate::schema::{build_doc, Ctx, Fields, KeyField, KeyId, Version, FRAME_KIND, OPEN};
use crate::{Error, Result};

/// One stored item version, as much as rebuilding its document needs.
pub(crate) struct StoredVersion<'a> {
    pub(crate) section: Section,
    pub(crate) json: &'a str,
    /// The user name the document shows (see [`StoredResolver`]).
    pub(crate) user: Option<&'a str>,
    /// A connection's process name.
    pub(crate) proc_name: Option<&'a str>,
    pub(crate) host: &'a str,
    pub(crate) os: &'a str,
    pub(crate) content_hash: u64,
    pub(crate) valid_from: u64,
    pub(crate) first: bool,
}

impl StoredVersion<'_> {
    /// The version's document again, closed at `valid_to`.
    fn closed(&self, f: &Fields, system: &str, valid_to: u64) -> Result<TantivyDocument> {
        let corrupt = |message: String| Error::Corrupt {
            system: system.to_string(),
            message,
        };
        let resolver = StoredResolver {
            user: self.user,
            proc_name: self.proc_name,
        };
        let (d, key) = item_doc_from_json(self.section, self.json, &resolver)
            .map_err(|e| corrupt(format!("{} item: {e}", self.section)))?;
        let v = Version {
            section: self.section,
            key: f.key.id(self.section, &key),
            content_hash: self.content_hash,
            valid_from: self.valid_from,
            valid_to,
            first: self.first,
        };
        let ctx = Ctx {
            system,
            host: self.host,
            os: self.os,
        };
        Ok(build_doc(f, &ctx, &v, &d, self.json))
    }
}

/// The query of the current versions of `keys` of `system` (what closing them deletes).
pub(crate) fn current_versions(f: &Fields, system: &str, keys: &[KeyId]) -> Box<dyn Query> {
    let term =
        |t: Term| -> Box<dyn Query> { Box::new(TermQuery::new(t, IndexRecordOption::Basic)) };
    Box::new(BooleanQuery::new(vec![
        (Occur::Must, term(Term::from_field_text(f.system, system))),
        (Occur::Must, term(Term::from_field_u64(f.valid_to, OPEN))),
        (Occur::Must, f.key.any_of(keys.iter().copied())),
    ]))
}

/// The current versions of `keys` of `system`, read back and rebuilt closed at `valid_to`:
/// those written since the last commit from `pending`, the others from the last commit.
pub(crate) fn closed_versions(
    f: &Fields,
    searcher: &Searcher,
    pending: Option<&PendingSystem>,
    system: &str,
    keys: &[KeyId],
    valid_to: u64,
) -> Result<Vec<TantivyDocument>> {
    let mut out = Vec::with_capacity(keys.len());
    let mut committed = Vec::with_capacity(keys.len());
    for &k in keys {
        match pending.and_then(|p| p.version(k)) {
            Some(v) => out.push(v.closed(f, system, valid_to)?),
            None => committed.push(k),
        }
    }
    if committed.is_empty() {
        return Ok(out);
    }
    let mut found: Vec<DocAddress> = searcher
        .search(&current_versions(f, system, &committed), &DocSetCollector)?
        .into_iter()
        .collect();
    found.sort();
    for addr in found {
        let old: TantivyDocument = searcher.doc(addr)?;
        let s = |field| old.get_first(field).and_then(|v| v.as_str());
        let u = |field| old.get_first(field).and_then(|v| v.as_u64());
        let kind = s(f.kind).unwrap_or_default();
        let section = Section::from_name(kind).ok_or_else(|| Error::Corrupt {
            system: system.to_string(),
            message: format!("unknown kind `{kind}`"),
        })?;
        let v = StoredVersion {
            section,
            json: s(f.item).unwrap_or_default(),
            user: s(f.user),
            proc_name: if section == Section::Connection {
                s(f.name)
            } else {
                None
            },
            host: s(f.host).unwrap_or_default(),
            os: s(f.os).unwrap_or_default(),
            // Not stored (a fast column only): a closed version's is never read.
            content_hash: 0,
            valid_from: u(f.valid_from).unwrap_or(0),
            // `first` is 1 in indexes written before it became sparse, missing since.
            first: u(f.first).is_none_or(|v| v == 1),
        };
        out.push(v.closed(f, system, valid_to)?);
    }
    Ok(out)
}

/// The key ids of one segment: the low halves, and the high halves when ids are 128-bit.
struct KeyColumns {
    lo: Column<u64>,
    hi: Option<Column<u64>>,
}

impl KeyColumns {
    fn first(&self, doc: u32) -> Option<KeyId> {
        let lo = KeyId::from(self.lo.first(doc)?);
        match &self.hi {
            Some(hi) => Some(KeyId::from(hi.first(doc)?) << 64 | lo),
            None => Some(lo),
        }
    }
}

/// Rebuilds the writer's per-system state from the committed index's fast columns.
pub(crate) fn recover(f: &Fields, searcher: &Searcher) -> Result<HashMap<String, SystemState>> {
    let mut systems: HashMap<String, SystemState> = HashMap::new();
    for seg in searcher.segment_readers() {
        let ff = seg.fast_fields();
        let (Some(sys), Some(kind)) = (ff.str("system")?, ff.str("kind")?) else {
            continue;
        };
        let valid_to = ff.u64("valid_to")?;
        let valid_from = ff.u64("valid_from")?;
        let key = KeyColumns {
            lo: ff.u64("key_hash")?,
            hi: match f.key {
                KeyField::Id128 { .. } => Some(ff.u64("key_hi")?),
                KeyField::Hash64(_) => None,
            },
        };
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
                if let (Some(k), Some(ch)) = (key.first(doc), content_hash.first(doc)) {
                    state.items.insert(
                        k,
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
