//! Kernel symbols recovered from the kernel's own compressed symbol table (kallsyms).
//!
//! A Linux kernel built with `CONFIG_KALLSYMS` keeps every symbol's name and address in its
//! read-only data, in the tables `scripts/kallsyms.c` writes: `kallsyms_token_table` (256
//! NUL-terminated strings), `kallsyms_token_index` (256 `u16` offsets into it),
//! `kallsyms_num_syms`, `kallsyms_names` (per symbol a length byte, two when the high bit is
//! set, then that many token numbers), `kallsyms_markers` (the names offset of every 256th
//! symbol) and, for the `CONFIG_KALLSYMS_BASE_RELATIVE` encoding of 4.6+ kernels,
//! `kallsyms_offsets` (`s32`) with `kallsyms_relative_base`. The order of the tables in
//! `.rodata` changed between releases (6.1 stable puts offsets first, 6.2+ puts them after
//! the token index, some add `kallsyms_seqs_of_names`), so [`find_tables`] does not assume
//! one: it finds the token table and index by their shape, then the names by decoding and
//! checking them against the markers, then the offsets on either side.
//!
//! Everything here works on a byte window of guest memory (`&[u8]`) whose positions are
//! window offsets; the caller maps them to addresses. Nothing in the window is trusted:
//! every read is bounds-checked and every count bounded.

use std::collections::HashMap;

use origami_core::bytes::{le16, try_le16, try_le32, try_le64};

use crate::error::{Error, Result};

/// The most symbols a kernel table may claim (6.x kernels have about 100 000).
const MAX_SYMS: u32 = 2_000_000;

/// The fewest symbols a real kernel has; smaller tables found by the search are noise.
const MIN_SYMS: u32 = 1_000;

/// Longest expanded symbol name accepted (the kernel's own KSYM_NAME_LEN is 512).
const MAX_NAME: usize = 512;

/// Where each kallsyms table lies in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    /// `kallsyms_offsets` (window offset).
    pub offsets: usize,
    /// The value of `kallsyms_relative_base`.
    pub relative_base: u64,
    /// The value of `kallsyms_num_syms`.
    pub num_syms: u32,
    /// `kallsyms_names` (window offset).
    pub names: usize,
    /// `kallsyms_token_table` (window offset).
    pub token_table: usize,
    /// `kallsyms_token_index` (window offset).
    pub token_index: usize,
}

/// One recovered symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// The name, e.g. `init_task`.
    pub name: String,
    /// Its runtime address.
    pub address: u64,
    /// Its `nm` type letter (`T`, `d`, `B`, ...).
    pub kind: char,
}

/// A kernel's symbol table: recovered kallsyms or a `System.map`.
#[derive(Debug, Clone, Default)]
pub struct SymbolTable {
    /// Names are guest data: std's randomly seeded SipHash keeps a guest from choosing
    /// names that collide and make inserts quadratic.
    by_name: HashMap<String, u64>,
    count: usize,
}

impl SymbolTable {
    /// Builds a table from symbols; where a name repeats (local statics), a global
    /// (upper-case type) wins over a local, else the first is kept.
    pub fn from_symbols(symbols: impl IntoIterator<Item = Symbol>) -> SymbolTable {
        let mut by_name: HashMap<String, (u64, bool)> = HashMap::new();
        let mut count = 0;
        for s in symbols {
            count += 1;
            let global = s.kind.is_ascii_uppercase();
            match by_name.get_mut(&s.name) {
                Some(e) if !e.1 && global => *e = (s.address, true),
                Some(_) => {}
                None => {
                    by_name.insert(s.name, (s.address, global));
                }
            }
        }
        SymbolTable {
            by_name: by_name.into_iter().map(|(k, (a, _))| (k, a)).collect(),
            count,
        }
    }

    /// Parses a `System.map` (`ADDRESS TYPE NAME` lines); bad lines are skipped.
    pub fn parse_system_map(text: &str) -> SymbolTable {
        SymbolTable::from_symbols(text.lines().filter_map(|l| {
            let mut it = l.split_ascii_whitespace();
            let address = u64::from_str_radix(it.next()?, 16).ok()?;
            let kind = it.next()?.chars().next()?;
            let name = it.next()?.to_string();
            Some(Symbol {
                name,
                address,
                kind,
            })
        }))
    }

