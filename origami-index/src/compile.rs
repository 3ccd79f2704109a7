//! From a parsed query to a tantivy query: fields, wildcards, phrases, negation and the
//! time scope (latest state, `as_of:`, `changed:`).

use std::ops::Bound;

use origami_frame::Section;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, Occur, PhraseQuery, Query, RangeQuery,
    RegexQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::Term;
use time::OffsetDateTime;

use crate::query::{FieldName, Node, QueryError};
use crate::schema::{to_ns, Fields, KeyField, OPEN};
use crate::snippet::SnippetTerms;
use crate::tokenizer::query_words;
use crate::Result;

/// Compiles queries against one index's fields.
pub(crate) struct Compiler<'f> {
    pub(crate) f: &'f Fields,
}

impl Compiler<'_> {
    pub(crate) fn compile(
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
                    // Scored by the indexed term (as any field match), and exact: the
                    // whole key id must match too.
                    let ids: Vec<_> = Section::ALL.iter().map(|s| f.key.id(*s, &v)).collect();
                    let mut alts: Vec<(Occur, Box<dyn Query>)> = ids
                        .iter()
                        .map(|&id| {
                            (
                                Occur::Should,
                                Box::new(TermQuery::new(f.key.term(id), IndexRecordOption::Basic))
                                    as Box<dyn Query>,
                            )
                        })
                        .collect();
                    if let KeyField::Id128 { .. } = f.key {
                        let exact = ConstScoreQuery::new(f.key.any_of(ids), 0.0);
                        alts = vec![
                            (Occur::Must, Box::new(BooleanQuery::new(alts))),
                            (Occur::Must, Box::new(exact)),
                        ];
                    }
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
    pub(crate) fn time_filter(
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
pub(crate) fn glob_to_regex(glob: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes() {
        assert_eq!(glob_to_regex("web-*"), "web\\-.*");
        assert_eq!(glob_to_regex("10.0.0.?"), "10\\.0\\.0\\..");
    }
}
