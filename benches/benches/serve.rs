//! The `origami serve` benchmark (issue 14): in one run, side by side,
//! - the search API's server time (p50 / p99) on a synthetic fleet's index while the
//!   writer ingests: as with `origami serve FLEET.toml`, the index's one writer serves the
//!   searches; a writer thread adds the next frame of each machine in turn (the synthetic
//!   fleet's next epoch) with near-real-time commits (at least one a second), while
//!   `/api/search?q=` requests of the index benchmark's query mix go through the server's
//!   own handler (`App::handle`: parsing the parameters, the search, the JSON), timed from
//!   the request to the response body; the same requests are also sent over HTTP to the
//!   running server (loopback round trip, for context);
//! - opening the index read-only (`ReadOnlyIndex::open`, as `origami search` and `serve`
//!   without a manifest do; median and worst of 20);
//! - the resident memory of `origami serve --index DIR` (the binary, read-only, beside no
//!   writer) after it answered the fleet page, `/api/machines` and the query mix: `VmRSS`
//!   and its peak `VmHWM`.
//!
//! Run: `nice -n 10 cargo bench -p origami-benches --bench serve` with
//! `ORIGAMI_BENCH_MACHINES` (default 1000), `ORIGAMI_BENCH_ITEMS` (items per machine,
//! default 2000; the index benchmark's 20,000 builds for a long time),
//! `ORIGAMI_BENCH_ROUNDS` (requests per query, default 20), `ORIGAMI_BENCH_DIR` (default
//! `target/origami-bench`). An index of the same size a previous run built is reused (it
//! grows by the frames the ingest added). The `origami` binary is taken from the same
//! target folder (`cargo build --release -p origami-examples` first); without it the RSS
//! row says so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use origami_examples::serve::http::{Method, Request};
use origami_examples::serve::{Access, App, ServedIndex};
use origami_index::{Index, IndexConfig, ReadOnlyIndex, TantivyIndex};
use origami_testsupport::synth::Fleet;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

/// `%`-encodes a query parameter's value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn api_request(q: &str) -> Request {
    Request {
        method: Method::Get,
        path: "/api/search".into(),
        query: vec![("q".into(), q.into())],
        headers: vec![("host".into(), "127.0.0.1".into())],
        body: Vec::new(),
    }
}

/// One HTTP/1.1 GET over a new connection; the status and the body's length.
fn http_get(addr: SocketAddr, target: &str) -> (u16, usize) {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    (status, body)
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The `origami` binary beside this bench's (`target/release/deps/serve-*` ->
/// `target/release/origami`).
fn origami_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("origami");
    p.exists().then_some(p)
}

