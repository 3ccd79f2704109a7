//! The Crawler on the Windows fixture disk (GPT: ESP, MSR, NTFS; registry hives written by
//! hivexregedit), recognised with no flag, against the truth the fixture script wrote from
//! its own inputs: os, packages, users, services, network, files (path, size, sha256).

use crate::windows_fixture;

use std::collections::{BTreeMap, BTreeSet};

use origami_introspect::frame::{FileType, Frame};
use origami_introspect::fs::{open_filesystem, FileSystem, FsKind};
use origami_introspect::{CrawlOptions, Crawler, Target};
use serde_json::Value;
use windows_fixture::windows_fixture;

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn crawl(image: &std::path::Path) -> Frame {
    let options = CrawlOptions::builder().hash_files(true).build().unwrap();
    Crawler::new(options).crawl(&Target::disk(image)).unwrap()
}

#[test]
fn windows_disk_frame_matches_truth() {
    let Some(fx) = windows_fixture() else { return };
    let truth = fx.truth();
    let frame = crawl(&fx.disk());
    if let Some(out) = std::env::var_os("ORIGAMI_WINDOWS_FRAME_OUT") {
        std::fs::write(out, frame.to_json_pretty()).unwrap();
    }
    assert!(frame.meta.errors.is_empty(), "{:?}", frame.meta.errors);

    // os
    let t = &truth["os"];
    let os = &frame.os;
    assert_eq!(os.name.as_deref(), t["name"].as_str());
    assert_eq!(os.version.as_deref(), t["version"].as_str());
    assert_eq!(os.kernel.as_deref(), t["kernel"].as_str());
    assert_eq!(os.arch.as_deref(), t["arch"].as_str());
    assert_eq!(os.hostname.as_deref(), t["hostname"].as_str());
    assert_eq!(os.id.as_deref(), Some("windows"));
    assert_eq!(os.extra["edition"], t["edition"]);
    assert_eq!(os.extra["build"], t["build"]);
    assert_eq!(os.extra["install_date"], t["install_date"]);
    assert_eq!(frame.meta.system, s(&t["hostname"]));
    // Drive letters from MountedDevices; C: is the disk's NTFS partition (its GPT GUID as
    // sfdisk reads the table).
    assert_eq!(os.extra["drive_letters"], t["drive_letters"]);
    if origami_testsupport::require_program("sfdisk") {
        let out = std::process::Command::new("sfdisk")
            .arg("-J")
            .arg(fx.disk())
            .output()
            .unwrap();
        let table: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let uuid = table["partitiontable"]["partitions"][2]["uuid"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase();
        assert_eq!(os.extra["drive_letters"]["C:"]["partition_guid"], uuid);
    }
    // Transaction logs: reported present, not applied.
    let logs: Vec<String> = os.extra["registry_logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    let want_logs: Vec<String> = truth["transaction_logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    assert_eq!(logs, want_logs);

    // package: (name, version, arch, publisher, install date, user)
    type P = (String, String, String, String, String, String);
    let want: BTreeSet<P> = truth["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                s(&p["name"]),
                s(&p["version"]),
                s(&p["arch"]),
                s(&p["publisher"]),
                s(&p["install_date"]),
                s(&p["user"]),
            )
        })
        .collect();
    let got: BTreeSet<P> = frame
        .package
        .iter()
        .map(|p| {
            let x = |k: &str| p.extra.get(k).map(s).unwrap_or_default();
            (
                p.name.clone(),
                p.version.clone(),
                p.arch.clone(),
                x("publisher"),
                x("install_date"),
                x("user"),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(frame.package.len(), want.len());

    // user: name, RID, disabled, profile path
    let want: BTreeSet<(String, u64, bool, String)> = truth["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                s(&u["name"]),
                u["rid"].as_u64().unwrap(),
                u["disabled"].as_bool().unwrap(),
                s(&u["home"]),
            )
        })
        .collect();
    let got: BTreeSet<(String, u64, bool, String)> = frame
        .user
        .iter()
        .map(|u| {
            (
                u.name.clone(),
                u64::from(u.uid),
                u.extra["disabled"].as_bool().unwrap(),
                u.home.clone(),
            )
        })
        .collect();
    assert_eq!(got, want);

    // service: name, path, start type, account, display name
    type S = (String, String, String, String, String);
    let want: BTreeSet<S> = truth["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                s(&v["name"]),
                s(&v["path"]),
                s(&v["start_type"]),
                s(&v["account"]),
                s(&v["display_name"]),
            )
        })
        .collect();
    let got: BTreeSet<S> = frame
        .service
        .iter()
        .map(|v| {
            (
                v.name.clone(),
                v.path.clone(),
                v.start_type.clone(),
                v.account.clone().unwrap_or_default(),
                v.display_name.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(got, want);

    // network: per interface, DHCP, static addresses and DNS servers
    let want: BTreeMap<String, Value> = truth["network"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let v = serde_json::json!({"dhcp": n["dhcp"], "addresses": n["addresses"], "dns": n["dns"]});
            (s(&n["interface"]), v)
        })
        .collect();
    let got: BTreeMap<String, Value> = frame
        .config
        .iter()
        .filter(|c| c.extra.contains_key("interface"))
        .map(|c| {
            let v = serde_json::json!({"dhcp": c.extra["dhcp"], "addresses": c.extra["addresses"], "dns": c.extra["dns"]});
            (s(&c.extra["interface"]), v)
        })
        .collect();
    assert_eq!(got, want);
    // The hosts file is config text, so an IP query finds the machine.
    let ip = s(&truth["hosts_ip"]);
    let hosts = frame
        .config
        .iter()
        .find(|c| c.path == s(&truth["hosts_path"]))
        .expect("hosts in config");
    assert!(hosts.content.contains(&ip));

    // file: every placed file with its size and sha256, every directory; nothing else.
    let files: BTreeMap<&str, &origami_introspect::frame::FileItem> =
        frame.file.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut want_files = BTreeSet::new();
    for f in truth["files"].as_array().unwrap() {
        let path = s(&f["path"]);
        let item = files
            .get(path.as_str())
            .unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(item.file_type, FileType::File, "{path}");
        assert_eq!(item.size, f["size"].as_u64().unwrap(), "{path}");
        assert_eq!(item.sha256.as_deref(), f["sha256"].as_str(), "{path}");
        let streams = item
            .extra
            .get("streams")
            .cloned()
            .unwrap_or(Value::Array(vec![]));
        assert_eq!(streams, f["streams"], "{path}");
        let links = item
            .extra
            .get("hard_links")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        assert_eq!(links, f["links"].as_u64().unwrap(), "{path}");
        assert!(
            item.extra["created"].as_i64().unwrap() > 1_600_000_000,
            "{path}"
        );
        want_files.insert(path);
    }
    let mut want_dirs: BTreeSet<String> = truth["dirs"].as_array().unwrap().iter().map(s).collect();
    want_dirs.insert("/".into());
    let got_files: BTreeSet<String> = frame
        .file
        .iter()
        .filter(|f| f.file_type == FileType::File)
        .map(|f| f.path.clone())
        .collect();
    let got_dirs: BTreeSet<String> = frame
        .file
        .iter()
        .filter(|f| f.file_type == FileType::Dir)
        .map(|f| f.path.clone())
        .collect();
    assert_eq!(got_files, want_files);
    assert_eq!(got_dirs, want_dirs);
}

#[test]
fn ntfs_volume_reads_case_insensitively_and_lists_streams() {
    let Some(fx) = windows_fixture() else { return };
    let source = std::sync::Arc::new(origami_core::FileSource::open(fx.ntfs()).unwrap());
    let fs = open_filesystem(source).unwrap();
    assert_eq!(fs.info().kind, FsKind::Ntfs);
    assert_eq!(fs.info().label.as_deref(), Some("Windows"));
    let a = read_all(&*fs, b"/Windows/System32/drivers/etc/hosts");
    let b = read_all(&*fs, b"/WINDOWS/system32/DRIVERS/ETC/HOSTS");
    assert_eq!(a, b);
    assert!(String::from_utf8_lossy(&a).contains("10.20.30.40"));
    // The root lists no metadata files ($MFT, ...).
    let root = fs.read_dir(b"/", 1000).unwrap();
    assert!(root.iter().all(|e| !e.name.starts_with(b"$")), "{root:?}");
    let st = fs.lstat(b"/Users/alice/Documents/notes.txt").unwrap();
    let meta = st.ntfs.unwrap();
    assert_eq!(meta.streams, vec![("Zone.Identifier".to_string(), 26)]);
}

fn read_all(fs: &dyn FileSystem, path: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut fs.open(path).unwrap(), &mut out).unwrap();
    out
}