    /// The address of `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    /// How many symbols went in (duplicates included).
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the table is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Every address shifted by `delta` (a `System.map` moved by the KASLR offset).
    pub fn shifted(&self, delta: u64) -> SymbolTable {
        SymbolTable {
            by_name: self
                .by_name
                .iter()
                .map(|(k, v)| (k.clone(), v.wrapping_add(delta)))
                .collect(),
            count: self.count,
        }
    }

    /// Keeps only the named symbols (what a cache entry stores).
    pub fn subset<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> SymbolTable {
        let by_name: HashMap<String, u64> = names
            .into_iter()
            .filter_map(|n| self.get(n).map(|a| (n.to_string(), a)))
            .collect();
        let count = by_name.len();
        SymbolTable { by_name, count }
    }

    /// Iterates over (name, address).
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.by_name.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

fn malformed(at: usize, what: impl Into<String>) -> Error {
    Error::Malformed {
        file: "kernel kallsyms".into(),
        location: format!("window offset {at:#x}"),
        what: what.into(),
    }
}

fn align8(x: usize) -> usize {
    x.saturating_add(7) & !7
}

/// The 256 tokens, as byte strings.
fn tokens(w: &[u8], table: usize, index: usize) -> Option<Vec<&[u8]>> {
    let mut out = Vec::with_capacity(256);
    for i in 0..256 {
        let start = table.checked_add(usize::from(try_le16(w, index.checked_add(2 * i)?)?))?;
        let rest = w.get(start..)?;
        let len = memchr::memchr(0, rest.get(..rest.len().min(256))?)?;
        out.push(rest.get(..len)?);
    }
    Some(out)
}

/// Does a token index (256 increasing u16, the first 0) start at `i`?
/// Returns the token table start that fits it.
fn token_index_at(w: &[u8], i: usize) -> Option<usize> {
    if try_le16(w, i)? != 0 {
        return None;
    }
    let mut prev = 0u16;
    let mut idx = [0u16; 256];
    for (k, slot) in idx.iter_mut().enumerate().skip(1) {
        let v = try_le16(w, i + 2 * k)?;
        // Every token is at least one byte plus its NUL, and none is long.
        if v < prev.checked_add(2)? || v > prev.checked_add(64)? {
            return None;
        }
        *slot = v;
        prev = v;
    }
    // The table ends (last token, its NUL, alignment padding) just before the index.
    let last = usize::from(prev);
    let lo = i.checked_sub(last + 64 + 8)?;
    let hi = i.checked_sub(last + 2)?;
    let mut t = align8(lo);
    while t <= hi {
        let fits = idx.iter().enumerate().all(|(k, &o)| {
            let o = t + usize::from(o);
            w.get(o).is_some_and(|&b| b != 0) && (k == 0 || w.get(o - 1) == Some(&0))
        });
        if fits {
            let end = t + last + memchr::memchr(0, w.get(t + last..i)?)? + 1;
            if align8(end) == i {
                return Some(t);
            }
        }
        t += 8;
    }
    None
}

/// Reads one name entry at `at`: (token numbers, offset of the next entry).
fn entry(w: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let b0 = *w.get(at)?;
    let (len, data) = if b0 & 0x80 != 0 {
        // 6.1+: a two-byte length for names longer than 127 tokens.
        let b1 = *w.get(at.checked_add(1)?)?;
        (
            usize::from(b0 & 0x7f) | (usize::from(b1) << 7),
            at.checked_add(2)?,
        )
    } else {
        (usize::from(b0), at.checked_add(1)?)
    };
    if len == 0 {
        return None;
    }
    let end = data.checked_add(len)?;
    Some((w.get(data..end)?, end))
}

fn expand(tok: &[&[u8]], codes: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    for &c in codes {
        out.extend_from_slice(tok.get(usize::from(c)).copied().unwrap_or_default());
        if out.len() > MAX_NAME + 1 {
            return false;
        }
    }
    true
}

fn plausible_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((t, rest)) => {
            t.is_ascii_alphabetic()
                && !rest.is_empty()
                && rest
                    .iter()
                    .all(|&b| b.is_ascii_graphic() && b != b'\\' && b != b'"')
        }
        None => false,
    }
}

