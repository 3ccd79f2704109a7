//! One writer, any number of readers: a read-only handle searches while the writer holds
//! the folder and follows its commits; the writer commits only when told or when its
//! near-real-time interval has passed; frames of one system added before a commit close
//! each other's versions as committed ones would. Expectations come from the synthetic
//! frames themselves (origami-frame's diff).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use origami_index::frame::{Frame, Item, Section};
use origami_index::{
    Error, Index, IndexConfig, ReadOnlyIndex, Search, SearchOptions, TantivyIndex,
};
use origami_testsupport::synth::Fleet;
use time::OffsetDateTime;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("origami-readers-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn all() -> SearchOptions {
    SearchOptions {
        limit: 1000,
        hits_per_machine: 100_000,
        ..SearchOptions::default()
    }
}

fn config(commit_interval: Option<Duration>) -> IndexConfig {
    IndexConfig {
        writer_threads: 1,
        writer_memory: 64 << 20,
        commit_interval,
        ..IndexConfig::default()
    }
}

/// The systems a search for every OS item finds.
fn systems_found(index: &dyn Search) -> BTreeSet<String> {
    index
        .search("type:os", &all())
        .unwrap()
        .machines
        .into_iter()
        .map(|m| m.system)
        .collect()
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

#[test]
fn a_reader_searches_while_the_writer_holds_the_folder_and_follows_its_commits() {
    let dir = scratch("follow");
    let fleet = Fleet::new(3, 500);
    assert!(matches!(
        ReadOnlyIndex::open(&dir),
        Err(Error::NoIndex { .. })
    ));
    let writer = TantivyIndex::open_or_create_with(&dir, &config(None)).unwrap();
    let (a, b, c) = (fleet.frame(0, 0), fleet.frame(1, 0), fleet.frame(2, 0));
    writer.add_frame(&a).unwrap();
    writer.commit().unwrap();
    // A second writer is refused: the writer holds the folder.
    assert!(TantivyIndex::open_or_create(&dir).is_err());

    let reader = ReadOnlyIndex::open(&dir).unwrap();
    assert_eq!(systems_found(&reader), set(&[fleet.system(0)]));
    let procs = reader
        .search(&format!("system:{} type:process", a.system()), &all())
        .unwrap();
    let got: BTreeSet<String> = procs.machines[0]
        .hits
        .iter()
        .map(|h| h.key.clone())
        .collect();
    let want: BTreeSet<String> = a.process.iter().map(|p| p.key()).collect();
    assert_eq!(got, want);
    assert_eq!(reader.history(a.system()).unwrap().len(), 1);
    let ts: Vec<(String, OffsetDateTime)> = reader.systems().unwrap();
    assert_eq!(ts, vec![(fleet.system(0), a.meta.timestamp)]);

    // Added, not committed: not seen, even after a reload.
    writer.add_frame(&b).unwrap();
    reader.reload().unwrap();
    assert_eq!(systems_found(&reader), set(&[fleet.system(0)]));
    // Committed: seen after a reload.
    writer.commit().unwrap();
    reader.reload().unwrap();
    assert_eq!(
        systems_found(&reader),
        set(&[fleet.system(0), fleet.system(1)])
    );
    assert_eq!(reader.num_docs(), writer.num_docs());

    // And on its own shortly after a commit lands (tantivy watches meta.json).
    writer.add_frame(&c).unwrap();
    writer.commit().unwrap();
    let started = Instant::now();
    while !systems_found(&reader).contains(&fleet.system(2)) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the reader never reloaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop((reader, writer));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn add_frame_commits_only_when_the_interval_has_passed() {
    let fleet = Fleet::new(3, 300);
    let (a, b) = (fleet.frame(0, 0), fleet.frame(1, 0));

    // A long interval: two frames wait for the commit.
    let dir = scratch("interval-long");
    let writer =
        TantivyIndex::open_or_create_with(&dir, &config(Some(Duration::from_secs(3600)))).unwrap();
    let reader = ReadOnlyIndex::open(&dir).unwrap();
    writer.add_frame(&a).unwrap();
    writer.add_frame(&b).unwrap();
    assert_eq!(writer.uncommitted_frames().unwrap(), 2);
    assert!(!writer.commit_due().unwrap());
    reader.reload().unwrap();
    assert!(systems_found(&reader).is_empty());
    writer.commit().unwrap();
    reader.reload().unwrap();
    assert_eq!(
        systems_found(&reader),
        set(&[fleet.system(0), fleet.system(1)])
    );
    drop((reader, writer));
    let _ = std::fs::remove_dir_all(&dir);

    // No interval to wait: each add commits the frames that were waiting, not its own.
    let dir = scratch("interval-zero");
    let writer = TantivyIndex::open_or_create_with(&dir, &config(Some(Duration::ZERO))).unwrap();
    let reader = ReadOnlyIndex::open(&dir).unwrap();
    writer.add_frame(&a).unwrap();
    assert_eq!(writer.uncommitted_frames().unwrap(), 1);
    writer.add_frame(&b).unwrap();
    assert_eq!(writer.uncommitted_frames().unwrap(), 1);
    reader.reload().unwrap();
    assert_eq!(systems_found(&reader), set(&[fleet.system(0)]));
    // A caller whose frames stopped arriving commits from a timer.
    assert!(writer.commit_due().unwrap());
    assert_eq!(writer.uncommitted_frames().unwrap(), 0);
    assert!(!writer.commit_due().unwrap());
    reader.reload().unwrap();
    assert_eq!(
        systems_found(&reader),
        set(&[fleet.system(0), fleet.system(1)])
    );
    drop((reader, writer));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The added / changed / removed counts of origami-frame's diff of two frames.
fn diff_counts(new: &Frame, old: &Frame) -> (u64, u64, u64) {
    let d = new.diff(old);
    let sum = |g: fn(origami_index::frame::DiffCounts) -> usize| {
        Section::ALL.iter().map(|s| g(d.counts(*s))).sum::<usize>() as u64
    };
    (sum(|c| c.added), sum(|c| c.changed), sum(|c| c.removed))
}

#[test]
fn frames_of_a_system_added_before_a_commit_close_each_others_versions() {
    let fleet = Fleet::new(2, 1200);
    let mut frames: Vec<Frame> = (0..4).map(|e| fleet.frame(1, e)).collect();
    // The last frame takes the first one's content again: versions closed and reopened.
    frames[3] = Frame {
        meta: frames[3].meta.clone(),
        ..frames[0].clone()
    };
    let sys = frames[0].system().to_string();
    // One index commits after each frame, the other once after all of them.
    let each = TantivyIndex::in_ram().unwrap();
    let dir = scratch("batched");
    let batched = TantivyIndex::open_or_create_with(&dir, &config(None)).unwrap();
    for (k, f) in frames.iter().enumerate() {
        let s1 = each.add_frame(f).unwrap();
        each.commit().unwrap();
        let s2 = batched.add_frame(f).unwrap();
        assert_eq!(s1, s2, "frame {k}");
        if k > 0 {
            assert_eq!(
                (s2.added, s2.changed, s2.removed),
                diff_counts(f, &frames[k - 1]),
                "frame {k}"
            );
        }
    }
    assert_eq!(batched.uncommitted_frames().unwrap(), 4);
    batched.commit().unwrap();
    assert_eq!(batched.num_docs(), each.num_docs());

    for index in [&each as &dyn Search, &batched] {
        // The state at each frame's time is that frame.
        for f in &frames {
            let opts = SearchOptions {
                as_of: Some(f.meta.timestamp),
                ..all()
            };
            let r = index
                .search(&format!("system:{sys} type:package"), &opts)
                .unwrap();
            let got: BTreeSet<String> = r.machines[0].hits.iter().map(|h| h.key.clone()).collect();
            let want: BTreeSet<String> = f.package.iter().map(|p| p.key()).collect();
            assert_eq!(got, want);
            let r = index.search(&format!("system:{sys}"), &opts).unwrap();
            assert_eq!(r.total_hits, f.item_count() as u64);
        }
        for w in frames.windows(2) {
            let got = index
                .changes(&sys, w[0].meta.timestamp, w[1].meta.timestamp)
                .unwrap();
            let want = w[1].diff(&w[0]);
            assert_eq!(got.process.keys(), want.process.keys());
            assert_eq!(got.file.keys(), want.file.keys());
            assert_eq!(got.package, want.package);
            assert_eq!(got.config, want.config);
        }
        assert_eq!(index.history(&sys).unwrap().len(), frames.len());
    }
    drop(batched);
    let _ = std::fs::remove_dir_all(&dir);
}
