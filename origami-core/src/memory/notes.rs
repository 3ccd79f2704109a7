//! ELF notes of a memory dump: the per-CPU register state QEMU records (`QEMU` notes with
//! the control registers, `CORE`/`NT_PRSTATUS` with the general registers) and the
//! `VMCOREINFO` note. Used by ELF cores and by kdump files (which embed the same notes).
//!
//! Limits: x86-64 layouts only; a note whose descriptor is shorter than its layout is
//! skipped rather than half-read.

use crate::paging::PagingMode;

/// `NT_PRSTATUS`: general registers of one CPU (or thread) in a core file.
const NT_PRSTATUS: u32 = 1;

/// One ELF note: its name (without the NUL), type and descriptor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Note<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) kind: u32,
    pub(crate) desc: &'a [u8],
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

/// The notes in `bytes` (little-endian, 4-byte aligned as ELF64 cores write them). Stops at
/// the first note that does not fit; each step consumes at least 12 bytes, so the walk is
/// bounded by the buffer.
pub(crate) fn parse_notes(bytes: &[u8]) -> Vec<Note<'_>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let (Some(namesz), Some(descsz), Some(kind)) = (
        u32_at(bytes, at),
        u32_at(bytes, at + 4),
        u32_at(bytes, at + 8),
    ) {
        let name_at = at + 12;
        let Some(desc_at) = align4(namesz as usize).and_then(|n| name_at.checked_add(n)) else {
            break;
        };
        let Some(next) = align4(descsz as usize).and_then(|n| desc_at.checked_add(n)) else {
            break;
        };
        let (Some(name), Some(desc)) = (
            bytes.get(name_at..name_at + namesz as usize),
            bytes.get(desc_at..desc_at + descsz as usize),
        ) else {
            break;
        };
        let name = match name.iter().position(|&c| c == 0) {
            Some(nul) => name.get(..nul).unwrap_or(name),
            None => name,
        };
        out.push(Note { name, kind, desc });
        if next <= at {
            break;
        }
        at = next;
    }
    out
}

/// Where a [`CpuState`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuStateSource {
    /// QEMU's `QEMU` note (`QEMUCPUState`): general, segment and control registers.
    #[default]
    QemuNote,
    /// An `NT_PRSTATUS` note alone: general registers, no control registers (CR3 is 0).
    Prstatus,
}

/// The register state of one virtual CPU at the moment of the dump.
///
/// From QEMU's per-CPU `QEMU` note when the dump has one (which is what makes CR3 known);
/// otherwise from `NT_PRSTATUS`, which carries no control registers. QEMU records no EFER:
/// [`CpuState::efer`] holds only LME|LMA, reconstructed from a 64-bit code segment with
/// paging on, and 0 otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuState {
    /// The CPU's index in the dump (0-based, in note order).
    pub index: u32,
    /// Which note the state came from.
    pub source: CpuStateSource,
    /// CR0 (paging enable is bit 31).
    pub cr0: u64,
    /// CR2, the last page-fault address.
    pub cr2: u64,
    /// CR3: the page-table root, with PCID/flag bits as the CPU holds them.
    pub cr3: u64,
    /// CR4 (LA57 is bit 12, PAE bit 5).
    pub cr4: u64,
    /// EFER as far as it can be reconstructed (LME|LMA only; see the type's docs).
    pub efer: u64,
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP, R8 .. R15, in this order.
    pub gpr: [u64; 16],
    /// The CS selector (its low two bits are the privilege level).
    pub cs: u64,
    /// FS segment base.
    pub fs_base: u64,
    /// GS segment base (the kernel's per-CPU area when the CPU was in the kernel).
    pub gs_base: u64,
    /// The swapped GS base (`MSR_KERNEL_GS_BASE`), when QEMU recorded it; 0 otherwise.
    pub kernel_gs_base: u64,
    /// GDT base.
    pub gdt_base: u64,
    /// IDT base.
    pub idt_base: u64,
    /// TSS base.
    pub tr_base: u64,
}

