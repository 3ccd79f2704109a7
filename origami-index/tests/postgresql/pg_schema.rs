//! The PostgreSQL backend's schema and writers, on real servers: migrations applied once at
//! open even when many writers open a fresh database together, a newer schema refused, a
//! read-only open that changes nothing, the layout of an existing database kept, and two
//! writers crossing over the same machines in opposite orders without a deadlock or a lost
//! version.

use std::collections::BTreeMap;
use std::sync::Arc;

use origami_index::frame::Frame;
use origami_index::postgres::{Layout, PgOptions, SCHEMA_VERSION};
use origami_index::{Error, Index, PostgresIndex, Search, TantivyIndex};
use origami_testsupport::postgres::PgCluster;
use origami_testsupport::synth::Fleet;

#[test]
fn migrations_run_once_and_a_newer_schema_is_refused() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.create_db("fresh");
    // A read-only open of an empty database is "no index", and creates nothing.
    assert!(matches!(
        PostgresIndex::open_read_only(&url),
        Err(Error::NoIndex { .. })
    ));
    assert_eq!(
        pg.psql("fresh", "SELECT to_regclass('origami_schema') IS NULL"),
        "t"
    );
    // Eight writers open the fresh database at once: one schema, one version row.
    let opened: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PostgresIndex::open(&url).map(|_| ()))
        })
        .collect();
    for t in opened {
        t.join().unwrap().unwrap();
    }
    assert_eq!(
        pg.psql("fresh", "SELECT count(*), max(version) FROM origami_schema"),
        format!("1|{SCHEMA_VERSION}")
    );
    assert_eq!(
        pg.psql(
            "fresh",
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'origami_items'::regclass"
        ),
        "4"
    );
    // Frames written survive a re-open, which keeps the layout the database has.
    let fleet = Fleet::new(2, 50);
    let p = PostgresIndex::open(&url).unwrap();
    p.add_frame(&fleet.frame(0, 0)).unwrap();
    p.commit().unwrap();
    drop(p);
    let p = PostgresIndex::open_with(
        &url,
        &PgOptions {
            layout: Layout::Local { partitions: 16 },
            ..PgOptions::default()
        },
    )
    .unwrap();
    assert_eq!(p.history(&fleet.system(0)).unwrap().len(), 1);
    assert_eq!(
        pg.psql(
            "fresh",
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'origami_items'::regclass"
        ),
        "4"
    );
    let r = PostgresIndex::open_read_only(&url).unwrap();
    assert_eq!(r.history(&fleet.system(0)).unwrap().len(), 1);
    // A database written by a newer origami is refused by writers and readers alike.
    pg.psql(
        "fresh",
        &format!("UPDATE origami_schema SET version = {}", SCHEMA_VERSION + 1),
    );
    for e in [
        PostgresIndex::open(&url).unwrap_err(),
        PostgresIndex::open_read_only(&url).unwrap_err(),
    ] {
        let m = e.to_string();
        assert!(
            m.contains(&format!("version {}", SCHEMA_VERSION + 1)),
            "{m}"
        );
    }
}

#[test]
fn two_writers_crossing_over_the_same_machines_neither_deadlock_nor_lose_a_version() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.url();
    let fleet = Arc::new(Fleet::new(4, 120));
    PostgresIndex::open(&url).unwrap();
    // Writer 0 sends machines 0,1,2,3 per epoch, writer 1 sends 3,2,1,0; neither commits
    // until its end, so each holds the locks of the machines it wrote: the crossing that
    // deadlocks two writers waiting for each other.
    let writers: Vec<_> = (0..2u32)
        .map(|w| {
            let (url, fleet) = (url.clone(), Arc::clone(&fleet));
            std::thread::spawn(move || {
                let p = PostgresIndex::open_with(
                    &url,
                    &PgOptions {
                        commit_interval: None,
                        ..PgOptions::default()
                    },
                )
                .unwrap();
                let mut sent = Vec::new();
                for epoch in 0..3u32 {
                    for k in 0..fleet.machines {
                        let i = if w == 0 { k } else { fleet.machines - 1 - k };
                        let mut f = fleet.frame(i, epoch);
                        // Distinct times per writer (writer 1 a second later).
                        f.meta.timestamp += time::Duration::seconds(i64::from(w));
                        p.add_frame(&f).unwrap();
                        sent.push(f);
                    }
                }
                p.commit().unwrap();
                sent
            })
        })
        .collect();
    let mut sent: BTreeMap<(String, i128), Frame> = BTreeMap::new();
    for w in writers {
        for f in w.join().unwrap() {
            sent.insert(
                (
                    f.system().to_string(),
                    f.meta.timestamp.unix_timestamp_nanos(),
                ),
                f,
            );
        }
    }
    let p = PostgresIndex::open_read_only(&url).unwrap();
    let mut kept = Vec::new();
    for i in 0..fleet.machines {
        let s = fleet.system(i);
        let h = p.history(&s).unwrap();
        let times: Vec<i128> = h
            .iter()
            .map(|v| v.timestamp.unix_timestamp_nanos())
            .collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{s}: {times:?}");
        // The latest epoch's later frame always wins; every kept frame was sent once.
        for t in &times {
            kept.push(
                sent.get(&(s.clone(), *t))
                    .expect("a frame nobody sent")
                    .clone(),
            );
        }
        let newest = sent.keys().filter(|(x, _)| *x == s).map(|(_, t)| *t).max();
        assert_eq!(
            times.last().copied(),
            newest,
            "{s}: the newest frame is kept"
        );
    }
    kept.sort_by_key(|f| f.meta.timestamp);
    let t = TantivyIndex::in_ram().unwrap();
    for f in &kept {
        t.add_frame(f).unwrap();
    }
    t.commit().unwrap();
    assert_eq!(p.num_versions().unwrap() + kept.len() as u64, t.num_docs());
    for i in 0..fleet.machines {
        let s = fleet.system(i);
        assert_eq!(t.history(&s).unwrap(), p.history(&s).unwrap(), "{s}");
    }
}
