//! The tokenizer of item text: data-center words stay whole, and their parts are searchable too.
//!
//! A general-purpose tokenizer cuts `10.20.30.40` into four numbers, so a search for
//! `10.20.30.4` would find it. Here a *word* is a run of letters, digits and `. : / - _ @ + ~ %`;
//! each word is emitted whole (lowercased), then the pieces between `/`, `@` and `:` (an IPv4
//! address out of `host:port` or `addr/prefix`, path components), then those pieces split at
//! `.` and at `- _ + ~` separately (`web-01` out of `web-01.dc2.example.com`, `3.0.11` out of
//! `3.0.11-1`), then the atoms. Every token of one word shares the word's position, so phrases
//! match word by word. A query word is matched as one whole token ([`query_words`]), so it
//! matches a word or any of the parts above, never a prefix of one.
//!
//! Limits: words longer than [`MAX_TOKEN_LEN`] bytes are not indexed (base64 blobs in configs);
//! IPv6 addresses are whole tokens plus their hex groups and an embedded IPv4 suffix.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// The name the tokenizer is registered under in the index.
pub const TOKENIZER_NAME: &str = "origami";

/// Longer words are skipped: they are blobs, not words, and tantivy limits term length.
pub const MAX_TOKEN_LEN: usize = 200;

/// Characters that belong to a word besides letters and digits.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | ':' | '/' | '-' | '_' | '@' | '+' | '~' | '%')
}

/// Byte ranges of the words of `text`.
pub(crate) fn word_ranges(text: &str) -> WordRanges<'_> {
    WordRanges {
        len: text.len(),
        it: text.char_indices().peekable(),
    }
}

/// The iterator of [`word_ranges`].
pub(crate) struct WordRanges<'a> {
    len: usize,
    it: std::iter::Peekable<std::str::CharIndices<'a>>,
}

impl Iterator for WordRanges<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        // Skip separators.
        let start = loop {
            let (i, c) = self.it.next()?;
            if is_word_char(c) {
                break i;
            }
        };
        let mut end = self.len;
        while let Some(&(i, c)) = self.it.peek() {
            if !is_word_char(c) {
                end = i;
                break;
            }
            self.it.next();
        }
        Some((start, end))
    }
}

/// Lowercases `word` into `out` and trims what ends a sentence rather than a word.
pub(crate) fn normalize_word(word: &str, out: &mut String) {
    out.clear();
    if word.is_ascii() {
        out.push_str(word);
        out.make_ascii_lowercase();
    } else {
        for c in word.chars() {
            out.extend(c.to_lowercase());
        }
    }
    // A trailing `.` ends a sentence; a trailing `:` ends a label (`Listen:`), except in an
    // IPv6 address such as `fe80::`.
    loop {
        if out.ends_with('.') || (out.ends_with(':') && !out.contains("::")) {
            out.pop();
        } else {
            break;
        }
    }
}

/// Buffers of [`word_parts`], reused from word to word so that tokenizing allocates nothing.
#[derive(Clone, Default)]
pub(crate) struct PartsScratch {
    outer: Vec<(usize, usize)>,
    pieces: Vec<(usize, usize)>,
    sub: Vec<(usize, usize)>,
}

/// The token strings of one normalized word, as byte ranges of it, whole word first,
/// without duplicates.
pub(crate) fn word_parts(w: &str, parts: &mut Vec<(usize, usize)>, scratch: &mut PartsScratch) {
    parts.clear();
    if w.is_empty() || w.len() > MAX_TOKEN_LEN {
        return;
    }
    let push = |parts: &mut Vec<(usize, usize)>, s: usize, e: usize| {
        let Some(x) = w.as_bytes().get(s..e).filter(|x| !x.is_empty()) else {
            return;
        };
        if !parts
            .iter()
            .any(|&(a, b)| b - a == x.len() && w.as_bytes()[a..b].iter().eq(x))
        {
            parts.push((s, e));
        }
    };
    push(parts, 0, w.len());
    // Most words (names, states, numbers) hold no separator: they are their only part.
    if !w.bytes().any(|b| {
        matches!(
            b,
            b'/' | b'@' | b':' | b'.' | b'-' | b'_' | b'+' | b'~' | b'%'
        )
    }) {
        return;
    }
    // Level 2: pieces between `/` and `@`, then between `:` unless the piece is an IPv6
    // address (`fe80::1`, `::ffff:10.20.30.40`). Deciding per piece keeps a URL such as
    // `http://10.20.30.40:8080` from passing for IPv6 because it holds two colons.
    let PartsScratch { outer, pieces, sub } = scratch;
    outer.clear();
    pieces.clear();
    split_ranges(w, 0, w.len(), |c| c == '/' || c == '@', outer);
    for &(s, e) in outer.iter() {
        let piece = &w[s..e];
        if is_ipv6_like(piece) {
            pieces.push((s, e));
            // `::ffff:10.20.30.40`: the mapped IPv4 address is a token of its own.
            if let Some(i) = piece.rfind(':') {
                if piece[i + 1..].contains('.') {
                    pieces.push((s + i + 1, e));
                }
            }
        } else {
            if outer.len() > 1 {
                pieces.push((s, e));
            }
            split_ranges(w, s, e, |c| c == ':', pieces);
        }
    }
    for &(s, e) in pieces.iter() {
        push(parts, s, e);
        // A piece without an inner separator (`etc`, `0a`) has no smaller parts.
        if !w
            .as_bytes()
            .get(s..e)
            .unwrap_or_default()
            .iter()
            .any(|b| matches!(b, b'.' | b'-' | b'_' | b'+' | b'~' | b':' | b'%'))
        {
            continue;
        }
        for pred in [
            (|c: char| c == '.') as fn(char) -> bool,
            |c: char| matches!(c, '-' | '_' | '+' | '~'),
            |c: char| matches!(c, '.' | '-' | '_' | '+' | '~' | ':' | '%'),
        ] {
            sub.clear();
            split_ranges(w, s, e, pred, sub);
            for &(a, b) in sub.iter() {
                push(parts, a, b);
            }
        }
    }
}

