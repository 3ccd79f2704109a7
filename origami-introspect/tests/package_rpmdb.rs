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
