//! The kernel's own BTF (BPF Type Format), parsed into struct layouts.
//!
//! Linux kernels built with `CONFIG_DEBUG_INFO_BTF` carry a description of every type they
//! use in the `.BTF` section (`__start_BTF`..`__stop_BTF`, also `/sys/kernel/btf/vmlinux`).
//! This module parses that blob (header magic `0xEB9F`, a type section and a string section)
//! and answers the one question the memory crawlers ask: at which byte offset, and with which
//! size, does `task_struct.tasks` (or `sock.__sk_common.skc_num`, ...) live in *this* kernel.
//! Member lookup walks through anonymous structs and unions, as C does. The blob is hostile
//! input: every offset and count is checked against the blob's length, type ids are checked
//! before use, and type chains are followed a bounded number of steps.

use std::collections::HashMap;

use origami_core::bytes::{le16, try_le32};

use crate::error::{Error, Result};

/// The BTF magic number, little-endian in the blob.
pub const BTF_MAGIC: u16 = 0xEB9F;

/// The header length this parser understands (version 1).
const HEADER_LEN: usize = 24;

/// How many typedef/const/volatile links are followed before a type chain is declared a loop.
const MAX_CHAIN: usize = 32;

/// How many anonymous struct/union levels a member lookup descends through.
const MAX_ANON_DEPTH: usize = 8;

/// How many members one lookup may visit (task_struct has a few hundred, nested).
const MAX_LOOKUP_STEPS: usize = 100_000;

/// The kinds of BTF type this parser distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `void` (type id 0) or a kind this parser does not know.
    Void,
    /// An integer.
    Int,
    /// A pointer.
    Ptr,
    /// An array.
    Array,
    /// A struct.
    Struct,
    /// A union.
    Union,
    /// An enum (32- or 64-bit).
    Enum,
    /// A forward declaration.
    Fwd,
    /// A typedef.
    Typedef,
    /// `volatile`, `const`, `restrict` or a type tag: a qualifier over another type.
    Qualifier,
    /// Functions, prototypes, variables, data sections, declaration tags.
    Other,
    /// A floating-point type.
    Float,
}

/// One member of a struct or union.
#[derive(Debug, Clone)]
struct Member {
    name: u32,
    type_id: u32,
    /// Offset in bits from the start of the enclosing type.
    bit_offset: u32,
    /// Bitfield width in bits, 0 when the member is not a bitfield.
    bitfield_size: u32,
}

/// One parsed type.
#[derive(Debug, Clone)]
struct Type {
    name: u32,
    kind: Kind,
    /// `size` for ints, structs, unions, enums, floats; the referenced type otherwise.
    size_or_type: u32,
    members: Vec<Member>,
    /// For arrays: (element type, element count).
    array: Option<(u32, u32)>,
}

/// A resolved member: where it is inside its outermost struct and how large it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Byte offset from the start of the struct named in the lookup.
    pub offset: u64,
    /// Size in bytes of the member's type (0 when unknown, e.g. a flexible array).
    pub size: u64,
    /// The BTF type id of the member.
    pub type_id: u32,
    /// Bitfield width in bits (0 when the member is not a bitfield; `offset` is then the
    /// byte holding its first bit).
    pub bitfield_bits: u32,
    /// For a bitfield, the position of its first bit within the byte at `offset` (counted
    /// from the least significant bit, as x86-64 lays bitfields out); 0 otherwise.
    pub bit: u32,
}

/// The kernel's type information.
#[derive(Debug, Clone)]
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    /// Named structs and unions, by name; a name used twice keeps its first, complete one.
    by_name: HashMap<String, u32>,
}

fn malformed(location: String, what: impl Into<String>) -> Error {
    Error::Malformed {
        file: "kernel BTF".into(),
        location,
        what: what.into(),
    }
}

/// The little-endian `u32` at `off`, or an error naming the offset.
fn u32_at(b: &[u8], off: usize) -> Result<u32> {
    try_le32(b, off).ok_or_else(|| malformed(format!("offset {off:#x}"), "truncated"))
}

