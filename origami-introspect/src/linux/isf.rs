//! Struct layouts and symbols from a Volatility 3 symbol file (ISF: the JSON `dwarf2json`
//! writes, plain or `.json.xz`), for kernels whose own BTF is missing or damaged.
//!
//! The file is parsed as it is read (an `.xz` one decompressed on another thread into a
//! pipe), never held whole: of `symbols` only the ones discovery reads are kept, of `enums`
//! only their sizes; `base_types` and `user_types` are kept, in typed form. The decompressed
//! text is bounded by [`MAX_ISF_BYTES`].
//!
//! Lookups follow the ISF's own structure: a member path is looked up field by field,
//! through fields marked `anonymous` (C's anonymous structs and unions); a `bitfield`
//! field carries its bit position and width; type sizes come from `user_types`,
//! `base_types` (`pointer` for pointers), `enums` and array counts. The file is untrusted:
//! a member must lie inside its struct (offset plus size within the struct's size), type
//! chains are followed a bounded number of steps.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::layout::{needed_symbols, Layout, Member};
use crate::error::{Error, Result};

/// The most bytes of JSON read (after decompression): a whole distribution kernel's ISF
/// is some 30 to 120 MB.
pub const MAX_ISF_BYTES: u64 = 1 << 30;

/// How many nested array, bitfield or anonymous levels a lookup follows.
const MAX_DEPTH: usize = 16;

/// How many fields one lookup may visit.
const MAX_LOOKUP_STEPS: usize = 100_000;

/// The xz stream magic.
const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];

/// A type as an ISF field or array names it.
#[derive(Debug, Clone, Default, Deserialize)]
struct TypeRef {
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    subtype: Option<Box<TypeRef>>,
    #[serde(default, rename = "type")]
    inner: Option<Box<TypeRef>>,
    #[serde(default)]
    bit_length: Option<u32>,
    #[serde(default)]
    bit_position: Option<u32>,
}

/// A field of a user type.
#[derive(Debug, Clone, Deserialize)]
struct Field {
    #[serde(rename = "type")]
    ty: TypeRef,
    offset: u64,
    #[serde(default)]
    anonymous: bool,
}

/// A struct, union or class.
#[derive(Debug, Clone, Deserialize)]
struct UserType {
    #[serde(default)]
    kind: String,
    size: u64,
    #[serde(default)]
    fields: HashMap<String, Field>,
}

/// Anything that has a size (base types, enums).
#[derive(Debug, Clone, Copy, Deserialize)]
struct Sized_ {
    size: u64,
}

/// A kept symbol.
#[derive(Debug, Clone, Deserialize)]
struct Symbol {
    address: u64,
    #[serde(default)]
    constant_data: Option<String>,
}

/// The symbols discovery reads, the rest skipped while parsing.
#[derive(Debug, Default)]
struct Symbols(BTreeMap<String, Symbol>);

impl<'de> Deserialize<'de> for Symbols {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Symbols;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of symbols")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Symbols, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(k) = m.next_key::<String>()? {
                    if wanted_symbol(&k) {
                        let s: Symbol = m.next_value()?;
                        out.insert(k, s);
                    } else {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Symbols(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn wanted_symbol(name: &str) -> bool {
    name == "linux_banner" || name == "_text" || needed_symbols().any(|n| n == name)
}

/// The parts of an ISF document kept.
#[derive(Debug, Default, Deserialize)]
struct Doc {
    #[serde(default)]
    base_types: HashMap<String, Sized_>,
    #[serde(default)]
    user_types: HashMap<String, UserType>,
    #[serde(default)]
    enums: HashMap<String, Sized_>,
    #[serde(default)]
    symbols: Symbols,
}

/// A parsed Volatility 3 symbol file.
#[derive(Debug)]
pub struct Isf {
    path: PathBuf,
    doc: Doc,
}

/// A reader that fails once more than `left` bytes were read.
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self
            .left
            .checked_sub(n as u64)
            .ok_or_else(|| std::io::Error::other(format!("over the {MAX_ISF_BYTES}-byte bound")))?;
        Ok(n)
    }
}

impl Isf {
    /// Reads and parses `path` (JSON, or xz-compressed JSON: told by its first bytes).
    pub fn open(path: &Path) -> Result<Isf> {
        let bad = |what: String| Error::Malformed {
            file: path.display().to_string(),
            location: "ISF".into(),
            what,
        };
        let mut file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut magic = [0u8; 6];
        let n = file.read(&mut magic).map_err(|e| bad(e.to_string()))?;
        let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let doc = if n == 6 && magic == XZ_MAGIC {
            let (rx, mut tx) = std::io::pipe().map_err(|e| bad(e.to_string()))?;
            let t = std::thread::spawn(move || {
                let mut input = BufReader::new(file);
                // Ends with an error when the parser stops reading (a closed pipe).
                lzma_rs::xz_decompress(&mut input, &mut tx).map_err(|e| e.to_string())
            });
            let parsed = parse(rx);
            let unpacked = t
                .join()
                .unwrap_or_else(|_| Err("decompressor panicked".into()));
            match (parsed, unpacked) {
                (Ok(doc), _) => doc,
                (Err(e), Err(x)) => return Err(bad(format!("{e} (xz: {x})"))),
                (Err(e), Ok(())) => return Err(bad(e)),
            }
        } else {
            parse(file).map_err(bad)?
        };
        Ok(Isf {
            path: path.to_path_buf(),
            doc,
        })
    }

