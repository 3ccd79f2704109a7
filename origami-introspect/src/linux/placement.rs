//! Where the kernel sits: its image's physical base and virtual address (the KASLR
//! shifts), tied by the banner's two addresses; the page-table root and paging mode that
//! translate one to the other; the windows of RAM the dump's CPUs point at.

use origami_core::paging::{PagingMode, VirtualMemory};

use super::image::{WINDOW_AFTER, WINDOW_BEFORE};
use super::kernel::DumpView;
use super::kmem::{bad, KERNEL_IMAGE_SIZE, START_KERNEL_MAP};
use crate::error::Result;

/// The alignment of the kernel image, physically and virtually (CONFIG_PHYSICAL_ALIGN).
pub(super) const IMAGE_ALIGN: u64 = 2 << 20;

/// Where the kernel image is, once a banner's physical and virtual addresses are tied.
#[derive(Debug, Clone, Copy)]
pub(super) struct Placement {
    pub(super) banner_phys: u64,
    pub(super) banner_virt: u64,
}

impl Placement {
    pub(super) fn image_phys(&self) -> u64 {
        self.banner_phys
            .wrapping_sub(self.banner_virt.wrapping_sub(START_KERNEL_MAP))
    }
    pub(super) fn phys_of(&self, v: u64) -> u64 {
        v.wrapping_sub(START_KERNEL_MAP)
            .wrapping_add(self.image_phys())
    }
}

pub(super) fn check_placement(p: &Placement) -> Result<()> {
    let ip = p.image_phys();
    if !ip.is_multiple_of(IMAGE_ALIGN) || p.banner_virt < START_KERNEL_MAP {
        return Err(bad(
            "linux_banner",
            p.banner_virt,
            format!(
                "image physical base {ip:#x} (banner at physical {:#x}) is not 2 MiB-aligned",
                p.banner_phys
            ),
        ));
    }
    Ok(())
}

/// Guesses the paging mode from the dump's own statements.
pub(super) fn mode_hint(view: &DumpView<'_>) -> Option<PagingMode> {
    if let Some(n) = view.vmcoreinfo.and_then(|v| v.number("pgtable_l5_enabled")) {
        return Some(if n != 0 {
            PagingMode::Level5
        } else {
            PagingMode::Level4
        });
    }
    view.cpus.iter().find_map(|c| c.paging_mode())
}

/// Finds a root (and mode) under which `virt` translates to `phys`: first the given
/// candidates, then every CPU's CR3.
pub(super) fn find_root(
    view: &DumpView<'_>,
    candidates: &[u64],
    virt: u64,
    phys: u64,
) -> Result<(u64, PagingMode)> {
    let modes = match mode_hint(view) {
        Some(PagingMode::Level5) => [PagingMode::Level5, PagingMode::Level4],
        _ => [PagingMode::Level4, PagingMode::Level5],
    };
    let roots = candidates
        .iter()
        .copied()
        .chain(view.cpus.iter().map(|c| c.page_table_root()))
        .filter(|r| *r != 0);
    for root in roots {
        for mode in modes {
            let vm = VirtualMemory::new(view.phys, root, mode);
            if vm.translate(virt).ok() == Some(phys) {
                return Ok((root, mode));
            }
        }
    }
    Err(bad(
        "page tables",
        virt,
        format!("no page-table root maps it to physical {phys:#x}"),
    ))
}

/// Finds the banner's virtual address by translating every 2 MiB-aligned image position
/// through `root` (used when symbols are known only relative to each other).
pub(super) fn find_banner_virt(
    view: &DumpView<'_>,
    banner_phys: u64,
    rel_root: i64,
) -> Result<Placement> {
    let modes = match mode_hint(view) {
        Some(PagingMode::Level5) => [PagingMode::Level5, PagingMode::Level4],
        _ => [PagingMode::Level4, PagingMode::Level5],
    };
    let root = banner_phys.wrapping_add(rel_root as u64);
    let low = banner_phys % IMAGE_ALIGN;
    let mut roots = vec![root];
    roots.extend(view.cpus.iter().map(|c| c.page_table_root()));
    for r in roots.into_iter().filter(|r| *r != 0) {
        for mode in modes {
            let vm = VirtualMemory::new(view.phys, r, mode);
            for k in 0..(KERNEL_IMAGE_SIZE / IMAGE_ALIGN) {
                let v = START_KERNEL_MAP + k * IMAGE_ALIGN + low;
                // The top page table must sit, virtually too, where the symbols put it
                // relative to the banner: a banner copy elsewhere (the printk buffer)
                // fails this.
                if vm.translate(v).ok() == Some(banner_phys)
                    && vm.translate(v.wrapping_add(rel_root as u64)).ok() == Some(root)
                {
                    return Ok(Placement {
                        banner_phys,
                        banner_virt: v,
                    });
                }
            }
        }
    }
    Err(bad(
        "linux_banner",
        banner_phys,
        "no kernel-image address maps to the banner",
    ))
}

/// Physical windows likely to hold the kernel image: from VMCOREINFO's `phys_base` and
/// `_stext`, and from any CPU that was executing kernel code (its RIP through its CR3).
pub(super) fn image_hints(view: &DumpView<'_>) -> Vec<(u64, u64)> {
    let mut w = Vec::new();
    if let Some(vi) = view.vmcoreinfo {
        if let (Some(ip), Some(stext)) = (vi.number("phys_base"), vi.symbol("_stext")) {
            let p = stext.wrapping_sub(START_KERNEL_MAP).wrapping_add(ip as u64);
            w.push((p, p.saturating_add(WINDOW_AFTER + WINDOW_BEFORE)));
        }
    }
    for c in view.cpus {
        let in_image = (START_KERNEL_MAP..START_KERNEL_MAP + KERNEL_IMAGE_SIZE).contains(&c.rip);
        if let (true, Some(mode)) = (in_image, c.paging_mode()) {
            let vm = VirtualMemory::new(view.phys, c.page_table_root(), mode);
            if let Ok(p) = vm.translate(c.rip) {
                w.push((
                    p.saturating_sub(WINDOW_AFTER),
                    p.saturating_add(WINDOW_AFTER + WINDOW_BEFORE),
                ));
            }
        }
    }
    w
}