impl Btf {
    /// Parses a BTF blob (header, types, strings).
    ///
    /// Trailing bytes after the string section are ignored, so a caller may pass a window
    /// of memory that is larger than the blob.
    pub fn parse(blob: &[u8]) -> Result<Btf> {
        let header = Header::parse(blob)?;
        let base = header.hdr_len as usize;
        let types_start = base
            .checked_add(header.type_off as usize)
            .ok_or_else(|| malformed("header".into(), "type section offset overflows"))?;
        let types_end = types_start
            .checked_add(header.type_len as usize)
            .ok_or_else(|| malformed("header".into(), "type section length overflows"))?;
        let str_start = base
            .checked_add(header.str_off as usize)
            .ok_or_else(|| malformed("header".into(), "string section offset overflows"))?;
        let str_end = str_start
            .checked_add(header.str_len as usize)
            .ok_or_else(|| malformed("header".into(), "string section length overflows"))?;
        let type_bytes = blob.get(types_start..types_end).ok_or_else(|| {
            malformed(
                format!("offset {types_start:#x}"),
                format!("type section ends at {types_end:#x}, past the blob"),
            )
        })?;
        let strings = blob
            .get(str_start..str_end)
            .ok_or_else(|| {
                malformed(
                    format!("offset {str_start:#x}"),
                    format!("string section ends at {str_end:#x}, past the blob"),
                )
            })?
            .to_vec();

        // Type id 0 is void; real types start at 1.
        let mut types = vec![Type {
            name: 0,
            kind: Kind::Void,
            size_or_type: 0,
            members: Vec::new(),
            array: None,
        }];
        let mut pos = 0usize;
        while pos < type_bytes.len() {
            let at = types_start + pos;
            let name = u32_at(type_bytes, pos)?;
            let info = u32_at(type_bytes, pos + 4)?;
            let size_or_type = u32_at(type_bytes, pos + 8)?;
            pos += 12;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 != 0;
            let raw_kind = (info >> 24) & 0x1f;
            let mut t = Type {
                name,
                kind: Kind::Other,
                size_or_type,
                members: Vec::new(),
                array: None,
            };
            // Each kind is followed by kind-specific data whose size we must skip exactly.
            let extra = match raw_kind {
                1 => {
                    t.kind = Kind::Int;
                    4
                }
                2 => {
                    t.kind = Kind::Ptr;
                    0
                }
                3 => {
                    t.kind = Kind::Array;
                    let elem = u32_at(type_bytes, pos)?;
                    let nelems = u32_at(type_bytes, pos + 8)?;
                    t.array = Some((elem, nelems));
                    12
                }
                4 | 5 => {
                    t.kind = if raw_kind == 4 {
                        Kind::Struct
                    } else {
                        Kind::Union
                    };
                    let len = vlen
                        .checked_mul(12)
                        .filter(|l| pos + l <= type_bytes.len())
                        .ok_or_else(|| {
                            malformed(format!("offset {at:#x}"), "member list past the section")
                        })?;
                    t.members.reserve(vlen);
                    for i in 0..vlen {
                        let m = pos + i * 12;
                        let off = u32_at(type_bytes, m + 8)?;
                        let (bit_offset, bitfield_size) = if kind_flag {
                            (off & 0x00ff_ffff, off >> 24)
                        } else {
                            (off, 0)
                        };
                        t.members.push(Member {
                            name: u32_at(type_bytes, m)?,
                            type_id: u32_at(type_bytes, m + 4)?,
                            bit_offset,
                            bitfield_size,
                        });
                    }
                    len
                }
                6 => {
                    t.kind = Kind::Enum;
                    vlen * 8
                }
                7 => {
                    t.kind = Kind::Fwd;
                    0
                }
                8 => {
                    t.kind = Kind::Typedef;
                    0
                }
                9 | 10 | 11 | 18 => {
                    t.kind = Kind::Qualifier;
                    0
                }
                12 => 0,
                13 => vlen * 8,
                14 => 4,
                15 => vlen * 12,
                16 => {
                    t.kind = Kind::Float;
                    0
                }
                17 => 4,
                19 => {
                    t.kind = Kind::Enum;
                    vlen * 12
                }
                k => {
                    return Err(malformed(
                        format!("offset {at:#x}"),
                        format!("unknown type kind {k}"),
                    ))
                }
            };
            pos = pos
                .checked_add(extra)
                .filter(|p| *p <= type_bytes.len())
                .ok_or_else(|| {
                    malformed(format!("offset {at:#x}"), "type data past the section")
                })?;
            types.push(t);
        }

        let mut btf = Btf {
            types,
            strings,
            by_name: HashMap::new(),
        };
        let mut by_name = HashMap::new();
        for (id, t) in btf.types.iter().enumerate() {
            if matches!(t.kind, Kind::Struct | Kind::Union) && t.name != 0 {
                if let Some(n) = btf.str_at(t.name) {
                    by_name.entry(n.to_string()).or_insert(id as u32);
                }
            }
        }
        btf.by_name = by_name;
        Ok(btf)
    }

