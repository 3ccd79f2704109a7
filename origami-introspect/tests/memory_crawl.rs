//! The memory crawl of each fixture dump against the guest's own /proc (truth.json): every
//! process (pid, ppid, comm, cmdline, uid; kernel threads and zombies included), every
//! TCP/UDP socket (addresses, ports, state, owning pid), every module, the release and the
//! host name, without a System.map and with one, cold and from the cache.

use std::collections::{BTreeSet, HashMap};

use origami_core::memory::MemoryDump;
use origami_introspect::frame::Frame;
use origami_introspect::linux::{crawl_into, discover, LinuxOptions, SymbolSource};
use serde_json::Value;

const DUMPS: [&str; 3] = ["memdump", "memdump-novmcoreinfo", "memdump-la57"];

fn crawl(dump: &MemoryDump, opts: &LinuxOptions) -> Frame {
    let mut f = Frame::new("test");
    crawl_into(dump, opts, &mut f);
    f
}

/// (protocol, local address, local port, remote address, remote port, state, pid).
type SocketKey = (String, String, u16, String, u16, String, Option<u32>);

/// Compares a frame with truth.json; returns the mismatches.
fn compare(frame: &Frame, truth: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let k = &truth["kernel"];
    if frame.os.kernel.as_deref() != k["release"].as_str() {
        bad.push(format!("kernel {:?}", frame.os.kernel));
    }
    if frame.os.hostname.as_deref() != k["hostname"].as_str() {
        bad.push(format!("hostname {:?}", frame.os.hostname));
    }
    let procs: HashMap<u32, _> = frame.process.iter().map(|p| (p.pid, p)).collect();
    for p in truth["processes"].as_array().unwrap() {
        let pid = p["pid"].as_u64().unwrap() as u32;
        let Some(g) = procs.get(&pid) else {
            bad.push(format!("process {pid} missing"));
            continue;
        };
        let kthread = p["kernel_thread"].as_bool().unwrap();
        let comm = p["comm"].as_str().unwrap();
        // /proc appends a workqueue description to kworker names; comm itself stops before.
        let name_ok = if kthread {
            comm == g.name || comm.starts_with(&format!("{}-", g.name))
        } else {
            comm == g.name
        };
        let cmd: Vec<String> = p["cmdline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let ok = name_ok
            && g.ppid == p["ppid"].as_u64().unwrap() as u32
            && g.uid == p["uid"][0].as_u64().unwrap() as u32
            && g.kernel_thread == kthread
            && g.cmdline == cmd
            && g.state.as_deref() == p["state"].as_str()
            && g.start_time == p["start_time_ticks"].as_u64()
            // PID 1 was itself collecting the snapshot, so its RSS moved before the dump.
            && (pid == 1 || g.rss == p["rss_pages"].as_u64().map(|n| n * 4096));
        if !ok {
            bad.push(format!("process {pid}: got {g:?}, want {p}"));
        }
    }
    let got: BTreeSet<SocketKey> = frame
        .connection
        .iter()
        .map(|c| {
            (
                c.protocol.clone(),
                c.local_address.clone(),
                c.local_port,
                c.remote_address.clone(),
                c.remote_port,
                c.state.clone(),
                c.pid,
            )
        })
        .collect();
    for fam in ["tcp", "tcp6", "udp", "udp6"] {
        for s in truth["sockets"][fam].as_array().unwrap() {
            let want = (
                fam.trim_end_matches('6').to_string(),
                s["local_ip"].as_str().unwrap().to_string(),
                s["local_port"].as_u64().unwrap() as u16,
                s["remote_ip"].as_str().unwrap().to_string(),
                s["remote_port"].as_u64().unwrap() as u16,
                s["state"].as_str().unwrap().to_string(),
                s["pids"][0].as_u64().map(|p| p as u32),
            );
            if !got.contains(&want) {
                bad.push(format!("socket {want:?} missing"));
            }
        }
    }
    let mods: HashMap<&str, _> = frame.module.iter().map(|m| (m.name.as_str(), m)).collect();
    for m in truth["modules"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        match mods.get(name) {
            Some(g) if g.size == m["size"].as_u64().unwrap() && g.state == m["state"] => {}
            other => bad.push(format!("module {name}: {other:?}")),
        }
    }
    if frame.module.len() != truth["modules"].as_array().unwrap().len() {
        bad.push(format!("{} modules", frame.module.len()));
    }
    let total = truth["memory"]["meminfo_kB"]["MemTotal"].as_u64().unwrap();
    if frame.os.extra.get("mem_total_kb").and_then(Value::as_u64) != Some(total) {
        bad.push(format!(
            "mem_total_kb {:?}",
            frame.os.extra.get("mem_total_kb")
        ));
    }
    // The dump is taken a few seconds after the guest's snapshot of /proc.
    let up = truth["collected_uptime_s"].as_f64().unwrap();
    match frame.os.extra.get("uptime_s").and_then(Value::as_f64) {
        Some(u) if u >= up - 1.0 && u <= up + 120.0 => {}
        other => bad.push(format!("uptime {other:?}, truth {up}")),
    }
    bad
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
