//! PostgreSQL against tantivy, one run, the same frames: ingest rate (items/s), query latency
//! (p50 / p99 over a query mix) and disk bytes per item, for tantivy, one PostgreSQL server
//! and two servers sharded with postgres_fdw, at each fleet size.
//!
//! Run: `nice -n 10 cargo bench -p origami-benches --bench pg` with `ORIGAMI_BENCH_SIZES`
//! (machines, comma-separated, default `100,1000`), `ORIGAMI_BENCH_ITEMS` (items per
//! machine, default 1000), `ORIGAMI_BENCH_ROUNDS` (runs of each query, default 20),
//! `ORIGAMI_BENCH_DIR` (default `target/origami-bench`). Needs Debian's `postgresql`
//! package: the bench starts its servers as the tests do (`initdb` into temporary folders,
//! loopback ports). It prints a Markdown table. Not run in CI (minutes at 1,000 machines).
//!
//! Method: frames are generated in batches of 50 machines outside the timed region; a batch
//! is timed from its first `add_frame` to the end of its `commit`, one commit per batch for
//! every backend. Tantivy writes with its default writer (threads, memory). The servers run
//! with `fsync=off` (the tests' settings): tantivy's commit does fsync, so PostgreSQL's
//! ingest numbers are, if anything, favoured. Bytes per item: tantivy's folder; for
//! PostgreSQL, `pg_total_relation_size` of every partition and of the frames table
//! (tables, TOAST and indexes; WAL not counted), summed over both servers when sharded.
//! Queries run from one client, each `ROUNDS` times after a warm-up.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use origami_index::frame::Frame;
use origami_index::postgres::PgOptions;
use origami_index::{Index, IndexConfig, PostgresIndex, Search, SearchOptions, TantivyIndex};
use origami_testsupport::postgres::PgCluster;
use origami_testsupport::synth::Fleet;

const BATCH: usize = 50;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One backend's numbers at one size.
struct Row {
    backend: &'static str,
    machines: usize,
    items: u64,
    rate: f64,
    p50: Duration,
    p99: Duration,
    bytes: u64,
}

/// Ingests `machines` machines of `fleet` in batches; items and time.
fn ingest(index: &dyn Index, fleet: &Fleet, machines: usize, name: &str) -> (u64, Duration) {
    let (mut items, mut time) = (0u64, Duration::ZERO);
    for s in (0..machines).step_by(BATCH) {
        let batch: Vec<Frame> = (s..(s + BATCH).min(machines))
            .map(|i| fleet.frame(i, 0))
            .collect();
        let t = Instant::now();
        for f in &batch {
            items += index.add_frame(f).expect("add_frame").items;
        }
        index.commit().expect("commit");
        time += t.elapsed();
    }
    eprintln!(
        "{name}: {machines} machines, {items} items in {:.1} s",
        time.as_secs_f64()
    );
    (items, time)
}

