//! A registry hive (regf) reader, written for hostile input.
//!
//! `nt-hive` (the `ntfs` crate's author's hive reader) was evaluated and not taken: it is
//! GPL-2.0-or-later, which the Apache-2.0 workspace cannot link; `notatin` pulls a large
//! dependency tree for features (log replay, recovery of deleted cells) a crawler does not
//! need. This reader takes the whole hive as bytes and checks it before use: every hive bin
//! (`hbin`) is walked once and its cells must tile it exactly (a cell whose size overlaps
//! the next cell or crosses its bin is an error), a cell offset is only followed when it is
//! the start of a cell found by that walk, subkey lists nest at most [`MAX_LIST_DEPTH`]
//! levels, and value data is bounded by [`MAX_VALUE`].
//!
//! Transaction logs (`.LOG1`, `.LOG2`) are not applied; [`Hive::is_dirty`] says when the
//! base block's sequence numbers differ, i.e. when the logs hold changes not yet written.

use thiserror::Error;

/// The largest value data read (a value claiming more is an error).
pub const MAX_VALUE: usize = 16 << 20;
/// The most subkeys or values one key may list.
pub const MAX_LIST: usize = 1 << 20;
/// How deep `ri` lists may nest.
pub const MAX_LIST_DEPTH: usize = 4;
const BASE: usize = 4096;

/// What is wrong with a hive: the file (as named by the caller) and the offset.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{file}: registry hive at offset {offset:#x}: {what}")]
pub struct HiveError {
    /// The hive's name (its guest path).
    pub file: String,
    /// The file offset where the problem is.
    pub offset: u64,
    /// What is wrong.
    pub what: String,
}

/// A parsed and checked hive.
#[derive(Debug)]
pub struct Hive {
    name: String,
    data: Vec<u8>,
    root: u32,
    /// One bit per 8 bytes of the bins: set where an allocated cell starts (cells are
    /// 8-byte aligned), 1/64 of the hive's size.
    cells: Vec<u64>,
    dirty: bool,
}

fn bit(cells: &[u64], off: u32) -> bool {
    off.is_multiple_of(8)
        && cells
            .get((off / 8 / 64) as usize)
            .is_some_and(|w| w & (1 << (off / 8 % 64)) != 0)
}

/// A registry key (an `nk` cell).
#[derive(Debug, Clone, Copy)]
pub struct Key<'h> {
    hive: &'h Hive,
    off: u32,
}

/// A value's data, decoded by its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// `REG_SZ` or `REG_EXPAND_SZ` (1, 2).
    String(String),
    /// `REG_MULTI_SZ` (7).
    Multi(Vec<String>),
    /// `REG_DWORD` (4).
    Dword(u32),
    /// `REG_QWORD` (11).
    Qword(u64),
    /// Anything else, with its type number.
    Bytes(u32, Vec<u8>),
}

