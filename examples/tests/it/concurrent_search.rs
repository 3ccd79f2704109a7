//! Searching while the fleet is crawled into the same index folder: every `origami search`
//! (and `origami history`) started while `origami crawl-fleet` writes succeeds, and finds
//! exactly the machines and files the demo generator put the address on (its fleet.json).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;

const IP: &str = "10.20.30.40";

fn origami(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_origami"))
        .args(args)
        .output()
        .expect("run origami")
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("concurrent_search")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `origami crawl-fleet` of the demo manifest into `index`, with the demo's config globs.
fn crawl_fleet(manifest: &Path, index: &Path) -> Output {
    let mut args = vec![
        "crawl-fleet".to_string(),
        manifest.display().to_string(),
        "--index".into(),
        index.display().to_string(),
        "--jobs".into(),
        "2".into(),
    ];
    for g in origami_examples::demo::CONFIG_GLOBS {
        args.push("--config".into());
        args.push(g.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    origami(&args)
}

type Hits = BTreeMap<String, BTreeSet<(String, String)>>;

/// `origami search --json`: machine -> (kind, key) hits, or what went wrong.
fn search(index: &Path, query: &str) -> Result<Hits, String> {
    let out = origami(&[
        "search",
        "--index",
        index.to_str().unwrap(),
        query,
        "--json",
        "--limit",
        "100",
        "--hits",
        "100",
    ]);
    if out.status.code() != Some(0) {
        return Err(format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(v["machines"]
        .as_array()
        .ok_or("no machines")?
        .iter()
        .map(|m| {
            let hits = m["hits"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| {
                    (
                        h["kind"].as_str().unwrap_or_default().to_string(),
                        h["key"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            (m["system"].as_str().unwrap_or_default().to_string(), hits)
        })
        .collect())
}

#[test]
fn searches_succeed_while_crawl_fleet_writes_the_same_index() {
    let dir = scratch("concurrent-search");
    let manifest = origami_examples::demo::unpack(&dir.join("demo")).unwrap();
    let index = dir.join("index");

    // Ground truth: the machines and files that mention the address (fleet.json).
    let fleet: Value = serde_json::from_str(origami_examples::demo::FLEET_JSON).unwrap();
    let want: Hits = fleet["machines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m["mentions_ip"].as_array().unwrap().is_empty())
        .map(|m| {
            let hits = m["mentions_ip"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| ("config".to_string(), p.as_str().unwrap().to_string()))
                .collect();
            (m["name"].as_str().unwrap().to_string(), hits)
        })
        .collect();
    assert!(!want.is_empty());

    // A first crawl makes the index; the crawls that follow write it while we search.
    let out = crawl_fleet(&manifest, &index);
    assert!(
        out.status.success() || out.status.code() == Some(3),
        "first crawl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(search(&index, IP).unwrap(), want);

    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (manifest, index, writing) = (manifest.clone(), index.clone(), writing.clone());
        std::thread::spawn(move || {
            let mut codes = Vec::new();
            for _ in 0..3 {
                codes.push(crawl_fleet(&manifest, &index).status.code());
            }
            writing.store(false, Ordering::SeqCst);
            codes
        })
    };
    let mut searches = 0usize;
    let mut failures = Vec::new();
    while writing.load(Ordering::SeqCst) {
        match search(&index, IP) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!("search {searches}: wrong answer {got:?}")),
            Err(e) => failures.push(format!("search {searches}: {e}")),
        }
        searches += 1;
        if searches.is_multiple_of(5) {
            let h = origami(&["history", "--index", index.to_str().unwrap(), "web-01"]);
            if !h.status.success() {
                failures.push(format!("history: {}", String::from_utf8_lossy(&h.stderr)));
            }
        }
    }
    let codes = writer.join().unwrap();
    // The demo fleet has one broken machine: crawl-fleet exits 3 (some machine failed).
    assert!(
        codes.iter().all(|c| *c == Some(0) || *c == Some(3)),
        "crawl-fleet exits: {codes:?}"
    );
    eprintln!("{searches} searches while crawl-fleet wrote the index");
    assert!(
        failures.is_empty(),
        "{} of {searches}: {failures:#?}",
        failures.len()
    );
    assert!(
        searches >= 3,
        "only {searches} searches ran during the crawls"
    );
    // After the crawls: every machine's frames are all there (one per crawl).
    let h = origami(&[
        "history",
        "--index",
        index.to_str().unwrap(),
        "web-01",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&h.stdout).unwrap();
    assert_eq!(v["frames"].as_array().unwrap().len(), 4, "{v}");
}
