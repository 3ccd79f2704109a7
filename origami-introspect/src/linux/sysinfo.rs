//! The kernel's identity and vital figures: release and host name (`init_uts_ns`), memory
//! totals (`_totalram_pages`, `vm_zone_stat[NR_FREE_PAGES]`) and uptime and boot time (the
//! timekeeper in `tk_core`).
//!
//! Limits: the host name is the initial UTS namespace's (a container's own is not shown);
//! `tk_core` is an anonymous struct whose `timekeeper` follows a `seqcount_raw_spinlock_t`,
//! so its offset is that struct's size rounded up to 8.

use super::kernel::Kernel;
use super::kmem::Kmem;
use crate::error::Result;

/// `struct new_utsname` fields are 65 bytes.
const UTS_LEN: usize = 65;

/// What [`uts`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uts {
    /// `nodename`.
    pub hostname: String,
    /// `release`.
    pub release: String,
    /// `machine`.
    pub machine: String,
}

/// Reads `init_uts_ns.name`.
pub fn uts(k: &Kernel, km: &Kmem<'_>) -> Result<Uts> {
    let ns = k.symbol("init_uts_ns")?;
    let l = &k.layout;
    Ok(Uts {
        hostname: km.cstr(
            ns.wrapping_add(l.off("uts_namespace.name.nodename")?),
            UTS_LEN,
        )?,
        release: km.cstr(
            ns.wrapping_add(l.off("uts_namespace.name.release")?),
            UTS_LEN,
        )?,
        machine: km.cstr(
            ns.wrapping_add(l.off("uts_namespace.name.machine")?),
            UTS_LEN,
        )?,
    })
}

/// Memory totals, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemTotals {
    /// `MemTotal`.
    pub total_kb: u64,
    /// `MemFree`.
    pub free_kb: u64,
}

/// Reads the memory totals (4 KiB pages).
pub fn memory(k: &Kernel, km: &Kmem<'_>) -> Result<MemTotals> {
    let total = km.u64(k.symbol("_totalram_pages")?)? as i64;
    let free = km.u64(k.symbol("vm_zone_stat")?)? as i64;
    Ok(MemTotals {
        total_kb: total.max(0) as u64 * 4,
        free_kb: free.max(0) as u64 * 4,
    })
}

/// Uptime and wall-clock time at the moment of the dump.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    /// Seconds since boot (CLOCK_BOOTTIME).
    pub uptime_s: f64,
    /// Wall-clock seconds since the epoch (CLOCK_REALTIME, whole seconds).
    pub now_unix: i64,
}

/// Reads the timekeeper.
pub fn clock(k: &Kernel, km: &Kmem<'_>) -> Result<Clock> {
    let l = &k.layout;
    let seq = l.sizes.get("seqcount_raw_spinlock").copied().unwrap_or(4);
    let tk = k.symbol("tk_core")?.wrapping_add((seq.min(4096) + 7) & !7);
    let xtime = km.u64(tk.wrapping_add(l.off("timekeeper.xtime_sec")?))? as i64;
    let mono = km.u64(tk.wrapping_add(l.off("timekeeper.ktime_sec")?))? as i64;
    let offs_boot = km.u64(tk.wrapping_add(l.off("timekeeper.offs_boot")?))? as i64;
    Ok(Clock {
        uptime_s: mono as f64 + offs_boot as f64 / 1e9,
        now_unix: xtime,
    })
}