/// Tries `kallsyms_num_syms` at `q` (names right after it, aligned): returns (N, names
/// start, names end) when N names decode, look like names, and the markers that follow
/// (32- or 64-bit) point at every 256th entry.
fn names_at(w: &[u8], q: usize, tok: &[&[u8]], limit: usize) -> Option<(u32, usize, usize)> {
    let n = try_le32(w, q)?;
    if !(MIN_SYMS..=MAX_SYMS).contains(&n) || try_le32(w, q + 4)? != 0 {
        return None;
    }
    let names = q + 8;
    if names.checked_add(2 * n as usize)? > limit {
        return None;
    }
    let mut pos = names;
    let mut marks = Vec::with_capacity((n as usize).div_ceil(256));
    let mut buf = Vec::new();
    for k in 0..n {
        if k % 256 == 0 {
            marks.push(pos - names);
        }
        let (codes, next) = entry(w, pos)?;
        if k < 64 && !(expand(tok, codes, &mut buf) && plausible_name(&buf)) {
            return None;
        }
        pos = next;
        if pos > limit {
            return None;
        }
    }
    let m = align8(pos);
    let ok32 = marks
        .iter()
        .enumerate()
        .all(|(i, &o)| try_le32(w, m + 4 * i).map(|v| v as usize) == Some(o));
    let ok64 = || {
        marks
            .iter()
            .enumerate()
            .all(|(i, &o)| try_le64(w, m + 8 * i).map(|v| v as usize) == Some(o))
    };
    (ok32 || ok64()).then_some((n, names, pos))
}

/// Checks that `n` offsets at `at` and the base decode to addresses in order, the way
/// kallsyms sorts them (absolute per-CPU symbols, if any, first).
fn offsets_plausible(w: &[u8], at: usize, n: u32, base: u64) -> bool {
    if base >> 32 != 0xffff_ffff {
        return false;
    }
    let mut prev = 0u64;
    let mut decreases = 0u32;
    for k in 0..n as usize {
        let Some(raw) = try_le32(w, at + 4 * k) else {
            return false;
        };
        let a = address(raw as i32, base, true);
        if a < prev {
            decreases += 1;
        }
        prev = a;
    }
    // The per-CPU block ends once (back to kernel text), nothing else goes down.
    decreases <= 2
}

/// The address an offset encodes (`CONFIG_KALLSYMS_ABSOLUTE_PERCPU`: non-negative
/// offsets are absolute per-CPU addresses, negative ones count down from the base).
fn address(off: i32, base: u64, absolute_percpu: bool) -> u64 {
    if !absolute_percpu {
        return base.wrapping_add(u64::from(off as u32));
    }
    if off >= 0 {
        off as u64
    } else {
        base.wrapping_sub(1).wrapping_sub(i64::from(off) as u64)
    }
}

/// Where the kallsyms tables lie in a window, with the positions of the two words
/// [`Tables`] carries as values (`kallsyms_num_syms`, `kallsyms_relative_base`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// The tables.
    pub tables: Tables,
    /// Window offset of `kallsyms_num_syms`.
    pub num_syms_at: usize,
    /// Window offset of `kallsyms_relative_base`.
    pub relative_base_at: usize,
}

impl Located {
    /// The window range `[start, end)` whose bytes the tables are decoded from (the count,
    /// the names and markers, the token table and index, the offsets). It may include
    /// `kallsyms_relative_base`, whose value differs with each boot's KASLR shift while
    /// the decoded symbols, relative to each other, do not.
    pub fn extent(&self) -> (usize, usize) {
        let t = &self.tables;
        let offsets_end = t
            .offsets
            .saturating_add(4usize.saturating_mul(t.num_syms as usize));
        let start = t
            .offsets
            .min(self.num_syms_at)
            .min(t.names)
            .min(t.token_table)
            .min(t.token_index);
        let end = offsets_end
            .max(t.token_index.saturating_add(512))
            .max(self.num_syms_at.saturating_add(4));
        (start, end)
    }
}

