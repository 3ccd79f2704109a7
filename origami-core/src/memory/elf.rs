//! QEMU `dump-guest-memory` ELF cores: `PT_LOAD` segments placed by their *physical*
//! address (`p_paddr`; `p_vaddr` is meaningless because QEMU dumps with paging off), and
//! `PT_NOTE` segments with the per-CPU states and `VMCOREINFO`.
//!
//! Limits: ELF64 little-endian x86-64 cores only. `goblin` decodes the file header and the
//! program headers, after their count and table size are checked against the file (QEMU
//! uses `PN_XNUM` when there are more than 65534 program headers, and that count is read
//! from section header 0, checked the same way). Note segments are capped at
//! [`MAX_NOTES_BYTES`] in total.

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{ProgramHeader, PT_LOAD, PT_NOTE};
use goblin::elf::section_header::SectionHeader;

use super::notes::{cpu_states, parse_notes, vmcoreinfo_note, CpuState};
use super::segments::Segment;
use super::vmcoreinfo::VmcoreInfo;
use crate::error::{Error, Result};

/// The most note bytes read from one dump (QEMU writes a few KiB per CPU).
pub(crate) const MAX_NOTES_BYTES: u64 = 64 << 20;
/// `e_phnum` value meaning "the count is in section header 0's `sh_info`".
const PN_XNUM: u16 = 0xffff;

/// What an ELF core holds besides its bytes.
#[derive(Debug)]
pub(crate) struct ElfCore {
    pub(crate) segments: Vec<Segment>,
    pub(crate) cpus: Vec<CpuState>,
    pub(crate) vmcoreinfo: Option<VmcoreInfo>,
}

/// Parses the headers and notes of an ELF core held in `bytes`.
pub(crate) fn parse(bytes: &[u8], name: &dyn Fn() -> String) -> Result<ElfCore> {
    let bad = |offset: u64, reason: String| Error::BadDump {
        source_name: name(),
        offset,
        reason,
    };
    let hdr: Header =
        goblin::elf::Elf::parse_header(bytes).map_err(|e| bad(0, format!("ELF header: {e}")))?;
    if hdr.e_ident[header::EI_CLASS] != header::ELFCLASS64
        || hdr.e_ident[header::EI_DATA] != header::ELFDATA2LSB
    {
        return Err(bad(4, "not a little-endian ELF64 file".into()));
    }
    if hdr.e_type != header::ET_CORE {
        return Err(bad(
            16,
            format!("ELF type {} is not a core file", hdr.e_type),
        ));
    }
    if hdr.e_machine != header::EM_X86_64 {
        return Err(bad(
            18,
            format!("ELF machine {} is not x86-64", hdr.e_machine),
        ));
    }
    let ctx = Ctx::new(Container::Big, Endian::Little);
    let phentsize = ProgramHeader::size(ctx);
    if usize::from(hdr.e_phentsize) != phentsize {
        return Err(bad(
            54,
            format!("program header size {} is not {phentsize}", hdr.e_phentsize),
        ));
    }
    let phnum = if hdr.e_phnum == PN_XNUM {
        let shoff = usize::try_from(hdr.e_shoff)
            .map_err(|_| bad(40, "section header offset too large".into()))?;
        let sh0 = SectionHeader::parse(bytes, shoff, 1, ctx)
            .map_err(|e| bad(hdr.e_shoff, format!("section header 0 (PN_XNUM): {e}")))?;
        let Some(sh0) = sh0.first() else {
            return Err(bad(
                hdr.e_shoff,
                "section header 0 missing (PN_XNUM)".into(),
            ));
        };
        sh0.sh_info as usize
    } else {
        usize::from(hdr.e_phnum)
    };
    let phoff = usize::try_from(hdr.e_phoff)
        .map_err(|_| bad(32, "program header offset too large".into()))?;
    let table_fits = phnum
        .checked_mul(phentsize)
        .and_then(|len| phoff.checked_add(len))
        .is_some_and(|end| end <= bytes.len());
    if !table_fits {
        return Err(bad(
            hdr.e_phoff,
            format!("{phnum} program headers do not fit in the file"),
        ));
    }
    let phdrs = ProgramHeader::parse(bytes, phoff, phnum, ctx)
        .map_err(|e| bad(hdr.e_phoff, format!("program headers: {e}")))?;

    let mut segments = Vec::new();
    let mut notes = Vec::new();
    let mut note_total = 0u64;
    for (i, ph) in phdrs.iter().enumerate() {
        let ph_at = hdr.e_phoff + (i * phentsize) as u64;
        match ph.p_type {
            PT_LOAD => {
                // QEMU writes p_filesz == p_memsz; a shorter file part would mean bytes the
                // dump does not hold, so only the file part is mapped.
                if ph.p_filesz > ph.p_memsz {
                    return Err(bad(
                        ph_at,
                        format!(
                            "PT_LOAD at physical {:#x} has more file bytes ({:#x}) than memory bytes ({:#x})",
                            ph.p_paddr, ph.p_filesz, ph.p_memsz
                        ),
                    ));
                }
                segments.push(Segment {
                    start: ph.p_paddr,
                    len: ph.p_filesz,
                    offset: ph.p_offset,
                });
            }
            PT_NOTE => {
                let in_file = ph
                    .p_offset
                    .checked_add(ph.p_filesz)
                    .is_some_and(|end| end <= bytes.len() as u64);
                if !in_file {
                    return Err(bad(
                        ph_at,
                        format!(
                            "PT_NOTE of {:#x} bytes at {:#x} passes the end of the file",
                            ph.p_filesz, ph.p_offset
                        ),
                    ));
                }
                note_total += ph.p_filesz;
                if note_total > MAX_NOTES_BYTES {
                    return Err(bad(
                        ph_at,
                        format!("more than {MAX_NOTES_BYTES} bytes of notes"),
                    ));
                }
                // In the file (checked above), so the slice exists.
                let start = ph.p_offset as usize;
                if let Some(seg) = bytes.get(start..start + ph.p_filesz as usize) {
                    notes.extend(parse_notes(seg));
                }
            }
            _ => {}
        }
    }
    let cpus = cpu_states(&notes);
    // A VMCOREINFO note that does not parse is left out rather than failing the dump: the
    // memory is still readable without it.
    let vmcoreinfo = vmcoreinfo_note(&notes).and_then(|t| VmcoreInfo::parse(t).ok());
    Ok(ElfCore {
        segments,
        cpus,
        vmcoreinfo,
    })
}
