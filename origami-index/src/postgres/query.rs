//! From a parsed query to SQL: a `WHERE` condition and a score expression, with every
//! value the user typed sent as a bound parameter (`$n`); the SQL text itself is made only
//! of constant fragments and parameter numbers, so no query can break out of it.
//!
//! The semantics follow the tantivy compiler (`crate::compile`) clause for clause: a bare
//! word is a whole token of the text (`tsv @@ 'w'`), a whole `exact` value or a whole path;
//! several words are a phrase (`'a' <-> 'b'`, over the same token positions as tantivy's);
//! wildcards match whole tokens (`LIKE`, `*` -> `%`, `?` -> `_`); fields are equalities on
//! the same values tantivy indexes as `STRING` terms.
//!
//! Ranking differs: tantivy scores words by BM25 (term frequency, inverse document
//! frequency, field length); here a matched clause scores its boost alone (text 1, exact
//! value or path 2, field 3), summed over the clauses that match. The kind and recency
//! weights and the machine score are the same, so machines rank alike when queries are
//! selective; among items that match the same clauses tantivy prefers rarer terms and
//! shorter texts, which this does not see.

use ::postgres::types::ToSql;
use origami_frame::Section;
use time::OffsetDateTime;

use crate::query::{FieldName, Node, QueryError};
use crate::schema::{to_ns, KeyField};
use crate::snippet::SnippetTerms;
use crate::tokenizer::query_words;
use crate::Result;

use super::ingest::{key_bytes, no_nul, ns_sql};
use super::schema::OPEN_SQL;

/// A parameter of a compiled query.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// Compiled SQL fragments and their parameters.
#[derive(Default)]
pub(crate) struct SqlQuery {
    pub(crate) params: Vec<Param>,
}

/// A condition and its score expression (0 when the condition does not hold).
pub(crate) struct Clause {
    pub(crate) cond: String,
    pub(crate) score: String,
}

/// A tsquery lexeme, quoted for tsquery's input syntax (the whole tsquery is then a bound
/// parameter, cast with `::text::tsquery`).
fn ts_lexeme(w: &str) -> String {
    format!("'{}'", w.replace('\\', "\\\\").replace('\'', "''"))
}

