//! The PostgreSQL backend against the tantivy backend, on real PostgreSQL servers started by
//! the test (`origami_testsupport::postgres`): the same frames indexed into both must give
//! the same machines, the same items and the same facet counts for every query; hostile
//! queries are plain text; a server that goes away loses no committed frame.
//!
//! The reference is the tantivy index, itself tested against ground truth in `search.rs`.

use std::collections::BTreeSet;

use origami_index::frame::{Connection, Frame, Process, User};
use origami_index::postgres::PgOptions;
use origami_index::{Index, PostgresIndex, Search, SearchOptions, SearchResults, TantivyIndex};
use origami_testsupport::postgres::PgCluster;
use origami_testsupport::synth::Fleet;
use time::OffsetDateTime;

/// A frame whose items carry strings built to break out of SQL.
fn hostile_frame(at: OffsetDateTime) -> Frame {
    let mut f = Frame::new("hostile-01");
    f.meta.timestamp = at;
    f.meta.hostname = Some("hostile-01.example.com".into());
    for (pid, name) in [
        (1, "x'; DROP TABLE origami_items; --"),
        (2, "$$ LANGUAGE plpgsql $$"),
        (3, "back\\slash"),
        (4, "nul\0byte"),
        (5, "100%_done"),
        (6, "it's"),
    ] {
        f.process.push(Process {
            pid,
            name: name.into(),
            cmdline: vec![name.into(), "--flag".into()],
            ..Default::default()
        });
    }
    // The account of uid 0 here, so that the processes and the connection carry it too.
    f.user.push(User {
        name: "O'Brien%_\\x".into(),
        uid: 0,
        home: "/root".into(),
        shell: "/bin/sh".into(),
        ..Default::default()
    });
    f.connection.push(Connection {
        protocol: "tcp".into(),
        local_address: "10.9.9.9".into(),
        local_port: 5432,
        remote_address: "10.20.30.40".into(),
        remote_port: 40000,
        state: "ESTABLISHED".into(),
        pid: Some(1),
        ..Default::default()
    });
    f
}

/// The frames both backends get: a synthetic fleet at three epochs (changes between them),
/// plus the hostile frame.
fn frames() -> (Fleet, Vec<Frame>) {
    let fleet = Fleet::new(12, 400);
    let mut out = Vec::new();
    for epoch in 0..3 {
        for i in 0..fleet.machines {
            out.push(fleet.frame(i, epoch));
        }
    }
    out.push(hostile_frame(fleet.start + time::Duration::minutes(30)));
    (fleet, out)
}

fn opts(now: OffsetDateTime) -> SearchOptions {
    SearchOptions {
        limit: 10_000,
        hits_per_machine: 100_000,
        facet_limit: 100_000,
        now: Some(now),
        ..SearchOptions::default()
    }
}

/// What must agree: machines with their match counts, every matching item, facets.
#[derive(Debug, PartialEq)]
struct Answer {
    machines: BTreeSet<(String, String, String, u64)>,
    items: BTreeSet<(String, String, String, i128, Option<i128>)>,
    total_hits: u64,
    facets: Vec<Vec<(String, u64)>>,
}

