//! The Crawler on the Debian fixture guest, against the ground truth the fixture scripts
//! took from inside the guest (`rootfs.facts.json`, `rootfs.manifest.json`), and against
//! the independent checker `shared/tools/frame-vs-truth.py`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use origami_introspect::frame::{FileType, Frame};
use origami_introspect::{CrawlOptions, Crawler, Target};

const IP: &str = "10.20.30.40";

fn crawl(image: &Path, hash: bool) -> Frame {
    let options = CrawlOptions::builder()
        .hash_files(hash)
        .config_glob("/home/*/.bash_history")
        .config_glob("/srv/fixture/*.txt")
        .build()
        .unwrap();
    Crawler::new(options).crawl(&Target::disk(image)).unwrap()
}

/// Every check this test makes on a frame of the Debian guest.
fn check_frame(frame: &Frame, what: &str) {
    let fx = origami_testsupport::require_fixtures!();
    let facts = fx.json("debian/rootfs.facts.json");
    assert!(
        frame.meta.errors.is_empty(),
        "{what}: {:?}",
        frame.meta.errors
    );

    // os
    let osr = &facts["os_release"];
    assert_eq!(
        frame.os.version.as_deref(),
        osr["VERSION_ID"].as_str(),
        "{what}"
    );
    assert_eq!(frame.os.name.as_deref(), osr["NAME"].as_str());
    assert_eq!(frame.os.id.as_deref(), osr["ID"].as_str());
    assert_eq!(frame.os.pretty_name.as_deref(), osr["PRETTY_NAME"].as_str());
    assert_eq!(frame.os.hostname.as_deref(), facts["hostname"].as_str());
    assert_eq!(frame.meta.hostname.as_deref(), facts["hostname"].as_str());
    assert_eq!(frame.os.arch.as_deref(), Some("x86_64"));
    // The fixture has no kernel installed (no /lib/modules/*, empty /boot).
    assert_eq!(frame.os.kernel, None);

    // package: exactly dpkg-query's list, by (name, version, arch).
    let want: BTreeSet<(String, String, String)> = facts["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_string();
            (s("name"), s("version"), s("arch"))
        })
        .collect();
    let got: BTreeSet<(String, String, String)> = frame
        .package
        .iter()
        .map(|p| (p.name.clone(), p.version.clone(), p.arch.clone()))
        .collect();
    assert_eq!(got, want, "{what}: packages");
    assert!(frame.package.iter().all(|p| p.manager == "dpkg"));

    // user: exactly the guest's passwd.
    let want: BTreeSet<(String, u64, u64, String, String)> = facts["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().into(),
                u["uid"].as_u64().unwrap(),
                u["gid"].as_u64().unwrap(),
                u["home"].as_str().unwrap().into(),
                u["shell"].as_str().unwrap().into(),
            )
        })
        .collect();
    let got: BTreeSet<(String, u64, u64, String, String)> = frame
        .user
        .iter()
        .map(|u| {
            (
                u.name.clone(),
                u64::from(u.uid),
                u64::from(u.gid),
                u.home.clone(),
                u.shell.clone(),
            )
        })
        .collect();
    assert_eq!(got, want, "{what}: users");
    // Group membership from /etc/group.
    let groups: BTreeMap<&str, &Vec<String>> = frame
        .user
        .iter()
        .map(|u| (u.name.as_str(), &u.groups))
        .collect();
    for g in facts["groups"].as_array().unwrap() {
        for m in g["members"].as_array().unwrap() {
            let name = g["name"].as_str().unwrap();
            assert!(
                groups[m.as_str().unwrap()].iter().any(|x| x == name),
                "{m} in {name}"
            );
        }
    }
    let alice = frame.user.iter().find(|u| u.name == "alice").unwrap();
    assert_eq!(alice.groups.first().map(String::as_str), Some("fixture"));

    // file: every manifest entry, with type, mode, owner, size, link target.
    let manifest = fx.json("debian/rootfs.manifest.json");
    let files: BTreeMap<&str, _> = frame.file.iter().map(|f| (f.path.as_str(), f)).collect();
    for e in manifest["entries"].as_array().unwrap() {
        let path = e["path"].as_str().unwrap();
        let f = files
            .get(path)
            .unwrap_or_else(|| panic!("{what}: {path} missing"));
        assert_eq!(f.file_type.name(), e["type"].as_str().unwrap(), "{path}");
        assert_eq!(u64::from(f.mode), e["mode"].as_u64().unwrap(), "{path}");
        assert_eq!(u64::from(f.uid), e["uid"].as_u64().unwrap(), "{path}");
        assert_eq!(u64::from(f.gid), e["gid"].as_u64().unwrap(), "{path}");
        match f.file_type {
            FileType::File => {
                assert_eq!(f.size, e["size"].as_u64().unwrap(), "{path}");
                if let Some(h) = &f.sha256 {
                    assert_eq!(h, e["sha256"].as_str().unwrap(), "{path}");
                }
            }
            FileType::Symlink => {
                assert_eq!(f.link_target.as_deref(), e["target"].as_str(), "{path}")
            }
            _ => {}
        }
    }
    let known = &facts["known_file"];
    let k = files[known["path"].as_str().unwrap()];
    assert_eq!(k.size, known["size"].as_u64().unwrap());

    // config: the files that mention the fixture's address.
    let mentioning: BTreeSet<&str> = frame
        .config
        .iter()
        .filter(|c| c.content.contains(IP))
        .map(|c| c.path.as_str())
        .collect();
    let want: BTreeSet<&str> = facts[format!("files_mentioning_{IP}").as_str()]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(mentioning, want, "{what}: config files mentioning {IP}");
    for s in ["os", "package", "user", "config", "file", "disk"] {
        assert!(frame.meta.timings.contains_key(s), "timing of {s}");
    }
}

