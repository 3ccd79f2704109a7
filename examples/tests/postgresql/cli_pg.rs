//! `--index postgres://USER@HOST:PORT/DB` through the `origami` binary, on a real PostgreSQL
//! server started by the test: `crawl-fleet`, `index`, `search`, `history` and `serve` (read
//! only, and with a manifest, writing) take the URL as they take a folder, and answer as the
//! tantivy folder does for the same frames; passwords never show in messages; plain text to
//! a host beyond loopback is refused. Ground truth: the demo generator's fleet.json.
#![cfg(feature = "postgres")]

use crate::serve_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use origami_testsupport::postgres::PgCluster;
use serde_json::Value;
use serve_support::{enc, fleet_truth, get, origami, scratch, serve};

const IP: &str = "10.20.30.40";

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What two answers must share: per machine its match count and its hits (kind, key,
/// valid from/to), plus the totals and facets. (Scores differ: ranking is not BM25.)
/// Per machine: its match count and hits.
type Machines = BTreeMap<String, (u64, BTreeSet<String>)>;

fn answer(v: &Value) -> (Machines, Value, Value) {
    let machines = v["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let hits = m["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    format!(
                        "{} {} {} {}",
                        h["kind"], h["key"], h["valid_from"], h["valid_to"]
                    )
                })
                .collect();
            (
                m["system"].as_str().unwrap().to_string(),
                (m["matched"].as_u64().unwrap(), hits),
            )
        })
        .collect();
    let mut facets = v["facets"].clone();
    if let Some(o) = facets.as_object_mut() {
        for (_, list) in o.iter_mut() {
            if let Some(a) = list.as_array_mut() {
                a.sort_by_key(|x| x.to_string());
            }
        }
    }
    (machines, v["total_hits"].clone(), facets)
}

/// A fleet crawl's output: exit 0, or 3 for the demo's `legacy-01` alone, whose disk holds
/// no root file system on purpose (fleet.json).
fn fleet_summary(out: &std::process::Output, what: &str) -> Value {
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    let legacy_only = v["read_nothing"] == serde_json::json!(["legacy-01"])
        && v["failed"].as_object().is_some_and(|f| f.is_empty());
    assert!(
        out.status.success() || (out.status.code() == Some(3) && legacy_only),
        "{what}: {:?} {v}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    v
}

fn search_json(index: &str, query: &str) -> (Option<i32>, Value) {
    let out = origami(&[
        "search", "--index", index, query, "--json", "--limit", "100", "--hits", "1000",
    ]);
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(4),
        "search {query:?} in {index}: {code:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        code,
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout))),
    )
}

