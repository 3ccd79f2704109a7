//! The memory crawl of each fixture dump against the guest's own /proc (truth.json): every
//! process (pid, ppid, comm, cmdline, uid; kernel threads and zombies included), every
//! TCP/UDP socket (addresses, ports, state, owning pid), every module, the release and the
//! host name, without a System.map and with one, cold and from the cache.

use crate::memory_truth;

use std::collections::BTreeSet;

use memory_truth::compare;
use origami_core::memory::MemoryDump;
use origami_introspect::frame::Frame;
use origami_introspect::linux::{discover, LinuxOptions, SymbolSource};
use serde_json::Value;

const DUMPS: [&str; 3] = ["memdump", "memdump-novmcoreinfo", "memdump-la57"];

fn crawl(dump: &MemoryDump, opts: &LinuxOptions) -> Frame {
    let mut f = Frame::new("test");
    origami_introspect::linux::crawl(dump, opts).merge_into(&mut f);
    f
}

#[test]
fn each_dump_matches_its_truth_without_and_with_system_map() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let map = fx.path("memdump/kernel/System.map-6.1.0-56-amd64");
    for name in DUMPS {
        let truth = fx.json(&format!("{name}/truth.json"));
        let dump = MemoryDump::open(fx.path(&format!("{name}/memory.elf"))).unwrap();
        for opts in [
            LinuxOptions::default().no_cache(),
            LinuxOptions::default().no_cache().with_system_map(&map),
        ] {
            let frame = crawl(&dump, &opts);
            let bad = compare(&frame, &truth);
            assert!(
                bad.is_empty(),
                "{name} (map: {}): {bad:#?}\nerrors: {:#?}",
                opts.system_map.is_some(),
                frame.meta.errors
            );
            if let Ok(dir) = std::env::var("ORIGAMI_TEST_FRAMES") {
                let tag = if opts.system_map.is_some() {
                    "map"
                } else {
                    "nomap"
                };
                std::fs::write(format!("{dir}/{name}-{tag}.json"), frame.to_json_pretty()).unwrap();
            }
        }
    }
}

#[test]
fn discovery_recovers_the_guests_kaslr_and_symbols() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    for name in DUMPS {
        let truth = fx.json(&format!("{name}/truth.json"));
        let dump = MemoryDump::open(fx.path(&format!("{name}/memory.elf"))).unwrap();
        let k = discover(&dump, &LinuxOptions::default().no_cache()).unwrap();
        assert_eq!(k.symbol_source, SymbolSource::Kallsyms);
        let hex = |v: &Value| {
            u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        };
        let kt = &truth["kernel"];
        assert_eq!(k.kaslr_offset, hex(&kt["kaslr"]["kernel_offset"]), "{name}");
        assert_eq!(k.page_offset_base, hex(&kt["page_offset_base"]), "{name}");
        assert_eq!(k.banner, kt["version_string"].as_str().unwrap(), "{name}");
        assert_eq!(k.release, kt["release"].as_str().unwrap());
        for (sym, addr) in kt["symbols_runtime"].as_object().unwrap() {
            if let Some(got) = k.symbols.get(sym) {
                assert_eq!(got, hex(addr), "{name}: {sym}");
            }
        }
        assert_eq!(
            matches!(k.mode, origami_core::paging::PagingMode::Level5),
            kt["five_level_paging"].as_bool().unwrap()
        );
        assert_eq!(k.had_vmcoreinfo, dump.vmcoreinfo().is_some());
    }
}

