//! The query language: Google-like text parsed with `nom` into an AST.
//!
//! ```text
//! query   := group (WS group)*               implicit AND; `AND` is accepted and ignored
//! group   := unary (WS "OR" WS unary)*       OR binds tighter than AND, as on the Web
//! unary   := "-"? primary                    `-x` excludes
//! primary := "(" query ")" | FIELD ":" value | "\"" phrase "\"" | word
//! ```
//!
//! Fields: `host:`, `system:`, `type:`, `name:`, `path:`, `port:`, `pkg:`, `user:`, `os:`,
//! `key:`, and the time fields `as_of:` (RFC 3339; seconds and offset may be shortened as in
//! `2026-11-20T10:00Z`, or a bare date) and `changed:` (`90s`, `30m`, `24h`, `7d`, `2w`). Values
//! may hold `*` and `?` wildcards. Time fields apply to the whole query, so they must stand at
//! its top level, outside `OR`, `-` and parentheses.
//!
//! Every malformed query is a [`QueryError`] carrying the 1-based column (in characters) where
//! the problem is; the parser never panics and never turns a mistake into an empty result.
//! Input is bounded ([`MAX_QUERY_LEN`], [`MAX_DEPTH`]) so a hostile query cannot exhaust the
//! stack.

use std::fmt;

use nom::bytes::complete::take_while1;
use nom::character::complete::{char as nchar, multispace0, multispace1};
use nom::error::{ErrorKind, ParseError};
use nom::IResult;
use serde::Serialize;
use time::OffsetDateTime;

use origami_frame::Section;

/// Longest accepted query, in bytes.
pub const MAX_QUERY_LEN: usize = 4096;
/// Deepest accepted nesting of parentheses and negations.
pub const MAX_DEPTH: usize = 32;

/// A malformed query: where (1-based column, in characters) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("query error at column {column}: {message}")]
pub struct QueryError {
    /// 1-based column, counted in characters, of the offending input.
    pub column: usize,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl QueryError {
    /// The query with a caret under the column, then the message, for a terminal.
    pub fn render(&self, query: &str) -> String {
        let pad = " ".repeat(self.column.saturating_sub(1));
        format!("{query}\n{pad}^ {}", self.message)
    }
}

/// A field a `field:value` clause can filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldName {
    /// `host:` the host name (or the system id).
    Host,
    /// `system:` the stable system id.
    System,
    /// `type:` the item kind (section).
    Type,
    /// `name:` the item's name (process, package, user, module, file basename...).
    Name,
    /// `path:` a path (file, config, executable, home).
    Path,
    /// `port:` a connection's local or remote port.
    Port,
    /// `pkg:` an installed package's name.
    Pkg,
    /// `user:` a user name (account, process owner, file owner).
    User,
    /// `os:` the operating system (`debian`, `debian 12`).
    Os,
    /// `key:` the item's key, exactly.
    Key,
}

impl FieldName {
    /// Every filter field, with its query name.
    pub const ALL: [(&'static str, FieldName); 10] = [
        ("host", FieldName::Host),
        ("system", FieldName::System),
        ("type", FieldName::Type),
        ("name", FieldName::Name),
        ("path", FieldName::Path),
        ("port", FieldName::Port),
        ("pkg", FieldName::Pkg),
        ("user", FieldName::User),
        ("os", FieldName::Os),
        ("key", FieldName::Key),
    ];
}

/// A node of the query AST.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    /// A bare word: matches the whole token anywhere (`*`/`?` make it a wildcard).
    Word {
        /// The word as typed.
        text: String,
        /// 1-based column.
        column: usize,
    },
    /// A `"quoted phrase"`: its words in order.
    Phrase {
        /// The text between the quotes.
        text: String,
        /// 1-based column of the opening quote.
        column: usize,
    },
    /// `field:value`.
    Field {
        /// The field.
        field: FieldName,
        /// The value (wildcards allowed unless quoted).
        value: String,
        /// True when the value was quoted: wildcards are then literal.
        quoted: bool,
        /// 1-based column of the value.
        column: usize,
    },
    /// `-x`: documents matching `x` are excluded.
    Not(Box<Node>),
    /// All must match.
    And(Vec<Node>),
    /// At least one must match.
    Or(Vec<Node>),
}

/// A parsed query: the search tree and the time scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParsedQuery {
    /// What to match; `None` when the query held only time fields (match everything).
    pub root: Option<Node>,
    /// `as_of:`: see the state as it was at that instant instead of the latest.
    pub as_of: Option<OffsetDateTime>,
    /// `changed:`: only item versions that began or ended within this long before the
    /// reference time.
    pub changed: Option<time::Duration>,
}