/// True for a piece that reads as an IPv6 address: two or more colons, and only hex
/// digits, colons, dots (an embedded IPv4 suffix) and `%` (a zone) otherwise.
fn is_ipv6_like(piece: &str) -> bool {
    piece.bytes().filter(|&b| b == b':').count() >= 2
        && piece
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'%'))
}

/// Pushes the non-empty ranges of `w[start..end]` between characters matching `sep`.
fn split_ranges(
    w: &str,
    start: usize,
    end: usize,
    sep: impl Fn(char) -> bool,
    out: &mut Vec<(usize, usize)>,
) {
    let mut s = start;
    for (i, c) in w[start..end].char_indices() {
        if sep(c) {
            if s < start + i {
                out.push((s, start + i));
            }
            s = start + i + c.len_utf8();
        }
    }
    if s < end {
        out.push((s, end));
    }
}

/// The whole-word tokens of a query text, in order: what a bare word or a phrase must match.
pub fn query_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = String::new();
    for (s, e) in word_ranges(text) {
        normalize_word(&text[s..e], &mut buf);
        if !buf.is_empty() && buf.len() <= MAX_TOKEN_LEN {
            out.push(buf.clone());
        }
    }
    out
}

/// The tantivy tokenizer: see the module documentation.
#[derive(Clone, Default)]
pub struct OrigamiTokenizer {
    token: Token,
    // Buffers lent to each token stream (a tokenizer is cloned per indexing thread).
    word: String,
    parts: Vec<(usize, usize)>,
    scratch: PartsScratch,
}

impl Tokenizer for OrigamiTokenizer {
    type TokenStream<'a> = OrigamiTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> OrigamiTokenStream<'a> {
        self.token.reset();
        self.parts.clear();
        OrigamiTokenStream {
            text,
            words: word_ranges(text),
            word: &mut self.word,
            parts: &mut self.parts,
            scratch: &mut self.scratch,
            next_part: 0,
            position: None,
            word_span: (0, 0),
            token: &mut self.token,
        }
    }
}

/// The token stream of [`OrigamiTokenizer`].
pub struct OrigamiTokenStream<'a> {
    text: &'a str,
    words: WordRanges<'a>,
    word: &'a mut String,
    parts: &'a mut Vec<(usize, usize)>,
    scratch: &'a mut PartsScratch,
    next_part: usize,
    position: Option<usize>,
    word_span: (usize, usize),
    token: &'a mut Token,
}

