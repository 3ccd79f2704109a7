//! The `origami` command's exit status tells the truth: a crawl that could read none of its
//! sources still writes its frame (with the errors) but exits 3; a crawl that read
//! something exits 0 even when another source failed. The guests are the demo fleet's real
//! disks; the failures are real (a missing file, a disk of zeros, a text file given as a
//! memory dump).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn origami(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_origami"))
        .args(args)
        .output()
        .expect("run origami")
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli_exit")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A text file that is not a memory dump: this crate's own README.
fn text_file() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../README.md")
        .display()
        .to_string()
}

/// The frame printed on stdout, and its errors as `feature: message`.
fn frame_of(out: &Output) -> (Value, Vec<String>) {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: no frame on stdout; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let errors = v["_frame"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e["feature"].as_str().unwrap(),
                e["message"].as_str().unwrap()
            )
        })
        .collect();
    (v, errors)
}

#[test]
fn a_crawl_whose_every_source_failed_writes_its_frame_and_exits_3() {
    let dir = scratch("exit-every-source-failed");
    let missing = dir.join("no-such-disk.qcow2");
    let zeros = dir.join("zeros.img");
    std::fs::write(&zeros, vec![0u8; 4 << 20]).unwrap();
    let text = text_file();

    for (what, args) in [
        ("a missing disk", vec!["--disk", missing.to_str().unwrap()]),
        (
            "a disk with no file system",
            vec!["--disk", zeros.to_str().unwrap()],
        ),
        (
            "a text file as memory",
            vec!["--memory", text.as_str(), "--no-cache"],
        ),
        (
            "all three",
            vec![
                "--disk",
                missing.to_str().unwrap(),
                "--disk",
                zeros.to_str().unwrap(),
                "--memory",
                text.as_str(),
                "--no-cache",
            ],
        ),
    ] {
        let out = origami(&[&["crawl", "--compact"][..], &args].concat());
        assert_eq!(out.status.code(), Some(3), "{what}: {out:?}");
        let (frame, errors) = frame_of(&out);
        assert!(!errors.is_empty(), "{what}: the frame says why");
        for section in [
            "file",
            "package",
            "user",
            "config",
            "process",
            "connection",
            "module",
        ] {
            assert_eq!(frame[section], Value::Array(vec![]), "{what}: {section}");
        }
        if args.contains(&missing.to_str().unwrap()) {
            assert!(
                errors.iter().any(|e| e.contains("no-such-disk.qcow2")),
                "{what}: {errors:?}"
            );
        }
        if args.contains(&text.as_str()) {
            assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with("kernel:") || e.starts_with("memory:")),
                "{what}: {errors:?}"
            );
        }
    }

    // --out: the frame is in the file, the status is still 3.
    let out_file = dir.join("frame.json");
    let out = origami(&[
        "crawl",
        "--disk",
        missing.to_str().unwrap(),
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let v: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert!(!v["_frame"]["errors"].as_array().unwrap().is_empty());
}

#[test]
fn a_crawl_that_read_one_source_exits_0_and_keeps_the_others_errors() {
    let dir = scratch("exit-one-source-read");
    origami_examples::demo::unpack(&dir).unwrap();
    let disk = dir.join("web-02.img");
    let text = text_file();

    let out = origami(&["crawl", "--disk", disk.to_str().unwrap(), "--compact"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let (frame, errors) = frame_of(&out);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(frame["_frame"]["system"], "web-02");

    let out = origami(&[
        "crawl",
        "--disk",
        disk.to_str().unwrap(),
        "--memory",
        &text,
        "--no-cache",
        "--compact",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let (frame, errors) = frame_of(&out);
    assert!(!frame["package"].as_array().unwrap().is_empty());
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("kernel:") || e.starts_with("memory:")),
        "{errors:?}"
    );
}

#[test]
fn a_fleet_with_a_machine_that_read_nothing_exits_3() {
    let dir = scratch("exit-fleet");
    origami_examples::demo::unpack(&dir).unwrap();
    let manifest = dir.join("two.toml");
    std::fs::write(
        &manifest,
        "[[machine]]\nname = \"web-02\"\ndisks = [\"web-02.img\"]\n\n\
         [[machine]]\nname = \"ghost\"\ndisks = [\"no-such-disk.img\"]\n",
    )
    .unwrap();
    let index = dir.join("index");
    let out = origami(&[
        "crawl-fleet",
        manifest.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["crawled"], 2);
    assert_eq!(summary["read_nothing"], serde_json::json!(["ghost"]));
    assert!(summary["feature_errors"]["ghost"][0]
        .as_str()
        .unwrap()
        .contains("no-such-disk.img"));

    // Only the readable machine: 0.
    std::fs::write(
        &manifest,
        "[[machine]]\nname = \"web-02\"\ndisks = [\"web-02.img\"]\n",
    )
    .unwrap();
    let out = origami(&[
        "crawl-fleet",
        manifest.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // A timeout that is not a positive number of seconds is bad usage: 2.
    let out = origami(&[
        "crawl-fleet",
        manifest.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
        "--timeout",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timeout"));
}