/// The parser's error while inside nom: the unparsed rest (to compute the column) and a
/// message.
#[derive(Debug)]
struct PErr<'a> {
    rest: &'a str,
    message: String,
}

impl<'a> ParseError<&'a str> for PErr<'a> {
    fn from_error_kind(input: &'a str, kind: ErrorKind) -> Self {
        PErr {
            rest: input,
            message: format!("unexpected input ({kind:?})"),
        }
    }
    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }
}

type Res<'a, T> = IResult<&'a str, T, PErr<'a>>;

fn fail<T>(rest: &str, message: impl Into<String>) -> Res<'_, T> {
    Err(nom::Err::Failure(PErr {
        rest,
        message: message.into(),
    }))
}

/// Parses a query; see the module documentation for the language.
pub fn parse(query: &str) -> Result<ParsedQuery, QueryError> {
    if query.len() > MAX_QUERY_LEN {
        return Err(QueryError {
            column: MAX_QUERY_LEN.min(query.chars().count()),
            message: format!("query longer than {MAX_QUERY_LEN} bytes"),
        });
    }
    let p = Parser { src: query };
    let (rest, groups) = match p.conjunction(query, 0) {
        Ok(v) => v,
        Err(nom::Err::Error(e)) | Err(nom::Err::Failure(e)) => {
            return Err(p.error_at(e.rest, e.message))
        }
        Err(nom::Err::Incomplete(_)) => return Err(p.error_at("", "incomplete query".to_string())),
    };
    if !rest.is_empty() {
        let msg = if rest.starts_with(')') {
            "unbalanced `)`: no `(` to close"
        } else {
            "unexpected input"
        };
        return Err(p.error_at(rest, msg.to_string()));
    }
    if groups.is_empty() {
        return Err(QueryError {
            column: 1,
            message: "empty query: type words, \"phrases\" or field:value filters".into(),
        });
    }
    p.finish(groups)
}

/// A parse of one query text; `src` is kept to turn positions into columns.
struct Parser<'s> {
    src: &'s str,
}

/// A top-level item before time fields are taken out.
enum Top {
    Node(Node),
    AsOf(OffsetDateTime, usize),
    Changed(time::Duration, usize),
}

impl<'s> Parser<'s> {
    fn column_of(&self, rest: &str) -> usize {
        let off = self.src.len().saturating_sub(rest.len());
        self.src
            .get(..off)
            .map_or(off, |s| s.chars().count())
            .saturating_add(1)
    }

    fn error_at(&self, rest: &str, message: String) -> QueryError {
        QueryError {
            column: self.column_of(rest),
            message,
        }
    }

