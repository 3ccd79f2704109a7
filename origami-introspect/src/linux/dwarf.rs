//! Struct layouts from a kernel's DWARF debug info: the `vmlinux` of a `-dbg` /
//! `debuginfo` package, for kernels whose own BTF is missing or damaged.
//!
//! A distribution `vmlinux` is large (some 650 MB, `.debug_info` a quarter of it), so it is
//! never read whole. [`KernelDwarf::open`] reads the ELF headers, the symbol table (for the
//! banner and the symbols discovery checks the file against) and the small sections DWARF
//! names point into (`.debug_abbrev`, `.debug_str`, `.debug_line_str`), each under a
//! bound. [`KernelDwarf::layout`] then reads `.debug_info` one compilation unit at a time
//! with positioned reads, looks at the unit's top-level types only, and for each struct
//! [`super::layout::wanted_structs`] names (its first complete definition) resolves the
//! member paths the features read while that unit is at hand; it stops as soon as every
//! wanted struct was found. Memory stays at one unit (bounded by [`MAX_UNIT`]) plus the
//! small sections.
//!
//! Everything in the file is untrusted: section ranges are checked against the file's
//! length, unit lengths against the section and [`MAX_UNIT`], type chains and anonymous
//! member nesting are followed a bounded number of steps. Limits: little-endian 64-bit ELF
//! (x86-64); compressed debug sections (`SHF_COMPRESSED`) and references between units
//! (`DW_FORM_ref_addr`, as `dwz` makes) are refused with an error naming them.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use gimli::{
    AttributeValue, DebugAbbrev, DebugInfo, DebuggingInformationEntry, EndianSlice, LittleEndian,
    UnitHeader, UnitOffset,
};
use object::read::elf::ElfFile64;
use object::read::ReadCache;
use object::{Object, ObjectSection, ObjectSymbol};

use super::layout::{needed_symbols, wanted_structs, Layout, Member};
use crate::error::{Error, Result};

/// The largest compilation unit read (a kernel's largest are a few MiB).
pub const MAX_UNIT: u64 = 64 << 20;

/// The largest `.debug_abbrev`, `.debug_str` or `.debug_line_str` read whole.
pub const MAX_SMALL_SECTION: u64 = 256 << 20;

/// How many typedef/qualifier links are followed before a type chain is declared a loop.
const MAX_CHAIN: usize = 32;

/// How many anonymous struct/union levels a member lookup descends through.
const MAX_ANON_DEPTH: usize = 8;

/// How many member entries one lookup may visit.
const MAX_LOOKUP_STEPS: usize = 100_000;

/// The longest banner read from the file.
const MAX_BANNER: usize = 1024;

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// A kernel's DWARF debug info file, opened for layout lookups.
#[derive(Debug)]
pub struct KernelDwarf {
    path: PathBuf,
    file: File,
    /// File offset and length of `.debug_info`.
    info: (u64, u64),
    abbrev: Vec<u8>,
    strs: Vec<u8>,
    line_strs: Vec<u8>,
    /// The `Linux version` banner at `linux_banner`, when the file has both.
    banner: Option<String>,
    /// Link-time addresses of the symbols discovery reads (and `linux_banner`).
    symbols: BTreeMap<String, u64>,
}