impl CpuState {
    /// The paging mode the CPU was in: 5-level when CR4.LA57 is set, 4-level when long-mode
    /// paging is on (CR0.PG, CR4.PAE and EFER.LMA), `None` otherwise (or when unknown).
    pub fn paging_mode(&self) -> Option<PagingMode> {
        let pg = self.cr0 & (1 << 31) != 0;
        let pae = self.cr4 & (1 << 5) != 0;
        let lma = self.efer & (1 << 10) != 0;
        if !(pg && pae && lma) {
            return None;
        }
        if self.cr4 & (1 << 12) != 0 {
            Some(PagingMode::Level5)
        } else {
            Some(PagingMode::Level4)
        }
    }

    /// The page-table root physical address (CR3 without PCID and flag bits).
    pub fn page_table_root(&self) -> u64 {
        self.cr3 & crate::paging::ADDR_MASK
    }
}

/// `QEMUCPUState` (QEMU target/i386/arch_dump.c): version, size, 16 GPRs, RIP, RFLAGS,
/// 10 segments of 24 bytes (selector, limit, flags, pad, base), CR0..CR4, then optionally
/// kernel_gs_base.
const QEMU_SEGS: usize = 152;
const QEMU_SEG_SIZE: usize = 24;
const QEMU_CRS: usize = QEMU_SEGS + 10 * QEMU_SEG_SIZE;
const QEMU_MIN: usize = QEMU_CRS + 5 * 8;
/// `DESC_L_MASK`: the code segment is 64-bit.
const DESC_L: u64 = 1 << 21;

fn from_qemu_note(desc: &[u8], index: u32) -> Option<CpuState> {
    if desc.len() < QEMU_MIN {
        return None;
    }
    let size = u32_at(desc, 4)? as usize;
    let q = |at: usize| u64_at(desc, at);
    let seg_base = |i: usize| q(QEMU_SEGS + i * QEMU_SEG_SIZE + 16);
    let mut gpr = [0u64; 16];
    for (i, r) in gpr.iter_mut().enumerate() {
        *r = q(8 + i * 8)?;
    }
    let cs_flags = u32_at(desc, QEMU_SEGS + 8)? as u64;
    let cr0 = q(QEMU_CRS)?;
    let efer = if cs_flags & DESC_L != 0 && cr0 & (1 << 31) != 0 {
        (1 << 8) | (1 << 10)
    } else {
        0
    };
    Some(CpuState {
        index,
        source: CpuStateSource::QemuNote,
        cr0,
        cr2: q(QEMU_CRS + 16)?,
        cr3: q(QEMU_CRS + 24)?,
        cr4: q(QEMU_CRS + 32)?,
        efer,
        rip: q(136)?,
        rsp: gpr[6],
        rflags: q(144)?,
        gpr,
        cs: u32_at(desc, QEMU_SEGS)? as u64,
        fs_base: seg_base(3)?,
        gs_base: seg_base(4)?,
        kernel_gs_base: if size >= QEMU_MIN + 8 {
            q(QEMU_MIN).unwrap_or(0)
        } else {
            0
        },
        tr_base: seg_base(7)?,
        gdt_base: seg_base(8)?,
        idt_base: seg_base(9)?,
    })
}

/// `struct elf_prstatus` on x86-64: `pr_reg` (27 registers of `user_regs_struct`) at 112.
const PRSTATUS_REGS: usize = 112;
const PRSTATUS_MIN: usize = PRSTATUS_REGS + 27 * 8;

