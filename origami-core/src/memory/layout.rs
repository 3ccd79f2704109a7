//! Where guest RAM sits in guest-physical space, as data: a list of regions mapping
//! guest-physical addresses to offsets in a flat RAM file (a raw image or QEMU's
//! `memory-backend-file`).
//!
//! Limits: [`RamLayout::q35`], [`RamLayout::pc_i440fx`] and [`RamLayout::for_qemu_machine`]
//! follow QEMU's split (RAM below the PCI hole, the rest from 4 GiB; `hw/i386/pc_q35.c`,
//! `pc_piix.c`, `microvm.c`) for current machine types; not the 3.5 GiB split of `pc-1.7`
//! and older, hot-plugged DIMMs, or the AMD 1 TiB hole QEMU leaves below RAM above 4 GiB
//! for guests of about a terabyte. Other layouts are given with [`RamLayout::from_regions`].

use crate::error::{Error, Result};

/// One piece of guest RAM: `len` bytes at guest-physical `guest_phys`, stored from
/// `file_offset` in the RAM file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamRegion {
    /// First guest-physical address.
    pub guest_phys: u64,
    /// Offset in the file.
    pub file_offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// How a flat RAM file maps onto guest-physical addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamLayout {
    regions: Vec<RamRegion>,
}

const GIB: u64 = 1 << 30;
const FOUR_GIB: u64 = 4 * GIB;

impl RamLayout {
    /// The whole file at guest-physical 0 (`pmemsave`, a small VM's RAM file). `size` is
    /// the file size; pass it from the file's metadata.
    pub fn flat(size: u64) -> RamLayout {
        RamLayout {
            regions: vec![RamRegion {
                guest_phys: 0,
                file_offset: 0,
                len: size,
            }],
        }
    }

    /// QEMU's `q35` machine with `ram_size` bytes: RAM below 2 GiB when there are at least
    /// 2.75 GiB (below 2.75 GiB otherwise), the rest from 4 GiB.
    pub fn q35(ram_size: u64) -> RamLayout {
        Self::for_qemu_machine("q35", ram_size, None).unwrap_or_else(|| Self::flat(ram_size))
    }

    /// QEMU's `pc` (i440FX) machine with `ram_size` bytes: all below 3.5 GiB when it fits,
    /// otherwise 3 GiB below and the rest from 4 GiB (the gigabyte-aligned split).
    pub fn pc_i440fx(ram_size: u64) -> RamLayout {
        Self::for_qemu_machine("pc", ram_size, None).unwrap_or_else(|| Self::flat(ram_size))
    }

    /// The layout QEMU gives `ram_size` bytes of RAM on the x86 machine type `machine`
    /// (`q35`, `pc-q35-*`, `pc`, `pc-i440fx-*`, `microvm`, `isapc`), with the machine's
    /// `max-ram-below-4g` when it was set. `None` for a machine type this does not know.
    ///
    /// As QEMU computes it: q35 keeps RAM below 2 GiB when there are at least 2.75 GiB
    /// (below 2.75 GiB otherwise), lowered to `max-ram-below-4g`; pc keeps it below
    /// `max-ram-below-4g` (3.5 GiB by default), lowered to 3 GiB when the RAM does not
    /// fit; microvm below 3 GiB; isapc all below. The rest starts at 4 GiB.
    pub fn for_qemu_machine(
        machine: &str,
        ram_size: u64,
        max_ram_below_4g: Option<u64>,
    ) -> Option<RamLayout> {
        let m = machine.trim();
        let max_below = max_ram_below_4g.filter(|&v| v != 0);
        let lowmem = if m == "q35" || m.starts_with("pc-q35-") {
            let lowmem = if ram_size >= 0xb000_0000 {
                0x8000_0000
            } else {
                0xb000_0000
            };
            lowmem.min(max_below.unwrap_or(FOUR_GIB))
        } else if m == "pc" || m.starts_with("pc-i440fx-") || m.starts_with("pc-") {
            let max = max_below.unwrap_or(0xe000_0000);
            if ram_size >= max {
                max.min(0xc000_0000)
            } else {
                max
            }
        } else if m == "microvm" {
            0xc000_0000
        } else if m == "isapc" {
            u64::MAX
        } else {
            return None;
        };
        Some(Self::split(ram_size, lowmem))
    }

    fn split(ram_size: u64, lowmem: u64) -> RamLayout {
        if ram_size <= lowmem {
            return Self::flat(ram_size);
        }
        RamLayout {
            regions: vec![
                RamRegion {
                    guest_phys: 0,
                    file_offset: 0,
                    len: lowmem,
                },
                RamRegion {
                    guest_phys: FOUR_GIB,
                    file_offset: lowmem,
                    len: ram_size - lowmem,
                },
            ],
        }
    }

    /// A layout from explicit regions; fails when a region wraps the address space.
    /// (Overlaps are checked when the layout is applied to a file.)
    pub fn from_regions(regions: Vec<RamRegion>) -> Result<RamLayout> {
        for r in &regions {
            if r.guest_phys.checked_add(r.len).is_none()
                || r.file_offset.checked_add(r.len).is_none()
            {
                return Err(Error::BadDump {
                    source_name: "RAM layout".into(),
                    offset: r.file_offset,
                    reason: format!(
                        "region at guest-physical {:#x} of {:#x} bytes wraps around",
                        r.guest_phys, r.len
                    ),
                });
            }
        }
        Ok(RamLayout { regions })
    }

    /// The same layout for a file whose RAM starts `offset` bytes in (a mapping of a RAM
    /// file at an offset); fails when an offset overflows.
    pub fn shifted(&self, offset: u64) -> Result<RamLayout> {
        let regions = self
            .regions
            .iter()
            .map(|r| {
                r.file_offset
                    .checked_add(offset)
                    .map(|file_offset| RamRegion { file_offset, ..*r })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::BadDump {
                source_name: "RAM layout".into(),
                offset,
                reason: "file offset overflows".into(),
            })?;
        Self::from_regions(regions)
    }

    /// The regions.
    pub fn regions(&self) -> &[RamRegion] {
        &self.regions
    }

    /// The RAM size: the sum of the regions' lengths.
    pub fn ram_size(&self) -> u64 {
        self.regions
            .iter()
            .fold(0u64, |a, r| a.saturating_add(r.len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pc_layouts_split_at_the_pci_hole() {
        assert_eq!(RamLayout::q35(256 << 20), RamLayout::flat(256 << 20));
        let big = RamLayout::q35(8 * GIB);
        assert_eq!(big.regions()[0].len, 2 * GIB);
        assert_eq!(big.regions()[1].guest_phys, FOUR_GIB);
        assert_eq!(big.regions()[1].file_offset, 2 * GIB);
        assert_eq!(big.ram_size(), 8 * GIB);
        assert_eq!(RamLayout::q35(0xa000_0000).regions().len(), 1);
        let pc = RamLayout::pc_i440fx(4 * GIB);
        assert_eq!(pc.regions()[0].len, 3 * GIB);
        assert_eq!(pc.regions()[1].len, GIB);
        // The same through the machine names QEMU takes.
        assert_eq!(
            RamLayout::for_qemu_machine("pc-q35-9.2", 8 * GIB, None),
            Some(big)
        );
        assert_eq!(RamLayout::for_qemu_machine("pc", 4 * GIB, None), Some(pc));
        assert_eq!(RamLayout::for_qemu_machine("arm-virt", GIB, None), None);
        assert!(RamLayout::from_regions(vec![RamRegion {
            guest_phys: u64::MAX,
            file_offset: 0,
            len: 2
        }])
        .is_err());
    }
}
