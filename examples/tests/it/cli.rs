//! End-to-end tests of the `origami` binary: the demo, and a fleet of the shared fixture
//! guests (disks and memory) crawled, indexed and searched. Expectations come from ground
//! truth made independently: the fixtures' truth files and the demo generator's fleet.json.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const IP: &str = "10.20.30.40";

fn origami(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_origami"))
        .args(args)
        .output()
        .expect("run origami")
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `origami search --json`, as machine -> set of (kind, key) hits.
fn search(index: &Path, query: &str) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let out = origami(&[
        "search",
        "--index",
        index.to_str().unwrap(),
        query,
        "--json",
        "--limit",
        "100",
        "--hits",
        "100",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(4),
        "search {query:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    v["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let hits = m["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h["kind"].as_str().unwrap().to_string(),
                        h["key"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (m["system"].as_str().unwrap().to_string(), hits)
        })
        .collect()
}

#[test]
fn demo_runs_and_finds_exactly_the_machines_the_generator_put_the_ip_on() {
    let dir = scratch("demo");
    let out = origami(&["demo", "--dir", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("$ origami search"), "{text}");

    let fleet: Value = serde_json::from_str(origami_examples::demo::FLEET_JSON).unwrap();
    let machines = fleet["machines"].as_array().unwrap();
    assert!(machines.len() >= 8);
    let want: BTreeMap<String, BTreeSet<(String, String)>> = machines
        .iter()
        .filter(|m| !m["mentions_ip"].as_array().unwrap().is_empty())
        .map(|m| {
            let paths = m["mentions_ip"].as_array().unwrap();
            let hits = paths
                .iter()
                .map(|p| ("config".to_string(), p.as_str().unwrap().to_string()))
                .collect();
            (m["name"].as_str().unwrap().to_string(), hits)
        })
        .collect();
    let got = search(&dir.join("index"), IP);
    assert_eq!(
        got, want,
        "the IP query must return exactly the machines and files that mention it"
    );

    // Every package the generator installed is found on its machine by a package query.
    for m in machines
        .iter()
        .filter(|m| m["broken"].as_bool() != Some(true))
    {
        let name = m["name"].as_str().unwrap();
        let got = search(&dir.join("index"), &format!("type:package host:{name}"));
        let pk: BTreeSet<String> = got
            .get(name)
            .map(|h| {
                h.iter()
                    .map(|(_, k)| k.split(':').next().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let want: BTreeSet<String> = m["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        assert_eq!(pk, want, "packages of {name}");
    }
    // The broken machine is in the fleet summary, and did not stop the others.
    assert!(text.contains("legacy-01"), "{text}");
}

/// Does a memory fixture's truth mention the address (a socket or an interface)?
fn memory_truth_mentions(truth: &Value, ip: &str) -> bool {
    let sockets = ["tcp", "tcp6", "udp", "udp6"]
        .iter()
        .flat_map(|f| truth["sockets"][f].as_array().cloned().unwrap_or_default());
    sockets
        .into_iter()
        .any(|s| s["local_ip"] == ip || s["remote_ip"] == ip)
}

#[test]
fn fixture_fleet_is_crawled_indexed_and_searched_through_the_binary() {
    let fx = origami_testsupport::require_fixtures!();
    let dir = scratch("fixture-fleet");
    // A machine known not to hold the address: the demo's cache server (fleet.json).
    let demo = dir.join("demo");
    origami_examples::demo::unpack(&demo).unwrap();
    let p = |rel: &str| fx.path(rel).display().to_string();
    let manifest = format!(
        r#"
[[machine]]
name = "deb-qcow2"
disks = ["{gq}"]

[[machine]]
name = "deb-mbr"
disks = ["{mbr}"]

[[machine]]
name = "vm-dump"
memory = "{m1}"

[[machine]]
name = "vm-novmcoreinfo"
memory = "{m2}"

[[machine]]
name = "vm-la57"
memory = "{m3}"

[[machine]]
name = "vm-both"
disks = ["{raw}"]
memory = "{m1}"
system_map = "{map}"

[[machine]]
name = "clean-01"
disks = ["{clean}"]
"#,
        gq = p("debian/disk-gpt.qcow2"),
        mbr = p("debian/disk-mbr.raw"),
        raw = p("debian/disk-gpt.raw"),
        m1 = p("memdump/memory.elf"),
        m2 = p("memdump-novmcoreinfo/memory.elf"),
        m3 = p("memdump-la57/memory.elf"),
        map = p("memdump/kernel/System.map-6.1.0-56-amd64"),
        clean = demo.join("cache-01.qcow2").display(),
    );
    let manifest_path = dir.join("fleet.toml");
    std::fs::write(&manifest_path, manifest).unwrap();
    let index = dir.join("index");
    let out = origami(&[
        "crawl-fleet",
        manifest_path.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
        "--jobs",
        "2",
        "--json",
        "--config",
        "/home/*/.bash_history",
        "--config",
        "/srv/fixture/*.txt",
    ]);
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "crawl-fleet: {summary}");
    assert_eq!(summary["crawled"], 7, "{summary}");

    // Ground truth: which machines hold the address, and in which files / sockets.
    let facts = fx.json("debian/rootfs.facts.json");
    let disk_files: BTreeSet<(String, String)> = facts[format!("files_mentioning_{IP}")]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| ("config".to_string(), p.as_str().unwrap().to_string()))
        .collect();
    let mut want_machines = BTreeSet::from([
        "deb-qcow2".to_string(),
        "deb-mbr".to_string(),
        "vm-both".to_string(),
    ]);
    for (name, dump) in [
        ("vm-dump", "memdump"),
        ("vm-novmcoreinfo", "memdump-novmcoreinfo"),
        ("vm-la57", "memdump-la57"),
    ] {
        if memory_truth_mentions(&fx.json(&format!("{dump}/truth.json")), IP) {
            want_machines.insert(name.to_string());
        }
    }
    let got = search(&index, IP);
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), want_machines);
    for m in ["deb-qcow2", "deb-mbr"] {
        let configs: BTreeSet<_> = got[m]
            .iter()
            .filter(|(k, _)| k == "config")
            .cloned()
            .collect();
        assert_eq!(configs, disk_files, "config files of {m} that mention {IP}");
    }
    // On a machine with memory, the live connection to the address is among its hits.
    let truth = fx.json("memdump/truth.json");
    let conns: BTreeSet<u64> = truth["sockets"]["tcp"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["local_ip"] == IP || s["remote_ip"] == IP)
        .map(|s| s["remote_port"].as_u64().unwrap())
        .collect();
    assert!(!conns.is_empty());
    for port in conns {
        assert!(
            got["vm-dump"]
                .iter()
                .any(|(k, key)| k == "connection" && key.contains(&format!(":{port}"))),
            "vm-dump: a connection to {IP}:{port} in {:?}",
            got["vm-dump"]
        );
    }

    // The fixture's distinctive process: the loop shell with its marker argument.
    let loop_pid = truth["markers"]["loop_shell"][0]
        .as_u64()
        .unwrap()
        .to_string();
    let got = search(&index, "vmi-fixture-loop");
    for m in ["vm-dump", "vm-both"] {
        assert!(
            got.get(m)
                .is_some_and(|h| h.contains(&("process".to_string(), loop_pid.clone()))),
            "{m}: process {loop_pid} in {got:?}"
        );
    }
    assert!(!got.contains_key("deb-qcow2") && !got.contains_key("clean-01"));

    // history works through the binary, and a second crawl of an unchanged fleet adds frames.
    let out = origami(&[
        "history",
        "--index",
        index.to_str().unwrap(),
        "deb-qcow2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(h["frames"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_usage_and_bad_queries_get_exit_codes_scripts_can_use() {
    let out = origami(&["crawl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--disk"));
    let out = origami(&["search", "--index", "/nonexistent/origami-index", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("crawl-fleet"));
    let out = origami(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));

    // A malformed query points at its column.
    let dir = scratch("badquery");
    let frames = dir.join("f.jsonl");
    std::fs::write(
        &frames,
        format!("{}\n", origami_frame::Frame::new("a").to_json()),
    )
    .unwrap();
    let index = dir.join("index");
    assert!(origami(&[
        "index",
        "--index",
        index.to_str().unwrap(),
        frames.to_str().unwrap()
    ])
    .status
    .success());
    let out = origami(&["search", "--index", index.to_str().unwrap(), "host:(web"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains('^'));
}

/// `origami crawl` of the fixture guest, disk and memory, judged by the shared independent
/// checker (`../shared/tools/frame-vs-truth.py`), which must say 100% on every figure.
#[test]
fn crawl_prints_frames_the_independent_checker_accepts() {
    let fx = origami_testsupport::require_fixtures!();
    if !origami_testsupport::require_program("python3") {
        return;
    }
    let dir = scratch("crawl");
    let checker = fx.source().join("../tools/frame-vs-truth.py");
    let disk_frame = dir.join("disk.json");
    let out = origami(&[
        "crawl",
        "--disk",
        fx.path("debian/disk-gpt-compressed.qcow2")
            .to_str()
            .unwrap(),
        "--hash",
        "--config",
        "/home/*/.bash_history",
        "--out",
        disk_frame.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let judged = Command::new("python3")
        .arg(&checker)
        .arg("disk")
        .arg(&disk_frame)
        .arg(fx.path("debian/rootfs.facts.json"))
        .arg(fx.path("debian/rootfs.manifest.json"))
        .arg(IP)
        .output()
        .unwrap();
    assert!(
        judged.status.success(),
        "disk: {}",
        String::from_utf8_lossy(&judged.stdout)
    );

    for dump in ["memdump", "memdump-la57"] {
        let frame = dir.join(format!("{dump}.json"));
        let out = origami(&[
            "crawl",
            "--memory",
            fx.path(&format!("{dump}/memory.elf")).to_str().unwrap(),
            "--no-cache",
            "--compact",
            "--out",
            frame.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let judged = Command::new("python3")
            .arg(&checker)
            .arg("memory")
            .arg(&frame)
            .arg(fx.path(&format!("{dump}/truth.json")))
            .output()
            .unwrap();
        assert!(
            judged.status.success(),
            "{dump}: {}",
            String::from_utf8_lossy(&judged.stdout)
        );
        // The frame names the guest by its own host name when --name is not given.
        let v: Value = serde_json::from_slice(&std::fs::read(&frame).unwrap()).unwrap();
        let truth = fx.json(&format!("{dump}/truth.json"));
        assert_eq!(v["_frame"]["system"], truth["kernel"]["hostname"]);
    }
}
