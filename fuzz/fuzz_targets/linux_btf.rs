//! Any bytes through the BTF parser and the member lookups the crawlers make (including
//! every declared layout): errors, never panics, bounded work on cyclic type graphs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origami_introspect::linux::btf::Btf;
use origami_introspect::linux::layout::Layout;

fuzz_target!(|data: &[u8]| {
    if let Ok(btf) = Btf::parse(data) {
        let _ = Layout::from_btf(&btf);
        for id in 0..btf.type_count().min(64) as u32 + 1 {
            let _ = btf.size_of(id);
            let _ = btf.array_info(id);
            let _ = btf.type_name(id);
        }
        let _ = btf.member("task_struct", "tasks.next");
    }
});