    /// How many types the blob declares (not counting void).
    pub fn type_count(&self) -> usize {
        self.types.len().saturating_sub(1)
    }

    /// The NUL-terminated string at `off` of the string section.
    fn str_at(&self, off: u32) -> Option<&str> {
        let rest = self.strings.get(off as usize..)?;
        let end = memchr::memchr(0, rest)?;
        std::str::from_utf8(rest.get(..end)?).ok()
    }

    fn ty(&self, id: u32) -> Result<&Type> {
        self.types.get(id as usize).ok_or_else(|| {
            malformed(
                format!("type id {id}"),
                format!("past the last type ({})", self.types.len()),
            )
        })
    }

    /// The name of a type (empty for anonymous ones).
    pub fn type_name(&self, id: u32) -> Option<&str> {
        self.types
            .get(id as usize)
            .and_then(|t| self.str_at(t.name))
    }

    /// The kind of a type.
    pub fn kind(&self, id: u32) -> Kind {
        self.types.get(id as usize).map_or(Kind::Void, |t| t.kind)
    }

    /// The type id of the struct or union called `name`.
    pub fn struct_id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// Follows typedefs and qualifiers to the underlying type.
    pub fn resolve(&self, mut id: u32) -> Result<u32> {
        for _ in 0..MAX_CHAIN {
            let t = self.ty(id)?;
            match t.kind {
                Kind::Typedef | Kind::Qualifier => id = t.size_or_type,
                _ => return Ok(id),
            }
        }
        Err(malformed(format!("type id {id}"), "typedef chain too long"))
    }

    /// The size in bytes of a type (pointers are 8 bytes; x86-64 only).
    pub fn size_of(&self, id: u32) -> Result<u64> {
        self.size_of_depth(id, 0)
    }

    fn size_of_depth(&self, id: u32, depth: usize) -> Result<u64> {
        if depth > MAX_CHAIN {
            return Err(malformed(format!("type id {id}"), "array nesting too deep"));
        }
        let id = self.resolve(id)?;
        let t = self.ty(id)?;
        Ok(match t.kind {
            Kind::Int | Kind::Struct | Kind::Union | Kind::Enum | Kind::Float => {
                u64::from(t.size_or_type)
            }
            Kind::Ptr => 8,
            Kind::Array => {
                let (elem, n) = t.array.unwrap_or((0, 0));
                // Nested arrays recurse once per dimension, bounded by `depth`.
                self.size_of_depth(elem, depth + 1)?
                    .saturating_mul(u64::from(n))
            }
            _ => 0,
        })
    }

    /// The element type and count of an array type (after typedefs).
    pub fn array_info(&self, id: u32) -> Result<(u32, u64)> {
        let id = self.resolve(id)?;
        match self.ty(id)?.array {
            Some((elem, n)) => Ok((elem, u64::from(n))),
            None => Err(malformed(format!("type id {id}"), "not an array")),
        }
    }

    /// Finds `path` (`tasks`, `__sk_common.skc_num`, ...) inside the struct or union `ty`.
    ///
    /// Each component is looked up among the members, descending through anonymous
    /// structs and unions; a dotted path descends into the named member's own type.
    pub fn member(&self, ty: &str, path: &str) -> Result<Field> {
        let id = self
            .struct_id(ty)
            .ok_or_else(|| malformed(format!("struct {ty}"), "no such struct or union"))?;
        let mut cur = id;
        let mut offset = 0u64;
        let mut last = None;
        let mut width = 0;
        let mut bit = 0;
        for part in path.split('.') {
            let container = self.resolve(cur)?;
            let mut budget = MAX_LOOKUP_STEPS;
            let (bits, type_id, w) = self
                .find_member(container, part, 0, &mut budget)?
                .ok_or_else(|| malformed(format!("{ty}.{path}"), format!("no member {part}")))?;
            offset += bits / 8;
            bit = (bits % 8) as u32;
            width = w;
            cur = type_id;
            last = Some(type_id);
        }
        let type_id = last.unwrap_or(id);
        Ok(Field {
            offset,
            size: self.size_of(type_id)?,
            type_id,
            bitfield_bits: width,
            bit,
        })
    }