    /// `group (WS group)*` up to the end or a `)`.
    fn conjunction<'a>(&self, input: &'a str, depth: usize) -> Res<'a, Vec<Top>> {
        let mut out = Vec::new();
        let (mut i, _) = multispace0(input)?;
        loop {
            if i.is_empty() || i.starts_with(')') {
                return Ok((i, out));
            }
            if let Some(after) = keyword(i, "AND") {
                if out.is_empty() {
                    return fail(i, "`AND` needs a term before it");
                }
                let (after, _) = multispace0(after)?;
                if after.is_empty() || after.starts_with(')') {
                    return fail(i, "`AND` needs a term after it");
                }
                i = after;
                continue;
            }
            if keyword(i, "OR").is_some() {
                return fail(i, "`OR` needs a term before it");
            }
            let (rest, g) = self.group(i, depth)?;
            out.push(g);
            let (rest, _) = multispace0(rest)?;
            i = rest;
        }
    }

    /// `unary (WS OR WS unary)*`.
    fn group<'a>(&self, input: &'a str, depth: usize) -> Res<'a, Top> {
        let (mut i, first) = self.unary(input, depth)?;
        let mut alts = vec![first];
        let mut starts: Vec<&'a str> = vec![input];
        while let Ok((after_ws, _)) = multispace1::<_, PErr>(i) {
            let Some(after_or) = keyword(after_ws, "OR") else {
                break;
            };
            let (after, _) = multispace0(after_or)?;
            if after.is_empty() || after.starts_with(')') || keyword(after, "OR").is_some() {
                return fail(after_ws, "`OR` needs a term after it");
            }
            starts.push(after);
            let (rest, t) = self.unary(after, depth)?;
            alts.push(t);
            i = rest;
        }
        if alts.len() == 1 {
            return Ok((i, alts.remove(0)));
        }
        let mut nodes = Vec::with_capacity(alts.len());
        for (t, at) in alts.into_iter().zip(starts) {
            match t {
                Top::Node(n) => nodes.push(n),
                Top::AsOf(..) | Top::Changed(..) => {
                    return Err(nom::Err::Failure(PErr {
                        rest: at,
                        message: "`as_of:` and `changed:` apply to the whole query; they cannot be an `OR` alternative".into(),
                    }))
                }
            }
        }
        Ok((i, Top::Node(Node::Or(nodes))))
    }

    /// `-`? primary.
    fn unary<'a>(&self, input: &'a str, depth: usize) -> Res<'a, Top> {
        if depth > MAX_DEPTH {
            return fail(input, format!("nested deeper than {MAX_DEPTH} levels"));
        }
        if let Some(rest) = input.strip_prefix('-') {
            if rest.is_empty() || rest.starts_with(char::is_whitespace) || rest.starts_with(')') {
                return fail(
                    input,
                    "`-` must be followed by the term to exclude, as in `-type:file`",
                );
            }
            if rest.starts_with('-') {
                return fail(rest, "`--`: exclude a term once");
            }
            let (rest2, t) = self.primary(rest, depth + 1)?;
            return match t {
                Top::Node(n) => Ok((rest2, Top::Node(Node::Not(Box::new(n))))),
                _ => fail(rest, "`as_of:` and `changed:` cannot be excluded"),
            };
        }
        self.primary(input, depth)
    }

    fn primary<'a>(&self, input: &'a str, depth: usize) -> Res<'a, Top> {
        if let Some(inner) = input.strip_prefix('(') {
            let (rest, items) = self.conjunction(inner, depth + 1)?;
            let Ok((rest, _)) = nchar::<_, PErr>(')')(rest) else {
                return fail(input, "unbalanced `(`: no `)` closes it");
            };
            let mut nodes = Vec::new();
            for t in items {
                match t {
                    Top::Node(n) => nodes.push(n),
                    _ => {
                        return fail(
                            inner,
                            "`as_of:` and `changed:` must stand outside parentheses",
                        )
                    }
                }
            }
            return match nodes.len() {
                0 => fail(input, "empty parentheses"),
                1 => Ok((rest, Top::Node(nodes.remove(0)))),
                _ => Ok((rest, Top::Node(Node::And(nodes)))),
            };
        }
        if input.starts_with('"') {
            let (rest, text) = phrase(input)?;
            if crate::tokenizer::query_words(text).is_empty() {
                return fail(input, "the phrase holds nothing searchable");
            }
            return Ok((
                rest,
                Top::Node(Node::Phrase {
                    text: text.to_string(),
                    column: self.column_of(input),
                }),
            ));
        }
        // `name:value` when the word starts with letters and a colon.
        let letters: usize = input
            .bytes()
            .take_while(|b| b.is_ascii_alphabetic() || *b == b'_')
            .count();
        if letters > 0 && input.as_bytes().get(letters) == Some(&b':') {
            let name = &input[..letters];
            let after = &input[letters + 1..];
            if !after.starts_with("//") {
                return self.field(input, name, after);
            }
        }
        let (rest, w) = word(input)?;
        self.check_word(input, w)?;
        Ok((
            rest,
            Top::Node(Node::Word {
                text: w.to_string(),
                column: self.column_of(input),
            }),
        ))
    }

    fn check_word<'a>(&self, at: &'a str, w: &str) -> Res<'a, ()> {
        let bare: String = w.chars().filter(|c| *c != '*' && *c != '?').collect();
        if crate::tokenizer::query_words(&bare).is_empty() {
            return fail(
                at,
                format!("`{w}` holds nothing searchable (letters, digits or . : / - _ @ + ~ %)"),
            );
        }
        if w.chars().all(|c| c == '*' || c == '?') {
            return fail(at, "a wildcard needs some text around it");
        }
        Ok((at, ()))
    }

    fn field<'a>(&self, input: &'a str, name: &str, after: &'a str) -> Res<'a, Top> {
        let lname = name.to_ascii_lowercase();
        let value_col = self.column_of(after);
        let (rest, value, quoted) = if after.starts_with('"') {
            let (rest, v) = phrase(after)?;
            (rest, v, true)
        } else {
            match word(after) {
                Ok((rest, v)) => (rest, v, false),
                Err(_) => return fail(after, format!("`{name}:` needs a value")),
            }
        };
        if value.trim().is_empty() {
            return fail(after, format!("`{name}:` needs a value"));
        }
        match lname.as_str() {
            "as_of" | "asof" => {
                let Some(t) = parse_instant(value) else {
                    return fail(
                        after,
                        format!("`{value}` is not a time: use RFC 3339, e.g. 2026-11-20T10:00Z"),
                    );
                };
                return Ok((rest, Top::AsOf(t, value_col)));
            }
            "changed" => {
                let Some(d) = parse_duration(value) else {
                    return fail(
                        after,
                        format!("`{value}` is not a duration: use e.g. 90s, 30m, 24h, 7d, 2w"),
                    );
                };
                return Ok((rest, Top::Changed(d, value_col)));
            }
            _ => {}
        }
        let Some(&(_, field)) = FieldName::ALL.iter().find(|(n, _)| *n == lname) else {
            let known: Vec<&str> = FieldName::ALL.iter().map(|(n, _)| *n).collect();
            return fail(
                input,
                format!(
                    "unknown field `{name}:`; fields are {}, as_of, changed (quote the text to search for it literally)",
                    known.join(", ")
                ),
            );
        };
        let wild = !quoted && value.contains(['*', '?']);
        match field {
            FieldName::Type
                if !wild && Section::from_name(&value.to_ascii_lowercase()).is_none() =>
            {
                let kinds: Vec<&str> = Section::ALL.iter().map(|s| s.name()).collect();
                return fail(
                    after,
                    format!("unknown type `{value}`; types are {}", kinds.join(", ")),
                );
            }
            FieldName::Port => {
                let ok = if wild {
                    value
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '*' || c == '?')
                } else {
                    value.parse::<u16>().is_ok()
                };
                if !ok {
                    return fail(after, format!("`{value}` is not a port (0-65535)"));
                }
            }
            _ => {}
        }
        if wild && value.chars().all(|c| c == '*' || c == '?') && field != FieldName::Port {
            // `name:*` is "has a name": allowed, it is a real filter.
        }
        Ok((
            rest,
            Top::Node(Node::Field {
                field,
                value: value.to_string(),
                quoted,
                column: value_col,
            }),
        ))
    }

    fn finish(&self, items: Vec<Top>) -> Result<ParsedQuery, QueryError> {
        let mut nodes = Vec::new();
        let mut as_of = None;
        let mut changed = None;
        for t in items {
            match t {
                Top::Node(n) => nodes.push(n),
                Top::AsOf(v, col) => {
                    if as_of.replace(v).is_some() {
                        return Err(QueryError {
                            column: col,
                            message: "`as_of:` given twice".into(),
                        });
                    }
                }
                Top::Changed(v, col) => {
                    if changed.replace(v).is_some() {
                        return Err(QueryError {
                            column: col,
                            message: "`changed:` given twice".into(),
                        });
                    }
                }
            }
        }
        let root = match nodes.len() {
            0 => None,
            1 => nodes.pop(),
            _ => Some(Node::And(nodes)),
        };
        Ok(ParsedQuery {
            root,
            as_of,
            changed,
        })
    }
}