fn queries(fleet: &Fleet, machines: usize) -> Vec<String> {
    let as_of = (fleet.start + time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    vec![
        fleet.address(7.min(machines - 1)),
        "type:process name:nginx".to_string(),
        "pkg:openssl".to_string(),
        "\"PermitRootLogin yes\"".to_string(),
        "host:web-00* type:connection".to_string(),
        "port:5432 -type:file".to_string(),
        "nginx OR haproxy".to_string(),
        "path:/etc/ssh/*".to_string(),
        "os:ubuntu type:package pkg:libssl3".to_string(),
        "postgres user:postgres type:process".to_string(),
        "libc6 -host:db-*".to_string(),
        format!("type:os as_of:{as_of}"),
    ]
}

/// p50 and p99 of the query mix, each query `rounds` times after a warm-up.
fn latency(index: &dyn Search, qs: &[String], rounds: usize) -> (Duration, Duration) {
    let opts = SearchOptions::default();
    for q in qs {
        let _ = index.search(q, &opts).expect("warm-up");
    }
    let mut all = Vec::new();
    for q in qs {
        for _ in 0..rounds {
            let t = Instant::now();
            let _ = index.search(q, &opts).expect("search");
            all.push(t.elapsed());
        }
    }
    all.sort();
    (pct(&all, 0.5), pct(&all, 0.99))
}

/// Bytes of the origami tables (partitions, TOAST, indexes) on one server.
fn pg_bytes(c: &PgCluster, partitions: &[&str]) -> u64 {
    let mut sum = 0u64;
    for t in partitions.iter().chain(["origami_frames"].iter()) {
        let v = c.psql(
            "postgres",
            &format!("SELECT coalesce(pg_total_relation_size(to_regclass('{t}')), 0)"),
        );
        sum += v.parse::<u64>().unwrap_or(0);
    }
    sum
}

fn main() {
    // `cargo test --benches` runs bench binaries without `--bench`: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("ORIGAMI_BENCH_SIZES")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    let items = env_usize("ORIGAMI_BENCH_ITEMS", 1000);
    let rounds = env_usize("ORIGAMI_BENCH_ROUNDS", 20);
    let root = std::env::var("ORIGAMI_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/origami-bench"));
    let max = sizes.iter().copied().max().unwrap_or(1);
    let fleet = Fleet::new(max, items);
    let mut rows = Vec::new();
    for &machines in &sizes {
        let qs = queries(&fleet, machines);

        let dir = root.join(format!("pg-cmp-tantivy-{machines}"));
        let _ = std::fs::remove_dir_all(&dir);
        let config = IndexConfig {
            commit_interval: None,
            ..IndexConfig::default()
        };
        let t = TantivyIndex::open_or_create_with(&dir, &config).expect("tantivy");
        let (n, time) = ingest(&t, &fleet, machines, "tantivy");
        let (p50, p99) = latency(&t, &qs, rounds);
        rows.push(Row {
            backend: "tantivy",
            machines,
            items: n,
            rate: n as f64 / time.as_secs_f64(),
            p50,
            p99,
            bytes: dir_size(&dir),
        });
        drop(t);
        let _ = std::fs::remove_dir_all(&dir);

        let opts = PgOptions {
            commit_interval: None,
            ..PgOptions::default()
        };
        let all_parts = [
            "origami_items_p0",
            "origami_items_p1",
            "origami_items_p2",
            "origami_items_p3",
        ];
        {
            let Some(pg) = PgCluster::start() else { return };
            let p = PostgresIndex::open_with(&pg.url(), &opts).expect("postgres");
            let (n, time) = ingest(&p, &fleet, machines, "postgres");
            pg.psql("postgres", "VACUUM ANALYZE");
            let (p50, p99) = latency(&p, &qs, rounds);
            rows.push(Row {
                backend: "postgres, 1 server",
                machines,
                items: n,
                rate: n as f64 / time.as_secs_f64(),
                p50,
                p99,
                bytes: pg_bytes(&pg, &all_parts),
            });
        }
        {
            let (Some(coord), Some(shard)) = (PgCluster::start(), PgCluster::start()) else {
                return;
            };
            let p = PostgresIndex::create_sharded(&coord.url(), &shard.url(), 4, &[1, 3], &opts)
                .expect("sharded");
            let (n, time) = ingest(&p, &fleet, machines, "postgres, 2 shards");
            coord.psql("postgres", "VACUUM ANALYZE");
            shard.psql("postgres", "VACUUM ANALYZE");
            let (p50, p99) = latency(&p, &qs, rounds);
            rows.push(Row {
                backend: "postgres, 2 shards (fdw)",
                machines,
                items: n,
                rate: n as f64 / time.as_secs_f64(),
                p50,
                p99,
                bytes: pg_bytes(&coord, &["origami_items_p0", "origami_items_p2"])
                    + pg_bytes(&shard, &["origami_items_p1", "origami_items_p3"]),
            });
        }
    }
    println!("# PostgreSQL vs tantivy: ~{items} items per machine, {rounds} runs of 12 queries\n");
    println!("| backend | machines | items | ingest items/s | query p50 ms | query p99 ms | bytes/item |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.0} |",
            r.backend,
            r.machines,
            r.items,
            r.rate,
            ms(r.p50),
            ms(r.p99),
            r.bytes as f64 / r.items.max(1) as f64
        );
    }
}
