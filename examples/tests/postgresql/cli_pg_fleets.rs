//! The differential test on real crawls: the demo fleet and the shared fixture fleet (Debian
//! disks in three forms, three memory dumps, a disk with its memory) crawled by `origami
//! crawl-fleet`, then the same frames, at two epochs (the second one changed: packages,
//! processes and a config text edited, one machine gone quiet), indexed into tantivy, into
//! one PostgreSQL server and into two servers sharded with postgres_fdw. At least 50
//! queries (addresses, phrases, filters, wildcards, exclusions, OR, `as_of:`, `changed:`,
//! facets) must return the same machines with the same match counts, the same items
//! (kind, key, valid from/to) and the same facet counts from all three; history and
//! changes agree too. The fixture's ground truth also checks the reference itself.
#![cfg(feature = "postgres")]

use std::collections::BTreeSet;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;

use origami_frame::{Frame, FrameReader};
use origami_index::postgres::PgOptions;
use origami_index::{Index, PostgresIndex, Search, SearchOptions, SearchResults, TantivyIndex};
use origami_testsupport::postgres::PgCluster;
use time::OffsetDateTime;

const IP: &str = "10.20.30.40";

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli_pg_fleets")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The demo machines, plus the fixture guests when the fixtures are there.
fn manifest(dir: &Path) -> String {
    let demo = dir.join("demo");
    origami_examples::demo::unpack(&demo).unwrap();
    let mut text = String::new();
    for (m, file, _) in origami_examples::demo::MACHINES {
        text.push_str(&format!(
            "[[machine]]\nname = \"{m}\"\ndisks = [\"{}\"]\n\n",
            demo.join(file).display()
        ));
    }
    if let Some(fx) = origami_testsupport::fixtures() {
        let p = |rel: &str| fx.path(rel).display().to_string();
        text.push_str(&format!(
            r#"
[[machine]]
name = "deb-qcow2"
disks = ["{gq}"]

[[machine]]
name = "deb-mbr"
disks = ["{mbr}"]

[[machine]]
name = "vm-dump"
memory = "{m1}"

[[machine]]
name = "vm-la57"
memory = "{m3}"

[[machine]]
name = "vm-both"
disks = ["{raw}"]
memory = "{m2}"
"#,
            gq = p("debian/disk-gpt.qcow2"),
            mbr = p("debian/disk-mbr.raw"),
            raw = p("debian/disk-gpt.raw"),
            m1 = p("memdump/memory.elf"),
            m2 = p("memdump-novmcoreinfo/memory.elf"),
            m3 = p("memdump-la57/memory.elf"),
        ));
    }
    text
}

