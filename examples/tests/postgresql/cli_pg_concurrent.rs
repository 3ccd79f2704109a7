//! Many crawlers, one index: three `origami` processes write one PostgreSQL database at
//! once while a fourth searches it in a loop. Two `crawl-fleet` processes crawl different
//! demo machines, round after round; a third (`origami index`) sends frames of machines the
//! other two also write, with older times and out of order. Afterwards:
//! - every frame the crawlers sent is in the database exactly once, each system's frames
//!   in time order, and a frame missing only because a newer one of its system was there
//!   before it (stale, as the tantivy writer treats it);
//! - the database holds exactly the versions a single tantivy writer makes of the frames
//!   it kept, given in time order (same history records, same version count, same
//!   answers);
//! - every search was answered.
#![cfg(feature = "postgres")]

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use origami_frame::{Frame, FrameReader, Process};
use origami_index::{Index, PostgresIndex, Search, SearchOptions, TantivyIndex};
use origami_testsupport::postgres::PgCluster;
use time::OffsetDateTime;

const ROUNDS: usize = 3;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_origami"))
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli_pg_concurrent")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn manifest(dir: &Path, demo: &Path, name: &str, machines: &[&str]) -> PathBuf {
    let mut text = String::new();
    for (m, file, _) in origami_examples::demo::MACHINES {
        if machines.contains(m) {
            text.push_str(&format!(
                "[[machine]]\nname = \"{m}\"\ndisks = [\"{}\"]\n\n",
                demo.join(file).display()
            ));
        }
    }
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn read_frames(p: &Path) -> Vec<Frame> {
    let f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    FrameReader::new(BufReader::new(f))
        .map(|r| r.unwrap())
        .collect()
}