/// The demo machines whose disks mention the address (the generator's record).
fn truth_ip_machines() -> BTreeSet<String> {
    fleet_truth()["machines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m["mentions_ip"].as_array().unwrap().is_empty())
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

fn systems(v: &Value) -> BTreeSet<String> {
    v["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["system"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_command_that_takes_an_index_folder_takes_a_postgres_url() {
    let Some(pg) = PgCluster::start() else { return };
    let dir = scratch("cli-pg");
    let manifest = origami_examples::demo::unpack(&dir.join("demo")).unwrap();
    let manifest = manifest.to_str().unwrap();
    let folder = dir.join("index");
    let folder = folder.to_str().unwrap();
    let frames = dir.join("frames.jsonl");
    let crawled = pg.create_db("crawled");
    let indexed = pg.create_db("indexed");
    let globs = [
        "--config",
        "/home/*/.bash_history",
        "--config",
        "/root/.bash_history",
    ];

    // crawl-fleet into a folder (keeping the frames) and, separately, into PostgreSQL.
    let mut args = vec![
        "crawl-fleet",
        manifest,
        "--index",
        folder,
        "--jobs",
        "2",
        "--json",
    ];
    args.extend(["--frames", frames.to_str().unwrap()]);
    args.extend(globs);
    let summary = fleet_summary(&origami(&args), "crawl-fleet DIR");
    let n = origami_examples::demo::MACHINES.len() as u64;
    assert_eq!(summary["crawled"], n, "{summary}");
    let mut args = vec![
        "crawl-fleet",
        manifest,
        "--index",
        &crawled,
        "--jobs",
        "2",
        "--json",
    ];
    args.extend(globs);
    let summary = fleet_summary(&origami(&args), "crawl-fleet URL");
    assert_eq!(summary["crawled"], n, "{summary}");

    // index: the folder's very frames into a second database.
    let text = ok(
        &origami(&["index", "--index", &indexed, frames.to_str().unwrap()]),
        "index URL",
    );
    assert!(text.contains(&format!("indexed {n} frames")), "{text}");

    // search: the generator's truth, from both databases; and the same answers as the
    // folder for the same frames.
    let want = truth_ip_machines();
    assert!(!want.is_empty());
    for idx in [&crawled, &indexed] {
        let (code, v) = search_json(idx, IP);
        assert_eq!(code, Some(0));
        assert_eq!(systems(&v), want, "{IP} in {idx}");
    }
    let mut queries: Vec<&str> = origami_examples::demo::QUERIES.to_vec();
    queries.extend([
        "type:os",
        "type:user -user:root",
        "pkg:openssl OR pkg:nginx",
        "path:/etc/ssh/*",
        "\"listen\"",
        "no-such-word-anywhere",
    ]);
    for q in &queries {
        let (ct, t) = search_json(folder, q);
        let (cp, p) = search_json(&indexed, q);
        assert_eq!(ct, cp, "exit code of {q:?}");
        assert_eq!(answer(&t), answer(&p), "{q:?}: folder vs postgres");
        // The separately crawled database: the same machines and items, other times.
        let (_, c) = search_json(&crawled, q);
        assert_eq!(systems(&t), systems(&c), "{q:?}: folder vs crawled");
    }
    // A bad query is a usage error either way.
    assert_eq!(
        origami(&["search", "--index", &indexed, "type:"])
            .status
            .code(),
        Some(2)
    );

    // history: the same frames and changes as the folder's.
    for m in ["web-01", "db-01"] {
        let h = |i: &str| -> Value {
            serde_json::from_str(&ok(
                &origami(&["history", "--index", i, m, "--json"]),
                "history",
            ))
            .unwrap()
        };
        let (a, b) = (h(folder), h(&indexed));
        assert_eq!(a, b, "history of {m}");
        assert_eq!(a["frames"].as_array().unwrap().len(), 1);
    }

    // serve, read only: the page's API answers from the database.
    let s = serve(Path::new(&indexed), &[]);
    let r = get(s.addr, &format!("/api/search?q={}", enc(IP)));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(systems(&r.json()), want);
    let r = get(s.addr, "/api/machines");
    assert_eq!(r.json()["machines"].as_array().unwrap().len() as u64, n);
    drop(s);

    // serve with a manifest writes the database: every machine crawled once, then SIGTERM
    // commits.
    let served = pg.create_db("served");
    let s = serve(
        Path::new(&served),
        &[
            manifest,
            "--interval",
            "1h",
            "--jobs",
            "2",
            "--config",
            globs[1],
            "--config",
            globs[3],
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let v = get(s.addr, "/api/machines").json();
        let done = v["schedule"]
            .as_array()
            .map(|a| a.iter().filter(|m| !m["last_success"].is_null()).count())
            .unwrap_or(0);
        // All but legacy-01, whose disk holds no root file system on purpose.
        if done as u64 == n - 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not crawl the fleet: {v}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let pid = s.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut s = s;
    let status = s.child.wait().unwrap();
    assert!(status.success(), "serve after SIGTERM: {status:?}");
    for m in ["web-01", "mon-01"] {
        let v: Value = serde_json::from_str(&ok(
            &origami(&["history", "--index", &served, m, "--json"]),
            "history of served",
        ))
        .unwrap();
        assert_eq!(v["frames"].as_array().unwrap().len(), 1, "{m}: {v}");
    }
    let (_, v) = search_json(&served, IP);
    assert_eq!(systems(&v), want, "{IP} in the database serve wrote");
}

#[test]
fn urls_show_no_password_and_plain_text_stays_on_loopback() {
    let Some(pg) = PgCluster::start() else { return };
    // An empty database: nothing to search yet.
    let empty = pg.create_db("empty");
    let out = origami(&["search", "--index", &empty, "x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no index at"), "{err}");
    // A search does not create the schema.
    let out = origami(&["history", "--index", &empty, "web-01"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no index at"));

    // A wrong password (the server trusts loopback, so take a closed port instead) and
    // a host beyond loopback: errors, and the password is never printed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = "hunter2-do-not-print";
    for (url, says) in [
        (
            format!("postgres://ops:{secret}@127.0.0.1:{closed}/fleet"),
            "opening the index at postgres://ops:***@127.0.0.1",
        ),
        (
            format!("postgres://ops:{secret}@192.0.2.7:5432/fleet"),
            "not a loopback address",
        ),
        (
            format!("postgresql://ops@192.0.2.7/fleet?password={secret}"),
            "password=***",
        ),
    ] {
        for args in [
            vec!["search", "--index", &url, "x"],
            vec!["index", "--index", &url, "/dev/null"],
            vec!["history", "--index", &url, "web-01"],
            vec!["serve", "--index", &url, "--listen", "127.0.0.1:0"],
        ] {
            let out = origami(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.contains(says), "{args:?}: {err}");
            assert!(
                !err.contains(secret),
                "{args:?} printed the password: {err}"
            );
            assert!(!String::from_utf8_lossy(&out.stdout).contains(secret));
        }
    }
    // `sslmode=disable` is the explicit opt-in to plain text beyond loopback: accepted, and
    // only the connection fails (TEST-NET-1 is unreachable; a short timeout).
    let url =
        format!("postgres://ops:{secret}@192.0.2.7:5432/fleet?sslmode=disable&connect_timeout=1");
    let out = origami(&["search", "--index", &url, "x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !err.contains("not a loopback") && !err.contains(secret),
        "{err}"
    );
    // PGPASSWORD is taken when the URL has none (the server here trusts loopback, so it
    // only shows the URL works without one).
    let idx = pg.create_db("withenv");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_origami"))
        .args(["index", "--index", &idx, "/dev/null"])
        .env("PGPASSWORD", secret)
        .output()
        .unwrap();
    ok(&out, "index with PGPASSWORD");
}
