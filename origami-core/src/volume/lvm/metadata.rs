//! LVM2's text metadata format: nested sections `name { ... }` of `key = value` lines, a
//! value being a string (`"..."`, with `\` escapes), an integer, or a flat list `[ ..., ... ]`
//! of those; `#` starts a comment.
//!
//! The parser is iterative over a token stream, bounded in nesting depth ([`MAX_DEPTH`]) and
//! in the number of items ([`MAX_ITEMS`]); its input is bounded by the metadata area. Errors
//! name the line.

/// The deepest nesting of sections accepted (LVM writes 4 levels).
pub const MAX_DEPTH: usize = 16;
/// The most values, sections and list elements accepted in one text.
pub const MAX_ITEMS: usize = 1 << 20;

/// A value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A string, or a number that is not an integer (kept as written).
    Str(String),
    /// A list of integers and strings.
    List(Vec<Value>),
}

/// A section: its `key = value` entries and its subsections, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    /// The entries.
    pub values: Vec<(String, Value)>,
    /// The subsections.
    pub children: Vec<(String, Section)>,
}

impl Section {
    /// The value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The integer value of `key`.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The string value of `key`.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The list value of `key`.
    pub fn list(&self, key: &str) -> Option<&[Value]> {
        match self.get(key)? {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The strings of the list value of `key` (`status = ["READ", "WRITE"]`).
    pub fn flags(&self, key: &str) -> Vec<&str> {
        self.list(key)
            .unwrap_or_default()
            .iter()
            .filter_map(|v| match v {
                Value::Str(s) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The subsection `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    /// The subsections, in order.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.children.iter().map(|(n, s)| (n.as_str(), s))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Eq,
    Open,
    Close,
    LOpen,
    LClose,
    Comma,
}

struct Lexer<'a> {
    text: &'a [u8],
    at: usize,
    line: usize,
}

impl Lexer<'_> {
    fn next(&mut self) -> Result<Option<Tok>, String> {
        loop {
            let Some(&c) = self.text.get(self.at) else {
                return Ok(None);
            };
            match c {
                b'\n' => {
                    self.line += 1;
                    self.at += 1;
                }
                b' ' | b'\t' | b'\r' => self.at += 1,
                b'#' => {
                    while self.text.get(self.at).is_some_and(|&c| c != b'\n') {
                        self.at += 1;
                    }
                }
                _ => break,
            }
        }
        let c = self.text[self.at];
        self.at += 1;
        Ok(Some(match c {
            b'=' => Tok::Eq,
            b'{' => Tok::Open,
            b'}' => Tok::Close,
            b'[' => Tok::LOpen,
            b']' => Tok::LClose,
            b',' => Tok::Comma,
            b'"' => {
                let mut s = Vec::new();
                loop {
                    let Some(&c) = self.text.get(self.at) else {
                        return Err(format!("line {}: unterminated string", self.line));
                    };
                    self.at += 1;
                    match c {
                        b'"' => break,
                        b'\\' => {
                            let Some(&e) = self.text.get(self.at) else {
                                return Err(format!("line {}: unterminated string", self.line));
                            };
                            self.at += 1;
                            s.push(e);
                        }
                        b'\n' => {
                            self.line += 1;
                            s.push(c);
                        }
                        _ => s.push(c),
                    }
                }
                Tok::Str(String::from_utf8_lossy(&s).into_owned())
            }
            _ => {
                let start = self.at - 1;
                while self.text.get(self.at).is_some_and(|&c| {
                    !matches!(
                        c,
                        b' ' | b'\t'
                            | b'\r'
                            | b'\n'
                            | b'='
                            | b'{'
                            | b'}'
                            | b'['
                            | b']'
                            | b','
                            | b'"'
                            | b'#'
                    )
                }) {
                    self.at += 1;
                }
                Tok::Word(String::from_utf8_lossy(&self.text[start..self.at]).into_owned())
            }
        }))
    }
}

fn scalar(tok: Tok, line: usize) -> Result<Value, String> {
    match tok {
        Tok::Str(s) => Ok(Value::Str(s)),
        Tok::Word(w) => Ok(match w.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) if w.starts_with(|c: char| c.is_ascii_digit() || c == '-') => Value::Str(w),
            Err(_) => return Err(format!("line {line}: {w:?} is not a value")),
        }),
        t => Err(format!("line {line}: {t:?} where a value is expected")),
    }
}

/// Parses a metadata text into its top-level section (whose first subsection is the volume
/// group). The error names the line.
pub fn parse(text: &[u8]) -> Result<Section, String> {
    let mut lx = Lexer {
        text,
        at: 0,
        line: 1,
    };
    // The stack of open sections, the top-level one first.
    let mut stack: Vec<(String, Section)> = vec![(String::new(), Section::default())];
    let mut items = 0usize;
    while let Some(tok) = lx.next()? {
        items += 1;
        if items > MAX_ITEMS {
            return Err(format!("more than {MAX_ITEMS} items"));
        }
        let line = lx.line;
        match tok {
            Tok::Close => {
                if stack.len() == 1 {
                    return Err(format!("line {line}: '}}' with no section open"));
                }
                let (name, done) = stack.pop().ok_or("empty stack")?;
                let parent = stack.last_mut().ok_or("empty stack")?;
                parent.1.children.push((name, done));
            }
            Tok::Word(key) => match lx.next()? {
                Some(Tok::Open) => {
                    if stack.len() > MAX_DEPTH {
                        return Err(format!(
                            "line {line}: sections nested over {MAX_DEPTH} deep"
                        ));
                    }
                    stack.push((key, Section::default()));
                }
                Some(Tok::Eq) => {
                    let value = match lx.next()? {
                        Some(Tok::LOpen) => {
                            let mut list = Vec::new();
                            loop {
                                match lx.next()? {
                                    Some(Tok::LClose) => break,
                                    Some(Tok::Comma) => {}
                                    Some(t) => {
                                        items += 1;
                                        if items > MAX_ITEMS {
                                            return Err(format!("more than {MAX_ITEMS} items"));
                                        }
                                        list.push(scalar(t, lx.line)?);
                                    }
                                    None => {
                                        return Err(format!("line {}: unterminated list", lx.line))
                                    }
                                }
                            }
                            Value::List(list)
                        }
                        Some(t) => scalar(t, lx.line)?,
                        None => return Err(format!("line {line}: {key} = with no value")),
                    };
                    stack
                        .last_mut()
                        .ok_or("empty stack")?
                        .1
                        .values
                        .push((key, value));
                }
                other => {
                    return Err(format!(
                        "line {line}: {key:?} followed by {other:?}, not '=' or '{{'"
                    ))
                }
            },
            t => return Err(format!("line {line}: unexpected {t:?}")),
        }
    }
    if stack.len() != 1 {
        return Err(format!("{} sections left open at the end", stack.len() - 1));
    }
    Ok(stack.pop().map(|s| s.1).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lvm_text() {
        let t = br#"vg0 {
id = "abc"
seqno = 7
status = ["RESIZEABLE", "READ", "WRITE"]
extent_size = 8192 # 4 MiB
logical_volumes {
root {
segment1 {
stripes = [
"pv0", 0,
"pv1", -2
]
}
}
}
}
contents = "Text \"Format\""
"#;
        let root = parse(t).unwrap();
        let vg = root.section("vg0").unwrap();
        assert_eq!(vg.int("seqno"), Some(7));
        assert_eq!(vg.flags("status"), ["RESIZEABLE", "READ", "WRITE"]);
        let seg = vg
            .section("logical_volumes")
            .and_then(|l| l.section("root"))
            .and_then(|r| r.section("segment1"))
            .unwrap();
        assert_eq!(
            seg.list("stripes").unwrap(),
            [
                Value::Str("pv0".into()),
                Value::Int(0),
                Value::Str("pv1".into()),
                Value::Int(-2)
            ]
        );
        assert_eq!(root.str("contents"), Some("Text \"Format\""));
    }

    #[test]
    fn bad_texts_are_errors() {
        for t in [
            &b"a {"[..],
            b"}",
            b"a = ",
            b"a = [1, 2",
            b"a = \"x",
            b"a b",
            b"= 3",
            b"a = {",
        ] {
            assert!(parse(t).is_err(), "{}", String::from_utf8_lossy(t));
        }
        let deep = "a {".repeat(100);
        assert!(parse(deep.as_bytes()).unwrap_err().contains("nested"));
    }
}
