//! Crawls a memory dump and prints the frame as JSON (a development aid).
use origami_core::memory::MemoryDump;
use origami_introspect::frame::Frame;
use origami_introspect::linux::{crawl, discover, LinuxOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dump = MemoryDump::open(&args[1]).expect("open dump");
    let mut opts = LinuxOptions::default();
    for a in &args[2..] {
        if a == "--no-cache" {
            opts = opts.no_cache();
        } else if let Some(d) = a.strip_prefix("--cache=") {
            opts = opts.with_cache_dir(d);
        } else {
            opts = opts.with_system_map(a);
        }
    }
    match discover(&dump, &opts) {
        Ok(k) => eprintln!(
            "release {} image_phys {:#x} kaslr {:#x} pob {:#x} root {:#x} {:?} {:?} cache {} text {:x?} timings {:?}",
            k.release, k.image_phys, k.kaslr_offset, k.page_offset_base, k.root, k.mode, k.symbol_source, k.from_cache, k.symbols.get("_text"), k.timings
        ),
        Err(e) => eprintln!("discover: {e}"),
    }
    let mut f = Frame::new("memcrawl");
    crawl(&dump, &opts).merge_into(&mut f);
    println!("{}", f.to_json_pretty());
}