impl Data {
    /// The value as text: strings as they are, numbers in decimal, multi-strings joined by
    /// spaces; `None` for binary data.
    pub fn text(&self) -> Option<String> {
        match self {
            Data::String(s) => Some(s.clone()),
            Data::Multi(v) => Some(v.join(" ")),
            Data::Dword(n) => Some(n.to_string()),
            Data::Qword(n) => Some(n.to_string()),
            Data::Bytes(..) => None,
        }
    }
    /// The value as a number (DWORD or QWORD).
    pub fn number(&self) -> Option<u64> {
        match self {
            Data::Dword(n) => Some(u64::from(*n)),
            Data::Qword(n) => Some(*n),
            _ => None,
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

fn utf16z(b: &[u8]) -> Vec<String> {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    units
        .split(|u| *u == 0)
        .map(String::from_utf16_lossy)
        .collect()
}

impl Hive {
    /// Checks and indexes the hive in `data`, named `name` in errors.
    pub fn parse(name: &str, data: Vec<u8>) -> Result<Hive, HiveError> {
        let err = |offset: usize, what: String| HiveError {
            file: name.to_string(),
            offset: offset as u64,
            what,
        };
        if data.len() < BASE + 32 || &data[..4] != b"regf" {
            return Err(err(0, "no regf base block".into()));
        }
        let seq1 = u32_at(&data, 4).unwrap_or(0);
        let seq2 = u32_at(&data, 8).unwrap_or(0);
        let root = u32_at(&data, 0x24).unwrap_or(0);
        let bins = u32_at(&data, 0x28).unwrap_or(0) as usize;
        let end = BASE.saturating_add(bins).min(data.len());
        let mut cells = vec![0u64; (end - BASE) / 8 / 64 + 1];
        let mut at = BASE;
        while at + 32 <= end {
            if &data[at..at + 4] != b"hbin" {
                // Windows allocates bins up to the stated size; what follows a missing
                // signature is not part of the hive.
                if at == BASE {
                    return Err(err(at, "no hbin after the base block".into()));
                }
                break;
            }
            let size = u32_at(&data, at + 8).unwrap_or(0) as usize;
            if size < 4096 || !size.is_multiple_of(4096) || at + size > end {
                return Err(err(at + 8, format!("hbin size {size:#x} invalid")));
            }
            let mut c = at + 32;
            while c < at + size {
                let raw = u32_at(&data, c).unwrap_or(0) as i32;
                let len = raw.unsigned_abs() as usize;
                if len < 8 || !len.is_multiple_of(8) || c + len > at + size {
                    return Err(err(
                        c,
                        format!("cell size {raw} overlaps its neighbours or its bin"),
                    ));
                }
                if raw < 0 {
                    let i = (c - BASE) / 8;
                    cells[i / 64] |= 1 << (i % 64);
                }
                c += len;
            }
            at += size;
        }
        if !bit(&cells, root) {
            return Err(err(
                0x24,
                format!("root cell {root:#x} is not an allocated cell"),
            ));
        }
        let hive = Hive {
            name: name.to_string(),
            data,
            root,
            cells,
            dirty: seq1 != seq2,
        };
        let r = hive.root();
        if hive.cell(r.off, b"nk").is_err() {
            return Err(err(BASE + root as usize, "root cell is no key".into()));
        }
        Ok(hive)
    }

    /// True when the base block's two sequence numbers differ: changes of the transaction
    /// logs are not in the primary file (they are not applied here).
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The hive's name, as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The root key.
    pub fn root(&self) -> Key<'_> {
        Key {
            hive: self,
            off: self.root,
        }
    }

    fn err(&self, off: u32, what: impl Into<String>) -> HiveError {
        HiveError {
            file: self.name.clone(),
            offset: BASE as u64 + u64::from(off),
            what: what.into(),
        }
    }

    /// The payload of the allocated cell at `off` (past its size), checked to start with
    /// `sig` when `sig` is not empty.
    fn cell(&self, off: u32, sig: &[u8]) -> Result<&[u8], HiveError> {
        if !bit(&self.cells, off) {
            return Err(self.err(off, "offset is not the start of an allocated cell"));
        }
        let at = BASE + off as usize;
        let len = (u32_at(&self.data, at).unwrap_or(0) as i32).unsigned_abs() as usize;
        let payload = &self.data[at + 4..at + len];
        if !sig.is_empty() && !payload.starts_with(sig) {
            return Err(self.err(
                off,
                format!("expected a {} cell", String::from_utf8_lossy(sig)),
            ));
        }
        Ok(payload)
    }
}

impl<'h> Key<'h> {
    fn nk(&self) -> Result<&'h [u8], HiveError> {
        let c = self.hive.cell(self.off, b"nk")?;
        if c.len() < 0x4C {
            return Err(self.hive.err(self.off, "key cell too short"));
        }
        Ok(c)
    }

    /// The key's name.
    pub fn name(&self) -> Result<String, HiveError> {
        let c = self.nk()?;
        let flags = u16_at(c, 2).unwrap_or(0);
        let len = usize::from(u16_at(c, 0x48).unwrap_or(0));
        let raw = c
            .get(0x4C..0x4C + len)
            .ok_or_else(|| self.hive.err(self.off, "key name runs past its cell"))?;
        Ok(if flags & 0x20 != 0 {
            raw.iter().map(|b| char::from(*b)).collect()
        } else {
            utf16(raw)
        })
    }

    /// The subkeys, in stored order.
    pub fn subkeys(&self) -> Result<Vec<Key<'h>>, HiveError> {
        let c = self.nk()?;
        let count = u32_at(c, 0x14).unwrap_or(0) as usize;
        if count == 0 {
            return Ok(Vec::new());
        }
        if count > MAX_LIST {
            return Err(self.hive.err(self.off, format!("{count} subkeys claimed")));
        }
        let mut out = Vec::new();
        self.list(u32_at(c, 0x1C).unwrap_or(u32::MAX), 0, &mut out)?;
        Ok(out)
    }