fn main() {
    // `cargo test --benches` runs bench binaries without `--bench`: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let machines = env_usize("ORIGAMI_BENCH_MACHINES", 1000).max(8);
    let items = env_usize("ORIGAMI_BENCH_ITEMS", 2000);
    let rounds = env_usize("ORIGAMI_BENCH_ROUNDS", 20).max(1);
    let root = std::env::var("ORIGAMI_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/origami-bench"));
    let dir = root.join(format!("serve-{machines}x{items}"));
    let fleet = Fleet::new(machines, items);
    println!("# origami serve benchmark: {machines} machines x ~{items} items");

    // The index: built in bulk once (one commit per 50 machines), reused by later runs.
    let built_marker = dir.join("built");
    if !built_marker.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let bulk = IndexConfig {
            commit_interval: None,
            ..IndexConfig::default()
        };
        let index = TantivyIndex::open_or_create_with(&dir, &bulk).expect("index");
        let t = Instant::now();
        for i in 0..machines {
            index.add_frame(&fleet.frame(i, 0)).expect("add_frame");
            if i % 50 == 49 {
                index.commit().expect("commit");
            }
        }
        index.commit().expect("commit");
        drop(index);
        std::fs::write(&built_marker, b"").expect("marker");
        eprintln!("built the index in {:.1} s", t.elapsed().as_secs_f64());
    }

    // The writer serves, as `serve FLEET.toml` does; near-real-time commits.
    let index = Arc::new(TantivyIndex::open_or_create(&dir).expect("open the index"));
    let served: Arc<dyn ServedIndex> = index.clone();
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let app = Arc::new(App::new(served, Access::Open, addr));
    let listener = std::net::TcpListener::bind(addr).expect("bind");
    let addr = listener.local_addr().expect("addr");
    {
        let app = app.clone();
        std::thread::spawn(move || {
            let _ = origami_examples::serve::http::serve(
                listener,
                Default::default(),
                Arc::new(move |r: &Request| app.handle(r)),
            );
        });
    }

    // The ingest: each machine's next frame in turn, a due commit after each.
    let stop = Arc::new(AtomicBool::new(false));
    let ingested = Arc::new(AtomicU64::new(0));
    let writer = {
        let (index, stop, ingested) = (index.clone(), stop.clone(), ingested.clone());
        let fleet = Fleet::new(machines, items);
        // Epochs past those of earlier runs' ingest (a system's frames come in time order).
        let first_epoch = index
            .systems()
            .ok()
            .and_then(|s| s.iter().map(|(_, t)| *t).max())
            .map_or(1, |newest| {
                ((newest - fleet.start).whole_hours().max(0) as u32).saturating_add(1)
            });
        std::thread::spawn(move || {
            let mut epoch = first_epoch;
            'outer: loop {
                for i in 0..machines {
                    if stop.load(Ordering::SeqCst) {
                        break 'outer;
                    }
                    index.add_frame(&fleet.frame(i, epoch)).expect("add_frame");
                    index.commit_due().expect("commit");
                    ingested.fetch_add(1, Ordering::SeqCst);
                }
                epoch += 1;
            }
            index.commit().expect("commit");
        })
    };

    let queries = [
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
    ];
    // Let the ingest start.
    std::thread::sleep(Duration::from_millis(500));
    let started_at = ingested.load(Ordering::SeqCst);
    let t_all = Instant::now();
    let (mut server, mut round_trip) = (Vec::new(), Vec::new());
    let mut per_query = Vec::new();
    for q in &queries {
        let req = api_request(q);
        let mut lat = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            let r = app.handle(&req);
            lat.push(t.elapsed());
            assert_eq!(r.status, 200, "{q}: {}", String::from_utf8_lossy(&r.body));
            let t = Instant::now();
            let (status, _) = http_get(addr, &format!("/api/search?q={}", enc(q)));
            round_trip.push(t.elapsed());
            assert_eq!(status, 200, "{q}");
        }
        lat.sort();
        per_query.push((q.clone(), pct(&lat, 0.5), pct(&lat, 0.99)));
        server.extend(lat);
    }
    let search_secs = t_all.elapsed().as_secs_f64();
    let frames_meanwhile = ingested.load(Ordering::SeqCst) - started_at;
    server.sort();
    round_trip.sort();

    // Read-only opens beside the writer.
    let mut opens = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let ro = ReadOnlyIndex::open(&dir).expect("open read-only");
        opens.push(t.elapsed());
        drop(ro);
    }
    opens.sort();
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer");
    let systems = index.systems().expect("systems").len();
    drop(app);
    drop(index);

    // RSS of the served binary.
    let rss = origami_binary().map(|bin| {
        let mut child = Command::new(bin)
            .args(["serve", "--index"])
            .arg(&dir)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start origami serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("serving line");
        let a: SocketAddr = line
            .strip_prefix("serving http://")
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("serve did not start: {line:?}"));
        let t = Instant::now();
        let fleet_page = http_get(a, "/machines");
        let fleet_page_time = t.elapsed();
        assert_eq!(fleet_page.0, 200);
        assert_eq!(http_get(a, "/api/machines").0, 200);
        for q in &queries {
            assert_eq!(http_get(a, &format!("/search?q={}", enc(q))).0, 200);
            assert_eq!(http_get(a, &format!("/api/search?q={}", enc(q))).0, 200);
        }
        let r = rss_kib(child.id());
        let _ = child.kill();
        let _ = child.wait();
        (r, fleet_page_time)
    });

    println!();
    println!("| measure | value | goal |");
    println!("| --- | --- | --- |");
    println!(
        "| search API server time p50 / p99 ({} requests, {systems} machines, ingest running) | {:.2} / {:.2} ms | <= 20 / <= 100 ms |",
        server.len(),
        ms(pct(&server, 0.5)),
        ms(pct(&server, 0.99))
    );
    println!(
        "| the same over HTTP (loopback round trip) p50 / p99 | {:.2} / {:.2} ms | |",
        ms(pct(&round_trip, 0.5)),
        ms(pct(&round_trip, 0.99))
    );
    println!(
        "| frames ingested meanwhile | {frames_meanwhile} in {search_secs:.1} s ({:.1} frames/s, ~{items} items each) | |",
        frames_meanwhile as f64 / search_secs.max(1e-9)
    );
    println!(
        "| open read-only, median / worst of 20 | {:.2} / {:.2} ms | <= 50 ms |",
        ms(pct(&opens, 0.5)),
        ms(pct(&opens, 1.0))
    );
    match rss {
        Some(((rss, hwm), fleet_page)) => {
            println!(
                "| RSS of `origami serve` after the fleet page and the query mix (peak) | {:.0} MiB ({:.0} MiB) | <= 1 GiB |",
                rss as f64 / 1024.0,
                hwm as f64 / 1024.0
            );
            println!(
                "| fleet page (`/machines`, {systems} machines), first load | {:.0} ms | |",
                ms(fleet_page)
            );
        }
        None => println!(
            "| RSS of `origami serve` | not measured: build target/release/origami first | <= 1 GiB |"
        ),
    }
    println!();
    println!("| query | server p50 | server p99 |");
    println!("| --- | --- | --- |");
    for (q, p50, p99) in per_query {
        println!("| `{q}` | {:.2} ms | {:.2} ms |", ms(p50), ms(p99));
    }
}
