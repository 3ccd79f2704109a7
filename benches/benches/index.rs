//! The index benchmark: ingest rate, size on disk and query latency over a synthetic fleet,
//! against raw tantivy ingest of the same documents.
//!
//! Run: `cargo bench -p origami-benches --bench index` with
//! `ORIGAMI_BENCH_MACHINES` (default 100), `ORIGAMI_BENCH_ITEMS` (items per machine, default
//! 20000), `ORIGAMI_BENCH_RAW_MACHINES` (machines for the raw floor, default
//! min(machines, 100)), `ORIGAMI_BENCH_DIR` (default `target/origami-bench`). It prints a
//! Markdown table. Not run in CI: 1,000 machines is 20M items and takes many minutes.
//!
//! Method: frames are generated in batches of 50 machines outside the timed region; a batch
//! is timed from its first `add_frame` to the end of its `commit` (which waits for the
//! indexing threads), so generation never counts and background indexing always does. The
//! index is written in bulk (no near-real-time commits: `commit_interval: None`), one commit
//! a batch. The raw floor adds one document per item to a plain tantivy writer with the
//! index's own schema, tokenizer and merge policy, batch by batch, with the same commits,
//! without the versioning (no diff, no state, no closed versions); its documents are built
//! here from each item's JSON (every value as text, whole values as exact terms, the
//! name, path, port and package fields), about the text the index's own documents hold.
//!
//! Opening read-only: the time `ReadOnlyIndex::open` takes on the finished index (the
//! median of 20 opens), and an open followed by a first query, as `origami search` does.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use origami_index::frame::{Frame, Section};
use origami_index::tokenizer::{OrigamiTokenizer, TOKENIZER_NAME};
use origami_index::{Index, IndexConfig, ReadOnlyIndex, Search, SearchOptions, TantivyIndex};
use origami_testsupport::synth::Fleet;
use serde_json::Value;
use tantivy::schema::{Field, Schema};
use tantivy::TantivyDocument;

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

fn batches(fleet: &Fleet, machines: usize) -> impl Iterator<Item = Vec<Frame>> + '_ {
    (0..machines).step_by(BATCH).map(move |s| {
        (s..(s + BATCH).min(machines))
            .map(|i| fleet.frame(i, 0))
            .collect()
    })
}

/// CPU time of this process so far (all threads), from /proc/self/stat (Linux, 100 Hz).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`: state is field 3; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`: exact, where schedstat only
/// moved at scheduler ticks and read 0 for anything shorter than one).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The raw floor: a plain tantivy index with the schema and tokenizer of an Origami index.
struct RawIndex {
    index: tantivy::Index,
    fields: RawFields,
}

struct RawFields {
    system: Field,
    host: Field,
    os: Field,
    kind: Field,
    key_hash: Field,
    key_hi: Field,
    content_hash: Field,
    valid_from: Field,
    valid_to: Field,
    name: Field,
    path: Field,
    port: Field,
    pkg: Field,
    exact: Field,
    text: Field,
    item: Field,
}

impl RawIndex {
    /// Creates an (empty) Origami index in `dir` for its schema, then opens it with tantivy.
    fn create(dir: &Path) -> RawIndex {
        drop(TantivyIndex::open_or_create(dir).expect("raw index folder"));
        let index = tantivy::Index::open_in_dir(dir).expect("raw index");
        index
            .tokenizers()
            .register(TOKENIZER_NAME, OrigamiTokenizer::default());
        let schema: Schema = index.schema();
        let f = |name: &str| schema.get_field(name).expect(name);
        let fields = RawFields {
            system: f("system"),
            host: f("host"),
            os: f("os"),
            kind: f("kind"),
            key_hash: f("key_hash"),
            key_hi: f("key_hi"),
            content_hash: f("content_hash"),
            valid_from: f("valid_from"),
            valid_to: f("valid_to"),
            name: f("name"),
            path: f("path"),
            port: f("port"),
            pkg: f("pkg"),
            exact: f("exact"),
            text: f("text"),
            item: f("item"),
        };
        RawIndex { index, fields }
    }