impl KernelDwarf {
    /// Opens `path`: ELF headers, symbols, the banner and the small DWARF sections.
    pub fn open(path: &Path) -> Result<KernelDwarf> {
        let bad = |location: &str, what: String| Error::Malformed {
            file: path.display().to_string(),
            location: location.to_string(),
            what,
        };
        let io = |e: std::io::Error| bad("whole file", e.to_string());
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let cache = ReadCache::new(File::open(path).map_err(io)?);
        let elf = ElfFile64::<object::LittleEndian, _>::parse(&cache)
            .map_err(|e| bad("ELF header", format!("not a 64-bit little-endian ELF: {e}")))?;
        let range = |name: &str| -> Result<Option<(u64, u64)>> {
            let Some(s) = elf.section_by_name(name) else {
                return Ok(None);
            };
            let compressed = s
                .compressed_file_range()
                .map_err(|e| bad(name, e.to_string()))?;
            if compressed.format != object::CompressionFormat::None {
                return Err(bad(
                    name,
                    format!("compressed ({:?}); decompress it first", compressed.format),
                ));
            }
            let (off, len) = s
                .file_range()
                .ok_or_else(|| bad(name, "section has no bytes in the file".into()))?;
            if off.checked_add(len).is_none_or(|end| end > file_len) {
                return Err(bad(
                    name,
                    format!(
                        "section of {len} bytes at file offset {off:#x} runs past the end of \
                         the {file_len}-byte file"
                    ),
                ));
            }
            Ok(Some((off, len)))
        };
        let info = range(".debug_info")?
            .ok_or_else(|| bad(".debug_info", "no DWARF debug info in this file".into()))?;
        let small = |name: &str, required: bool| -> Result<Vec<u8>> {
            match range(name)? {
                None if required => Err(bad(name, "no such section".into())),
                None => Ok(Vec::new()),
                Some((off, len)) => {
                    if len > MAX_SMALL_SECTION {
                        return Err(Error::TooLarge {
                            file: format!("{} {name}", path.display()),
                            size: len,
                            limit: MAX_SMALL_SECTION,
                        });
                    }
                    let mut buf = vec![0u8; len as usize];
                    file.read_exact_at(&mut buf, off)
                        .map_err(|e| bad(name, e.to_string()))?;
                    Ok(buf)
                }
            }
        };
        let abbrev = small(".debug_abbrev", true)?;
        let strs = small(".debug_str", false)?;
        let line_strs = small(".debug_line_str", false)?;

        let mut wanted: Vec<&str> = needed_symbols().collect();
        wanted.extend(["linux_banner", "_text"]);
        let mut symbols = BTreeMap::new();
        for sym in elf.symbols() {
            let Ok(name) = sym.name() else { continue };
            if wanted.contains(&name) && !symbols.contains_key(name) {
                symbols.insert(name.to_string(), sym.address());
            }
        }
        let banner = match symbols.get("linux_banner") {
            Some(&addr) => read_banner(&elf, &cache, addr),
            None => None,
        };
        Ok(KernelDwarf {
            path: path.to_path_buf(),
            file,
            info,
            abbrev,
            strs,
            line_strs,
            banner,
            symbols,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The kernel's `Linux version` banner as the file holds it.
    pub fn banner(&self) -> Option<&str> {
        self.banner.as_deref()
    }

    /// Link-time addresses of the symbols discovery reads, from the ELF symbol table.
    pub fn symbols(&self) -> &BTreeMap<String, u64> {
        &self.symbols
    }

    fn bad(&self, location: String, what: impl Into<String>) -> Error {
        Error::Malformed {
            file: self.path.display().to_string(),
            location,
            what: what.into(),
        }
    }

    /// Resolves every member the features read, from `.debug_info`, unit by unit.
    pub fn layout(&self) -> Result<Layout> {
        let wanted = wanted_structs();
        let mut found: HashMap<&'static str, Found> = HashMap::new();
        let (base, len) = self.info;
        let abbrev = DebugAbbrev::new(&self.abbrev, LittleEndian);
        let mut buf = Vec::new();
        let mut at = 0u64;
        while at < len && found.len() < wanted.len() {
            let mut head = [0u8; 12];
            let n = (len - at).min(12) as usize;
            self.file
                .read_exact_at(&mut head[..n], base + at)
                .map_err(|e| self.bad(format!(".debug_info offset {at:#x}"), e.to_string()))?;
            let short = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
            let (unit_len, head_len) = match short {
                0xffff_ffff => (
                    u64::from_le_bytes(head[4..12].try_into().unwrap_or([0; 8])),
                    12,
                ),
                0xffff_fff0..=0xffff_fffe => {
                    return Err(self.bad(
                        format!(".debug_info offset {at:#x}"),
                        format!("reserved unit length {short:#x}"),
                    ))
                }
                n => (n, 4),
            };
            let total = unit_len.saturating_add(head_len);
            if total > MAX_UNIT {
                return Err(Error::TooLarge {
                    file: format!("{} .debug_info unit at offset {at:#x}", self.path.display()),
                    size: total,
                    limit: MAX_UNIT,
                });
            }
            if total > len - at {
                return Err(self.bad(
                    format!(".debug_info offset {at:#x}"),
                    format!(
                        "unit of {total} bytes runs past the section's end ({} bytes left)",
                        len - at
                    ),
                ));
            }
            buf.resize(total as usize, 0);
            self.file
                .read_exact_at(&mut buf, base + at)
                .map_err(|e| self.bad(format!(".debug_info offset {at:#x}"), e.to_string()))?;
            self.scan_unit(&buf, at, &abbrev, &wanted, &mut found)?;
            at += total;
        }
        Ok(Layout::from_lookup(
            &|ty, path| match found.get(ty) {
                Some(f) => match f.members.get(path) {
                    Some(Ok(m)) => Ok(*m),
                    Some(Err(e)) => Err(self.bad(format!("struct {ty}"), e.clone())),
                    None => Err(self.bad(format!("struct {ty}"), format!("no member {path}"))),
                },
                None => Err(self.bad(
                    format!("struct {ty}"),
                    "no such struct or union in the debug info",
                )),
            },
            &|name| found.get(name).map(|f| f.size),
        ))
    }

    /// Looks at the top-level types of one unit (`bytes`, at `.debug_info` offset `at`)
    /// and resolves the wanted structs it defines.
    fn scan_unit(
        &self,
        bytes: &[u8],
        at: u64,
        abbrev: &DebugAbbrev<Slice<'_>>,
        wanted: &BTreeMap<&'static str, (std::collections::BTreeSet<&'static str>, bool)>,
        found: &mut HashMap<&'static str, Found>,
    ) -> Result<()> {
        let where_ = |what: &str| format!(".debug_info unit at offset {at:#x}: {what}");
        let gerr = |e: gimli::Error| self.bad(where_("entries"), e.to_string());
        let info = DebugInfo::new(bytes, LittleEndian);
        let Some(header) = info.units().next().map_err(gerr)? else {
            return Ok(());
        };
        let abbrevs = header.abbreviations(abbrev).map_err(gerr)?;
        let unit = UnitCtx {
            header: &header,
            abbrevs: &abbrevs,
            dwarf: self,
            at,
        };
        let mut tree = header.entries_tree(&abbrevs, None).map_err(gerr)?;
        let root = tree.root().map_err(gerr)?;
        let mut children = root.children();
        let mut hits = Vec::new();
        while let Some(child) = children.next().map_err(gerr)? {
            let e = child.entry();
            if !matches!(
                e.tag(),
                gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type
            ) || e.attr(gimli::DW_AT_declaration).is_some()
            {
                continue;
            }
            let Some(name) = unit.name(e) else { continue };
            let Some((key, _)) = wanted.get_key_value(name) else {
                continue;
            };
            if found.contains_key(key) {
                continue;
            }
            hits.push((*key, e.offset()));
        }
        for (key, off) in hits {
            let (paths, _) = &wanted[key];
            let size = unit
                .die(off)?
                .attr(gimli::DW_AT_byte_size)
                .and_then(|a| a.udata_value())
                .unwrap_or(0);
            let members = paths
                .iter()
                .map(|&p| (p, unit.member(off, key, p).map_err(|e| e.to_string())))
                .collect();
            found.insert(key, Found { size, members });
        }
        Ok(())
    }
}

/// A wanted struct's size and its members' lookups.
struct Found {
    size: u64,
    members: HashMap<&'static str, std::result::Result<Member, String>>,
}

/// Reads the NUL-terminated banner at link address `addr` from the section holding it.
fn read_banner<'c>(
    elf: &ElfFile64<'c, object::LittleEndian, &'c ReadCache<File>>,
    cache: &'c ReadCache<File>,
    addr: u64,
) -> Option<String> {
    use object::ReadRef;
    let s = elf
        .sections()
        .find(|s| s.address() <= addr && addr < s.address().saturating_add(s.size()))?;
    let (off, len) = s.file_range()?;
    let rel = addr - s.address();
    let n = (len.checked_sub(rel)?).min(MAX_BANNER as u64);
    let bytes = cache.read_bytes_at(off.checked_add(rel)?, n).ok()?;
    let end = memchr::memchr(0, bytes)?;
    let text = std::str::from_utf8(bytes.get(..end)?).ok()?;
    Some(text.trim_end_matches('\n').to_string())
}

/// One unit being read: its header and abbreviations, for lookups by unit offset.
struct UnitCtx<'a, 'b> {
    header: &'a UnitHeader<Slice<'b>>,
    abbrevs: &'a gimli::Abbreviations,
    dwarf: &'a KernelDwarf,
    at: u64,
}

type Die<'b> = DebuggingInformationEntry<Slice<'b>>;

impl<'b> UnitCtx<'_, 'b> {
    fn bad(&self, off: UnitOffset, what: impl Into<String>) -> Error {
        self.dwarf.bad(
            format!(
                ".debug_info offset {:#x}",
                self.at.saturating_add(off.0 as u64)
            ),
            what,
        )
    }