    fn list(&self, off: u32, depth: usize, out: &mut Vec<Key<'h>>) -> Result<(), HiveError> {
        if depth > MAX_LIST_DEPTH {
            return Err(self.hive.err(off, "subkey lists nest too deep (a loop?)"));
        }
        let c = self.hive.cell(off, b"")?;
        let sig = c.get(..2).unwrap_or_default();
        let n = usize::from(u16_at(c, 2).unwrap_or(0));
        let step = match sig {
            b"lf" | b"lh" => 8,
            b"li" | b"ri" => 4,
            _ => return Err(self.hive.err(off, "unknown subkey list")),
        };
        if 4 + n * step > c.len() {
            return Err(self.hive.err(off, "subkey list runs past its cell"));
        }
        for i in 0..n {
            let target = u32_at(c, 4 + i * step).unwrap_or(u32::MAX);
            if sig == b"ri" {
                self.list(target, depth + 1, out)?;
            } else {
                if out.len() >= MAX_LIST {
                    return Err(self.hive.err(off, "too many subkeys"));
                }
                out.push(Key {
                    hive: self.hive,
                    off: target,
                });
            }
        }
        Ok(())
    }

    /// The subkey named `name` (case-insensitive), if any.
    pub fn subkey(&self, name: &str) -> Result<Option<Key<'h>>, HiveError> {
        let want = name.to_lowercase();
        for k in self.subkeys()? {
            if k.name()?.to_lowercase() == want {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }

    /// The key at `path` below this one (`Microsoft\Windows NT\CurrentVersion`).
    pub fn path(&self, path: &str) -> Result<Option<Key<'h>>, HiveError> {
        let mut k = *self;
        for part in path.split('\\').filter(|p| !p.is_empty()) {
            match k.subkey(part)? {
                Some(s) => k = s,
                None => return Ok(None),
            }
        }
        Ok(Some(k))
    }

