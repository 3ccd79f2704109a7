// Shared by the memory fuzz targets: exercise an opened dump the way a caller would.
use origami_core::memory::{MemoryDump, PhysicalMemory};
use origami_core::paging::VirtualMemory;

pub fn exercise(dump: &MemoryDump) {
    let ranges = dump.ranges();
    let mut buf = [0u8; 64];
    for r in ranges.iter().take(8) {
        let _ = dump.read_phys(r.start, &mut buf);
        let _ = dump.read_phys(r.end.saturating_sub(8), &mut buf);
    }
    let _ = dump.read_phys(u64::MAX - 4, &mut buf);
    for cpu in dump.cpus().iter().take(4) {
        if let Some(mode) = cpu.paging_mode() {
            let v = VirtualMemory::new(dump, cpu.cr3, mode);
            let _ = v.read(cpu.rip, &mut buf);
            let _ = v.read(cpu.gs_base, &mut buf);
        }
    }
    if let Some(info) = dump.vmcoreinfo() {
        let _ = info.symbol("init_top_pgt");
        let _ = info.number("phys_base");
    }
    let _ = dump.snapshot();
}