fn from_prstatus(desc: &[u8], index: u32) -> Option<CpuState> {
    if desc.len() < PRSTATUS_MIN {
        return None;
    }
    let r = |i: usize| u64_at(desc, PRSTATUS_REGS + i * 8);
    // user_regs_struct: r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax
    // rip cs eflags rsp ss fs_base gs_base ds es fs gs.
    let gpr = [
        r(10)?,
        r(5)?,
        r(11)?,
        r(12)?,
        r(13)?,
        r(14)?,
        r(19)?,
        r(4)?,
        r(9)?,
        r(8)?,
        r(7)?,
        r(6)?,
        r(3)?,
        r(2)?,
        r(1)?,
        r(0)?,
    ];
    Some(CpuState {
        index,
        source: CpuStateSource::Prstatus,
        rip: r(16)?,
        rsp: r(19)?,
        rflags: r(18)?,
        gpr,
        cs: r(17)?,
        fs_base: r(21)?,
        gs_base: r(22)?,
        ..CpuState::default()
    })
}

/// The CPU states in `notes`: one per `QEMU` note when there are any (they carry the
/// control registers), otherwise one per `NT_PRSTATUS` note.
pub(crate) fn cpu_states(notes: &[Note<'_>]) -> Vec<CpuState> {
    let qemu: Vec<CpuState> = notes
        .iter()
        .filter(|n| n.name == b"QEMU")
        .zip(0u32..)
        .filter_map(|(n, i)| from_qemu_note(n.desc, i))
        .collect();
    if !qemu.is_empty() {
        return qemu;
    }
    notes
        .iter()
        .filter(|n| n.name == b"CORE" && n.kind == NT_PRSTATUS)
        .zip(0u32..)
        .filter_map(|(n, i)| from_prstatus(n.desc, i))
        .collect()
}

/// The `VMCOREINFO` note's text, if present.
pub(crate) fn vmcoreinfo_note<'a>(notes: &[Note<'a>]) -> Option<&'a [u8]> {
    notes
        .iter()
        .find(|n| n.name == b"VMCOREINFO")
        .map(|n| n.desc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        v.extend_from_slice(&kind.to_le_bytes());
        v.extend_from_slice(name);
        v.push(0);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v.extend_from_slice(desc);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn walks_notes_and_stops_at_truncation() {
        let mut b = note(b"VMCOREINFO", 0, b"OSRELEASE=6.1\n");
        b.extend(note(b"CORE", 1, &[0u8; 3]));
        let notes = parse_notes(&b);
        assert_eq!(notes.len(), 2);
        assert_eq!(vmcoreinfo_note(&notes), Some(&b"OSRELEASE=6.1\n"[..]));
        // A descriptor size past the end stops the walk instead of reading beyond it.
        let mut bad = b.clone();
        bad[4] = 0xff;
        assert!(parse_notes(&bad).is_empty());
        assert!(parse_notes(&[1, 2, 3]).is_empty());
    }

    #[test]
    fn qemu_note_gives_control_registers() {
        let mut d = vec![0u8; 440];
        d[0] = 1;
        d[4..8].copy_from_slice(&440u32.to_le_bytes());
        d[QEMU_SEGS + 8..QEMU_SEGS + 12].copy_from_slice(&(DESC_L as u32).to_le_bytes());
        d[QEMU_CRS..QEMU_CRS + 8].copy_from_slice(&0x8005_0033u64.to_le_bytes());
        d[QEMU_CRS + 24..QEMU_CRS + 32].copy_from_slice(&0x0110_4000_u64.to_le_bytes());
        d[QEMU_CRS + 32..QEMU_CRS + 40].copy_from_slice(&0x1000_0020u64.to_le_bytes());
        d[432..440].copy_from_slice(&0xabcdu64.to_le_bytes());
        let b = note(b"QEMU", 0, &d);
        let cpus = cpu_states(&parse_notes(&b));
        assert_eq!(cpus.len(), 1);
        assert_eq!(cpus[0].cr3, 0x1104000);
        assert_eq!(cpus[0].kernel_gs_base, 0xabcd);
        assert_eq!(cpus[0].paging_mode(), Some(PagingMode::Level4));
        assert!(cpu_states(&parse_notes(&note(b"QEMU", 0, &d[..100]))).is_empty());
    }
}