    /// One level of member lookup: (bit offset, type id) of `name` in struct/union `id`.
    fn find_member(
        &self,
        id: u32,
        name: &str,
        depth: usize,
        budget: &mut usize,
    ) -> Result<Option<(u64, u32, u32)>> {
        if depth > MAX_ANON_DEPTH {
            return Ok(None);
        }
        let t = self.ty(id)?;
        if !matches!(t.kind, Kind::Struct | Kind::Union) {
            return Err(malformed(
                format!("type id {id}"),
                format!("looking up {name} in a type that is not a struct or union"),
            ));
        }
        for m in &t.members {
            // Anonymous members may nest the same type many times over: bound the work.
            *budget = budget.checked_sub(1).ok_or_else(|| {
                malformed(
                    format!("type id {id}"),
                    "member lookup exceeds its step bound",
                )
            })?;
            if m.name != 0 {
                if self.str_at(m.name) == Some(name) {
                    return Ok(Some((u64::from(m.bit_offset), m.type_id, m.bitfield_size)));
                }
                continue;
            }
            // An anonymous member: C lets its members be named as if they were ours.
            let inner = self.resolve(m.type_id)?;
            if matches!(self.kind(inner), Kind::Struct | Kind::Union) {
                if let Some((bits, tid, width)) =
                    self.find_member(inner, name, depth + 1, budget)?
                {
                    return Ok(Some((u64::from(m.bit_offset) + bits, tid, width)));
                }
            }
        }
        Ok(None)
    }
}

/// The fixed BTF header.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// Format version (1).
    pub version: u8,
    /// Header length (24 for version 1).
    pub hdr_len: u32,
    /// Type section offset, from the end of the header.
    pub type_off: u32,
    /// Type section length.
    pub type_len: u32,
    /// String section offset, from the end of the header.
    pub str_off: u32,
    /// String section length.
    pub str_len: u32,
}

impl Header {
    /// Parses and sanity-checks the header at the start of `blob`.
    pub fn parse(blob: &[u8]) -> Result<Header> {
        let head = blob
            .get(..HEADER_LEN)
            .ok_or_else(|| malformed("offset 0".into(), "shorter than a header"))?;
        let magic = le16(head, 0);
        if magic != BTF_MAGIC {
            return Err(malformed(
                "offset 0".into(),
                format!("magic {magic:#06x}, not 0xeb9f"),
            ));
        }
        let h = Header {
            version: head[2],
            hdr_len: u32_at(head, 4)?,
            type_off: u32_at(head, 8)?,
            type_len: u32_at(head, 12)?,
            str_off: u32_at(head, 16)?,
            str_len: u32_at(head, 20)?,
        };
        if h.version != 1 || h.hdr_len as usize != HEADER_LEN {
            return Err(malformed(
                "offset 2".into(),
                format!("version {} header length {}", h.version, h.hdr_len),
            ));
        }
        if !h.type_off.is_multiple_of(4) || !h.type_len.is_multiple_of(4) || h.str_len == 0 {
            return Err(malformed(
                "offset 8".into(),
                "misaligned type section or empty string section",
            ));
        }
        Ok(h)
    }

    /// The total blob length the header describes.
    pub fn total_len(&self) -> u64 {
        let t = u64::from(self.type_off) + u64::from(self.type_len);
        let s = u64::from(self.str_off) + u64::from(self.str_len);
        u64::from(self.hdr_len) + t.max(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(Btf::parse(&[]).is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
        let mut h = vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
        h.extend_from_slice(&[0, 0, 0, 0, 12, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0]);
        // One type header claiming 0xffff members, and a one-byte string section.
        h.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0, 4, 8, 0, 0, 0, 0]);
        assert!(Btf::parse(&h).is_err());
    }
}