    /// The entry at `off` of this unit.
    fn die(&self, off: UnitOffset) -> Result<Die<'b>> {
        let mut c = self
            .header
            .entries_at_offset(self.abbrevs, off)
            .map_err(|e| self.bad(off, e.to_string()))?;
        match c.next_dfs().map_err(|e| self.bad(off, e.to_string()))? {
            Some(e) => Ok(e.clone()),
            None => Err(self.bad(off, "no entry here")),
        }
    }

    /// The entries directly under the entry at `off`.
    fn children(&self, off: UnitOffset) -> Result<Vec<Die<'b>>> {
        let gerr = |e: gimli::Error| self.bad(off, e.to_string());
        let mut tree = self
            .header
            .entries_tree(self.abbrevs, Some(off))
            .map_err(gerr)?;
        let root = tree.root().map_err(gerr)?;
        let mut out = Vec::new();
        let mut it = root.children();
        while let Some(c) = it.next().map_err(gerr)? {
            if out.len() >= MAX_LOOKUP_STEPS {
                return Err(self.bad(off, "too many children"));
            }
            out.push(c.entry().clone());
        }
        Ok(out)
    }

    /// The entry's `DW_AT_name`, when it is a string this reader can find.
    fn name<'s>(&'s self, e: &Die<'b>) -> Option<&'s str>
    where
        'b: 's,
    {
        let bytes: &[u8] = match e.attr_value(gimli::DW_AT_name)? {
            AttributeValue::String(s) => s.slice(),
            AttributeValue::DebugStrRef(o) => cstr(&self.dwarf.strs, o.0)?,
            AttributeValue::DebugLineStrRef(o) => cstr(&self.dwarf.line_strs, o.0)?,
            _ => return None,
        };
        std::str::from_utf8(bytes).ok()
    }

    /// The unit offset `DW_AT_type` points to (`None` for `void`).
    fn type_of(&self, e: &Die<'b>) -> Result<Option<UnitOffset>> {
        match e.attr_value(gimli::DW_AT_type) {
            None => Ok(None),
            Some(AttributeValue::UnitRef(o)) => Ok(Some(o)),
            Some(other) => Err(self.bad(
                e.offset(),
                format!("type reference {other:?} outside its unit is not supported"),
            )),
        }
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut off: UnitOffset) -> Result<(UnitOffset, Die<'b>)> {
        for _ in 0..MAX_CHAIN {
            let e = self.die(off)?;
            match e.tag() {
                gimli::DW_TAG_typedef
                | gimli::DW_TAG_const_type
                | gimli::DW_TAG_volatile_type
                | gimli::DW_TAG_restrict_type
                | gimli::DW_TAG_atomic_type => match self.type_of(&e)? {
                    Some(t) => off = t,
                    None => return Ok((off, e)),
                },
                _ => return Ok((off, e)),
            }
        }
        Err(self.bad(off, "typedef chain too long"))
    }

    /// The size in bytes of the type at `off` (pointers are 8 bytes; x86-64 only).
    fn size_of(&self, off: UnitOffset, depth: usize) -> Result<u64> {
        if depth > MAX_CHAIN {
            return Err(self.bad(off, "array nesting too deep"));
        }
        let (off, e) = self.resolve(off)?;
        let byte_size = e.attr(gimli::DW_AT_byte_size).and_then(|a| a.udata_value());
        Ok(match e.tag() {
            gimli::DW_TAG_pointer_type
            | gimli::DW_TAG_reference_type
            | gimli::DW_TAG_rvalue_reference_type => byte_size.unwrap_or(8),
            gimli::DW_TAG_array_type => {
                let elem = match self.type_of(&e)? {
                    Some(t) => self.size_of(t, depth + 1)?,
                    None => 0,
                };
                let mut n = 1u64;
                for sub in self.children(off)? {
                    if sub.tag() != gimli::DW_TAG_subrange_type {
                        continue;
                    }
                    n = n.saturating_mul(subrange_count(&sub));
                }
                elem.saturating_mul(n)
            }
            _ => byte_size.unwrap_or(0),
        })
    }

    /// Finds `path` inside the struct or union at `off` (named `ty`), as [`super::btf`]
    /// does: each component among the members, through anonymous structs and unions.
    fn member(&self, off: UnitOffset, ty: &str, path: &str) -> Result<Member> {
        let mut cur = off;
        let mut bits_total = 0u64;
        let mut last = None;
        let mut width = 0;
        for part in path.split('.') {
            let (container, _) = self.resolve(cur)?;
            let mut budget = MAX_LOOKUP_STEPS;
            let (bits, t, w) = self
                .find_member(container, part, 0, &mut budget)?
                .ok_or_else(|| self.bad(container, format!("{ty}.{path}: no member {part}")))?;
            bits_total += bits;
            width = w;
            cur = t;
            last = Some(t);
        }
        let t = last.ok_or_else(|| self.bad(off, "empty member path"))?;
        // Each component adds whole bytes except a bitfield's, which can only be last.
        Ok(Member {
            offset: bits_total / 8,
            size: self.size_of(t, 0)?,
            bit: (bits_total % 8) as u32,
            bits: width,
        })
    }

    /// One level of member lookup: (bit offset, type, bitfield width) of `name` in the
    /// struct or union at `off`.
    fn find_member(
        &self,
        off: UnitOffset,
        name: &str,
        depth: usize,
        budget: &mut usize,
    ) -> Result<Option<(u64, UnitOffset, u32)>> {
        if depth > MAX_ANON_DEPTH {
            return Ok(None);
        }
        let e = self.die(off)?;
        if !matches!(
            e.tag(),
            gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type
        ) {
            return Err(self.bad(
                off,
                format!("looking up {name} in a type that is not a struct or union"),
            ));
        }
        for m in self.children(off)? {
            if m.tag() != gimli::DW_TAG_member {
                continue;
            }
            *budget = budget
                .checked_sub(1)
                .ok_or_else(|| self.bad(off, "member lookup exceeds its step bound"))?;
            let Some(t) = self.type_of(&m)? else { continue };
            let bits = member_bits(&m);
            let width = m
                .attr(gimli::DW_AT_bit_size)
                .and_then(|a| a.udata_value())
                .unwrap_or(0)
                .min(64) as u32;
            match self.name(&m) {
                Some(n) if n == name => return Ok(Some((bits, t, width))),
                Some(_) => continue,
                None => {
                    // An anonymous member: C lets its members be named as if they were ours.
                    let (inner, ie) = self.resolve(t)?;
                    if matches!(
                        ie.tag(),
                        gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type
                    ) {
                        if let Some((b, tid, w)) =
                            self.find_member(inner, name, depth + 1, budget)?
                        {
                            return Ok(Some((bits + b, tid, w)));
                        }
                    }
                }
            }
        }
        Ok(None)
    }
}