/// Runs `c`; it must succeed (a fleet crawl may exit 3 for the demo's `legacy-01`, whose
/// disk holds no root file system on purpose, and for nothing else).
fn wait_ok(c: &mut Command, what: &str) {
    let out = c.stdin(Stdio::null()).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let legacy_only = v["read_nothing"] == serde_json::json!(["legacy-01"])
        && v["failed"].as_object().is_some_and(|f| f.is_empty());
    assert!(
        out.status.success() || (out.status.code() == Some(3) && legacy_only),
        "{what}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A crawl-fleet writer: `ROUNDS` crawls of `manifest` one after another, each keeping its
/// frames in `out-N.jsonl`.
fn crawler(url: String, manifest: PathBuf, out: PathBuf) -> std::thread::JoinHandle<Vec<PathBuf>> {
    std::thread::spawn(move || {
        let mut files = Vec::new();
        for r in 0..ROUNDS {
            let frames = out.with_extension(format!("{r}.jsonl"));
            wait_ok(
                bin()
                    .args(["crawl-fleet"])
                    .arg(&manifest)
                    .args(["--index", &url, "--jobs", "2", "--json", "--frames"])
                    .arg(&frames),
                "crawl-fleet",
            );
            files.push(frames);
        }
        files
    })
}

#[test]
fn concurrent_writers_lose_and_duplicate_no_version() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.create_db("fleet");
    let dir = scratch("cli-pg-concurrent");
    let demo = dir.join("demo");
    origami_examples::demo::unpack(&demo).unwrap();
    let a = manifest(&dir, &demo, "a", &["web-01", "web-02", "db-01", "cache-01"]);
    let b = manifest(
        &dir,
        &demo,
        "b",
        &["lb-01", "build-01", "mail-01", "mon-01", "legacy-01"],
    );

    // The third writer's frames: web-01 and lb-01 crawled before the others start, sent
    // again at older times (web-01 in time order, lb-01 out of order), each a little
    // different (one more process) so that every kept frame writes versions.
    let base = dir.join("base.jsonl");
    wait_ok(
        bin()
            .arg("crawl-fleet")
            .arg(manifest(&dir, &demo, "c", &["web-01", "lb-01"]))
            .arg("--index")
            .arg(dir.join("scratch-index"))
            .arg("--json")
            .arg("--frames")
            .arg(&base),
        "crawl-fleet (base)",
    );
    let t0 = OffsetDateTime::now_utc();
    let mut third = Vec::new();
    for f in read_frames(&base) {
        let order: &[i64] = if f.system() == "web-01" {
            &[30, 20, 10]
        } else {
            &[10, 30, 20]
        };
        for (k, mins) in order.iter().enumerate() {
            let mut g = f.clone();
            g.meta.timestamp = t0 - time::Duration::minutes(*mins);
            g.process.push(Process {
                pid: 90_000 + k as u32,
                name: format!("third-writer-{mins}"),
                cmdline: vec![format!("third-writer-{mins}")],
                ..Default::default()
            });
            third.push(g);
        }
    }
    let third_file = dir.join("third.jsonl");
    std::fs::write(
        &third_file,
        third.iter().map(|f| f.to_json() + "\n").collect::<String>(),
    )
    .unwrap();

    // The database's schema made before the race (as by a first run), so that the
    // searcher finds an index from its first query.
    let out = bin()
        .args(["index", "--index", &url, "/dev/null"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let searcher = {
        let (url, stop) = (url.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut answered = 0usize;
            let mut last_machines = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let out = bin()
                    .args([
                        "search", "--index", &url, "type:os", "--json", "--limit", "100",
                    ])
                    .output()
                    .unwrap();
                let code = out.status.code();
                assert!(
                    code == Some(0) || code == Some(4),
                    "search during the writes: {code:?} {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                // Commits only add machines: a search never sees fewer than the last one.
                let n = v["machines"].as_array().unwrap().len();
                assert!(n >= last_machines, "{n} machines after {last_machines}");
                last_machines = n;
                answered += 1;
            }
            answered
        })
    };
    let wa = crawler(url.clone(), a, dir.join("a"));
    let wb = crawler(url.clone(), b, dir.join("b"));
    let wc = std::thread::spawn({
        let (url, file) = (url.clone(), third_file.clone());
        move || {
            for _ in 0..2 {
                wait_ok(
                    bin().args(["index", "--index", &url]).arg(&file),
                    "origami index",
                );
            }
        }
    });
    let mut crawled: Vec<Frame> = Vec::new();
    for w in [wa, wb] {
        for f in w.join().unwrap() {
            crawled.extend(read_frames(&f));
        }
    }
    wc.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    let answered = searcher.join().unwrap();
    assert!(answered >= 2, "only {answered} searches ran");
    assert_eq!(
        crawled.len(),
        ROUNDS * origami_examples::demo::MACHINES.len(),
        "crawled frames"
    );

    // Every frame sent, by system and time.
    let mut sent: BTreeMap<String, BTreeMap<i128, (bool, Frame)>> = BTreeMap::new();
    for (crawler, f) in crawled
        .into_iter()
        .map(|f| (true, f))
        .chain(third.into_iter().map(|f| (false, f)))
    {
        let ts = f.meta.timestamp.unix_timestamp_nanos();
        let prev = sent
            .entry(f.system().to_string())
            .or_default()
            .insert(ts, (crawler, f));
        assert!(prev.is_none(), "two frames of one system at one time");
    }
    let p = PostgresIndex::open_read_only(&url).unwrap();
    let mut kept: Vec<Frame> = Vec::new();
    for (system, frames) in &sent {
        let h = p.history(system).unwrap();
        let times: Vec<i128> = h
            .iter()
            .map(|v| v.timestamp.unix_timestamp_nanos())
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] < w[1]),
            "{system}: frames out of time order or duplicated: {times:?}"
        );
        let latest = *times.last().unwrap();
        for (ts, (from_crawler, f)) in frames {
            let n = times.iter().filter(|t| *t == ts).count();
            if *from_crawler {
                assert_eq!(n, 1, "{system}: crawled frame at {ts} kept {n} times");
            } else {
                assert!(n == 1 || *ts < latest, "{system}: frame at {ts} lost");
            }
            if n == 1 {
                kept.push(f.clone());
            }
        }
        assert_eq!(
            kept.iter().filter(|f| f.system() == system).count(),
            times.len(),
            "{system}: a frame in the database that nobody sent"
        );
    }

    // A single tantivy writer given the kept frames in time order makes the same versions.
    kept.sort_by_key(|f| f.meta.timestamp);
    let t = TantivyIndex::in_ram().unwrap();
    for f in &kept {
        assert!(!t.add_frame(f).unwrap().stale);
    }
    t.commit().unwrap();
    assert_eq!(
        p.num_versions().unwrap() + kept.len() as u64,
        t.num_docs(),
        "versions in the database vs a single writer"
    );
    for system in sent.keys() {
        assert_eq!(
            t.history(system).unwrap(),
            p.history(system).unwrap(),
            "history of {system} (added, changed, removed per frame)"
        );
    }
    let opts = SearchOptions {
        limit: 1000,
        hits_per_machine: 100_000,
        facet_limit: 1000,
        ..SearchOptions::default()
    };
    for q in [
        "type:process",
        "third-writer-10 OR third-writer-20 OR third-writer-30",
        "type:package",
        "10.20.30.40",
    ] {
        let items = |r: origami_index::SearchResults| -> BTreeSet<(String, String, String, i128)> {
            r.machines
                .iter()
                .flat_map(|m| {
                    m.hits.iter().map(|h| {
                        (
                            m.system.clone(),
                            h.kind.name().to_string(),
                            h.key.clone(),
                            h.valid_from.unix_timestamp_nanos(),
                        )
                    })
                })
                .collect()
        };
        let (a, b) = (
            items(t.search(q, &opts).unwrap()),
            items(p.search(q, &opts).unwrap()),
        );
        assert_eq!(a, b, "{q}");
    }
}