/// Crawls the fleet once with the binary; its frames.
fn crawl(dir: &Path) -> Vec<Frame> {
    let m = dir.join("fleet.toml");
    std::fs::write(&m, manifest(dir)).unwrap();
    let frames = dir.join("frames.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_origami"))
        .arg("crawl-fleet")
        .arg(&m)
        .arg("--index")
        .arg(dir.join("crawl-index"))
        .arg("--frames")
        .arg(&frames)
        .args(["--jobs", "2", "--config", "/home/*/.bash_history"])
        .args([
            "--config",
            "/root/.bash_history",
            "--config",
            "/srv/fixture/*.txt",
        ])
        .args(["--json"])
        .output()
        .unwrap();
    // Exit 3 is expected for the demo's legacy-01 alone (its disk holds no root file
    // system on purpose), and for nothing else.
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("crawl-fleet: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    let legacy_only = v["read_nothing"] == serde_json::json!(["legacy-01"])
        && v["failed"].as_object().is_some_and(|f| f.is_empty());
    assert!(
        out.status.success() || (out.status.code() == Some(3) && legacy_only),
        "crawl-fleet: {v} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    FrameReader::new(BufReader::new(std::fs::File::open(&frames).unwrap()))
        .map(|f| f.unwrap())
        .collect()
}

/// Epoch 0 at `t0`, and epoch 1 an hour later with changes made to real items.
fn epochs(crawled: &[Frame], t0: OffsetDateTime) -> Vec<Frame> {
    let mut out = Vec::new();
    for f in crawled {
        let mut g = f.clone();
        g.meta.timestamp = t0;
        out.push(g);
    }
    for (i, f) in crawled.iter().enumerate() {
        if i % 5 == 4 {
            continue; // this machine sent nothing new
        }
        let mut g = f.clone();
        g.meta.timestamp = t0 + time::Duration::hours(1);
        if !g.package.is_empty() {
            g.package.remove(0);
        }
        if let Some(p) = g.package.first_mut() {
            p.version.push_str("+patched1");
        }
        g.process.truncate(g.process.len().saturating_sub(2));
        if let Some(c) = g.config.iter_mut().find(|c| c.content.contains(IP)) {
            if i % 2 == 0 {
                c.content = c.content.replace(IP, "10.20.30.41");
            }
        }
        if let Some(u) = g.user.first_mut() {
            u.shell = "/bin/zsh".into();
        }
        out.push(g);
    }
    out
}

fn opts(now: OffsetDateTime) -> SearchOptions {
    SearchOptions {
        limit: 10_000,
        hits_per_machine: 1_000_000,
        facet_limit: 100_000,
        now: Some(now),
        ..SearchOptions::default()
    }
}

type Item = (String, String, String, i128, Option<i128>);

#[derive(Debug, PartialEq)]
struct Answer {
    machines: BTreeSet<(String, String, String, u64)>,
    items: BTreeSet<Item>,
    total_hits: u64,
    facets: Vec<Vec<(String, u64)>>,
}

fn answer(r: &SearchResults) -> Answer {
    let sorted = |v: &Vec<(String, u64)>| {
        let mut v = v.clone();
        v.sort();
        v
    };
    Answer {
        machines: r
            .machines
            .iter()
            .map(|m| {
                (
                    m.system.clone(),
                    m.hostname.clone(),
                    m.os.clone(),
                    m.matched,
                )
            })
            .collect(),
        items: r
            .machines
            .iter()
            .flat_map(|m| {
                m.hits.iter().map(|h| {
                    (
                        m.system.clone(),
                        h.kind.name().to_string(),
                        h.key.clone(),
                        h.valid_from.unix_timestamp_nanos(),
                        h.valid_to.map(|t| t.unix_timestamp_nanos()),
                    )
                })
            })
            .collect(),
        total_hits: r.total_hits,
        facets: vec![
            sorted(&r.facets.kind),
            sorted(&r.facets.host),
            sorted(&r.facets.os),
            sorted(&r.facets.package),
            sorted(&r.facets.port),
            sorted(&r.facets.user),
        ],
    }
}

fn queries(frames: &[Frame], t0: OffsetDateTime) -> Vec<String> {
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let mut q: Vec<String> = [
        IP,
        "10.20.30.41",
        "\"10.20.30.40\"",
        "10.20.30.*",
        "vmi-fixture",
        "vmi-fixture-loop",
        "nginx",
        "\"proxy_pass\" OR haproxy",
        "\"listen 80\"",
        "pkg:postgresql*",
        "pkg:openssl",
        "pkg:lib*",
        "pkg:open* -pkg:openssl",
        "type:package name:openssl",
        "type:package",
        "type:process",
        "type:connection",
        "type:module",
        "type:user",
        "type:config",
        "type:os",
        "type:file",
        "type:service",
        "user:alice",
        "user:alice -host:build-*",
        "user:root",
        "user:bob OR user:redis",
        "os:debian",
        "os:debian type:os",
        "path:/etc/hosts",
        "path:/etc/ssh/*",
        "path:/etc/nginx/*",
        "path:/home/*",
        "/etc/hosts",
        "sshd",
        "name:sshd",
        "port:22",
        "port:80 OR port:443",
        "port:5432",
        "type:connection -port:22",
        "type:process -name:kworker*",
        "ssh?",
        "redis*",
        "host:web-*",
        "host:vmi-fixture",
        "zsh",
        "/bin/zsh",
        "patched1",
        "changed:2h",
        "changed:90m type:package",
        "changed:30m type:user",
        "(nginx OR haproxy) type:config",
        "-type:file -type:package -type:module -type:process",
        "x'; DROP TABLE origami_items; --",
        "$$",
        "back\\slash",
        "alice-password",
        // Port and user facets over wider sets.
        "type:process OR type:connection",
        "type:file user:*",
        "port:* type:connection",
        "user:postgres OR user:haproxy",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    q.push(format!(
        "as_of:{} {IP}",
        rfc(t0 + time::Duration::minutes(30))
    ));
    q.push(format!(
        "as_of:{} type:package",
        rfc(t0 + time::Duration::minutes(30))
    ));
    q.push(format!(
        "as_of:{} type:user",
        rfc(t0 - time::Duration::minutes(1))
    ));
    // A few names straight from the frames: packages and processes of the first machines.
    for f in frames.iter().take(3) {
        if let Some(p) = f.package.get(3) {
            q.push(format!("pkg:{}", p.name));
        }
        if let Some(p) = f.process.get(1) {
            q.push(format!("name:\"{}\"", p.name));
        }
    }
    q
}

fn load(idx: &dyn Index, frames: &[Frame]) {
    for f in frames {
        idx.add_frame(f).unwrap();
    }
    idx.commit().unwrap();
}

fn compare(
    name: &str,
    t: &dyn Search,
    p: &dyn Search,
    qs: &[String],
    now: OffsetDateTime,
) -> usize {
    let mut nonempty = 0;
    for q in qs {
        match (t.search(q, &opts(now)), p.search(q, &opts(now))) {
            (Ok(a), Ok(b)) => {
                let (a, b) = (answer(&a), answer(&b));
                if !a.items.is_empty() {
                    nonempty += 1;
                }
                if a != b {
                    let only_t: Vec<_> = a.items.difference(&b.items).take(5).collect();
                    let only_p: Vec<_> = b.items.difference(&a.items).take(5).collect();
                    panic!(
                        "{name}: query `{q}` differs: tantivy {} items / pg {} items\n\
                         only tantivy: {only_t:?}\nonly pg: {only_p:?}\nmachines t {:?}\n\
                         machines p {:?}\nfacets t {:?}\nfacets p {:?}",
                        a.items.len(),
                        b.items.len(),
                        a.machines,
                        b.machines,
                        a.facets,
                        b.facets
                    );
                }
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{name}: `{q}`"),
            (a, b) => panic!(
                "{name}: `{q}`: tantivy {:?} vs pg {:?}",
                a.map(|_| ()),
                b.map(|_| ())
            ),
        }
    }
    nonempty
}

#[test]
fn real_fleets_answer_the_same_from_tantivy_one_server_and_two_shards() {
    let Some(one) = PgCluster::start() else {
        return;
    };
    let Some(coord) = PgCluster::start() else {
        return;
    };
    let Some(shard) = PgCluster::start() else {
        return;
    };
    let dir = scratch("cli-pg-fleets");
    let crawled = crawl(&dir);
    let demo_n = origami_examples::demo::MACHINES.len();
    assert!(crawled.len() >= demo_n, "{} frames", crawled.len());
    let t0 = OffsetDateTime::now_utc() - time::Duration::hours(2);
    let frames = epochs(&crawled, t0);
    let now = t0 + time::Duration::hours(2);

    let t = TantivyIndex::in_ram().unwrap();
    load(&t, &frames);
    let p1 = PostgresIndex::open(&one.url()).unwrap();
    load(&p1, &frames);
    let p2 = PostgresIndex::create_sharded(
        &coord.url(),
        &shard.url(),
        4,
        &[0, 3],
        &PgOptions::default(),
    )
    .unwrap();
    load(&p2, &frames);
    // Both servers of the sharded layout hold rows (counted on each server directly).
    let count = |c: &PgCluster, tables: &[&str]| -> u64 {
        tables
            .iter()
            .map(|t| {
                c.psql("postgres", &format!("SELECT count(*) FROM {t}"))
                    .parse::<u64>()
                    .unwrap()
            })
            .sum()
    };
    let local = count(&coord, &["origami_items_p1", "origami_items_p2"]);
    let remote = count(&shard, &["origami_items_p0", "origami_items_p3"]);
    assert!(local > 0 && remote > 0, "local {local}, remote {remote}");
    assert_eq!(local + remote, p2.num_versions().unwrap());
    assert_eq!(
        p2.num_versions().unwrap(),
        p1.num_versions().unwrap(),
        "the same versions in both layouts"
    );
    assert_eq!(
        p1.num_versions().unwrap() + frames.len() as u64,
        t.num_docs(),
        "the same versions as tantivy"
    );

    // The reference itself against the fixtures' and the demo's ground truth.
    // (As of epoch 0, the crawl as it was: epoch 1 rewrote some of the address's mentions.)
    let as_crawled = SearchOptions {
        as_of: Some(t0 + time::Duration::minutes(30)),
        ..opts(now)
    };
    let r = t.search(IP, &as_crawled).unwrap();
    let got: BTreeSet<String> = r.machines.iter().map(|m| m.system.clone()).collect();
    let fleet: serde_json::Value =
        serde_json::from_str(origami_examples::demo::FLEET_JSON).unwrap();
    for m in fleet["machines"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let mentions = !m["mentions_ip"].as_array().unwrap().is_empty();
        if mentions {
            assert!(got.contains(name), "{name} mentions {IP}: {got:?}");
        } else {
            assert!(!got.contains(name), "{name} does not mention {IP}: {got:?}");
        }
    }
    if crawled.len() > demo_n {
        for m in ["deb-qcow2", "deb-mbr", "vm-both"] {
            assert!(got.contains(m), "{m} mentions {IP}: {got:?}");
        }
    }

    let qs = queries(&crawled, t0);
    assert!(qs.len() >= 50, "{} queries", qs.len());
    let n1 = compare("one server", &t, &p1, &qs, now);
    let n2 = compare("two shards", &t, &p2, &qs, now);
    assert_eq!(n1, n2);
    assert!(
        n1 >= 40,
        "only {n1} of {} queries matched anything",
        qs.len()
    );

    // History and changes of every machine.
    let systems: BTreeSet<String> = frames.iter().map(|f| f.system().to_string()).collect();
    for s in &systems {
        let h = t.history(s).unwrap();
        assert_eq!(h, p1.history(s).unwrap(), "history of {s}");
        assert_eq!(h, p2.history(s).unwrap(), "history of {s} (sharded)");
        let (a, b) = (t0 - time::Duration::minutes(1), now);
        let c = serde_json::to_string(&t.changes(s, a, b).unwrap()).unwrap();
        assert_eq!(
            c,
            serde_json::to_string(&p1.changes(s, a, b).unwrap()).unwrap()
        );
        assert_eq!(
            c,
            serde_json::to_string(&p2.changes(s, a, b).unwrap()).unwrap()
        );
    }
}