/// Runs the independent checker on the frame; it must score 100% everywhere.
fn independent_check(frame: &Frame, name: &str) {
    let fx = origami_testsupport::require_fixtures!();
    if !origami_testsupport::require_program("python3") {
        return;
    }
    let checker = fx.source().join("../tools/frame-vs-truth.py");
    if !checker.is_file() {
        origami_testsupport::skip("shared/tools/frame-vs-truth.py is missing");
        return;
    }
    let out_path = std::env::temp_dir().join(format!("origami-{}-{name}.json", std::process::id()));
    std::fs::write(&out_path, frame.to_json()).unwrap();
    let out = std::process::Command::new("python3")
        .arg(&checker)
        .arg("disk")
        .arg(&out_path)
        .arg(fx.path("debian/rootfs.facts.json"))
        .arg(fx.path("debian/rootfs.manifest.json"))
        .arg(IP)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&out_path);
    let line = String::from_utf8_lossy(&out.stdout);
    eprintln!("frame-vs-truth ({name}): {}", line.trim());
    assert!(
        out.status.success(),
        "frame-vs-truth: {line} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn debian_root_filesystem_with_hashes() {
    let fx = origami_testsupport::require_fixtures!();
    let frame = crawl(&fx.path("debian/rootfs.ext4"), true);
    check_frame(&frame, "rootfs.ext4");
    assert_eq!(frame.meta.system, "vmi-fixture");
    let known = fx.json("debian/rootfs.facts.json")["known_file"].clone();
    let k = frame
        .file
        .iter()
        .find(|f| f.path == known["path"].as_str().unwrap())
        .unwrap();
    assert_eq!(k.sha256.as_deref(), known["sha256"].as_str());
    assert!(frame
        .file
        .iter()
        .filter(|f| f.file_type == FileType::File)
        .all(|f| f.sha256.is_some()));
    independent_check(&frame, "rootfs");
}