/// Searches a window of kernel read-only data for the kallsyms tables.
pub fn find_tables(w: &[u8]) -> Result<Tables> {
    locate_tables(w).map(|l| l.tables)
}

/// Searches a window of kernel read-only data for the kallsyms tables, and says where the
/// words it read as values lie.
pub fn locate_tables(w: &[u8]) -> Result<Located> {
    let mut i = 0usize;
    let mut last_err = malformed(0, "no kallsyms token index found");
    // Fast pre-filter: an aligned u16 zero followed by a small positive u16.
    while i + 512 <= w.len() {
        let hit = w[i] == 0 && w[i + 1] == 0 && {
            let v = le16(w, i + 2);
            (2..=64).contains(&v)
        };
        if hit {
            if let Some(table) = token_index_at(w, i) {
                match tables_from_tokens(w, table, i) {
                    Ok(t) => return Ok(t),
                    Err(e) => last_err = e,
                }
            }
        }
        i += 8;
    }
    Err(last_err)
}

/// Given the token table and index, finds the names, the count and the offsets.
fn tables_from_tokens(w: &[u8], token_table: usize, token_index: usize) -> Result<Located> {
    let tok =
        tokens(w, token_table, token_index).ok_or_else(|| malformed(token_table, "bad tokens"))?;
    // The names and markers come before the token table, within a few MiB.
    let lo = token_table.saturating_sub(16 << 20) & !7;
    let mut q = token_table & !7;
    let mut found = None;
    while q > lo {
        q -= 8;
        if let Some(x) = names_at(w, q, &tok, token_table) {
            found = Some((q, x));
            break;
        }
    }
    let (q, (n, names, _end)) =
        found.ok_or_else(|| malformed(token_table, "no kallsyms_names before the tokens"))?;
    let len = 4 * n as usize;
    let located = |offsets: usize, relative_base: u64, base_at: usize| Located {
        tables: Tables {
            offsets,
            relative_base,
            num_syms: n,
            names,
            token_table,
            token_index,
        },
        num_syms_at: q,
        relative_base_at: base_at,
    };
    // 6.1 stable: offsets, relative_base, num_syms, names, ...
    if let Some(off) = q.checked_sub(8).and_then(|b| b.checked_sub(align8(len))) {
        if let Some(base) = try_le64(w, q - 8) {
            if offsets_plausible(w, off, n, base) {
                return Ok(located(off, base, q - 8));
            }
        }
    }
    // 6.2+: ..., token_index, offsets, relative_base, ...
    let off = align8(token_index + 512);
    let base_at = align8(off + len);
    if let Some(base) = try_le64(w, base_at) {
        if offsets_plausible(w, off, n, base) {
            return Ok(located(off, base, base_at));
        }
    }
    Err(malformed(
        names,
        "kallsyms_names found but no kallsyms_offsets",
    ))
}

/// Decodes every symbol the tables describe, within the default bound
/// ([`crate::Limits::symbols`]).
pub fn decode(w: &[u8], t: &Tables) -> Result<Vec<Symbol>> {
    decode_bounded(w, t, crate::Limits::DEFAULT.symbols)
}