    /// The values: (name, type, data).
    pub fn values(&self) -> Result<Vec<(String, u32, Data)>, HiveError> {
        let c = self.nk()?;
        let count = u32_at(c, 0x24).unwrap_or(0) as usize;
        if count == 0 {
            return Ok(Vec::new());
        }
        if count > MAX_LIST {
            return Err(self.hive.err(self.off, format!("{count} values claimed")));
        }
        let list_off = u32_at(c, 0x28).unwrap_or(u32::MAX);
        let list = self.hive.cell(list_off, b"")?;
        if count * 4 > list.len() {
            return Err(self.hive.err(list_off, "value list runs past its cell"));
        }
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let vk_off = u32_at(list, i * 4).unwrap_or(u32::MAX);
            out.push(self.value_at(vk_off)?);
        }
        Ok(out)
    }

    /// The value named `name` (case-insensitive; `""` is the default value).
    pub fn value(&self, name: &str) -> Result<Option<Data>, HiveError> {
        let want = name.to_lowercase();
        Ok(self
            .values()?
            .into_iter()
            .find(|(n, _, _)| n.to_lowercase() == want)
            .map(|(_, _, d)| d))
    }

    /// The value `name` as text, when it is a string or number.
    pub fn text(&self, name: &str) -> Result<Option<String>, HiveError> {
        Ok(self.value(name)?.and_then(|d| d.text()))
    }

    /// The type number of value `name` (the SAM keeps RIDs there).
    pub fn value_type(&self, name: &str) -> Result<Option<u32>, HiveError> {
        let want = name.to_lowercase();
        Ok(self
            .values()?
            .into_iter()
            .find(|(n, _, _)| n.to_lowercase() == want)
            .map(|(_, t, _)| t))
    }

    fn value_at(&self, off: u32) -> Result<(String, u32, Data), HiveError> {
        let h = self.hive;
        let vk = h.cell(off, b"vk")?;
        if vk.len() < 0x14 {
            return Err(h.err(off, "value cell too short"));
        }
        let name_len = usize::from(u16_at(vk, 2).unwrap_or(0));
        let size_raw = u32_at(vk, 4).unwrap_or(0);
        let data_off = u32_at(vk, 8).unwrap_or(0);
        let ty = u32_at(vk, 0x0C).unwrap_or(0);
        let flags = u16_at(vk, 0x10).unwrap_or(0);
        let raw_name = vk
            .get(0x14..0x14 + name_len)
            .ok_or_else(|| h.err(off, "value name runs past its cell"))?;
        let name = if flags & 1 != 0 {
            raw_name.iter().map(|b| char::from(*b)).collect()
        } else {
            utf16(raw_name)
        };
        let inline = size_raw & 0x8000_0000 != 0;
        let size = (size_raw & 0x7FFF_FFFF) as usize;
        let bytes: Vec<u8> = if inline {
            if size > 4 {
                return Err(h.err(off, format!("inline value claims {size} bytes")));
            }
            data_off.to_le_bytes()[..size].to_vec()
        } else {
            if size > MAX_VALUE {
                return Err(h.err(
                    off,
                    format!("value {name:?} claims {size} bytes (bound {MAX_VALUE})"),
                ));
            }
            if size == 0 {
                Vec::new()
            } else {
                self.data(data_off, size)?
            }
        };
        let data = match ty {
            1 | 2 => Data::String(utf16z(&bytes).into_iter().next().unwrap_or_default()),
            7 => Data::Multi(
                utf16z(&bytes)
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
            4 if bytes.len() >= 4 => Data::Dword(u32_at(&bytes, 0).unwrap_or(0)),
            11 if bytes.len() >= 8 => Data::Qword(
                u64::from(u32_at(&bytes, 0).unwrap_or(0))
                    | (u64::from(u32_at(&bytes, 4).unwrap_or(0)) << 32),
            ),
            _ => Data::Bytes(ty, bytes),
        };
        Ok((name, ty, data))
    }

    /// `size` bytes of value data at cell `off`: one cell, or a `db` big-data cell listing
    /// segments of at most 16344 bytes.
    fn data(&self, off: u32, size: usize) -> Result<Vec<u8>, HiveError> {
        let h = self.hive;
        let c = h.cell(off, b"")?;
        if c.starts_with(b"db") && size > 16344 {
            let n = usize::from(u16_at(c, 2).unwrap_or(0));
            let list_off = u32_at(c, 4).unwrap_or(u32::MAX);
            let list = h.cell(list_off, b"")?;
            if n * 4 > list.len() {
                return Err(h.err(list_off, "big-data segment list runs past its cell"));
            }
            let mut out = Vec::with_capacity(size);
            for i in 0..n {
                let seg = h.cell(u32_at(list, i * 4).unwrap_or(u32::MAX), b"")?;
                let take = (size - out.len()).min(seg.len()).min(16344);
                out.extend_from_slice(&seg[..take]);
                if out.len() == size {
                    break;
                }
            }
            if out.len() < size {
                return Err(h.err(off, format!("big data holds {} of {size} bytes", out.len())));
            }
            return Ok(out);
        }
        if size > c.len() {
            return Err(h.err(
                off,
                format!("value data of {size} bytes runs past its cell"),
            ));
        }
        Ok(c[..size].to_vec())
    }
}