    /// The kernel's `Linux version` banner, from `linux_banner`'s `constant_data`.
    pub fn banner(&self) -> Option<String> {
        let data = self
            .doc
            .symbols
            .0
            .get("linux_banner")?
            .constant_data
            .as_ref()?;
        let bytes = base64(data)?;
        let end = memchr::memchr(0, &bytes).unwrap_or(bytes.len());
        let text = std::str::from_utf8(bytes.get(..end)?).ok()?;
        Some(text.trim_end_matches('\n').to_string())
    }

    /// Link-time addresses of the symbols discovery reads.
    pub fn symbols(&self) -> BTreeMap<String, u64> {
        self.doc
            .symbols
            .0
            .iter()
            .map(|(k, s)| (k.clone(), s.address))
            .collect()
    }

    fn bad(&self, location: String, what: impl Into<String>) -> Error {
        Error::Malformed {
            file: self.path.display().to_string(),
            location,
            what: what.into(),
        }
    }

    /// Resolves every member the features read.
    pub fn layout(&self) -> Layout {
        Layout::from_lookup(&|ty, path| self.member(ty, path), &|name| {
            self.doc
                .user_types
                .get(name)
                .filter(|t| t.kind != "enum")
                .map(|t| t.size)
        })
    }

    fn user_type(&self, name: &str) -> Result<&UserType> {
        self.doc
            .user_types
            .get(name)
            .ok_or_else(|| self.bad(format!("user_types.{name}"), "no such struct or union"))
    }

    /// The size in bytes of a type reference.
    fn size_of(&self, t: &TypeRef, depth: usize) -> Result<u64> {
        if depth > MAX_DEPTH {
            return Err(self.bad(format!("type {}", t.kind), "types nested too deep"));
        }
        let named = |map: &HashMap<String, Sized_>, what: &str| -> Result<u64> {
            let name = t.name.as_deref().unwrap_or("");
            map.get(name)
                .map(|s| s.size)
                .ok_or_else(|| self.bad(format!("{what}.{name}"), "no such type"))
        };
        Ok(match t.kind.as_str() {
            "struct" | "union" | "class" => self.user_type(t.name.as_deref().unwrap_or(""))?.size,
            "base" => named(&self.doc.base_types, "base_types")?,
            "enum" => named(&self.doc.enums, "enums")?,
            "pointer" => self.doc.base_types.get("pointer").map_or(8, |s| s.size),
            "array" => {
                let sub = t
                    .subtype
                    .as_deref()
                    .ok_or_else(|| self.bad("array".into(), "no subtype"))?;
                self.size_of(sub, depth + 1)?
                    .saturating_mul(t.count.unwrap_or(0))
            }
            "bitfield" => {
                let inner = t
                    .inner
                    .as_deref()
                    .ok_or_else(|| self.bad("bitfield".into(), "no type"))?;
                self.size_of(inner, depth + 1)?
            }
            _ => 0,
        })
    }

