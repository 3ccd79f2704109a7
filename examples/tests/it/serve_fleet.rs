//! `origami serve FLEET.toml`: a manifest of demo disk images kept crawled while served.
//! The machines appear through the API; a file written into a disk image (with `debugfs`,
//! independent of origami) is found; a missing and a corrupt image show as failed, retried
//! with a growing backoff, while the others are fresh; SIGHUP adds a machine; SIGTERM commits
//! and exits 0, and the index then holds the last crawls (read by `origami search`).

use crate::serve_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use serve_support::*;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The unique address the test writes into a guest's config.
const FRESH_IP: &str = "10.99.77.55";

fn kill(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn start(manifest: &Path, index: &Path, log: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_origami"))
        .args(["serve", manifest.to_str().unwrap(), "--index"])
        .arg(index)
        .args(["--listen", "127.0.0.1:0", "--backoff", "1s", "--jobs", "2"])
        .args(["--config", "/home/*/.bash_history"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let Some(rest) = line.strip_prefix("serving http://") else {
        let _ = child.kill();
        panic!(
            "serve did not start: {line:?} {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    };
    (child, rest.split('/').next().unwrap().parse().unwrap())
}

fn schedule(addr: SocketAddr) -> Vec<Value> {
    let r = get(addr, "/api/machines");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["schedule"].as_array().cloned().unwrap_or_default()
}

fn status_of(addr: SocketAddr, name: &str) -> Option<Value> {
    schedule(addr).into_iter().find(|s| s["name"] == name)
}

/// Polls `ok` every 100 ms for up to `limit`; returns the time it took.
fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    t.elapsed()
}

fn at(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

fn search_systems(addr: SocketAddr, q: &str) -> Vec<String> {
    let r = get(addr, &format!("/api/search?q={}", enc(q)));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["system"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn serve_keeps_a_manifest_fleet_fresh() {
    if Command::new("debugfs").arg("-V").output().is_err() {
        eprintln!("SKIP: debugfs (e2fsprogs) is not installed");
        return;
    }
    let dir = scratch("serve-fleet");
    origami_examples::demo::unpack(&dir).unwrap();
    // A corrupt image: no partition table, no file system.
    std::fs::write(dir.join("junk.img"), vec![0x5a; 1 << 20]).unwrap();
    let manifest = dir.join("serve.toml");
    let write_manifest = |extra: &str| {
        std::fs::write(
            &manifest,
            format!(
                "interval = \"1h\"\n\
                 [[machine]]\nname = \"web-02\"\ndisks = [\"web-02.img\"]\n\
                 [[machine]]\nname = \"db-01\"\ndisks = [\"db-01.img\"]\n\
                 [[machine]]\nname = \"ghost\"\ndisks = [\"ghost.img\"]\n\
                 [[machine]]\nname = \"junk\"\ndisks = [\"junk.img\"]\n{extra}"
            ),
        )
        .unwrap()
    };
    write_manifest("");
    let index = dir.join("index");
    let (mut child, addr) = start(&manifest, &index, &dir.join("serve.log"));

    // The machines appear; the good ones are crawled and searchable.
    wait_for(Duration::from_secs(120), "web-02 and db-01 crawled", || {
        ["web-02", "db-01"]
            .iter()
            .all(|n| status_of(addr, n).is_some_and(|s| s["state"] == "ok"))
    });
    let names: Vec<String> = schedule(addr)
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["db-01", "ghost", "junk", "web-02"]);
    // Against the demo generator's record: who mentions the demo IP.
    let truth = fleet_truth();
    let mut expected: Vec<String> = truth["machines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            ["web-02", "db-01"].contains(&m["name"].as_str().unwrap())
                && !m["mentions_ip"].as_array().unwrap().is_empty()
        })
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    expected.sort();
    wait_for(Duration::from_secs(10), "the demo IP searchable", || {
        let mut got = search_systems(addr, truth["ip"].as_str().unwrap());
        got.sort();
        got == expected
    });
    assert!(search_systems(addr, FRESH_IP).is_empty());

    // The missing and the corrupt image fail, and are retried with a growing backoff, while
    // the others stay fresh.
    for name in ["ghost", "junk"] {
        wait_for(Duration::from_secs(60), "three failures", || {
            status_of(addr, name).is_some_and(|s| s["failures"].as_u64().unwrap_or(0) >= 3)
        });
        let s = status_of(addr, name).unwrap();
        assert_eq!(s["state"], "failed", "{s}");
        assert!(s["last_success"].is_null(), "{s}");
        let err = s["last_error"].as_str().unwrap();
        let file = format!("{name}.img");
        assert!(err.contains(&file), "{name}: {err}");
        let n = s["failures"].as_u64().unwrap() as u32;
        let delay = at(&s["next_attempt"]) - at(&s["last_error_at"]);
        // 1 s doubled after each failure after the first.
        let want = 2f64.powi(n as i32 - 1);
        assert!(
            (delay.as_seconds_f64() - want).abs() < 0.5,
            "{name}: failure {n}, retry after {delay} (want {want} s)"
        );
    }
    for name in ["web-02", "db-01"] {
        let s = status_of(addr, name).unwrap();
        assert_eq!(s["state"], "ok", "{s}");
        assert!(s["last_error"].is_null() && s["failures"] == 0, "{s}");
    }
    let page = get(addr, "/machines");
    assert!(page.body.contains("Crawl schedule") && page.body.contains("ghost.img"));

    // A config file written into web-02's image (bare ext4) by debugfs: found through the
    // API, through the image's change alone (the interval is an hour).
    let conf = dir.join("fresh.conf");
    std::fs::write(
        &conf,
        format!("upstream backend {{ server {FRESH_IP}:8443; }}\n"),
    )
    .unwrap();
    let t = Instant::now();
    let out = Command::new("debugfs")
        .args(["-w", "-R"])
        .arg(format!("write {} /etc/origami-fresh.conf", conf.display()))
        .arg(dir.join("web-02.img"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_for(Duration::from_secs(120), "the written file found", || {
        search_systems(addr, FRESH_IP) == ["web-02"]
    });
    println!(
        "a file written into a disk image was found through the API after {:.2} s (interval 1 h)",
        t.elapsed().as_secs_f64()
    );

    // SIGHUP adds a machine.
    write_manifest("[[machine]]\nname = \"lb-01\"\ndisks = [\"lb-01.img\"]\n");
    kill(&child, "-HUP");
    wait_for(Duration::from_secs(120), "lb-01 added and crawled", || {
        status_of(addr, "lb-01").is_some_and(|s| s["state"] == "ok")
    });
    // Searchable at the next commit (at most a second later).
    wait_for(Duration::from_secs(10), "lb-01 in the fleet", || {
        let mut systems: Vec<String> = get(addr, "/api/machines").json()["machines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["system"].as_str().unwrap().to_string())
            .collect();
        systems.sort();
        systems == ["db-01", "lb-01", "web-02"]
    });

    // SIGTERM: commits and exits 0; the index holds the last crawls.
    kill(&child, "-TERM");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "serve did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let out = origami(&[
        "search",
        "--index",
        index.to_str().unwrap(),
        "--json",
        FRESH_IP,
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["machines"][0]["system"], "web-02");
    let out = origami(&["history", "--index", index.to_str().unwrap(), "lb-01"]);
    assert!(out.status.success(), "{out:?}");
}

/// `--local-vms`: a QEMU process started here (paused: `-S`, nothing runs in it) becomes a
/// machine named by its `-name`, crawled from its `-drive file=`, its memory read through its
/// process id, and leaves the schedule when it stops.
#[test]
fn local_vms_are_found_and_followed() {
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: qemu-system-x86_64 is not installed");
        return;
    }
    let dir = scratch("serve-local-vms");
    origami_examples::demo::unpack(&dir).unwrap();
    let name = format!("origami-test-vm-{}", std::process::id());
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-name", &format!("guest={name},debug-threads=on")])
        .args(["-S", "-display", "none", "-m", "64", "-drive"])
        .arg(format!(
            "file={},format=raw,if=virtio,readonly=on",
            dir.join("web-02.img").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let index = dir.join("index");
    let mut child = Command::new(env!("CARGO_BIN_EXE_origami"))
        .args(["serve", "--local-vms", "--index"])
        .arg(&index)
        .args(["--listen", "127.0.0.1:0", "--jobs", "2"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .strip_prefix("serving http://")
        .unwrap_or_else(|| panic!("{line:?}"))
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let found = wait_for(Duration::from_secs(120), "the VM crawled", || {
        status_of(addr, &name).is_some_and(|s| s["state"] == "ok")
    });
    println!("a QEMU VM started by the test was crawled after {found:.2?}");
    // Its memory is read through its QEMU process: a watcher follows it (this paused VM
    // runs no kernel, so the watcher says it failed, and keeps trying).
    let s = status_of(addr, &name).unwrap();
    assert_eq!(s["live"]["qemu_pid"], qemu.id(), "{s}");
    // Its frame: the demo generator's packages of web-02.
    wait_for(Duration::from_secs(10), "its packages searchable", || {
        search_systems(addr, &format!("host:{name} pkg:nginx-light")) == [name.clone()]
    });
    let _ = qemu.kill();
    let _ = qemu.wait();
    wait_for(Duration::from_secs(30), "the stopped VM dropped", || {
        status_of(addr, &name).is_none()
    });
    kill(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}
