//! Ingest: the rows of a frame's new item versions, written with `COPY ... (FORMAT binary)`.
//!
//! The writer's diff is the tantivy backend's own ([`crate::diff::diff_frame`]): the same
//! key ids, content hashes, section digests and item documents, so both backends write
//! exactly the same versions. Each new version's document is turned into a row here; its
//! text is tokenised by origami's tokenizer and sent as a binary `tsvector`.

use std::error::Error as StdError;

use ::postgres::binary_copy::BinaryCopyInWriter;
use ::postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use ::postgres::Client;
use tantivy::schema::Value;
use tantivy::tokenizer::{TokenStream, Tokenizer};
use tantivy::TantivyDocument;

use crate::schema::{Fields, KeyField, KeyId, OPEN};
use crate::tokenizer::OrigamiTokenizer;
use crate::Result;

use super::schema::OPEN_SQL;

/// Highest position a tsvector holds (later positions are stored as this one).
const MAX_POS: u16 = 16_383;
/// Most positions a tsvector keeps per lexeme.
const MAX_POSITIONS: usize = 256;
/// Bytes of lexemes a tsvector holds at most (PostgreSQL's limit is 1 MiB).
const MAX_LEXEME_BYTES: usize = 1_000_000;

/// A `tsvector` in PostgreSQL's binary format (lexemes sorted, with positions).
#[derive(Debug, Clone)]
pub(crate) struct TsVector(Vec<u8>);

impl TsVector {
    /// The tsvector of `text` tokenised by origami's tokenizer: each token a lexeme at
    /// its word's position (1-based; parts of a word share its position).
    pub(crate) fn of(text: &str) -> TsVector {
        let mut tok = OrigamiTokenizer::default();
        let mut stream = tok.token_stream(text);
        let mut pairs: Vec<(String, u16)> = Vec::new();
        while stream.advance() {
            let t = stream.token();
            let pos = (t.position + 1).min(usize::from(MAX_POS)) as u16;
            if t.text.is_empty() || t.text.len() > 2046 || t.text.contains('\0') {
                continue;
            }
            pairs.push((t.text.clone(), pos));
        }
        pairs.sort();
        pairs.dedup();
        let mut lexemes: Vec<(&str, Vec<u16>)> = Vec::new();
        for (s, p) in &pairs {
            match lexemes.last_mut() {
                Some((l, ps)) if *l == s.as_str() => {
                    if ps.len() < MAX_POSITIONS {
                        ps.push(*p)
                    }
                }
                _ => lexemes.push((s.as_str(), vec![*p])),
            }
        }
        let mut total = 0usize;
        lexemes.retain(|(l, _)| {
            total += l.len();
            total <= MAX_LEXEME_BYTES
        });
        let mut out = Vec::with_capacity(4 + pairs.len() * 12);
        out.extend_from_slice(&(lexemes.len() as i32).to_be_bytes());
        for (l, ps) in &lexemes {
            out.extend_from_slice(str::as_bytes(l));
            out.push(0);
            out.extend_from_slice(&(ps.len() as u16).to_be_bytes());
            for p in ps {
                out.extend_from_slice(&p.to_be_bytes());
            }
        }
        TsVector(out)
    }
}

impl ToSql for TsVector {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut ::postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::TS_VECTOR
    }
    to_sql_checked!();
}

/// A key id as the table stores it: 16 big-endian bytes.
pub(crate) fn key_bytes(id: KeyId) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

/// An instant of the tantivy backend (u64 ns, `OPEN` for current) as SQL's bigint.
pub(crate) fn ns_sql(ns: u64) -> i64 {
    if ns == OPEN {
        OPEN_SQL
    } else {
        ns.min(OPEN_SQL as u64 - 1) as i64
    }
}

/// An instant of SQL's bigint back to the tantivy backend's u64.
pub(crate) fn ns_of_sql(v: i64) -> u64 {
    if v == OPEN_SQL {
        OPEN
    } else {
        v.max(0) as u64
    }
}

/// One row of `origami_items`.
pub(crate) struct Row {
    system: String,
    key_id: Vec<u8>,
    kind: String,
    host: String,
    os: String,
    content_hash: i64,
    valid_from: i64,
    valid_to: i64,
    first: bool,
    names: Vec<String>,
    paths: Vec<String>,
    ports: Vec<String>,
    pkg: Option<String>,
    users: Vec<String>,
    exact: Vec<String>,
    tsv: TsVector,
    item: String,
}

/// The row of a version document that [`crate::schema::build_doc`] made.
pub(crate) fn row_of(f: &Fields, doc: &TantivyDocument) -> Row {
    let strs = |field| -> Vec<String> {
        doc.get_all(field)
            .filter_map(|v| v.as_str().map(no_nul))
            .collect()
    };
    let one = |field| strs(field).into_iter().next().unwrap_or_default();
    let u = |field| doc.get_first(field).and_then(|v| v.as_u64());
    let key: KeyId = match f.key {
        KeyField::Id128 { lo, hi } => {
            (u128::from(u(hi).unwrap_or(0)) << 64) | u128::from(u(lo).unwrap_or(0))
        }
        KeyField::Hash64(lo) => u128::from(u(lo).unwrap_or(0)),
    };
    let text = one(f.text);
    Row {
        system: one(f.system),
        key_id: key_bytes(key),
        kind: one(f.kind),
        host: one(f.host),
        os: one(f.os),
        content_hash: u(f.content_hash).unwrap_or(0) as i64,
        valid_from: ns_sql(u(f.valid_from).unwrap_or(0)),
        valid_to: ns_sql(u(f.valid_to).unwrap_or(OPEN)),
        // `first = 0` is present only on versions that did not come with a first frame.
        first: u(f.first).is_none(),
        names: strs(f.name),
        paths: strs(f.path),
        ports: strs(f.port),
        pkg: strs(f.pkg).into_iter().next(),
        users: strs(f.user),
        exact: strs(f.exact),
        tsv: TsVector::of(&text),
        item: one(f.item),
    }
}

/// `s` with NUL characters (which PostgreSQL's text cannot hold) replaced by U+FFFD; the
/// query side does the same to the values it looks for.
pub(crate) fn no_nul(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}")
    } else {
        s.to_string()
    }
}

/// The columns COPY writes, in order.
const COPY_SQL: &str = "COPY origami_items (system, key_id, kind, host, os, content_hash, \
     valid_from, valid_to, first, names, paths, ports, pkg, users, exact, tsv, item) \
     FROM STDIN (FORMAT binary)";

/// Writes `rows` with one binary COPY (inside the session's open transaction).
pub(crate) fn copy_rows(tx: &mut Client, rows: &[Row]) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let types = [
        Type::TEXT,
        Type::BYTEA,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::BOOL,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TS_VECTOR,
        Type::TEXT,
    ];
    let sink = tx.copy_in(COPY_SQL)?;
    let mut w = BinaryCopyInWriter::new(sink, &types);
    for r in rows {
        w.write(&[
            &r.system,
            &r.key_id,
            &r.kind,
            &r.host,
            &r.os,
            &r.content_hash,
            &r.valid_from,
            &r.valid_to,
            &r.first,
            &r.names,
            &r.paths,
            &r.ports,
            &r.pkg,
            &r.users,
            &r.exact,
            &r.tsv,
            &r.item,
        ])?;
    }
    Ok(w.finish()?)
}
