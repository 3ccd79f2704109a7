//! HTML built safely by construction: [`Html`] is the only way pages make markup. Text and
//! attribute values go in through one escaping function ([`escape_into`]); markup comes only
//! from `&'static str` literals written in this crate, never from data; links only from
//! [`Url`], which holds a site-relative path with every piece percent-encoded. A guest that
//! names a file `<script>...` gets that name shown as text.

use std::fmt::Write as _;

/// Escapes `s` for HTML text and for a double- or single-quoted attribute value: `&`, `<`,
/// `>`, `"` and `'` become character references. Every string from outside goes through
/// here.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Controls other than tab and newline have no business in a page; show them
            // as the replacement character rather than pass them to the browser.
            c if c.is_control() && c != '\n' && c != '\t' && c != '\r' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// A site-relative URL (`/machines/web-01?as_of=...`): a static path, then path segments
/// and query parameters that are percent-encoded as they are added. It cannot hold a
/// scheme, so a link can never become `javascript:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    s: String,
    has_query: bool,
}

/// Characters left as they are in a path segment or query value (RFC 3986 unreserved).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodes every byte of `s` except the unreserved ones.
pub fn percent_encode(out: &mut String, s: &str) {
    for &b in s.as_bytes() {
        if unreserved(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Decodes `%XX` escapes (and `+` as a space when `plus` is set, as in query strings);
/// invalid escapes stay as they are, invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a query string (`a=1&b=x+y`) into decoded pairs.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

impl Url {
    /// A URL of a fixed path of this site; it must start with `/`.
    pub fn new(path: &'static str) -> Url {
        debug_assert!(path.starts_with('/') && !path.starts_with("//"));
        Url {
            s: path.to_string(),
            has_query: false,
        }
    }

    /// Appends `/` and one percent-encoded path segment (a `/` inside it is encoded too).
    pub fn seg(mut self, segment: &str) -> Url {
        debug_assert!(!self.has_query);
        if !self.s.ends_with('/') {
            self.s.push('/');
        }
        percent_encode(&mut self.s, segment);
        self
    }

    /// Appends a machine name as a path segment. `.` and `..` would be taken by a browser
    /// as path steps (even percent-encoded), so such a name, and a name that starts with
    /// `~`, gets a `~` in front; [`name_from_segment`] takes it off.
    pub fn name_seg(self, name: &str) -> Url {
        if name == "." || name == ".." || name.starts_with('~') {
            self.seg(&format!("~{name}"))
        } else {
            self.seg(name)
        }
    }

    /// Appends a query parameter, its value percent-encoded.
    pub fn q(mut self, key: &'static str, value: &str) -> Url {
        self.s.push(if self.has_query { '&' } else { '?' });
        self.has_query = true;
        percent_encode(&mut self.s, key);
        self.s.push('=');
        percent_encode(&mut self.s, value);
        self
    }

    /// Appends a query parameter when there is a value.
    pub fn q_opt(self, key: &'static str, value: Option<&str>) -> Url {
        match value {
            Some(v) => self.q(key, v),
            None => self,
        }
    }

    /// The URL as text (already encoded).
    pub fn as_str(&self) -> &str {
        &self.s
    }
}

/// The machine name in a decoded path segment made by [`Url::name_seg`].
pub fn name_from_segment(seg: &str) -> &str {
    seg.strip_prefix('~').unwrap_or(seg)
}

/// A page under construction. See the module documentation for the rules.
#[derive(Debug, Default)]
pub struct Html {
    buf: String,
}

/// An element's start tag under construction: attributes, then [`Tag::open`] (or
/// [`Tag::void`] for elements without content).
pub struct Tag<'a> {
    h: &'a mut Html,
}

impl Html {
    /// An empty page.
    pub fn new() -> Html {
        Html::default()
    }

    /// Markup written in this crate (a literal: never data).
    pub fn lit(&mut self, markup: &'static str) -> &mut Html {
        self.buf.push_str(markup);
        self
    }

    /// Text, escaped.
    pub fn text(&mut self, s: &str) -> &mut Html {
        escape_into(&mut self.buf, s);
        self
    }

    /// A value shown through its `Display`, escaped.
    pub fn show(&mut self, v: impl std::fmt::Display) -> &mut Html {
        let s = v.to_string();
        self.text(&s)
    }

    /// Starts an element: `<name`; add attributes, then open it.
    pub fn tag(&mut self, name: &'static str) -> Tag<'_> {
        self.buf.push('<');
        self.buf.push_str(name);
        Tag { h: self }
    }

    /// `</name>`.
    pub fn close(&mut self, name: &'static str) -> &mut Html {
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
        self
    }

    /// `<name>text</name>`.
    pub fn elem(&mut self, name: &'static str, text: &str) -> &mut Html {
        self.tag(name).open().text(text).close(name)
    }

    /// `<name class="class">text</name>`.
    pub fn elem_c(&mut self, name: &'static str, class: &'static str, text: &str) -> &mut Html {
        self.tag(name).class(class).open().text(text).close(name)
    }

    /// `<a href="url">text</a>`.
    pub fn link(&mut self, url: &Url, text: &str) -> &mut Html {
        self.tag("a").href(url).open().text(text).close("a")
    }

    /// Text with the parts that match one of `terms` (lowercase) in `<mark>`.
    pub fn marked(&mut self, text: &str, terms: &[String]) -> &mut Html {
        for (piece, hit) in split_marks(text, terms) {
            if hit {
                self.lit("<mark>").text(piece).lit("</mark>");
            } else {
                self.text(piece);
            }
        }
        self
    }

    /// Appends another page part (built by the same rules).
    pub fn push(&mut self, other: Html) -> &mut Html {
        self.buf.push_str(&other.buf);
        self
    }

    /// The markup.
    pub fn finish(self) -> String {
        self.buf
    }
}

impl<'a> Tag<'a> {
    /// A text attribute, quoted and escaped. URL-valued attributes take a [`Url`] through
    /// [`Tag::href`] or [`Tag::url_attr`] instead.
    pub fn attr(self, name: &'static str, value: &str) -> Tag<'a> {
        debug_assert!(
            !matches!(name, "href" | "src" | "action" | "formaction" | "style")
                && !name.starts_with("on"),
            "attribute {name} must not take free text"
        );
        self.h.buf.push(' ');
        self.h.buf.push_str(name);
        self.h.buf.push_str("=\"");
        escape_into(&mut self.h.buf, value);
        self.h.buf.push('"');
        self
    }

    /// A number attribute (SVG geometry, counts).
    pub fn num(self, name: &'static str, value: f64) -> Tag<'a> {
        let v = if value.is_finite() { value } else { 0.0 };
        let _ = write!(self.h.buf, " {name}=\"{v:.1}\"");
        self
    }

    /// `class="..."` from a literal.
    pub fn class(self, class: &'static str) -> Tag<'a> {
        let _ = write!(self.h.buf, " class=\"{class}\"");
        self
    }

    /// A boolean attribute (`checked`, `selected`, ...).
    pub fn flag(self, name: &'static str, on: bool) -> Tag<'a> {
        if on {
            self.h.buf.push(' ');
            self.h.buf.push_str(name);
        }
        self
    }

    /// `href="..."`.
    pub fn href(self, url: &Url) -> Tag<'a> {
        self.url_attr("href", url)
    }

    /// A URL-valued attribute (`href`, `src`, `action`).
    pub fn url_attr(self, name: &'static str, url: &Url) -> Tag<'a> {
        self.h.buf.push(' ');
        self.h.buf.push_str(name);
        self.h.buf.push_str("=\"");
        escape_into(&mut self.h.buf, url.as_str());
        self.h.buf.push('"');
        self
    }

    /// Ends the start tag; content follows.
    pub fn open(self) -> &'a mut Html {
        self.h.buf.push('>');
        self.h
    }

    /// Ends an element that has no content (`<input ...>`).
    pub fn void(self) -> &'a mut Html {
        self.h.buf.push('>');
        self.h
    }
}

/// Splits `text` into pieces, marking those that equal (ignoring ASCII case) one of
/// `terms`. Longer terms win; at most 64 marks are made.
pub fn split_marks<'t>(text: &'t str, terms: &[String]) -> Vec<(&'t str, bool)> {
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    let (mut pos, mut last, mut marks) = (0usize, 0usize, 0usize);
    while pos < text.len() && marks < 64 {
        let best = terms
            .iter()
            .filter(|t| !t.is_empty() && lower[pos..].starts_with(t.as_str()))
            .map(|t| t.len())
            .max();
        match best {
            Some(n) if text.is_char_boundary(pos + n) => {
                if last < pos {
                    out.push((&text[last..pos], false));
                }
                out.push((&text[pos..pos + n], true));
                pos += n;
                last = pos;
                marks += 1;
            }
            _ => {
                pos += text[pos..].chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    if last < text.len() {
        out.push((&text[last..], false));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_are_escaped() {
        let mut h = Html::new();
        h.tag("a")
            .href(&Url::new("/machines").seg("\"><svg onload=x>"))
            .attr("title", "\"><svg onload=x>")
            .open()
            .text("<script>window.__pwned=1</script>")
            .close("a");
        let s = h.finish();
        assert_eq!(
            s,
            "<a href=\"/machines/%22%3E%3Csvg%20onload%3Dx%3E\" title=\"&quot;&gt;&lt;svg onload=x&gt;\">&lt;script&gt;window.__pwned=1&lt;/script&gt;</a>"
        );
    }

    #[test]
    fn urls_encode_every_piece_and_decode_back() {
        let u = Url::new("/search").q("q", "a b&c=d/é#").q("hits", "5");
        assert_eq!(u.as_str(), "/search?q=a%20b%26c%3Dd%2F%C3%A9%23&hits=5");
        let pairs = parse_query(u.as_str().split_once('?').unwrap().1);
        assert_eq!(
            pairs,
            vec![
                ("q".to_string(), "a b&c=d/é#".to_string()),
                ("hits".to_string(), "5".to_string())
            ]
        );
        assert_eq!(percent_decode("a+b%2", true), "a b%2");
        assert_eq!(percent_decode("%zz%41", false), "%zzA");
        assert_eq!(percent_decode("%", false), "%");
        assert_eq!(percent_decode("%ff", false), "\u{fffd}");
        let u = Url::new("/machines").seg("a/b");
        assert_eq!(u.as_str(), "/machines/a%2Fb");
        for name in ["..", ".", "~x", "~", "a.b", "..."] {
            let u = Url::new("/machines").name_seg(name);
            let seg = percent_decode(u.as_str().rsplit('/').next().unwrap(), false);
            assert!(seg != "." && seg != "..", "{name}");
            assert_eq!(name_from_segment(&seg), name);
        }
    }

    #[test]
    fn marks_split_on_terms_ignoring_case() {
        let t = vec!["10.20.30.40".to_string()];
        let parts = split_marks("proxy_pass http://10.20.30.40:8080; 10.20.30.40", &t);
        assert_eq!(
            parts,
            vec![
                ("proxy_pass http://", false),
                ("10.20.30.40", true),
                (":8080; ", false),
                ("10.20.30.40", true)
            ]
        );
        let mut h = Html::new();
        h.marked("<b>NGINX</b>", &["nginx".to_string()]);
        assert_eq!(h.finish(), "&lt;b&gt;<mark>NGINX</mark>&lt;/b&gt;");
        assert_eq!(split_marks("é", &["x".to_string()]), vec![("é", false)]);
    }
}