/// A `*`/`?` glob as a `LIKE` pattern (backslash escapes).
pub(crate) fn glob_to_like(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A literal string as a `LIKE` pattern.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn when(cond: &str, boost: f32) -> String {
    format!("(CASE WHEN {cond} THEN {boost:.1} ELSE 0 END)")
}

impl SqlQuery {
    /// Binds a parameter; returns its placeholder.
    pub(crate) fn bind<T: ToSql + Sync + Send + 'static>(&mut self, v: T) -> String {
        self.params.push(Box::new(v));
        format!("${}", self.params.len())
    }

    /// The parameters as `query` takes them.
    pub(crate) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }

    pub(crate) fn compile(
        &mut self,
        key: KeyField,
        node: &Node,
        terms: &mut SnippetTerms,
        negated: bool,
    ) -> Result<Clause> {
        Ok(match node {
            Node::Word { text, column } => {
                if text.contains(['*', '?']) {
                    let glob = text.to_lowercase();
                    if !negated {
                        terms.globs.push(glob.clone());
                    }
                    let p = self.bind(no_nul(&glob_to_like(&glob)));
                    let in_text = format!(
                        "EXISTS (SELECT 1 FROM unnest(tsvector_to_array(tsv)) AS t(x) WHERE x LIKE {p})"
                    );
                    let in_exact =
                        format!("EXISTS (SELECT 1 FROM unnest(exact) AS e(x) WHERE x LIKE {p})");
                    Clause {
                        cond: format!("({in_text} OR {in_exact})"),
                        score: format!("({} + {})", when(&in_text, 1.0), when(&in_exact, 2.0)),
                    }
                } else {
                    self.words(text, *column, terms, negated)?
                }
            }
            Node::Phrase { text, column } => self.words(text, *column, terms, negated)?,
            Node::Field {
                field,
                value,
                quoted,
                column,
            } => self.field(key, *field, value, *quoted, *column, terms, negated)?,
            Node::Not(inner) => {
                let c = self.compile(key, inner, terms, !negated)?;
                Clause {
                    cond: format!("(NOT {})", c.cond),
                    score: "0".into(),
                }
            }
            Node::And(children) => {
                let mut conds = Vec::new();
                let mut scores = Vec::new();
                for c in children {
                    let cl = self.compile(key, c, terms, negated)?;
                    conds.push(cl.cond);
                    scores.push(cl.score);
                }
                Clause {
                    cond: format!("({})", conds.join(" AND ")),
                    score: format!("({})", scores.join(" + ")),
                }
            }
            Node::Or(children) => {
                let mut conds = Vec::new();
                let mut scores = Vec::new();
                for c in children {
                    let cl = self.compile(key, c, terms, negated)?;
                    conds.push(cl.cond);
                    scores.push(cl.score);
                }
                Clause {
                    cond: format!("({})", conds.join(" OR ")),
                    score: format!("({})", scores.join(" + ")),
                }
            }
        })
    }

    fn words(
        &mut self,
        text: &str,
        column: usize,
        terms: &mut SnippetTerms,
        negated: bool,
    ) -> Result<Clause> {
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
            [w] => {
                let q = self.bind(no_nul(&ts_lexeme(w)));
                let a = self.bind(vec![no_nul(w)]);
                let t = format!("tsv @@ {q}::text::tsquery");
                let e = format!("exact @> {a}::text[]");
                let p = format!("paths @> {a}::text[]");
                Ok(Clause {
                    cond: format!("({t} OR {e} OR {p})"),
                    score: format!(
                        "({} + {} + {})",
                        when(&t, 1.0),
                        when(&e, 2.0),
                        when(&p, 2.0)
                    ),
                })
            }
            many => {
                let phrase: Vec<String> = many.iter().map(|w| ts_lexeme(w)).collect();
                let q = self.bind(no_nul(&phrase.join(" <-> ")));
                let t = format!("tsv @@ {q}::text::tsquery");
                Ok(Clause {
                    score: when(&t, 1.0),
                    cond: t,
                })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn field(
        &mut self,
        key: KeyField,
        field: FieldName,
        value: &str,
        quoted: bool,
        column: usize,
        terms: &mut SnippetTerms,
        negated: bool,
    ) -> Result<Clause> {
        let wild = !quoted && value.contains(['*', '?']);
        let raw_case = matches!(field, FieldName::System | FieldName::Key);
        let v = if raw_case {
            value.to_string()
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
        if field == FieldName::Key {
            if wild {
                return Err(QueryError {
                    column,
                    message: "`key:` takes an exact key, without wildcards".into(),
                }
                .into());
            }
            let ids: Vec<Vec<u8>> = Section::ALL
                .iter()
                .map(|s| key_bytes(key.id(*s, &v)))
                .collect();
            let p = self.bind(ids);
            let cond = format!("key_id = ANY({p}::bytea[])");
            return Ok(Clause {
                score: when(&cond, 3.0),
                cond,
            });
        }
        let v = no_nul(&v);
        // Scalar columns and array columns.
        let (scalars, arrays): (&[&str], &[&str]) = match field {
            FieldName::Host => (&["host", "system"], &[]),
            FieldName::System => (&["system"], &[]),
            FieldName::Type => (&["kind"], &[]),
            FieldName::Os => (&["os"], &[]),
            FieldName::Pkg => (&["pkg"], &[]),
            FieldName::Name => (&[], &["names"]),
            FieldName::Path => (&[], &["paths"]),
            FieldName::Port => (&[], &["ports"]),
            FieldName::User => (&[], &["users"]),
            FieldName::Key => (&[], &[]),
        };
        let mut alts = Vec::new();
        if wild || field == FieldName::Os {
            let like = if wild {
                glob_to_like(&v)
            } else {
                like_escape(&v)
            };
            let p = self.bind(like.clone());
            // `os:debian` matches `debian 12`.
            let p2 = (field == FieldName::Os).then(|| self.bind(format!("{like} %")));
            for c in scalars {
                let mut e = format!("coalesce({c} LIKE {p}, false)");
                if let Some(p2) = &p2 {
                    e = format!("({e} OR {c} LIKE {p2})");
                }
                alts.push(e);
            }
            for c in arrays {
                alts.push(format!(
                    "EXISTS (SELECT 1 FROM unnest({c}) AS a(x) WHERE x LIKE {p})"
                ));
            }
        } else {
            if !scalars.is_empty() {
                let p = self.bind(v.clone());
                for c in scalars {
                    alts.push(format!("coalesce({c} = {p}, false)"));
                }
            }
            if !arrays.is_empty() {
                let p = self.bind(vec![v.clone()]);
                for c in arrays {
                    alts.push(format!("{c} @> {p}::text[]"));
                }
            }
        }
        let score: Vec<String> = alts.iter().map(|a| when(a, 3.0)).collect();
        Ok(Clause {
            cond: format!("({})", alts.join(" OR ")),
            score: format!("({})", score.join(" + ")),
        })
    }

    /// The time scope, as in [`crate::compile::Compiler::time_filter`].
    pub(crate) fn time_filter(
        &mut self,
        as_of: Option<OffsetDateTime>,
        changed: Option<time::Duration>,
        reference: OffsetDateTime,
    ) -> String {
        match (as_of, changed) {
            (None, None) => {
                let p = self.bind(OPEN_SQL);
                format!("valid_to = {p}")
            }
            (Some(at), None) => {
                let p = self.bind(ns_sql(to_ns(at)));
                format!("(valid_from <= {p} AND valid_to > {p})")
            }
            (_, Some(d)) => {
                let end = self.bind(ns_sql(to_ns(reference)));
                let start = self.bind(ns_sql(to_ns(reference - d)));
                format!(
                    "((valid_from BETWEEN {start} AND {end} AND valid_to > {end} AND NOT first) \
                     OR (valid_to BETWEEN {start} AND {end}))"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_like_metacharacters() {
        assert_eq!(glob_to_like("web-*"), "web-%");
        assert_eq!(glob_to_like("10.0.0.?"), "10.0.0._");
        assert_eq!(glob_to_like("a_b%c\\*"), "a\\_b\\%c\\\\%");
        assert_eq!(ts_lexeme("it's\\"), "'it''s\\\\'");
    }
}
