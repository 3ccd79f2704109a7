//! The crawl's bounds from the command line (`--max-file-size`, `--max-config-size`,
//! `--max-entries`, `--max-memory`, `--section-timeout`) reach the sections that read files
//! and walk trees; the guest is the demo fleet's web-02, whose generator put packages,
//! users and config files in it (examples/demo-fleet/fleet.json). The memory crawl's
//! (`--max-tasks`, `--max-modules`, `--max-cmdline`, `--max-symbols`, ...) reach theirs on
//! the fixture dump, against the guest's own /proc (`memdump/truth.json`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn origami(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_origami"))
        .args(args)
        .output()
        .expect("run origami")
}

fn web02(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli_limits")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    origami_examples::demo::unpack(&d).unwrap();
    d.join("web-02.img")
}

fn crawl(disk: &Path, flags: &[&str]) -> (Output, Value) {
    crawl_source("--disk", disk, flags)
}

fn crawl_source(kind: &str, source: &Path, flags: &[&str]) -> (Output, Value) {
    let out = origami(
        &[
            &[
                "crawl",
                "--compact",
                "--no-cache",
                kind,
                source.to_str().unwrap(),
            ],
            flags,
        ]
        .concat(),
    );
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out, v)
}

fn errors(v: &Value, feature: &str) -> Vec<String> {
    v["_frame"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["feature"] == feature)
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn size_and_walk_bounds_from_the_command_line_reach_the_crawl() {
    let disk = web02("limits");
    let fleet: Value = serde_json::from_str(origami_examples::demo::FLEET_JSON).unwrap();
    let truth = fleet["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "web-02")
        .unwrap();
    let packages = truth["packages"].as_array().unwrap().len();

    let (out, v) = crawl(&disk, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(v["package"].as_array().unwrap().len(), packages);
    let biggest = v["config"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["content"].as_str().unwrap_or("").len())
        .max()
        .unwrap();
    assert!(biggest > 100, "a config text longer than the bounds below");

    // 1K for every file read whole: the dpkg status of this guest is larger, so no
    // package is read and the frame says why; the crawl still read the disk: exit 0.
    let (out, v) = crawl(&disk, &["--max-file-size", "1K"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(v["package"], Value::Array(vec![]));
    let e = errors(&v, "package");
    assert!(
        e.iter()
            .any(|m| m.contains("/var/lib/dpkg/status") && m.contains("1024-byte bound")),
        "{e:?}"
    );
    assert!(v["config"].as_array().unwrap().iter().all(|c| c["content"]
        .as_str()
        .unwrap_or("")
        .len()
        <= 1024));

    // The config bound alone cuts config texts and leaves the packages.
    let (_, v) = crawl(&disk, &["--max-config-size", "100"]);
    assert_eq!(v["package"].as_array().unwrap().len(), packages);
    let configs = v["config"].as_array().unwrap();
    assert!(configs
        .iter()
        .all(|c| c["content"].as_str().unwrap_or("").len() <= 100));
    assert!(configs.iter().any(|c| c["truncated"] == true));

    // The walk bound.
    let (_, v) = crawl(&disk, &["--max-entries", "5"]);
    assert!(v["file"].as_array().unwrap().len() <= 5);
    assert!(!errors(&v, "file").is_empty());

    // A size that does not parse is bad usage.
    let out = origami(&[
        "crawl",
        "--disk",
        disk.to_str().unwrap(),
        "--max-file-size",
        "12Q",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn memory_budget_and_section_time_from_the_command_line_reach_the_crawl() {
    let disk = web02("budget");
    // 8M holds the root's ext4 block cache and nothing more: each section that reads a
    // file whole, or lists one, meets the budget and says so.
    let (_, v) = crawl(&disk, &["--max-memory", "8M"]);
    for (feature, path) in [
        ("package", "/var/lib/dpkg/status"),
        ("user", "/etc/passwd"),
        ("os", "/etc/os-release"),
    ] {
        assert!(
            errors(&v, feature)
                .iter()
                .any(|m| m.starts_with(path) && m.contains("memory budget of 8388608 bytes")),
            "{feature}: {:?}",
            v["_frame"]["errors"]
        );
    }
    assert_eq!(v["package"], Value::Array(vec![]));

    // No time at all: every section stops at once and names itself; the walks are empty.
    let (_, v) = crawl(&disk, &["--section-timeout", "0"]);
    for feature in ["os", "package", "user", "config", "file"] {
        assert!(
            errors(&v, feature)
                .iter()
                .any(|m| m.starts_with(&format!("section {feature}: stopped after"))),
            "{feature}: {:?}",
            v["_frame"]["errors"]
        );
    }
    assert_eq!(v["file"], Value::Array(vec![]));
    let out = origami(&[
        "crawl",
        "--disk",
        disk.to_str().unwrap(),
        "--section-timeout",
        "soon",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn memory_crawl_bounds_from_the_command_line_reach_their_sections() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let dump = fx.path("memdump/memory.elf");
    let truth = fx.json("memdump/truth.json");
    let procs = truth["processes"].as_array().unwrap().len();
    assert!(procs > 5);
    let (out, v) = crawl_source(
        "--memory",
        &dump,
        &[
            "--max-tasks",
            "5",
            "--max-modules",
            "1",
            "--max-cmdline",
            "4",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(v["process"].as_array().unwrap().len(), 5);
    assert_eq!(v["module"].as_array().unwrap().len(), 1);
    let e = errors(&v, "process");
    assert!(e.iter().any(|m| m.contains("over the bound of 5")), "{e:?}");
    assert!(
        e.iter()
            .any(|m| m.contains("command line") && m.contains("over the 4-byte bound")),
        "{e:?}"
    );
    assert!(errors(&v, "module")
        .iter()
        .any(|m| m.contains("over the bound of 1")));

    let (_, v) = crawl_source(
        "--memory",
        &dump,
        &["--max-symbols", "1000", "--max-btf", "1M"],
    );
    assert_eq!(v["process"], Value::Array(vec![]));
    assert!(errors(&v, "kernel")
        .iter()
        .any(|m| m.starts_with("kallsyms: ") && m.contains("over the bound of 1000")));
}