/// The NUL-terminated string at `off` of a string section.
fn cstr(section: &[u8], off: usize) -> Option<&[u8]> {
    let rest = section.get(off..)?;
    let end = memchr::memchr(0, rest)?;
    rest.get(..end)
}

/// A member's offset in bits from the start of its struct: `DW_AT_data_bit_offset`
/// (DWARF 4+ bitfields), else `DW_AT_data_member_location` (a constant, or the
/// `DW_OP_plus_uconst` expression of older compilers) in bytes, adjusted by the DWARF 2/3
/// `DW_AT_bit_offset` of a bitfield (counted from the most significant bit of its
/// storage unit). A union's members have none: offset 0.
fn member_bits(m: &Die<'_>) -> u64 {
    if let Some(b) = m
        .attr(gimli::DW_AT_data_bit_offset)
        .and_then(|a| a.udata_value())
    {
        return b;
    }
    let bytes = match m.attr_value(gimli::DW_AT_data_member_location) {
        Some(AttributeValue::Exprloc(expr)) => plus_uconst(expr.0.slice()).unwrap_or(0),
        Some(v) => v.udata_value().unwrap_or(0),
        None => 0,
    };
    let mut bits = bytes.saturating_mul(8);
    let old = m
        .attr(gimli::DW_AT_bit_offset)
        .and_then(|a| a.udata_value());
    let width = m.attr(gimli::DW_AT_bit_size).and_then(|a| a.udata_value());
    let unit = m.attr(gimli::DW_AT_byte_size).and_then(|a| a.udata_value());
    if let (Some(old), Some(width), Some(unit)) = (old, width, unit) {
        // Little-endian: the storage unit's most significant bit is its last.
        bits = bits.saturating_add(
            unit.saturating_mul(8)
                .saturating_sub(old)
                .saturating_sub(width),
        );
    }
    bits
}

