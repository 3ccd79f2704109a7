//! Linux kernel structures found in guest memory.

use origami_introspect::linux::btf::Btf;
use origami_introspect::linux::isf;
use origami_introspect::linux::kallsyms::{decode, find_tables, SymbolTable, Tables};
use origami_introspect::linux::layout::Layout;

/// Any bytes through the BTF parser and the member lookups the crawlers make (including
/// every declared layout): errors, never panics, bounded work on cyclic type graphs.
pub fn linux_btf(data: &[u8]) {
    if let Ok(btf) = Btf::parse(data) {
        let _ = Layout::from_btf(&btf);
        for id in 0..btf.type_count().min(64) as u32 + 1 {
            let _ = btf.size_of(id);
            let _ = btf.array_info(id);
            let _ = btf.type_name(id);
        }
        let _ = btf.member("task_struct", "tasks.next");
    }
}

/// Any bytes as a window of kernel memory through the kallsyms search and decoder: errors,
/// never panics, and bounded work. The first 8 bytes, when present, choose explicit table
/// positions so the decoder is also driven directly, past the search's own checks.
pub fn linux_kallsyms(data: &[u8]) {
    if let Ok(t) = find_tables(data) {
        if let Ok(syms) = decode(data, &t) {
            let _ = SymbolTable::from_symbols(syms).get("init_task");
        }
    }
    if data.len() >= 8 {
        let (head, w) = data.split_at(8);
        let at = |i: usize| usize::from(u16::from_le_bytes([head[i], head[i + 1]]));
        let t = Tables {
            offsets: at(0),
            relative_base: 0xffff_ffff_8100_0000,
            num_syms: u32::from(head[6]) * 16,
            names: at(2),
            token_table: at(4),
            token_index: usize::from(head[7]) * 8,
        };
        let _ = decode(w, &t);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = SymbolTable::parse_system_map(text).get("linux_banner");
    }
}

/// Any bytes as a Volatility 3 ISF (JSON) through the streaming parser and every layout
/// lookup the crawlers make: errors, never panics, bounded work on cyclic or deeply nested
/// anonymous types, and members outside their structs refused.
pub fn linux_isf(data: &[u8]) {
    if let Ok(layout) = isf::layout_from_bytes(data) {
        for f in layout.fields.values() {
            let _ = f.value_in(&[0xff; 8]);
        }
    }
}