    /// Finds `path` inside the struct or union `ty`.
    fn member(&self, ty: &str, path: &str) -> Result<Member> {
        let mut cur = self.user_type(ty)?;
        let mut cur_name = ty.to_string();
        let mut offset = 0u64;
        let mut found = None;
        for part in path.split('.') {
            let mut budget = MAX_LOOKUP_STEPS;
            let (off, f) = self
                .find(cur, &cur_name, part, 0, &mut budget)?
                .ok_or_else(|| self.bad(format!("{ty}.{path}"), format!("no member {part}")))?;
            offset = offset.saturating_add(off);
            found = Some(f);
            if let ("struct" | "union" | "class", Some(n)) = (f.ty.kind.as_str(), &f.ty.name) {
                cur = self.user_type(n)?;
                cur_name = n.clone();
            }
        }
        let f = found.ok_or_else(|| self.bad(format!("{ty}.{path}"), "empty member path"))?;
        let (bit, bits) = match f.ty.kind.as_str() {
            "bitfield" => (f.ty.bit_position.unwrap_or(0), f.ty.bit_length.unwrap_or(0)),
            _ => (0, 0),
        };
        Ok(Member {
            offset: offset.saturating_add(u64::from(bit / 8)),
            size: self.size_of(&f.ty, 0)?,
            bit: bit % 8,
            bits,
        })
    }

    /// One level of lookup: the byte offset of `name` in `t` (named `tname`) and its field,
    /// through anonymous fields; each field found must lie inside its struct.
    fn find<'a>(
        &'a self,
        t: &'a UserType,
        tname: &str,
        name: &str,
        depth: usize,
        budget: &mut usize,
    ) -> Result<Option<(u64, &'a Field)>> {
        if depth > MAX_DEPTH {
            return Ok(None);
        }
        let inside = |f: &Field, fname: &str| -> Result<()> {
            let size = self.size_of(&f.ty, 0)?;
            // In bits: a bitfield's storage type may run past the struct, its bits may not.
            let end_bits = match f.ty.kind.as_str() {
                "bitfield" => f.offset.saturating_mul(8).saturating_add(u64::from(
                    f.ty.bit_position
                        .unwrap_or(0)
                        .saturating_add(f.ty.bit_length.unwrap_or(0)),
                )),
                _ => f.offset.saturating_add(size).saturating_mul(8),
            };
            if end_bits > t.size.saturating_mul(8) {
                return Err(self.bad(
                    format!("user_types.{tname}.fields.{fname}"),
                    format!(
                        "offset {} and size {size} reach past the end of the {}-byte {tname}",
                        f.offset, t.size
                    ),
                ));
            }
            Ok(())
        };
        if let Some(f) = t.fields.get(name).filter(|f| !f.anonymous) {
            inside(f, name)?;
            return Ok(Some((f.offset, f)));
        }
        // Anonymous fields in offset order, as C would look through them.
        let mut anon: Vec<(&String, &Field)> =
            t.fields.iter().filter(|(_, f)| f.anonymous).collect();
        anon.sort_by_key(|(n, f)| (f.offset, n.as_str()));
        for (fname, f) in anon {
            *budget = budget.checked_sub(1).ok_or_else(|| {
                self.bad(
                    format!("user_types.{tname}"),
                    "lookup exceeds its step bound",
                )
            })?;
            let (Some(inner_name), "struct" | "union" | "class") =
                (f.ty.name.as_deref(), f.ty.kind.as_str())
            else {
                continue;
            };
            inside(f, fname)?;
            let inner = self.user_type(inner_name)?;
            if let Some((off, g)) = self.find(inner, inner_name, name, depth + 1, budget)? {
                return Ok(Some((f.offset.saturating_add(off), g)));
            }
        }
        Ok(None)
    }
}

/// Parses the document from `input`, bounded.
fn parse(input: impl Read) -> std::result::Result<Doc, String> {
    let r = BufReader::with_capacity(
        1 << 16,
        Bounded {
            inner: input,
            left: MAX_ISF_BYTES,
        },
    );
    let mut de = serde_json::Deserializer::from_reader(r);
    let doc = DocSeed.deserialize(&mut de).map_err(|e| e.to_string())?;
    Ok(doc)
}

/// Deserializes a [`Doc`] (a seed, so that the top level can be checked for shape).
struct DocSeed;

impl<'de> DeserializeSeed<'de> for DocSeed {
    type Value = Doc;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Doc, D::Error> {
        Doc::deserialize(d)
    }
}

