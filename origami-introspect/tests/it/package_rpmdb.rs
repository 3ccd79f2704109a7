//! The three real rpm databases of the fixtures (CBL-Mariner 2.0 sqlite, SLE 15 NDB, a
//! CentOS Berkeley DB), read package by package against `rpmdb/truth.json` (written by
//! Debian's `rpm -qa`, or go-rpmdb's own test list for NDB, not by Origami).

use std::collections::BTreeMap;

use origami_introspect::disk::package::rpm::{read_database, Format};
use serde_json::Value;

/// (name, arch) -> (epoch, version, release, source_rpm, size, license, vendor), as JSON.
type Table = BTreeMap<(String, String), Value>;

fn truth_table(packages: &Value) -> Table {
    packages
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let key = (
                p["name"].as_str().unwrap().to_string(),
                p["arch"].as_str().unwrap().to_string(),
            );
            (key, p.clone())
        })
        .collect()
}

fn check(rel: &str, format: Format) {
    let fx = origami_testsupport::require_fixtures!();
    let truth = fx.json("rpmdb/truth.json");
    let entry = &truth[rel];
    assert_eq!(
        entry["format"].as_str().unwrap(),
        match format {
            Format::Sqlite => "sqlite",
            Format::Ndb => "ndb",
            Format::Bdb => "bdb",
        }
    );
    let want = truth_table(&entry["packages"]);
    let data = std::fs::read(fx.path(&format!("rpmdb/{rel}"))).unwrap();
    let (packages, errors) = read_database(format, &data, rel);
    assert!(errors.is_empty(), "{rel}: {errors:?}");
    assert_eq!(packages.len(), want.len(), "{rel}: package count");
    let mut got = Table::new();
    for p in &packages {
        assert_eq!(p.manager, "rpm");
        let x = &p.extra;
        let epoch = x.get("epoch").and_then(Value::as_u64).unwrap_or(0);
        let release = x["release"].as_str().unwrap();
        // version is [epoch:]version-release, the epoch left out when 0
        let upstream = if epoch == 0 {
            p.version.strip_suffix(&format!("-{release}")).unwrap()
        } else {
            p.version
                .strip_prefix(&format!("{epoch}:"))
                .unwrap()
                .strip_suffix(&format!("-{release}"))
                .unwrap()
        };
        let row = serde_json::json!({
            "name": p.name,
            "epoch": epoch,
            "version": upstream,
            "release": release,
            "arch": p.arch,
            "source_rpm": x["source_rpm"],
            "size": p.size,
            "license": x["license"],
            "vendor": x["vendor"],
        });
        // the source package's name is the source rpm's name-version-release minus two fields
        let src = x["source_rpm"].as_str().unwrap();
        assert!(
            src.starts_with(&format!("{}-", p.source.as_deref().unwrap())),
            "{src}"
        );
        let dup = got.insert((p.name.clone(), p.arch.clone()), row);
        assert!(dup.is_none(), "{rel}: {} twice", p.name);
    }
    for (key, w) in &want {
        assert_eq!(got.get(key), Some(w), "{rel}: {key:?}");
    }
    assert_eq!(got.len(), want.len());
}

#[test]
fn mariner_sqlite_matches_rpm_qa() {
    check("cbl-mariner-2.0/rpmdb.sqlite", Format::Sqlite);
}

#[test]
fn sle15_ndb_matches_go_rpmdb_list() {
    check("sle15-bci/Packages.db", Format::Ndb);
}

#[test]
fn centos_bdb_matches_rpm_qa() {
    check("libuuid/Packages", Format::Bdb);
}

/// Each format's reader on the other formats' files, and on truncations of its own: errors,
/// never a panic, and never a package that is not in the truth.
#[test]
fn wrong_and_truncated_files_end_in_errors() {
    let fx = origami_testsupport::require_fixtures!();
    let files = [
        ("cbl-mariner-2.0/rpmdb.sqlite", Format::Sqlite),
        ("sle15-bci/Packages.db", Format::Ndb),
        ("libuuid/Packages", Format::Bdb),
    ];
    for (rel, own) in files {
        let data = std::fs::read(fx.path(&format!("rpmdb/{rel}"))).unwrap();
        for (_, format) in files {
            if format != own {
                let (p, e) = read_database(format, &data, rel);
                assert!(p.is_empty() && !e.is_empty(), "{rel} read as {format:?}");
            }
        }
        for cut in [0, 7, 100, 4096, data.len() / 2, data.len() - 1] {
            let (p, e) = read_database(own, &data[..cut], rel);
            assert!(
                !e.is_empty(),
                "{rel} cut at {cut}: {} packages, no error",
                p.len()
            );
        }
    }
}

/// The file lists of the sqlite and Berkeley DB databases against Debian's `rpm -qa`
/// (`%{FILENAMES}`, every file and directory of every package) on a copy of each file
/// (rpm writes its lock and journal files beside the database). NDB is left out: Debian's
/// rpm is built without it.
#[test]
fn file_lists_match_rpm_filenames() {
    let fx = origami_testsupport::require_fixtures!();
    if !origami_testsupport::require_program("rpm") {
        return;
    }
    for (rel, format, backend) in [
        ("cbl-mariner-2.0/rpmdb.sqlite", Format::Sqlite, "sqlite"),
        ("libuuid/Packages", Format::Bdb, "bdb_ro"),
    ] {
        let data = std::fs::read(fx.path(&format!("rpmdb/{rel}"))).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "origami-rpm-files-{}-{backend}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let name = rel.rsplit('/').next().unwrap();
        std::fs::write(dir.join(name), &data).unwrap();
        let out = std::process::Command::new("rpm")
            .arg("--dbpath")
            .arg(&dir)
            .args(["--define", &format!("_db_backend {backend}"), "-qa"])
            .args(["--qf", "[%{=NAME}.%{=ARCH}\t%{FILENAMES}\n]"])
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.status.success(), "rpm -qa on {rel}");
        let mut want: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(_, f)| *f != "(none)")
            .map(|(p, f)| (p.to_string(), f.to_string()))
            .collect();
        want.sort();
        let (packages, errors) = read_database(format, &data, rel);
        assert!(errors.is_empty(), "{rel}: {errors:?}");
        let mut got: Vec<(String, String)> = packages
            .iter()
            .flat_map(|p| {
                let key = format!("{}.{}", p.name, p.arch);
                p.extra
                    .get("files")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(move |f| (key.clone(), f.as_str().unwrap().to_string()))
            })
            .collect();
        got.sort();
        assert!(want.len() > 5, "{rel}: rpm listed {} files", want.len());
        assert_eq!(got.len(), want.len(), "{rel}: file count");
        assert_eq!(got, want, "{rel}");
    }
}
