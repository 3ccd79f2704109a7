//! Reading rpm's sqlite database (CBL-Mariner 2.0's `rpmdb.sqlite`, 129 packages, 3.6 MB):
//! Origami's reader (`read_database`: SQLite deserialize, every header blob parsed into a
//! frame package) against `rpm -qa` on the same file (Debian's rpm 4.18, a process per run,
//! printing the same fields), in one run.
//!
//! Run: `cargo bench -p origami-benches --bench rpmdb` (needs the fixtures and `rpm`).

use std::process::Command;

use criterion::{criterion_group, criterion_main, Criterion};
use origami_introspect::disk::package::rpm::{read_database, Format};

const QF: &str = "%{NAME} %{EPOCHNUM} %{VERSION} %{RELEASE} %{ARCH} %{SOURCERPM} %{SIZE} %{LICENSE} %{VENDOR}\\n";

fn rpmdb(c: &mut Criterion) {
    let Some(fx) = origami_testsupport::fixtures() else {
        eprintln!("{}", origami_benches::fixtures_hint());
        return;
    };
    let path = fx.path("rpmdb/cbl-mariner-2.0/rpmdb.sqlite");
    let data = std::fs::read(&path).unwrap();
    let mut group = c.benchmark_group("rpmdb/mariner-sqlite");
    group.sample_size(20);
    group.bench_function("origami-read-file-and-parse", |b| {
        b.iter(|| {
            let data = std::fs::read(&path).unwrap();
            let (p, e) = read_database(Format::Sqlite, &data, "rpmdb.sqlite");
            assert!(e.is_empty() && p.len() == 129);
            p.len()
        })
    });
    group.bench_function("origami-parse-in-memory", |b| {
        b.iter(|| read_database(Format::Sqlite, &data, "rpmdb.sqlite").0.len())
    });
    if Command::new("rpm").arg("--version").output().is_ok() {
        // rpm wants a writable folder for its lock and WAL files: a copy in a temp dir.
        let dir = std::env::temp_dir().join(format!("origami-bench-rpmdb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rpmdb.sqlite"), &data).unwrap();
        group.bench_function("rpm-qa", |b| {
            b.iter(|| {
                let out = Command::new("rpm")
                    .arg("--dbpath")
                    .arg(&dir)
                    .args(["--define", "_db_backend sqlite", "-qa", "--qf", QF])
                    .output()
                    .unwrap();
                assert!(out.status.success());
                out.stdout.len()
            })
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

criterion_group!(benches, rpmdb);
criterion_main!(benches);