/// `kw` as a whole word at the start of `i` (followed by whitespace, `)` or the end).
fn keyword<'a>(i: &'a str, kw: &str) -> Option<&'a str> {
    let rest = i.strip_prefix(kw)?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace) || rest.starts_with(')'))
        .then_some(rest)
}

/// A bare word: up to whitespace, a quote or a parenthesis.
fn word(i: &str) -> Res<'_, &str> {
    take_while1(|c: char| !c.is_whitespace() && c != '"' && c != '(' && c != ')')(i)
}

/// `"..."`: the text between the quotes (no escapes: a phrase cannot hold a quote).
fn phrase(i: &str) -> Res<'_, &str> {
    let Some(body) = i.strip_prefix('"') else {
        return Err(nom::Err::Error(PErr::from_error_kind(i, ErrorKind::Char)));
    };
    match body.find('"') {
        Some(end) => Ok((&body[end + 1..], &body[..end])),
        None => fail(i, "unterminated `\"`: the phrase has no closing quote"),
    }
}

/// An instant: RFC 3339, or with the seconds left out (`2026-11-20T10:00Z`), or a bare
/// date (midnight UTC).
pub fn parse_instant(s: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    // `YYYY-MM-DDTHH:MM<offset>`: insert `:00`.
    if let Some(tpos) = s.find(['T', 't']) {
        let time_part = &s[tpos + 1..];
        let off_pos = time_part.find(['Z', 'z', '+', '-']);
        if let Some(op) = off_pos {
            if time_part[..op].len() == 5 {
                let fixed = format!("{}:00{}", &s[..tpos + 1 + op], &time_part[op..]);
                if let Ok(t) = OffsetDateTime::parse(&fixed, &Rfc3339) {
                    return Some(t);
                }
            }
        }
        return None;
    }
    if s.len() == 10 {
        return OffsetDateTime::parse(&format!("{s}T00:00:00Z"), &Rfc3339).ok();
    }
    None
}