/// Standard base64 (with or without padding); `None` on a bad character.
fn base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 3);
    let mut acc = 0u32;
    let mut n = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b'\n' | b'\r' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    Some(out)
}

/// Parses ISF text from memory (the fuzz target's entry point): the same parser and
/// lookups as [`Isf::open`], returning the layouts it resolves.
pub fn layout_from_bytes(bytes: &[u8]) -> Result<Layout> {
    let doc = parse(bytes).map_err(|what| Error::Malformed {
        file: "ISF".into(),
        location: "bytes".into(),
        what,
    })?;
    let isf = Isf {
        path: PathBuf::from("ISF"),
        doc,
    };
    let _ = isf.banner();
    Ok(isf.layout())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes() {
        assert_eq!(base64("TGludXg=").unwrap(), b"Linux");
        assert_eq!(base64("TGludXgg").unwrap(), b"Linux ");
        assert_eq!(base64("TGl").unwrap(), b"Li");
        assert!(base64("T*").is_none());
    }

    const DOC: &str = r#"{
      "metadata": {"format": "6.2.0"},
      "base_types": {"int": {"size": 4, "signed": true, "kind": "int", "endian": "little"},
                     "unsigned int": {"size": 4, "signed": false, "kind": "int", "endian": "little"},
                     "pointer": {"size": 8, "signed": false, "kind": "int", "endian": "little"}},
      "user_types": {
        "task_struct": {"kind": "struct", "size": 64, "fields": {
          "pid": {"offset": 8, "type": {"kind": "base", "name": "int"}},
          "unnamed_field_0": {"offset": 16, "anonymous": true, "type": {"kind": "union", "name": "unnamed_1"}},
          "flags": {"offset": 4, "type": {"kind": "bitfield", "bit_length": 3, "bit_position": 10,
                    "type": {"kind": "base", "name": "unsigned int"}}},
          "comm": {"offset": 40, "type": {"kind": "array", "count": 16, "subtype": {"kind": "base", "name": "char"}}}
        }},
        "unnamed_1": {"kind": "union", "size": 8, "fields": {
          "mm": {"offset": 0, "type": {"kind": "pointer", "subtype": {"kind": "base", "name": "void"}}}
        }},
        "bad": {"kind": "struct", "size": 8, "fields": {
          "x": {"offset": 6, "type": {"kind": "base", "name": "int"}}
        }}
      },
      "enums": {},
      "symbols": {"init_task": {"address": 18446744071600000000},
                  "linux_banner": {"address": 1, "constant_data": "TGludXggdmVyc2lvbiA2LjEK"},
                  "unrelated": {"address": 2, "type": {"kind": "base", "name": "int"}}}
    }"#;

    fn isf() -> Isf {
        Isf {
            path: "t.json".into(),
            doc: parse(DOC.as_bytes()).unwrap(),
        }
    }

    #[test]
    fn members_bitfields_anonymous_and_bounds() {
        let i = isf();
        assert_eq!(i.banner().as_deref(), Some("Linux version 6.1"));
        assert_eq!(
            i.symbols().len(),
            2,
            "only the symbols discovery reads are kept"
        );
        let pid = i.member("task_struct", "pid").unwrap();
        assert_eq!((pid.offset, pid.size, pid.bits), (8, 4, 0));
        let mm = i.member("task_struct", "mm").unwrap();
        assert_eq!((mm.offset, mm.size), (16, 8));
        let flags = i.member("task_struct", "flags").unwrap();
        assert_eq!(
            (flags.offset, flags.bit, flags.bits, flags.size),
            (5, 2, 3, 4)
        );
        assert!(i.member("task_struct", "nope").is_err());
        // `char` is not among the base types: the size is an error naming it.
        assert!(i.member("task_struct", "comm").is_err());
        let e = i.member("bad", "x").unwrap_err().to_string();
        assert!(e.contains("past the end"), "{e}");
    }

    #[test]
    fn garbage_and_bounds_are_errors() {
        assert!(parse(&b"{"[..]).is_err());
        assert!(parse(&b"[1,2]"[..]).is_err());
        assert!(parse(&br#"{"user_types": {"a": {"size": -1}}}"#[..]).is_err());
        assert!(layout_from_bytes(b"{}").is_ok());
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(deep.as_bytes()).is_err());
    }
}
