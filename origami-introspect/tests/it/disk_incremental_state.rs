//! Crawl states on the fixture Debian disk, no guest needed: a second crawl of an unchanged disk
//! reads no directory and no file again and gives the same frame; a state that is foreign,
//! corrupt (cut short, bytes flipped, a huge length) or of another file system means a
//! full crawl with a note, never a panic, and no events.

use origami_core::dirty::DirtyMap;
use origami_introspect::frame::Frame;
use origami_introspect::incremental::{self, ChangeSource, CrawlState};
use origami_introspect::{CrawlOptions, Crawler, Target};

fn crawler() -> Crawler {
    Crawler::new(CrawlOptions::builder().hash_files(true).build().unwrap())
}

fn comparable(frame: &Frame) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&frame.to_json()).unwrap();
    let meta = v["_frame"].as_object_mut().unwrap();
    for k in ["timestamp", "duration_ms", "timings"] {
        meta.remove(k);
    }
    v
}

#[test]
fn an_unchanged_disk_is_read_from_the_state() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let crawler = crawler();
    for image in ["debian/rootfs.ext4", "debian/disk-gpt.qcow2"] {
        let target = Target::disk(fx.path(image));
        let full = crawler.crawl(&target).unwrap();
        let first = incremental::crawl(&crawler, &target, None, &[]).unwrap();
        assert_eq!(comparable(&first.frame), comparable(&full), "{image}");
        assert!(first
            .report
            .volumes
            .iter()
            .all(|v| v.source == Some(ChangeSource::Full)));
        let again = incremental::crawl(&crawler, &target, Some(&first.state), &[]).unwrap();
        assert_eq!(comparable(&again.frame), comparable(&full), "{image}");
        assert!(again.events.is_empty(), "{image}: {:?}", again.events);
        assert!(again.report.events);
        // Nothing changed: every ext4 directory's items carried over.
        assert!(again.report.file_patched, "{image}: {:?}", again.report);
        assert!(
            again.report.file_items_carried > 20 * again.report.file_items_made,
            "{image}: {:?}",
            again.report
        );
        for v in &again.report.volumes {
            assert_eq!(v.source, Some(ChangeSource::Digests), "{image}");
            assert_eq!((v.inodes_changed, v.dirs_read), (0, 0), "{image}: {v:?}");
            // Every inode-table block read, none changed: no inode digested on its own.
            assert!(v.table_blocks_read > 0, "{image}: {v:?}");
            assert_eq!(v.inodes_scanned, 0, "{image}: {v:?}");
            // Files only ever read in part (a config file past its bound, a prefix such as
            // an ELF header) are not kept whole, so they are read again: two on the Debian
            // root. Files the first crawl read whole by path (os-release, dpkg's status),
            // before its walk knew their inodes, are kept too (four were read again when
            // they were not).
            assert!(v.files_read <= 2, "{image}: {v:?}");
            assert!(v.cache_hits > 0);
        }
        // A dirty map that marks nothing: not one inode read.
        let len = origami_core::ReadAt::len(&origami_core::Image::open(fx.path(image)).unwrap());
        let clean = DirtyMap::clean(len, 65536).unwrap();
        let mapped =
            incremental::crawl(&crawler, &target, Some(&again.state), &[Some(clean)]).unwrap();
        assert_eq!(comparable(&mapped.frame), comparable(&full), "{image}");
        for v in &mapped.report.volumes {
            assert_eq!(v.source, Some(ChangeSource::DirtyMap));
            assert_eq!(
                (v.table_blocks_read, v.inodes_scanned),
                (0, 0),
                "{image}: {v:?}"
            );
        }
        // The state survives its file.
        let dir = std::env::temp_dir().join(format!("origami-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        again.state.save(&path).unwrap();
        assert_eq!(CrawlState::load(&path).unwrap(), again.state);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Bad state bytes: each is refused with a note, and the crawl is a full one.
#[test]
fn foreign_and_corrupt_states_mean_a_full_crawl() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let crawler = crawler();
    let target = Target::disk(fx.path("debian/rootfs.ext4"));
    let good = incremental::crawl(&crawler, &target, None, &[])
        .unwrap()
        .state
        .to_bytes();
    let mut bad: Vec<(&str, Vec<u8>)> = vec![
        ("foreign", b"{\"volumes\": []}\n".to_vec()),
        ("empty", Vec::new()),
        ("truncated header", good[..40].to_vec()),
        ("truncated payload", good[..good.len() - 7].to_vec()),
    ];
    let mut version = good.clone();
    version[16] = 9;
    bad.push(("another version", version));
    let mut huge = good.clone();
    huge[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
    bad.push(("huge length", huge));
    for at in [20, 40, 64, 100, good.len() / 2, good.len() - 1] {
        let mut flipped = good.clone();
        flipped[at] ^= 0x10;
        bad.push(("flipped", flipped));
    }
    let dir = std::env::temp_dir().join(format!("origami-badstate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let full = comparable(&crawler.crawl(&target).unwrap());
    for (what, bytes) in bad {
        let path = dir.join("state");
        std::fs::write(&path, &bytes).unwrap();
        let (state, note) = incremental::load_state(&path);
        assert!(state.is_none(), "{what}");
        let note = note.unwrap();
        assert!(
            note.contains("full crawl") && note.contains("state"),
            "{what}: {note}"
        );
        let r = incremental::crawl(&crawler, &target, state.as_ref(), &[]).unwrap();
        assert_eq!(comparable(&r.frame), full, "{what}");
        assert!(r.events.is_empty());
    }
    let (none, note) = incremental::load_state(&dir.join("missing"));
    assert!(none.is_none() && note.unwrap().contains("no crawl state"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_state_of_another_file_system_means_a_full_crawl() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let crawler = crawler();
    // Another guest's root file system (a demo fleet disk: Debian too, another ext4).
    let zst = include_bytes!("../../../examples/demo-fleet/web-02.img.zst");
    let bytes: Vec<u8> = zstd::stream::decode_all(&zst[..]).unwrap();
    let web02 = Target::disk_reader("web-02.img", std::sync::Arc::new(bytes));
    let other = incremental::crawl(&crawler, &web02, None, &[]).unwrap();
    assert!(!other.state.volumes.is_empty());
    let target = Target::disk(fx.path("debian/rootfs.ext4"));
    let r = incremental::crawl(&crawler, &target, Some(&other.state), &[]).unwrap();
    assert_eq!(
        comparable(&r.frame),
        comparable(&crawler.crawl(&target).unwrap())
    );
    assert!(r.events.is_empty() && !r.report.events, "{:?}", r.report);
    assert!(
        r.report
            .notes
            .iter()
            .any(|n| n.contains("holds nothing of ext4")),
        "{:?}",
        r.report.notes
    );
    assert!(r
        .report
        .volumes
        .iter()
        .all(|v| v.source == Some(ChangeSource::Full)));
    // The same UUID with another geometry (a state edited, or a file system re-made).
    let mut state = incremental::crawl(&crawler, &target, None, &[])
        .unwrap()
        .state;
    std::sync::Arc::make_mut(&mut state.volumes[0]).blocks += 1;
    let r = incremental::crawl(&crawler, &target, Some(&state), &[]).unwrap();
    assert!(r
        .report
        .notes
        .iter()
        .any(|n| n.contains("another geometry")));
    assert!(r
        .report
        .volumes
        .iter()
        .all(|v| v.source == Some(ChangeSource::Full)));
    assert_eq!(
        comparable(&r.frame),
        comparable(&crawler.crawl(&target).unwrap())
    );
}