    /// One document per item of `frame`.
    fn documents(&self, frame: &Frame) -> Vec<TantivyDocument> {
        let f = &self.fields;
        let host = frame
            .meta
            .hostname
            .as_deref()
            .unwrap_or(frame.system())
            .to_lowercase();
        let os = frame.os.id.as_deref().unwrap_or("unknown").to_lowercase();
        let ts = frame.meta.timestamp.unix_timestamp_nanos().max(0) as u64;
        let mut out = Vec::with_capacity(frame.item_count());
        let mut items: Vec<(Section, String, String)> = Vec::with_capacity(frame.item_count());
        fn push<T: origami_index::frame::Item>(
            v: &mut Vec<(Section, String, String)>,
            items: &[T],
        ) {
            for x in items {
                let json = serde_json::to_string(x).unwrap_or_default();
                v.push((T::SECTION, x.key(), json));
            }
        }
        if !frame.os.is_empty() {
            push(&mut items, std::slice::from_ref(&frame.os));
        }
        push(&mut items, &frame.file);
        push(&mut items, &frame.config);
        push(&mut items, &frame.package);
        push(&mut items, &frame.user);
        push(&mut items, &frame.process);
        push(&mut items, &frame.connection);
        push(&mut items, &frame.module);
        for (section, key, json) in items {
            let mut d = TantivyDocument::new();
            d.add_text(f.system, frame.system());
            d.add_text(f.host, &host);
            d.add_text(f.os, &os);
            d.add_text(f.kind, section.name());
            let mut kb = Vec::with_capacity(key.len() + 16);
            kb.extend_from_slice(section.name().as_bytes());
            kb.push(0);
            kb.extend_from_slice(key.as_bytes());
            let id = xxhash_rust::xxh3::xxh3_128(&kb);
            d.add_u64(f.key_hash, id as u64);
            d.add_u64(f.key_hi, (id >> 64) as u64);
            d.add_u64(f.content_hash, xxhash_rust::xxh3::xxh3_64(json.as_bytes()));
            d.add_u64(f.valid_from, ts);
            d.add_u64(f.valid_to, u64::MAX);
            let v: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
            let mut text = String::with_capacity(json.len());
            if let Value::Object(m) = &v {
                for (k, val) in m {
                    match (k.as_str(), val) {
                        ("name", Value::String(s)) => d.add_text(f.name, s.to_lowercase()),
                        ("path", Value::String(s)) => {
                            d.add_text(f.path, s.to_lowercase());
                            let base = s.rsplit('/').find(|p| !p.is_empty()).unwrap_or(s);
                            d.add_text(f.name, base.to_lowercase());
                        }
                        ("local_port" | "remote_port", Value::Number(n)) => {
                            d.add_text(f.port, n.to_string())
                        }
                        _ => {}
                    }
                    if section == Section::Package && k == "name" {
                        if let Value::String(s) = val {
                            d.add_text(f.pkg, s.to_lowercase());
                        }
                    }
                    leaf_text(val, &mut text, &mut |s| {
                        if !s.is_empty() && s.len() <= 64 {
                            d.add_text(f.exact, s.to_lowercase());
                        }
                    });
                }
            }
            d.add_text(f.text, &text);
            d.add_text(f.item, &json);
            out.push(d);
        }
        out
    }
}

/// Every leaf of `v` as text (strings, numbers), each string also handed to `exact`.
fn leaf_text(v: &Value, text: &mut String, exact: &mut dyn FnMut(&str)) {
    match v {
        Value::String(s) => {
            text.push(' ');
            text.push_str(s);
            exact(s);
        }
        Value::Number(n) => {
            text.push(' ');
            text.push_str(&n.to_string());
        }
        Value::Array(a) => a.iter().for_each(|x| leaf_text(x, text, exact)),
        Value::Object(o) => o.values().for_each(|x| leaf_text(x, text, exact)),
        Value::Bool(_) | Value::Null => {}
    }
}

