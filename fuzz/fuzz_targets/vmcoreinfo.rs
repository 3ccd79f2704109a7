//! Any bytes through the VMCOREINFO parser and its typed getters: errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = origami_core::memory::VmcoreInfo::parse(data) {
        for (k, _) in info.entries().take(16) {
            let _ = info.get(k);
        }
        let _ = info.symbol("init_task");
        let _ = info.number("phys_base");
        let _ = info.size("page");
        let _ = info.offset("page.flags");
        let _ = info.length("mem_section");
        let _ = info.kernel_offset();
        let _ = info.page_size();
    }
});
