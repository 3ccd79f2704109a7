//! A frame that fails half-way: the index and the writer's state are as they were, and the
//! next frame of the system is diffed against the last good one (expectations from
//! origami-frame's own diff of the synthetic frames).

use std::collections::BTreeSet;

use origami_frame::{Item, Section};
use origami_testsupport::synth::Fleet;

use super::*;

/// The added / changed / removed counts of origami-frame's diff of two frames.
fn diff_counts(new: &Frame, old: &Frame) -> (u64, u64, u64) {
    let d = new.diff(old);
    let sum = |g: fn(origami_frame::DiffCounts) -> usize| {
        Section::ALL.iter().map(|s| g(d.counts(*s))).sum::<usize>() as u64
    };
    (sum(|c| c.added), sum(|c| c.changed), sum(|c| c.removed))
}

fn all() -> SearchOptions {
    SearchOptions {
        limit: 1000,
        hits_per_machine: 100_000,
        ..SearchOptions::default()
    }
}

#[test]
fn index_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<TantivyIndex>();
    check::<crate::ReadOnlyIndex>();
}

#[test]
fn a_frame_that_fails_half_way_leaves_the_index_and_the_state_as_they_were() {
    let fleet = Fleet::new(3, 600);
    let (a, b, c) = (fleet.frame(1, 0), fleet.frame(1, 1), fleet.frame(1, 2));
    let other = fleet.frame(0, 0);
    let sys = a.system().to_string();
    for fault in [Fault::BeforeWrites, Fault::AfterDocs(5)] {
        let index = TantivyIndex::in_ram().unwrap();
        index.add_frame(&a).unwrap();
        index.commit().unwrap();
        let docs = index.num_docs();
        // Another system's frame waits for the commit when the failing frame comes.
        index.add_frame(&other).unwrap();
        index.inject(fault);
        let err = index.add_frame(&b).unwrap_err();
        let other_kept = match (fault, &err) {
            (Fault::BeforeWrites, Error::Corrupt { .. }) => true,
            // The writer cannot commit what it was given since the last commit.
            (Fault::AfterDocs(_), Error::RolledBack { frames: 2, .. }) => false,
            _ => panic!("{fault:?}: unexpected error {err}"),
        };
        let systems = index.systems().unwrap();
        let a_ts = systems.iter().find(|(s, _)| *s == sys).unwrap().1;
        assert_eq!(a_ts, a.meta.timestamp, "{fault:?}");
        index.commit().unwrap();
        let other_docs = u64::from(other_kept) * (other.item_count() as u64 + 1);
        assert_eq!(
            index.num_docs(),
            docs + other_docs,
            "{fault:?}: nothing of b"
        );
        assert_eq!(index.history(&sys).unwrap().len(), 1, "{fault:?}");

        // The next frame is diffed against the last good one, a.
        let st = index.add_frame(&c).unwrap();
        assert_eq!(
            (st.added, st.changed, st.removed),
            diff_counts(&c, &a),
            "{fault:?}"
        );
        index.commit().unwrap();
        let r = index
            .search(&format!("system:{sys} type:process"), &all())
            .unwrap();
        let got: BTreeSet<String> = r.machines[0].hits.iter().map(|h| h.key.clone()).collect();
        let want: BTreeSet<String> = c.process.iter().map(|p| p.key()).collect();
        assert_eq!(got, want, "{fault:?}");
        let changes = index
            .changes(&sys, a.meta.timestamp, c.meta.timestamp)
            .unwrap();
        let d = c.diff(&a);
        assert_eq!(changes.process.keys(), d.process.keys(), "{fault:?}");
        assert_eq!(changes.package, d.package, "{fault:?}");
        let h = index.history(&sys).unwrap();
        let times: Vec<_> = h.iter().map(|v| v.timestamp).collect();
        assert_eq!(times, vec![a.meta.timestamp, c.meta.timestamp], "{fault:?}");
        // The other system is there exactly when its frame was not rolled back.
        let r = index
            .search(&format!("system:{} type:os", other.system()), &all())
            .unwrap();
        assert_eq!(r.total_hits, u64::from(other_kept), "{fault:?}");
    }
}

#[test]
fn keys_that_share_the_indexed_half_of_their_id_stay_apart() {
    // 3 bits of the indexed half: every key shares its term with an eighth of all keys, as
    // keys a guest computed to collide on 64 bits would; the whole 128-bit id tells them
    // apart.
    crate::schema::LO_BITS.set(3);
    let fleet = Fleet::new(2, 400);
    let frames: Vec<Frame> = (0..3).map(|e| fleet.frame(1, e)).collect();
    let sys = frames[0].system().to_string();
    let index = TantivyIndex::in_ram().unwrap();
    let mut prev: Option<&Frame> = None;
    for (k, f) in frames.iter().enumerate() {
        let st = index.add_frame(f).unwrap();
        // The second frame is closed before any commit, the third after one.
        if k != 0 {
            index.commit().unwrap();
        }
        let want = match prev {
            Some(p) => diff_counts(f, p),
            None => (f.item_count() as u64, 0, 0),
        };
        assert_eq!((st.added, st.changed, st.removed), want, "frame {k}");
        assert_eq!(st.duplicates, 0, "frame {k}");
        prev = Some(f);
    }
    let last = &frames[2];
    let r = index.search(&format!("system:{sys}"), &all()).unwrap();
    assert_eq!(r.total_hits, last.item_count() as u64);
    for p in last.process.iter().take(20) {
        let r = index
            .search(&format!("system:{sys} key:{}", p.key()), &all())
            .unwrap();
        let keys: Vec<_> = r.machines[0].hits.iter().map(|h| h.key.clone()).collect();
        assert!(keys.iter().all(|k| *k == p.key()), "{keys:?}");
        assert!(!keys.is_empty());
    }
    let got = index
        .changes(&sys, frames[0].meta.timestamp, last.meta.timestamp)
        .unwrap();
    let want = last.diff(&frames[0]);
    assert_eq!(got.process.keys(), want.process.keys());
    assert_eq!(got.file.keys(), want.file.keys());
    assert_eq!(got.package, want.package);
    crate::schema::LO_BITS.set(64);
}