fn main() {
    // `cargo test --benches` runs bench binaries without `--bench`: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let machines = env_usize("ORIGAMI_BENCH_MACHINES", 100);
    let items = env_usize("ORIGAMI_BENCH_ITEMS", 20_000);
    let raw_machines = env_usize("ORIGAMI_BENCH_RAW_MACHINES", machines.min(100));
    let root = std::env::var("ORIGAMI_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/origami-bench"));
    let fleet = Fleet::new(machines, items);
    let config = IndexConfig {
        commit_interval: None,
        ..IndexConfig::default()
    };
    println!(
        "# origami-index benchmark: {machines} machines x ~{items} items, writer {} threads / {} MiB",
        config.writer_threads,
        config.writer_memory >> 20
    );

    // Raw tantivy floor.
    let raw_dir = root.join(format!("raw-{raw_machines}"));
    let _ = std::fs::remove_dir_all(&raw_dir);
    let raw = RawIndex::create(&raw_dir);
    let mut w: tantivy::IndexWriter = raw
        .index
        .writer_with_num_threads(config.writer_threads, config.writer_memory)
        .expect("writer");
    w.set_merge_policy(config.merge_policy());
    let (mut raw_time, mut raw_items, mut raw_cpu) = (Duration::ZERO, 0u64, Duration::ZERO);
    for batch in batches(&fleet, raw_machines) {
        let t = Instant::now();
        let c = cpu_time();
        for f in &batch {
            for d in raw.documents(f) {
                w.add_document(d).expect("add");
                raw_items += 1;
            }
        }
        w.commit().expect("commit");
        raw_time += t.elapsed();
        raw_cpu += cpu_time().saturating_sub(c);
    }
    drop(w);
    let raw_rate = raw_items as f64 / raw_time.as_secs_f64();
    let raw_size = dir_size(&raw_dir);
    let _ = std::fs::remove_dir_all(&raw_dir);
    eprintln!("raw: {raw_items} items in {raw_time:?}");

    // Origami ingest.
    let dir = root.join(format!("origami-{machines}"));
    // ORIGAMI_BENCH_REUSE: query an index a previous run kept (ORIGAMI_BENCH_KEEP).
    let reuse = std::env::var("ORIGAMI_BENCH_REUSE").is_ok() && dir.exists();
    if !reuse {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let index = TantivyIndex::open_or_create_with(&dir, &config).expect("index");
    let (mut time, mut n_items, mut n_frames, mut cpu) =
        (Duration::ZERO, 0u64, 0u64, Duration::ZERO);
    for (b, batch) in batches(&fleet, if reuse { 0 } else { machines }).enumerate() {
        let t = Instant::now();
        let c = cpu_time();
        for f in &batch {
            n_items += index.add_frame(f).expect("add_frame").items;
            n_frames += 1;
        }
        index.commit().expect("commit");
        time += t.elapsed();
        cpu += cpu_time().saturating_sub(c);
        if b % 4 == 3 {
            eprintln!(
                "{n_frames} machines, {n_items} items, {:.0} items/s",
                n_items as f64 / time.as_secs_f64()
            );
        }
    }
    let rate = n_items as f64 / time.as_secs_f64();
    let size = dir_size(&dir);
    let per_frame = time / n_frames.max(1) as u32;

    // Re-indexing: an unchanged frame (later timestamp), then a changed one (next epoch).
    let mut same = fleet.frame(0, 0);
    same.meta.timestamp += time::Duration::minutes(30);
    let t = Instant::now();
    let c = thread_cpu();
    let st_same = index.add_frame(&same).expect("re-add");
    let same_add = t.elapsed();
    let same_cpu = thread_cpu().saturating_sub(c);
    let t = Instant::now();
    index.commit().expect("commit");
    let same_commit = t.elapsed();
    let next = fleet.frame(1, 1);
    let t = Instant::now();
    let st_next = index.add_frame(&next).expect("add next");
    let next_add = t.elapsed();
    index.commit().expect("commit");

    // Query mix.
    let as_of = (fleet.start + time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let queries = vec![
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
    ];
    let opts = SearchOptions::default();
    let rounds = env_usize("ORIGAMI_BENCH_ROUNDS", 20);
    for q in &queries {
        let _ = index.search(q, &opts).expect("warm-up");
    }
    let (mut all, mut all_cpu) = (Vec::new(), Vec::new());
    let mut per_query = Vec::new();
    for q in &queries {
        let (mut lat, mut lat_cpu) = (Vec::new(), Vec::new());
        let mut hits = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            let c = thread_cpu();
            let r = index.search(q, &opts).expect("search");
            lat_cpu.push(thread_cpu().saturating_sub(c));
            lat.push(t.elapsed());
            hits = r.total_hits;
        }
        lat.sort();
        lat_cpu.sort();
        per_query.push((
            q.clone(),
            hits,
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&lat_cpu, 0.5),
            pct(&lat_cpu, 0.99),
        ));
        all.extend(lat);
        all_cpu.extend(lat_cpu);
    }
    all.sort();
    all_cpu.sort();

    // Opening read-only, as `origami search` does, while the writer holds the folder.
    let mut opens = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let ro = ReadOnlyIndex::open(&dir).expect("open read-only");
        opens.push(t.elapsed());
        drop(ro);
    }
    opens.sort();
    let t = Instant::now();
    let ro = ReadOnlyIndex::open(&dir).expect("open read-only");
    let found = ro.search(&queries[1], &opts).expect("search").total_hits;
    let open_search = t.elapsed();
    drop(ro);

    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| machines / items indexed | {n_frames} / {n_items} |");
    println!(
        "| origami ingest | {rate:.0} items/s ({:.1} s) |",
        time.as_secs_f64()
    );
    println!(
        "| raw tantivy ingest, same docs ({raw_machines} machines) | {raw_rate:.0} items/s ({:.1} s, {:.1} MiB) |",
        raw_time.as_secs_f64(),
        raw_size as f64 / 1048576.0
    );
    println!("| origami / raw | {:.0}% |", 100.0 * rate / raw_rate);
    println!(
        "| CPU time: origami / raw (items per CPU-second) | {:.0} / {:.0} |",
        n_items as f64 / cpu.as_secs_f64(),
        raw_items as f64 / raw_cpu.as_secs_f64()
    );
    println!(
        "| load average at the end | {} |",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "| index size on disk | {:.1} MiB ({:.0} B/item) |",
        size as f64 / 1048576.0,
        size as f64 / n_items.max(1) as f64
    );
    let per_frame_cpu = cpu / n_frames.max(1) as u32;
    println!(
        "| first indexing, per frame (batch average): wall / CPU | {:.1} ms / {:.1} ms |",
        ms(per_frame),
        ms(per_frame_cpu)
    );
    println!(
        "| re-index unchanged frame, CPU of add_frame | {:.2} ms ({:.2}% of first indexing CPU) |",
        ms(same_cpu),
        100.0 * same_cpu.as_secs_f64() / per_frame_cpu.as_secs_f64()
    );
    println!(
        "| re-index unchanged frame: add_frame / + commit | {:.2} ms ({:.2}% of first) / {:.1} ms; {} docs written |",
        ms(same_add),
        100.0 * same_add.as_secs_f64() / per_frame.as_secs_f64(),
        ms(same_add + same_commit),
        st_same.docs_written
    );
    println!(
        "| re-index next epoch (+{} ~{} -{}) add_frame | {:.1} ms; {} docs written |",
        st_next.added,
        st_next.changed,
        st_next.removed,
        ms(next_add),
        st_next.docs_written
    );
    println!(
        "| query mix p50 / p99 ({} queries x {rounds}), wall | {:.2} ms / {:.2} ms |",
        queries.len(),
        ms(pct(&all, 0.5)),
        ms(pct(&all, 0.99))
    );
    println!(
        "| query mix p50 / p99, CPU time of the searching thread | {:.2} ms / {:.2} ms |",
        ms(pct(&all_cpu, 0.5)),
        ms(pct(&all_cpu, 0.99))
    );
    println!(
        "| open read-only: median / max of 20; open + first query (`{}`, {found} items) | {:.2} ms / {:.2} ms; {:.2} ms |",
        queries[1],
        ms(pct(&opens, 0.5)),
        ms(pct(&opens, 1.0)),
        ms(open_search)
    );
    println!();
    println!("| query | items matched | p50 ms | p99 ms | CPU p50 ms | CPU p99 ms |");
    println!("|---|---|---|---|---|---|");
    for (q, hits, p50, p99, c50, c99) in per_query {
        println!(
            "| `{q}` | {hits} | {:.2} | {:.2} | {:.2} | {:.2} |",
            ms(p50),
            ms(p99),
            ms(c50),
            ms(c99)
        );
    }
    if std::env::var("ORIGAMI_BENCH_KEEP").is_err() && !reuse {
        drop(index);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