#[test]
fn cache_makes_the_second_crawl_skip_discovery_and_survives_corruption() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("origami-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = LinuxOptions::default().with_cache_dir(&dir);
    for name in ["memdump-novmcoreinfo", "memdump"] {
        let truth = fx.json(&format!("{name}/truth.json"));
        let dump = MemoryDump::open(fx.path(&format!("{name}/memory.elf"))).unwrap();
        let cold = discover(&dump, &opts).unwrap();
        let warm = discover(&dump, &opts).unwrap();
        assert!(
            warm.from_cache && warm.symbol_source == SymbolSource::Cache,
            "{name}"
        );
        assert_eq!(
            (warm.image_phys, warm.kaslr_offset, warm.root),
            (cold.image_phys, cold.kaslr_offset, cold.root)
        );
        let frame = crawl(&dump, &opts);
        assert!(compare(&frame, &truth).is_empty(), "{name} from cache");
    }
    // Corrupt every entry: each is ignored, rebuilt, and the crawl is still right.
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let mut text = std::fs::read_to_string(&p).unwrap();
        text = text.replacen("\"offset\":", "\"offset\":1", 1);
        std::fs::write(&p, text).unwrap();
    }
    let dump = MemoryDump::open(fx.path("memdump/memory.elf")).unwrap();
    let k = discover(&dump, &opts).unwrap();
    assert!(!k.from_cache);
    let k = discover(&dump, &opts).unwrap();
    assert!(k.from_cache);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tcp_hash_table_holds_exactly_the_established_sockets() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    for name in DUMPS {
        let truth = fx.json(&format!("{name}/truth.json"));
        let dump = MemoryDump::open(fx.path(&format!("{name}/memory.elf"))).unwrap();
        let k = discover(&dump, &LinuxOptions::default().no_cache()).unwrap();
        let km = k.kmem(&dump);
        let hashed = origami_introspect::linux::sockets::tcp_ehash(&k, &km)
            .unwrap()
            .expect("this kernel has tcp_hashinfo");
        let got: BTreeSet<(String, u16, String, u16, String)> = hashed
            .into_iter()
            .map(|(_, c)| {
                (
                    c.local_address,
                    c.local_port,
                    c.remote_address,
                    c.remote_port,
                    c.state,
                )
            })
            .collect();
        let mut want = BTreeSet::new();
        for fam in ["tcp", "tcp6"] {
            for s in truth["sockets"][fam].as_array().unwrap() {
                if s["state"] != "LISTEN" {
                    want.insert((
                        s["local_ip"].as_str().unwrap().to_string(),
                        s["local_port"].as_u64().unwrap() as u16,
                        s["remote_ip"].as_str().unwrap().to_string(),
                        s["remote_port"].as_u64().unwrap() as u16,
                        s["state"].as_str().unwrap().to_string(),
                    ));
                }
            }
        }
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn the_kdump_compressed_form_of_the_dump_crawls_the_same() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let truth = fx.json("memdump/truth.json");
    let dump = MemoryDump::open(fx.path("memdump/memory.kdump")).unwrap();
    let frame = crawl(&dump, &LinuxOptions::default().no_cache());
    let bad = compare(&frame, &truth);
    assert!(bad.is_empty(), "{bad:#?}\nerrors: {:#?}", frame.meta.errors);
}

#[test]
fn btf_is_found_by_its_header_when_no_symbol_names_it() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    // A System.map without __start_BTF/__stop_BTF: the BTF must be found by searching the
    // kernel's memory for its magic and a header whose types parse and hold task_struct.
    let map = std::fs::read_to_string(fx.path("memdump/kernel/System.map-6.1.0-56-amd64")).unwrap();
    let filtered: String = map
        .lines()
        .filter(|l| !l.ends_with(" __start_BTF") && !l.ends_with(" __stop_BTF"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(filtered.len() < map.len());
    let dir = std::env::temp_dir().join(format!("origami-btf-scan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("System.map");
    std::fs::write(&path, filtered).unwrap();
    let dump = MemoryDump::open(fx.path("memdump-novmcoreinfo/memory.elf")).unwrap();
    let scanned = discover(
        &dump,
        &LinuxOptions::default().no_cache().with_system_map(&path),
    )
    .unwrap();
    assert!(scanned.symbols.get("__start_BTF").is_none());
    let named = discover(&dump, &LinuxOptions::default().no_cache()).unwrap();
    assert_eq!(scanned.layout, named.layout);
    assert!(scanned.layout.missing_for("process").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