/// A duration such as `90s`, `30m`, `24h`, `7d`, `2w`.
pub fn parse_duration(s: &str) -> Option<time::Duration> {
    let unit_at = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(unit_at);
    let n: i64 = num.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    Some(time::Duration::seconds(n.checked_mul(secs)?))
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Word { text, .. } => f.write_str(text),
            Node::Phrase { text, .. } => write!(f, "\"{text}\""),
            Node::Field {
                field,
                value,
                quoted,
                ..
            } => {
                let name = FieldName::ALL
                    .iter()
                    .find(|(_, v)| v == field)
                    .map_or("?", |(n, _)| n);
                if *quoted {
                    write!(f, "{name}:\"{value}\"")
                } else {
                    write!(f, "{name}:{value}")
                }
            }
            Node::Not(n) => write!(f, "-{n}"),
            Node::And(v) => {
                f.write_str("(")?;
                for (i, n) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{n}")?;
                }
                f.write_str(")")
            }
            Node::Or(v) => {
                f.write_str("(")?;
                for (i, n) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" OR ")?;
                    }
                    write!(f, "{n}")?;
                }
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(q: &str) -> String {
        parse(q).unwrap().root.unwrap().to_string()
    }

    fn err(q: &str) -> QueryError {
        parse(q).unwrap_err()
    }

    #[test]
    fn words_fields_not_or() {
        assert_eq!(root("10.20.30.40"), "10.20.30.40");
        assert_eq!(root("a b OR c -d"), "(a (b OR c) -d)");
        assert_eq!(root("host:web-* type:process"), "(host:web-* type:process)");
        assert_eq!(
            root("\"Listen 80\" path:\"/a b\""),
            "(\"Listen 80\" path:\"/a b\")"
        );
        assert_eq!(root("(a OR b) AND c"), "((a OR b) c)");
        assert_eq!(
            root("-(type:file OR type:config) x"),
            "(-(type:file OR type:config) x)"
        );
        assert_eq!(root("fe80::1 10.0.0.1:22"), "(fe80::1 10.0.0.1:22)");
        assert_eq!(root("http://x.example/a"), "http://x.example/a");
    }

    #[test]
    fn time_fields() {
        let q = parse("sshd as_of:2026-11-20T10:00Z changed:24h").unwrap();
        assert_eq!(q.as_of.unwrap().unix_timestamp(), 1_795_168_800);
        assert_eq!(q.changed, Some(time::Duration::hours(24)));
        assert_eq!(
            parse("as_of:2026-11-20")
                .unwrap()
                .as_of
                .unwrap()
                .unix_timestamp(),
            1_795_132_800
        );
        assert!(parse("changed:7d").unwrap().root.is_none());
    }

    #[test]
    fn errors_point_at_the_column() {
        assert_eq!(err("a \"b c").column, 3);
        assert_eq!(err("a (b").column, 3);
        assert_eq!(err("a b)").column, 4);
        assert_eq!(err("foo:bar").column, 1);
        assert_eq!(err("x type:proc").column, 8);
        assert_eq!(err("port:http").column, 6);
        assert_eq!(err("host:").column, 6);
        assert_eq!(err("a OR").column, 3);
        assert_eq!(err("OR a").column, 1);
        assert_eq!(err("a - b").column, 3);
        assert_eq!(err("as_of:yesterday").column, 7);
        assert_eq!(err("changed:24x").column, 9);
        assert_eq!(err("a OR as_of:2026-01-01").column, 6);
        assert_eq!(err("-changed:1h").column, 2);
        assert_eq!(err("   ").column, 1);
        assert_eq!(err("*").column, 1);
        assert_eq!(err(",,").column, 1);
        assert_eq!(err("é \"x").column, 3);
        assert!(err(&"(".repeat(100)).message.contains("nested"));
    }

    #[test]
    fn render_points_a_caret() {
        let e = err("pkg:ssl type:nope");
        assert_eq!(e.render("pkg:ssl type:nope"), "pkg:ssl type:nope\n             ^ unknown type `nope`; types are os, file, config, package, user, process, connection, module, mount, kernel_log, service");
    }
}
