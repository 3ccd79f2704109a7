//! Whether the kernel is still healthy: its taint mask (`tainted_mask`, the number
//! `/proc/sys/kernel/tainted` shows), whether it has oopsed (taint bit `D`), whether an oops
//! is being handled (`oops_in_progress`) and whether it has panicked (`panic_cpu`, set by
//! the first CPU to enter `panic()`).
//!
//! Limits: the taint letters are those of Linux 6.1 (bits 0 to 18); a higher bit shows as
//! `?`. A panic is seen from `panic_cpu`, which every kernel since 4.5 sets before it stops
//! the other CPUs; a kernel that died without entering `panic()` (a triple fault, a hang)
//! shows as not panicked.

use super::kernel::Kernel;
use super::kmem::Kmem;
use crate::error::Result;

/// The taint letters by bit, as `print_tainted()` prints a set bit (`kernel/panic.c`,
/// `taint_flags[]`, Linux 6.1): P proprietary module, F forced module load, S out-of-spec
/// CPU, R forced unload, M machine check, B bad page, U user request, D died (oops), A ACPI
/// table overridden, W warning, C staging driver, I firmware workaround, O out-of-tree
/// module, E unsigned module, L soft lockup, K live patch, X auxiliary, T struct
/// randomisation, N test.
pub const TAINT_LETTERS: &[u8] = b"PFSRMBUDAWCIOELKXTN";

/// `TAINT_DIE`: the kernel oopsed.
pub const TAINT_DIE: u32 = 7;

/// What [`health`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `tainted_mask`.
    pub tainted: u64,
    /// The letters of the set taint bits, lowest bit first (`?` for a bit without a name).
    pub taint_flags: String,
    /// Taint bit `D` is set: the kernel has oopsed since boot.
    pub oopsed: bool,
    /// `oops_in_progress` is non-zero.
    pub oops_in_progress: bool,
    /// The CPU in `panic()`, when one is (`panic_cpu` is -1 otherwise).
    pub panic_cpu: Option<u32>,
}

impl Health {
    /// True when the kernel has panicked.
    pub fn panicked(&self) -> bool {
        self.panic_cpu.is_some()
    }
}

/// The letters of the set bits of a taint mask, lowest bit first.
pub fn taint_letters(mask: u64) -> String {
    (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| char::from(*TAINT_LETTERS.get(b).unwrap_or(&b'?')))
        .collect()
}

/// Reads the taint mask and the oops and panic state.
pub fn health(k: &Kernel, km: &Kmem<'_>) -> Result<Health> {
    let tainted = km.u64(k.symbol("tainted_mask")?)?;
    let oops = km.u32(k.symbol("oops_in_progress")?)? as i32;
    let cpu = km.u32(k.symbol("panic_cpu")?)? as i32;
    Ok(Health {
        tainted,
        taint_flags: taint_letters(tainted),
        oopsed: tainted & (1 << TAINT_DIE) != 0,
        oops_in_progress: oops != 0,
        // PANIC_CPU_INVALID is -1; any other negative value is not a CPU either.
        panic_cpu: u32::try_from(cpu).ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taint_letters_follow_print_tainted() {
        assert_eq!(taint_letters(0), "");
        // An out-of-tree, unsigned module (O, E) after a warning (W).
        assert_eq!(taint_letters((1 << 12) | (1 << 13) | (1 << 9)), "WOE");
        assert_eq!(taint_letters(1 << TAINT_DIE), "D");
        assert_eq!(taint_letters(1 << 18), "N");
        assert_eq!(taint_letters(1 << 40), "?");
    }
}
