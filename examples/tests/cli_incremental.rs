//! `origami crawl --state FILE --events OUT.jsonl` and `origami watch --disk IMG --state
//! FILE` on a copy of the fixture Debian root file system changed by `debugfs -w` (e2fsprogs, which
//! writes the file system without the kernel and without updating directory times: the
//! directory-block digests must see its changes). The events are checked against the
//! debugfs script's own list; the incremental frame against a plain `origami crawl`.

use std::path::Path;
use std::process::Command;

fn origami() -> Command {
    Command::new(env!("CARGO_BIN_EXE_origami"))
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("origami runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn debugfs(image: &Path, script: &str) {
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-R")
        .arg(script)
        .arg(image)
        .output()
        .expect("debugfs runs");
    assert!(out.status.success(), "debugfs {script}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains(": "), "debugfs {script}: {err}");
}

fn events(text: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                e["event"].as_str().unwrap().to_string(),
                e["file"]["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn frame(path: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for k in ["timestamp", "duration_ms", "timings"] {
        v["_frame"].as_object_mut().unwrap().remove(k);
    }
    v
}

#[test]
fn crawl_with_state_then_watch() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    if !origami_testsupport::require_program("debugfs") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("origami-cli-incr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("fs.img");
    std::fs::copy(fx.path("debian/rootfs.ext4"), &img).unwrap();
    let state = dir.join("state");
    let crawl = |events: &str, out: &str| {
        ok(origami()
            .args(["crawl", "--hash", "--disk"])
            .arg(&img)
            .arg("--state")
            .arg(&state)
            .arg("--events")
            .arg(dir.join(events))
            .arg("--out")
            .arg(dir.join(out)));
    };
    crawl("e1.jsonl", "f1.json");
    assert!(state.is_file());
    assert_eq!(std::fs::read_to_string(dir.join("e1.jsonl")).unwrap(), "");

    let host = dir.join("content.txt");
    std::fs::write(&host, "new content\n").unwrap();
    for step in [
        "mkdir /newdir".to_string(),
        format!("write {} /newdir/f.txt", host.display()),
        "rm /etc/motd".into(),
        "set_inode_field /srv/fixture/known.bin mode 0100600".into(),
        "ln /newdir/f.txt /hl2".into(),
    ] {
        debugfs(&img, &step);
    }
    crawl("e2.jsonl", "f2.json");
    let got = events(&std::fs::read_to_string(dir.join("e2.jsonl")).unwrap());
    let truth: Vec<(String, String)> = [
        ("file_changed", "/srv/fixture/known.bin"),
        ("file_created", "/hl2"),
        ("file_created", "/newdir"),
        ("file_created", "/newdir/f.txt"),
        ("file_deleted", "/etc/motd"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, truth);
    ok(origami()
        .args(["crawl", "--hash", "--disk"])
        .arg(&img)
        .arg("--out")
        .arg(dir.join("full.json")));
    assert_eq!(frame(&dir.join("f2.json")), frame(&dir.join("full.json")));

    // Nothing changed since: a watch round prints nothing; then one more change.
    let watch = || {
        ok(origami()
            .args(["watch", "--count", "1", "--disk"])
            .arg(&img)
            .arg("--state")
            .arg(&state))
    };
    assert_eq!(watch(), "");
    debugfs(&img, "unlink /hl2");
    assert_eq!(
        events(&watch()),
        vec![("file_deleted".to_string(), "/hl2".to_string())]
    );

    // A corrupt state: a full crawl, said on stderr, and the state written anew.
    std::fs::write(&state, b"ORIGAMI-CRAWLST\n garbage").unwrap();
    let out = origami()
        .args(["crawl", "--hash", "--disk"])
        .arg(&img)
        .arg("--state")
        .arg(&state)
        .arg("--out")
        .arg(dir.join("f3.json"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt crawl state"));
    assert!(origami_introspect::incremental::CrawlState::load(&state).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