/// As [`decode`], for a table of at most `max` symbols: a larger `kallsyms_num_syms` is
/// an [`Error::LimitExceeded`] before anything is decoded.
pub fn decode_bounded(w: &[u8], t: &Tables, max: u32) -> Result<Vec<Symbol>> {
    if t.num_syms > max {
        return Err(Error::LimitExceeded {
            what: format!(
                "kallsyms: {} symbols (kallsyms_num_syms, names at window offset {:#x})",
                t.num_syms, t.names
            ),
            limit: u64::from(max),
        });
    }
    if t.num_syms > MAX_SYMS {
        return Err(malformed(t.names, format!("{} symbols", t.num_syms)));
    }
    let tok = tokens(w, t.token_table, t.token_index)
        .ok_or_else(|| malformed(t.token_table, "bad token table"))?;
    let n = t.num_syms as usize;
    let raw: Vec<i32> = (0..n)
        .map(|k| try_le32(w, t.offsets.checked_add(4 * k)?).map(|v| v as i32))
        .collect::<Option<_>>()
        .ok_or_else(|| malformed(t.offsets, "offsets past the window"))?;
    let absolute_percpu = raw.iter().any(|&o| o < 0);
    let mut out = Vec::with_capacity(n);
    let mut pos = t.names;
    let mut buf = Vec::new();
    for (k, off) in raw.into_iter().enumerate() {
        let (codes, next) = entry(w, pos).ok_or_else(|| malformed(pos, format!("name {k}")))?;
        pos = next;
        if !expand(&tok, codes, &mut buf) {
            return Err(malformed(pos, format!("name {k} too long")));
        }
        let Some((&kind, name)) = buf.split_first() else {
            continue;
        };
        out.push(Symbol {
            name: String::from_utf8_lossy(name).into_owned(),
            address: address(off, t.relative_base, absolute_percpu),
            kind: char::from(kind),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tiny but well-formed 6.1-style kallsyms blob.
    fn synth(names: &[&str]) -> Vec<u8> {
        let mut w = vec![0u8; 64];
        // tokens: token i = the single byte i for printable bytes, else "?".
        let n = u32::try_from(names.len()).unwrap();
        let base = 0xffff_ffff_8100_0000u64;
        for k in 0..names.len() {
            w.extend_from_slice(&(-(k as i32) - 1).to_le_bytes());
        }
        while !w.len().is_multiple_of(8) {
            w.push(0);
        }
        w.extend_from_slice(&base.to_le_bytes());
        w.extend_from_slice(&n.to_le_bytes());
        w.extend_from_slice(&[0; 4]);
        let mut marks = Vec::new();
        let names_start = w.len();
        for (k, name) in names.iter().enumerate() {
            if k % 256 == 0 {
                marks.push((w.len() - names_start) as u32);
            }
            w.push(name.len() as u8);
            w.extend_from_slice(name.as_bytes());
        }
        while !w.len().is_multiple_of(8) {
            w.push(0);
        }
        for m in marks {
            w.extend_from_slice(&m.to_le_bytes());
        }
        while !w.len().is_multiple_of(8) {
            w.push(0);
        }
        let table = w.len();
        let mut index = Vec::new();
        for i in 0..256u32 {
            index.push((w.len() - table) as u16);
            let b = if (0x21..0x7f).contains(&i) {
                i as u8
            } else {
                b'?'
            };
            w.push(b);
            w.push(0);
        }
        while !w.len().is_multiple_of(8) {
            w.push(0);
        }
        for i in index {
            w.extend_from_slice(&i.to_le_bytes());
        }
        w.extend_from_slice(&[0; 64]);
        w
    }

    #[test]
    fn finds_and_decodes_a_synthetic_table() {
        let names: Vec<String> = (0..1500).map(|i| format!("Tsym_{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let w = synth(&refs);
        let t = find_tables(&w).unwrap();
        assert_eq!(t.num_syms, 1500);
        let syms = decode(&w, &t).unwrap();
        assert_eq!(syms[7].name, "sym_7");
        assert_eq!(syms[7].kind, 'T');
        assert_eq!(syms[7].address, 0xffff_ffff_8100_0000 + 7);
        // Any cut of the window fails cleanly, never panics.
        for cut in [0, 100, w.len() / 2, w.len() - 600] {
            let _ = find_tables(&w[..cut]);
        }
    }

    #[test]
    fn system_map_prefers_globals() {
        let t = SymbolTable::parse_system_map(
            "ffffffff81000000 t dup\nffffffff81000010 T dup\nzz bad line\nffffffff82000000 D init_task\n",
        );
        assert_eq!(t.get("dup"), Some(0xffffffff81000010));
        assert_eq!(t.get("init_task"), Some(0xffffffff82000000));
        assert_eq!(t.len(), 3);
    }
}
