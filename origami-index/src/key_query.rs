//! [`KeyIdQuery`]: the versions of a set of 128-bit key ids, found by the indexed low half
//! and kept only when the high half (a fast column) matches too.

use std::collections::HashSet;
use std::sync::Arc;

use tantivy::columnar::Column;
use tantivy::query::{EnableScoring, Explanation, Query, Scorer, TermSetQuery, Weight};
use tantivy::{DocId, DocSet, Score, SegmentReader, TantivyError, Term, TERMINATED};

use crate::schema::{KeyField, KeyId};

/// The versions whose key id is one of a set, exactly: a term-set query over the ids' low
/// halves (`key_hash`), filtered by the whole id read from the fast columns. Two ids that
/// share a low half (a guest can compute such keys: 2^32 tries) are told apart.
#[derive(Clone, Debug)]
pub(crate) struct KeyIdQuery {
    terms: TermSetQuery,
    ids: Arc<HashSet<KeyId>>,
    lo: String,
    hi: String,
}

impl KeyIdQuery {
    /// The query of `ids` over the key fields `key` (which must be [`KeyField::Id128`]).
    pub(crate) fn new(key: KeyField, ids: impl IntoIterator<Item = KeyId>) -> KeyIdQuery {
        let ids: HashSet<KeyId> = ids.into_iter().collect();
        let terms: Vec<Term> = ids.iter().map(|&id| key.term(id)).collect();
        KeyIdQuery {
            terms: TermSetQuery::new(terms),
            ids: Arc::new(ids),
            lo: "key_hash".into(),
            hi: "key_hi".into(),
        }
    }
}

impl Query for KeyIdQuery {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(KeyIdWeight {
            inner: self.terms.weight(enable_scoring)?,
            ids: self.ids.clone(),
            lo: self.lo.clone(),
            hi: self.hi.clone(),
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.terms.query_terms(visitor);
    }
}

struct KeyIdWeight {
    inner: Box<dyn Weight>,
    ids: Arc<HashSet<KeyId>>,
    lo: String,
    hi: String,
}

impl KeyIdWeight {
    fn key_scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<KeyIdScorer> {
        let ff = reader.fast_fields();
        let mut s = KeyIdScorer {
            inner: self.inner.scorer(reader, boost)?,
            lo: ff.u64(&self.lo)?,
            hi: ff.u64(&self.hi)?,
            ids: self.ids.clone(),
        };
        s.settle();
        Ok(s)
    }
}

impl Weight for KeyIdWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(self.key_scorer(reader, boost)?))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut s = self.key_scorer(reader, 1.0)?;
        if s.seek(doc) != doc {
            return Err(TantivyError::InvalidArgument(format!(
                "document #{doc} has none of the key ids"
            )));
        }
        Ok(Explanation::new("key id", s.score()))
    }
}

struct KeyIdScorer {
    inner: Box<dyn Scorer>,
    lo: Column<u64>,
    hi: Column<u64>,
    ids: Arc<HashSet<KeyId>>,
}

impl KeyIdScorer {
    fn matches(&self, doc: DocId) -> bool {
        match (self.lo.first(doc), self.hi.first(doc)) {
            (Some(lo), Some(hi)) => self
                .ids
                .contains(&(KeyId::from(hi) << 64 | KeyId::from(lo))),
            _ => false,
        }
    }

    /// Moves on from the inner scorer's document to the first one whose whole id matches.
    fn settle(&mut self) -> DocId {
        let mut doc = self.inner.doc();
        while doc != TERMINATED && !self.matches(doc) {
            doc = self.inner.advance();
        }
        doc
    }
}

impl DocSet for KeyIdScorer {
    fn advance(&mut self) -> DocId {
        self.inner.advance();
        self.settle()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.inner.seek(target);
        self.settle()
    }

    fn doc(&self) -> DocId {
        self.inner.doc()
    }

    fn size_hint(&self) -> u32 {
        self.inner.size_hint()
    }
}

impl Scorer for KeyIdScorer {
    fn score(&mut self) -> Score {
        self.inner.score()
    }
}