/// The operand of a `DW_OP_plus_uconst N` expression.
fn plus_uconst(expr: &[u8]) -> Option<u64> {
    let (&op, rest) = expr.split_first()?;
    if op != gimli::DW_OP_plus_uconst.0 {
        return None;
    }
    let mut v = 0u64;
    for (i, &b) in rest.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The element count of an array dimension: `DW_AT_count`, else `DW_AT_upper_bound` minus
/// the lower bound plus one; 0 for a flexible array.
fn subrange_count(sub: &Die<'_>) -> u64 {
    if let Some(n) = sub.attr(gimli::DW_AT_count).and_then(|a| a.udata_value()) {
        return n;
    }
    let lower = sub
        .attr(gimli::DW_AT_lower_bound)
        .and_then(|a| a.udata_value())
        .unwrap_or(0);
    match sub.attr_value(gimli::DW_AT_upper_bound) {
        Some(AttributeValue::Sdata(-1)) | None => 0,
        Some(v) => match v.udata_value() {
            // An upper bound of all ones is GCC's way of saying "flexible".
            Some(u) if u != u64::MAX && u != u64::from(u32::MAX) => {
                u.saturating_sub(lower).saturating_add(1)
            }
            _ => 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_uconst_reads_uleb() {
        assert_eq!(plus_uconst(&[0x23, 0x10]), Some(16));
        assert_eq!(plus_uconst(&[0x23, 0x80, 0x01]), Some(128));
        assert_eq!(plus_uconst(&[0x23, 0x80]), None);
        assert_eq!(plus_uconst(&[0x10, 0x10]), None);
        assert_eq!(plus_uconst(&[]), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("origami-dwarf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("not-elf");
        std::fs::write(&p, b"\x7fELF\x02\x01\x01garbage").unwrap();
        assert!(KernelDwarf::open(&p).is_err());
        std::fs::write(&p, b"").unwrap();
        assert!(KernelDwarf::open(&p).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