/// The ESP of a partitioned disk appears at /boot/efi (the fixture's fstab is
/// unconfigured, as debootstrap leaves it), matching its manifest.
fn check_esp(frame: &Frame, what: &str, hashed: bool) {
    let fx = origami_testsupport::require_fixtures!();
    let manifest = fx.json("debian/esp.manifest.json");
    let files: BTreeMap<&str, _> = frame.file.iter().map(|f| (f.path.as_str(), f)).collect();
    for e in manifest["entries"].as_array().unwrap() {
        let rel = e["path"].as_str().unwrap();
        let path = if rel == "/" {
            "/boot/efi".to_string()
        } else {
            format!("/boot/efi{rel}")
        };
        let f = files
            .get(path.as_str())
            .unwrap_or_else(|| panic!("{what}: {path} missing"));
        assert_eq!(
            f.file_type.name(),
            e["type"].as_str().unwrap(),
            "{what} {path}"
        );
        if f.file_type == FileType::File {
            assert_eq!(f.size, e["size"].as_u64().unwrap(), "{what} {path}");
            if hashed {
                assert_eq!(f.sha256.as_deref(), e["sha256"].as_str(), "{what} {path}");
            }
        }
    }
}

#[test]
fn debian_disk_variants_give_the_same_frame() {
    let fx = origami_testsupport::require_fixtures!();
    let base = crawl(&fx.path("debian/rootfs.ext4"), false);
    for (image, hash) in [
        ("debian/disk-gpt.raw", false),
        ("debian/disk-mbr.raw", false),
        ("debian/disk-gpt.qcow2", false),
        ("debian/disk-overlay.qcow2", false),
        // Every file's bytes through zlib-compressed qcow2 clusters, GPT and both file
        // systems.
        ("debian/disk-gpt-compressed.qcow2", true),
    ] {
        let frame = crawl(&fx.path(image), hash);
        check_frame(&frame, image);
        check_esp(&frame, image, hash);
        // Apart from /boot/efi, the same items as the bare root file system.
        assert_eq!(frame.os, base.os, "{image}");
        assert_eq!(frame.package, base.package, "{image}");
        assert_eq!(frame.user, base.user, "{image}");
        assert_eq!(frame.config, base.config, "{image}");
        let strip = |f: &Frame| -> Vec<_> {
            f.file
                .iter()
                .filter(|i| !i.path.starts_with("/boot/efi"))
                .map(|i| {
                    let mut i = i.clone();
                    i.sha256 = None;
                    i
                })
                .collect()
        };
        let mut got = strip(&frame);
        let mut want = strip(&base);
        // /boot/efi itself shows the ESP's root: /boot's listing differs only there.
        got.retain(|i| i.path != "/boot/efi");
        want.retain(|i| i.path != "/boot/efi");
        assert_eq!(got, want, "{image}");
        if hash {
            independent_check(&frame, "compressed");
        }
    }
}

#[test]
fn two_walkers_list_exactly_what_one_walker_lists_in_the_same_order() {
    let fx = origami_testsupport::require_fixtures!();
    let frame = |threads: usize| {
        let options = CrawlOptions::builder()
            .hash_files(true)
            .threads(threads)
            .sections([origami_introspect::frame::Section::File])
            .build()
            .unwrap();
        Crawler::new(options)
            .crawl(&Target::disk(fx.path("debian/disk-gpt.qcow2")))
            .unwrap()
    };
    let (one, two) = (frame(1), frame(2));
    assert!(one.meta.errors.is_empty() && two.meta.errors.is_empty());
    assert_eq!(one.file.len(), two.file.len());
    assert_eq!(one.file, two.file);
    // And the order is the walk's: each directory right before what it holds.
    assert_eq!(two.file[0].path, "/");
    let boot = two.file.iter().position(|f| f.path == "/boot/efi").unwrap();
    assert!(two.file[boot + 1].path.starts_with("/boot/efi/"));
}