impl TokenStream for OrigamiTokenStream<'_> {
    fn advance(&mut self) -> bool {
        while self.next_part >= self.parts.len() {
            let Some((s, e)) = self.words.next() else {
                return false;
            };
            normalize_word(&self.text[s..e], self.word);
            word_parts(self.word, self.parts, self.scratch);
            self.next_part = 0;
            self.word_span = (s, e);
            if !self.parts.is_empty() {
                self.position = Some(self.position.map_or(0, |p| p + 1));
            }
        }
        let (a, b) = self.parts[self.next_part];
        self.next_part += 1;
        self.token.text.clear();
        self.token.text.push_str(&self.word[a..b]);
        self.token.offset_from = self.word_span.0;
        self.token.offset_to = self.word_span.1;
        self.token.position = self.position.unwrap_or(0);
        self.token.position_length = 1;
        true
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

/// Every token of `text`, for tests and snippets.
pub fn tokens(text: &str) -> Vec<String> {
    let mut t = OrigamiTokenizer::default();
    let mut s = t.token_stream(text);
    let mut out = Vec::new();
    while s.advance() {
        out.push(s.token().text.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(text: &str, tok: &str) -> bool {
        tokens(text).iter().any(|t| t == tok)
    }

    #[test]
    fn ip_is_whole_and_parts_but_not_a_prefix() {
        let t = "address 10.20.30.40/24";
        assert!(has(t, "10.20.30.40/24"));
        assert!(has(t, "10.20.30.40"));
        assert!(has(t, "40"));
        assert!(!has(t, "10.20.30.4"));
        assert!(has("10.20.30.40:6666", "10.20.30.40"));
        assert!(has("10.20.30.40:6666", "6666"));
        assert!(has("::ffff:10.20.30.40", "10.20.30.40"));
        assert!(has("fe80::5054:ff:fe12:3456", "fe80::5054:ff:fe12:3456"));
    }

    #[test]
    fn paths_versions_hosts() {
        let p = "/etc/ssh/sshd_config";
        for t in [p, "etc", "ssh", "sshd_config", "sshd", "config"] {
            assert!(has(p, t), "{t}");
        }
        for t in ["3.0.11-1", "3.0.11", "11", "1"] {
            assert!(has("openssl 3.0.11-1", t), "{t}");
        }
        for t in ["web-01.dc2.example.com", "web-01", "dc2", "web", "01"] {
            assert!(has("Web-01.dc2.example.com.", t), "{t}");
        }
    }

    #[test]
    fn positions_are_per_word() {
        let mut t = OrigamiTokenizer::default();
        let mut s = t.token_stream("Listen 10.0.0.1:80; x");
        let mut seen = Vec::new();
        while s.advance() {
            seen.push((s.token().text.clone(), s.token().position));
        }
        assert_eq!(seen[0], ("listen".to_string(), 0));
        assert!(seen.iter().any(|(t, p)| t == "10.0.0.1" && *p == 1));
        assert_eq!(seen.last().map(|x| x.1), Some(2));
    }

    #[test]
    fn query_words_trim_and_lowercase() {
        assert_eq!(
            query_words("PermitRootLogin yes."),
            ["permitrootlogin", "yes"]
        );
        assert_eq!(query_words("10.20.30.40"), ["10.20.30.40"]);
        assert!(query_words("(),;").is_empty());
    }

    /// The parts of a word as first written (fresh buffers, every split pass on every
    /// piece, string comparisons): the fast paths must give exactly the same.
    fn reference_parts(w: &str) -> Vec<String> {
        let mut parts: Vec<String> = Vec::new();
        if w.is_empty() || w.len() > MAX_TOKEN_LEN {
            return parts;
        }
        let push = |parts: &mut Vec<String>, p: &str| {
            if !p.is_empty() && !parts.iter().any(|x| x == p) {
                parts.push(p.to_string());
            }
        };
        push(&mut parts, w);
        let outer: Vec<&str> = w.split(['/', '@']).filter(|p| !p.is_empty()).collect();
        let mut pieces: Vec<&str> = Vec::new();
        for piece in &outer {
            if is_ipv6_like(piece) {
                pieces.push(piece);
                if let Some(i) = piece.rfind(':') {
                    if piece[i + 1..].contains('.') {
                        pieces.push(&piece[i + 1..]);
                    }
                }
            } else {
                if outer.len() > 1 {
                    pieces.push(piece);
                }
                pieces.extend(piece.split(':').filter(|p| !p.is_empty()));
            }
        }
        for piece in pieces {
            push(&mut parts, piece);
            for seps in [
                &['.'][..],
                &['-', '_', '+', '~'],
                &['.', '-', '_', '+', '~', ':', '%'],
            ] {
                for p in piece.split(seps) {
                    push(&mut parts, p);
                }
            }
        }
        parts
    }

    #[test]
    fn parts_equal_the_reference() {
        let mut scratch = PartsScratch::default();
        let mut parts = Vec::new();
        for w in [
            "/var/lib/web/data/0a/000123.dat",
            "/usr/share/doc/libssl3/copyright",
            "10.20.30.40:6666",
            "10.20.30.40/24",
            "http://10.20.30.40:8080",
            "::ffff:10.20.30.40",
            "fe80::5054:ff:fe12:3456",
            "fe80::1%eth0",
            "user@host.example.com:22",
            "web-01.dc2.example.com",
            "3.0.11-1+deb12u1",
            "a:b:c",
            "x:",
            "::",
            "a//b@@c",
            "kworker/u8:3",
            "nginx",
            "ünïcödé-wörd.x",
            "~+_-.",
        ] {
            word_parts(w, &mut parts, &mut scratch);
            let got: Vec<String> = parts.iter().map(|&(a, b)| w[a..b].to_string()).collect();
            assert_eq!(got, reference_parts(w), "{w}");
        }
    }

    #[test]
    fn an_address_inside_a_url_is_a_token() {
        let t = tokens("proxy_pass http://10.20.30.40:8080;");
        assert!(t.contains(&"10.20.30.40".to_string()), "{t:?}");
        assert!(t.contains(&"10.20.30.40:8080".to_string()), "{t:?}");
        assert!(t.contains(&"8080".to_string()), "{t:?}");
        assert!(!t.contains(&"10.20.30.4".to_string()), "{t:?}");
        let t = tokens("listen [fe80::1%eth0]:22 and ::ffff:10.20.30.40");
        assert!(t.contains(&"fe80::1%eth0".to_string()), "{t:?}");
        assert!(t.contains(&"10.20.30.40".to_string()), "{t:?}");
    }
}
