//! A running VM's memory, read while it runs: boots the fixture kernel under QEMU (TCG) with
//! its RAM in a shared `memory-backend-file`, maps that file with `MemoryDump::open_live`,
//! and polls until the kernel's banner can be read both in physical memory and through the
//! kernel's own page tables. The expected banner is the fixture guest's /proc/version
//! (truth.json), and the addresses come from the kernel's System.map.
//!
//! The guest boots with `nokaslr` added to the fixture's command line: with no CPU notes in
//! a live RAM file, the page-table root (`init_top_pgt`) is then known from System.map.
//! Skips outside CI when qemu-system-x86_64 is missing (`scripts/install-qemu-system.sh`
//! installs it; `.ci/run` calls it).

use std::path::Path;
use std::time::Duration;

use origami_core::memory::{DumpFormat, MemoryDump, PhysicalMemory, RamLayout};
use origami_core::paging::{PagingMode, VirtualMemory};
use origami_testsupport::qemu::{self, find_file, FixtureVm};

/// Where `-kernel` places a non-relocated x86-64 kernel's `_text` link address.
const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

fn system_map_symbol(map: &Path, name: &str) -> u64 {
    let text = std::fs::read_to_string(map).unwrap();
    text.lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let (addr, _kind, sym) = (f.next()?, f.next()?, f.next()?);
            (sym == name).then(|| u64::from_str_radix(addr, 16).ok())?
        })
        .unwrap_or_else(|| panic!("{name} not in {}", map.display()))
}

/// Byte offset of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn reads_the_banner_of_a_running_vm() {
    let fx = origami_testsupport::require_fixtures!();
    if !origami_testsupport::require_program("qemu-system-x86_64") {
        return;
    }
    let truth = fx.json("memdump/truth.json");
    let want = truth["kernel"]["version_string"]
        .as_str()
        .unwrap()
        .trim_end()
        .to_owned();
    let kernel_dir = fx.path("memdump/kernel");
    let system_map = find_file(&kernel_dir, "System.map-");
    let banner_va = system_map_symbol(&system_map, "linux_banner");
    let root = system_map_symbol(&system_map, "init_top_pgt") - START_KERNEL_MAP;

    // The fixture's command line with RAM in a shared file; without KASLR, so that the
    // page-table root can come from System.map (a live RAM file has no CPU notes).
    let mut vm = FixtureVm::boot(fx, "origami-live-core", "nokaslr", BOOT_TIMEOUT);
    let ram_file = vm.ram_file.clone();
    let live = MemoryDump::open_live(&ram_file, RamLayout::q35(qemu::RAM)).unwrap();
    assert_eq!(live.format(), DumpFormat::Live);
    assert!(live.is_live());
    assert_eq!(live.ranges()[0].len(), qemu::RAM);
    let kernel = VirtualMemory::new(&live, root, PagingMode::Level4);

    // Poll until the decompressed kernel is in place and its tables map the banner.
    let mut phys_banner = None;
    let mut virt_banner = None;
    let mut ram = vec![0u8; qemu::RAM as usize];
    vm.wait_until(
        BOOT_TIMEOUT,
        "banner in physical and virtual memory",
        |_| {
            live.read_phys(0, &mut ram).unwrap();
            if let Some(at) = find(&ram, want.as_bytes()) {
                phys_banner = Some(at as u64);
            }
            let mut b = vec![0u8; want.len()];
            if kernel.read(banner_va, &mut b).is_ok() && b == want.as_bytes() {
                virt_banner = Some(String::from_utf8(b).unwrap());
            }
            phys_banner.is_some() && virt_banner.is_some()
        },
    );
    // Without KASLR the banner sits at its link address minus __START_KERNEL_map.
    assert_eq!(
        kernel.translate(banner_va).unwrap(),
        banner_va - START_KERNEL_MAP
    );
    assert_eq!(virt_banner.as_deref(), Some(want.as_str()));

    // A stable read and a snapshot of the running guest agree on the (constant) banner.
    let mut stable = vec![0u8; want.len()];
    live.read_phys_stable(banner_va - START_KERNEL_MAP, &mut stable, 8)
        .unwrap();
    assert_eq!(stable, want.as_bytes());
    let snap = live.snapshot().unwrap();
    assert!(!snap.is_live());
    assert_eq!(snap.ranges(), live.ranges());
    let from_snap = VirtualMemory::new(&snap, root, PagingMode::Level4);
    let mut b = vec![0u8; want.len()];
    from_snap.read(banner_va, &mut b).unwrap();
    assert_eq!(b, want.as_bytes());
    drop(vm);
}