fn answer(r: &SearchResults) -> Answer {
    let mut items = BTreeSet::new();
    for m in &r.machines {
        for h in &m.hits {
            items.insert((
                m.system.clone(),
                h.kind.name().to_string(),
                h.key.clone(),
                h.valid_from.unix_timestamp_nanos(),
                h.valid_to.map(|t| t.unix_timestamp_nanos()),
            ));
        }
    }
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
        items,
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

/// The differential queries (the fleet's own names and addresses, see `synth.rs`).
fn queries(fleet: &Fleet) -> Vec<String> {
    let ip0 = fleet.address(0);
    let ip3 = fleet.address(3);
    let h1 = fleet.hostname(1);
    let s2 = fleet.system(2);
    let t1 = (fleet.start + time::Duration::minutes(90))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let t0 = (fleet.start + time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut q: Vec<String> = [
        ip0.as_str(),
        ip3.as_str(),
        "10.20.30.40",
        "nginx",
        "postgres",
        "sshd",
        "name:sshd",
        "name:nginx port:443",
        "port:5432",
        "port:22",
        "port:53",
        "type:process",
        "type:connection",
        "type:package",
        "type:user",
        "type:module",
        "type:config",
        "type:os",
        "type:file",
        "pkg:openssl",
        "pkg:open*",
        "pkg:lib*",
        "user:root",
        "user:postgres",
        "os:debian",
        "os:ubuntu",
        "os:debian type:os",
        "path:/etc/passwd",
        "path:/etc/*",
        "path:/usr/bin/*",
        "/etc/hosts",
        "\"listen 80\"",
        "\"server_name\"",
        "ESTABLISHED",
        "state established",
        "nginx OR postgres",
        "name:nginx OR name:redis-server",
        "type:process -name:sshd",
        "type:package -pkg:lib*",
        "-type:file -type:package -type:module",
        "ngin*",
        "10.1.*",
        "ssh?",
        "web-*",
        "host:web-*",
        "(nginx OR haproxy) type:process",
        "type:connection port:5432 -state:established",
        "changed:2h",
        "changed:90m type:package",
        "changed:30m",
        "type:connection changed:2h",
        "x'; DROP TABLE origami_items; --",
        "$$",
        "back\\slash",
        "\"it's\"",
        "100%_done",
        "name:\"100%_done\"",
        "key:1",
        "10.9.9.9:5432",
        // Port and user facets and filters.
        "port:443 OR port:80",
        "port:5*",
        "type:connection -port:22",
        "user:postgres type:connection",
        "user:root -type:file",
        "user:*o*",
        "type:process OR type:connection",
        "user:\"o'brien%_\\x\"",
        "user:o'brien*",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    q.push(format!("host:{h1}"));
    q.push(format!("system:{s2}"));
    q.push(format!("system:{s2} type:package"));
    q.push(format!("as_of:{t0} type:package"));
    q.push(format!("as_of:{t1} type:connection"));
    q.push(format!("as_of:{t1} {ip0}"));
    q.push(format!("{ip0} OR {ip3}"));
    q
}

fn load(idx: &dyn Index, frames: &[Frame]) {
    for f in frames {
        idx.add_frame(f).unwrap();
    }
    idx.commit().unwrap();
}

fn compare(t: &dyn Search, p: &dyn Search, qs: &[String], now: OffsetDateTime) -> usize {
    let mut nonempty = 0;
    for q in qs {
        let a = t.search(q, &opts(now));
        let b = p.search(q, &opts(now));
        match (a, b) {
            (Ok(a), Ok(b)) => {
                let (a, b) = (answer(&a), answer(&b));
                if !a.items.is_empty() {
                    nonempty += 1;
                }
                if a != b {
                    let only_t: Vec<_> = a.items.difference(&b.items).take(5).collect();
                    let only_p: Vec<_> = b.items.difference(&a.items).take(5).collect();
                    panic!(
                        "query `{q}` differs: tantivy {} items / pg {} items\nonly tantivy: \
                         {only_t:?}\nonly pg: {only_p:?}\nmachines t {:?}\nmachines p {:?}\n\
                         facets t {:?}\nfacets p {:?}",
                        a.items.len(),
                        b.items.len(),
                        a.machines,
                        b.machines,
                        a.facets,
                        b.facets
                    );
                }
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "query `{q}`"),
            (a, b) => panic!(
                "query `{q}`: tantivy {:?} vs pg {:?}",
                a.map(|_| ()),
                b.map(|_| ())
            ),
        }
    }
    nonempty
}

#[test]
fn postgres_answers_as_tantivy_does() {
    let Some(pg) = PgCluster::start() else { return };
    let (fleet, frames) = frames();
    let t = TantivyIndex::in_ram().unwrap();
    load(&t, &frames);
    let p = PostgresIndex::open(&pg.url()).unwrap();
    load(&p, &frames);
    // The same versions: re-adding the last epoch writes nothing in either.
    let again = fleet.frame(0, 3);
    let st = t.add_frame(&again).unwrap();
    let sp = p.add_frame(&again).unwrap();
    assert_eq!(
        st.added + st.changed + st.removed,
        sp.added + sp.changed + sp.removed
    );
    let unchanged = p.add_frame(&fleet.frame(1, 2)).unwrap();
    assert!(unchanged.stale, "an older frame is stale");
    t.commit().unwrap();
    p.commit().unwrap();
    // The same number of versions (tantivy's documents are versions plus frame records).
    assert_eq!(
        p.num_versions().unwrap() + frames.len() as u64 + 1,
        t.num_docs(),
        "versions"
    );

    let now = fleet.start + time::Duration::hours(3);
    let qs = queries(&fleet);
    assert!(qs.len() >= 50, "{} queries", qs.len());
    let nonempty = compare(&t, &p, &qs, now);
    assert!(nonempty >= 40, "only {nonempty} queries matched anything");

    // History and changes agree too.
    for i in 0..fleet.machines {
        let s = fleet.system(i);
        let (ht, hp) = (t.history(&s).unwrap(), p.history(&s).unwrap());
        assert_eq!(ht, hp, "history of {s}");
        let (a, b) = (fleet.start, fleet.start + time::Duration::hours(3));
        let (ct, cp) = (t.changes(&s, a, b).unwrap(), p.changes(&s, a, b).unwrap());
        assert_eq!(
            serde_json::to_string(&ct).unwrap(),
            serde_json::to_string(&cp).unwrap(),
            "changes of {s}"
        );
    }
    // The hostile strings were stored and found as plain text, and the table survived.
    let r = p
        .search("\"x'; DROP TABLE origami_items; --\"", &opts(now))
        .unwrap();
    assert_eq!(r.machines.len(), 1, "{r:?}");
    assert_eq!(r.machines[0].system, "hostile-01");
    let r = p.search("name:\"nul\0byte\"", &opts(now)).unwrap();
    let rt = t.search("name:\"nul\0byte\"", &opts(now)).unwrap();
    assert_eq!(answer(&r), answer(&rt));
    assert!(p.num_versions().unwrap() > 0);
}

#[test]
fn a_server_that_goes_away_loses_no_committed_frame() {
    let Some(pg) = PgCluster::start() else { return };
    let fleet = Fleet::new(3, 200);
    let p = PostgresIndex::open_with(
        &pg.url(),
        &PgOptions {
            commit_interval: None,
            ..PgOptions::default()
        },
    )
    .unwrap();
    for i in 0..3 {
        p.add_frame(&fleet.frame(i, 0)).unwrap();
    }
    p.commit().unwrap();
    // Uncommitted: epoch 1 of machine 0; then the server dies.
    p.add_frame(&fleet.frame(0, 1)).unwrap();
    pg.stop();
    let err = p.add_frame(&fleet.frame(1, 1)).and_then(|_| p.commit());
    assert!(err.is_err(), "a write to a stopped server fails");
    assert!(p.search("type:process", &SearchOptions::default()).is_err());
    pg.start_server();
    // Reconnected: the committed frames are all there, the uncommitted one is not.
    for i in 0..3 {
        let h = p.history(&fleet.system(i)).unwrap();
        assert_eq!(h.len(), 1, "machine {i}: {h:?}");
    }
    // And writing goes on: epoch 1 again, for every machine.
    for i in 0..3 {
        let s = p.add_frame(&fleet.frame(i, 1)).unwrap();
        assert!(!s.stale);
    }
    p.commit().unwrap();
    for i in 0..3 {
        assert_eq!(p.history(&fleet.system(i)).unwrap().len(), 2);
    }
    // The same state as a tantivy index given the same committed frames.
    let t = TantivyIndex::in_ram().unwrap();
    for e in 0..2 {
        for i in 0..3 {
            t.add_frame(&fleet.frame(i, e)).unwrap();
        }
    }
    t.commit().unwrap();
    let now = fleet.start + time::Duration::hours(2);
    let qs: Vec<String> = ["type:package", "type:process", "changed:2h", "sshd"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    compare(&t, &p, &qs, now);
}

#[test]
fn two_shards_answer_as_tantivy_does() {
    let Some(coord) = PgCluster::start() else {
        return;
    };
    let Some(shard) = PgCluster::start() else {
        return;
    };
    let (fleet, frames) = frames();
    let t = TantivyIndex::in_ram().unwrap();
    load(&t, &frames);
    // Partitions 1 and 3 of 4 live on the second server, as postgres_fdw foreign tables.
    let p = PostgresIndex::create_sharded(
        &coord.url(),
        &shard.url(),
        4,
        &[1, 3],
        &PgOptions::default(),
    )
    .unwrap();
    load(&p, &frames);
    let count = |url: &str, table: &str| -> i64 {
        let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
        c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap()
            .get(0)
    };
    // The rows are split between the servers: local partitions on the coordinator, the
    // remote ones on the shard (read there directly, not through the coordinator).
    let local = count(&coord.url(), "origami_items_p0") + count(&coord.url(), "origami_items_p2");
    let remote = count(&shard.url(), "origami_items_p1") + count(&shard.url(), "origami_items_p3");
    assert!(local > 0 && remote > 0, "local {local}, remote {remote}");
    assert_eq!((local + remote) as u64, p.num_versions().unwrap());
    let now = fleet.start + time::Duration::hours(3);
    let qs = queries(&fleet);
    let nonempty = compare(&t, &p, &qs, now);
    assert!(nonempty >= 40, "only {nonempty} queries matched anything");
}

#[test]
fn the_citus_form_is_valid_sql_for_plain_postgres() {
    let Some(pg) = PgCluster::start() else { return };
    // The Citus layout is the same schema unpartitioned; without Citus installed, the
    // statements that distribute it are checked to parse (PREPARE parses and analyses a
    // statement without running it, and fails only on the missing function).
    let _p = PostgresIndex::open_with(
        &pg.url(),
        &PgOptions {
            layout: origami_index::postgres::Layout::Citus,
            ..PgOptions::default()
        },
    )
    .unwrap();
    let mut c = postgres::Client::connect(&pg.url(), postgres::NoTls).unwrap();
    for stmt in origami_index::postgres::CITUS_DISTRIBUTE.split(';') {
        let stmt = stmt.trim();
        if stmt.is_empty() {
            continue;
        }
        let err = c
            .batch_execute(&format!("PREPARE s AS {stmt}"))
            .unwrap_err();
        let msg = err
            .as_db_error()
            .map(|e| e.message().to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("create_distributed_table") && msg.contains("does not exist"),
            "{stmt}: {msg}"
        );
    }
}
