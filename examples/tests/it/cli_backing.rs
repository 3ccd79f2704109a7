//! `--allow-backing DIR` and a manifest's `backing_dirs` reach the image rule: a qcow2
//! overlay (made at test time by qemu-img) whose backing file lies in another folder is
//! refused by default, and crawled once that folder is allowed, for every machine (flag)
//! or for one machine (manifest). The backing file is a demo fleet disk; what the crawl
//! must find there comes from the demo generator's fleet.json.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn origami(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_origami"))
        .args(args)
        .output()
        .expect("run origami")
}

/// `dir/base/` holds the demo disks; `dir/vms/NAME.qcow2` are overlays backed by
/// `base/web-02.img` (named by absolute path, outside the overlays' folder).
fn layout(name: &str, overlays: &[&str]) -> (PathBuf, Vec<PathBuf>) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli_backing")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    origami_examples::demo::unpack(&dir.join("base")).unwrap();
    std::fs::create_dir_all(dir.join("vms")).unwrap();
    let backing = dir.join("base/web-02.img");
    let made = overlays
        .iter()
        .map(|o| {
            let path = dir.join("vms").join(format!("{o}.qcow2"));
            let st = Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
                .arg(&backing)
                .arg(&path)
                .status()
                .unwrap();
            assert!(st.success());
            path
        })
        .collect();
    (dir, made)
}

fn web02_packages() -> usize {
    let fleet: Value = serde_json::from_str(origami_examples::demo::FLEET_JSON).unwrap();
    fleet["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "web-02")
        .unwrap()["packages"]
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn allow_backing_lets_a_crawl_read_a_backing_file_in_another_folder() {
    if !origami_testsupport::require_program("qemu-img") {
        return;
    }
    let (dir, overlays) = layout("backing-crawl", &["vm"]);
    let overlay = overlays[0].to_str().unwrap();

    let out = origami(&["crawl", "--compact", "--disk", overlay]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = v["_frame"]["errors"].to_string();
    assert!(
        errors.contains("web-02.img") && errors.contains("--allow-backing"),
        "{errors}"
    );
    assert_eq!(v["package"], Value::Array(vec![]));

    let base = dir.join("base");
    let out = origami(&[
        "crawl",
        "--compact",
        "--disk",
        overlay,
        "--allow-backing",
        base.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["_frame"]["errors"], Value::Array(vec![]));
    assert_eq!(v["_frame"]["system"], "web-02");
    assert_eq!(v["package"].as_array().unwrap().len(), web02_packages());
}

#[test]
fn backing_dirs_in_a_manifest_allow_a_folder_for_that_machine_alone() {
    if !origami_testsupport::require_program("qemu-img") {
        return;
    }
    let (dir, _) = layout("backing-fleet", &["allowed", "refused"]);
    let manifest = dir.join("fleet.toml");
    std::fs::write(
        &manifest,
        "[[machine]]\nname = \"allowed\"\ndisks = [\"vms/allowed.qcow2\"]\nbacking_dirs = [\"base\"]\n\n\
         [[machine]]\nname = \"refused\"\ndisks = [\"vms/refused.qcow2\"]\n",
    )
    .unwrap();
    let index = dir.join("index");
    let fleet = |extra: &[&str]| {
        let out = origami(
            &[
                &[
                    "crawl-fleet",
                    manifest.to_str().unwrap(),
                    "--index",
                    index.to_str().unwrap(),
                    "--json",
                ][..],
                extra,
            ]
            .concat(),
        );
        let v: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        (out, v)
    };

    let (out, summary) = fleet(&[]);
    assert_eq!(out.status.code(), Some(3), "{summary}");
    assert_eq!(summary["crawled"], 2);
    assert_eq!(summary["read_nothing"], serde_json::json!(["refused"]));
    assert!(summary["feature_errors"]
        .as_object()
        .unwrap()
        .get("allowed")
        .is_none());
    assert!(summary["feature_errors"]["refused"][0]
        .as_str()
        .unwrap()
        .contains("backing_dirs"));

    // The flag allows the folder for every machine.
    let base = dir.join("base");
    let (out, summary) = fleet(&["--allow-backing", base.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{summary}");
    assert_eq!(summary["read_nothing"], serde_json::json!([]));
    assert!(summary["items"].as_u64().unwrap() > 2 * web02_packages() as u64);
}
