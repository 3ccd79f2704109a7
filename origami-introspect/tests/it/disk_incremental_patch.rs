//! The rules under which an incremental crawl carries the previous `file` section's items
//! over instead of walking the tree, each broken on purpose with `debugfs -w` on a copy of
//! the fixture's root file system: the incremental frame must still be the full crawl's
//! (every section, field by field).
//!
//! - two directories of one parent swap names (`debugfs` links and unlinks: neither
//!   directory's inode changes, so both listings stay clean, but each path now names the
//!   other inode: carrying a block by path alone would give the other directory's items);
//! - a walk bound (`max_entries`) met only after the change: the section must be the
//!   plain walk's, with its error;
//! - a state whose section was cut by that bound is never patched;
//! - an entry's inode changes (chmod, chown, a new size) while its directory's blocks do
//!   not: the directory is listed from its previous listing with that entry's `lstat`
//!   read again (taking the previous one would keep the old mode, owner and size).

use std::path::{Path, PathBuf};
use std::process::Command;

use origami_introspect::frame::Frame;
use origami_introspect::incremental;
use origami_introspect::{CrawlOptions, Crawler, Limits, Target};

fn comparable(frame: &Frame) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&frame.to_json()).unwrap();
    let meta = v["_frame"].as_object_mut().unwrap();
    for k in ["timestamp", "duration_ms", "timings"] {
        meta.remove(k);
    }
    v
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("origami-patch-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn debugfs(image: &Path, script: &str) {
    let cmds = image.with_extension("debugfs");
    std::fs::write(&cmds, script).unwrap();
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&cmds)
        .arg(image)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // debugfs reports a failed command on stderr and still exits 0.
    let failed = err
        .lines()
        .any(|l| !l.starts_with("debugfs ") && !l.trim().is_empty());
    assert!(out.status.success() && !failed, "debugfs: {err}");
}

fn hashing(limits: Option<Limits>) -> Crawler {
    let mut b = CrawlOptions::builder().hash_files(true);
    if let Some(l) = limits {
        b = b.limits(l);
    }
    Crawler::new(b.build().unwrap())
}

#[test]
fn swapped_directories_are_listed_again() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    if !origami_testsupport::require_program("debugfs") {
        return;
    }
    let dir = scratch("swap");
    let image = dir.join("rootfs.ext4");
    std::fs::copy(fx.path("debian/rootfs.ext4"), &image).unwrap();
    let crawler = hashing(None);
    let target = Target::disk(&image);
    let first = incremental::crawl(&crawler, &target, None, &[]).unwrap();
    assert!(first.state.files_complete);
    // Two directories of /usr/share/doc, both with entries, trade names.
    let (a, b) = ("/usr/share/doc/apt", "/usr/share/doc/dpkg");
    let names = |p: &str| -> Vec<String> {
        let mut v: Vec<String> = first
            .frame
            .file
            .iter()
            .filter(|f| f.path.starts_with(&format!("{p}/")))
            .map(|f| f.path[p.len()..].to_string())
            .collect();
        v.sort();
        v
    };
    assert!(!names(a).is_empty() && names(a) != names(b));
    debugfs(
        &image,
        &format!("ln {a} /swap-tmp\nunlink {a}\nln {b} {a}\nunlink {b}\nln /swap-tmp {b}\nunlink /swap-tmp\n"),
    );
    let full = crawler.crawl(&target).unwrap();
    let moved: Vec<String> = full
        .file
        .iter()
        .filter(|f| f.path.starts_with(&format!("{a}/")))
        .map(|f| f.path[a.len()..].to_string())
        .collect();
    let mut moved_sorted = moved.clone();
    moved_sorted.sort();
    assert_eq!(moved_sorted, names(b), "the swap took place");
    let again = incremental::crawl(&crawler, &target, Some(&first.state), &[]).unwrap();
    assert!(again.report.file_patched, "{:?}", again.report);
    assert!(again.report.file_items_carried > 1000, "{:?}", again.report);
    assert_eq!(comparable(&again.frame), comparable(&full));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_walk_bound_met_after_the_change_is_the_plain_walks() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    if !origami_testsupport::require_program("debugfs") {
        return;
    }
    let dir = scratch("bound");
    let image = dir.join("rootfs.ext4");
    std::fs::copy(fx.path("debian/rootfs.ext4"), &image).unwrap();
    let target = Target::disk(&image);
    let count = hashing(None).crawl(&target).unwrap().file.len() as u64;
    // Room for exactly one more entry.
    let mut limits = Limits::DEFAULT;
    limits.walk.max_entries = count + 1;
    let crawler = hashing(Some(limits));
    let first = incremental::crawl(&crawler, &target, None, &[]).unwrap();
    assert_eq!(first.frame.file.len() as u64, count);
    assert!(first.state.files_complete, "{:?}", first.frame.meta.errors);
    debugfs(&image, "mkdir /srv/bound-a\nmkdir /srv/bound-b\n");
    let full = crawler.crawl(&target).unwrap();
    assert!(
        full.meta
            .errors
            .iter()
            .any(|e| e.message.contains("entries walked")),
        "{:?}",
        full.meta.errors
    );
    let again = incremental::crawl(&crawler, &target, Some(&first.state), &[]).unwrap();
    assert!(!again.report.file_patched, "{:?}", again.report);
    assert!(!again.state.files_complete);
    assert_eq!(comparable(&again.frame), comparable(&full));
    // The state of a cut section is never patched, even with nothing changed.
    let third = incremental::crawl(&crawler, &target, Some(&again.state), &[]).unwrap();
    assert!(!third.report.file_patched, "{:?}", third.report);
    assert_eq!(comparable(&third.frame), comparable(&full));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_changed_entry_in_an_unchanged_directory_is_stat_again() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    if !origami_testsupport::require_program("debugfs") {
        return;
    }
    let dir = scratch("entry");
    let image = dir.join("rootfs.ext4");
    std::fs::copy(fx.path("debian/rootfs.ext4"), &image).unwrap();
    let crawler = hashing(None);
    let target = Target::disk(&image);
    let first = incremental::crawl(&crawler, &target, None, &[]).unwrap();
    // Inode fields only: no directory block is written.
    debugfs(
        &image,
        "set_inode_field /etc/hostname mode 0100600\n\
         set_inode_field /etc/hostname uid 4321\n\
         set_inode_field /etc/debian_version size 3\n",
    );
    let full = crawler.crawl(&target).unwrap();
    let item = |f: &Frame, p: &str| f.file.iter().find(|i| i.path == p).cloned().unwrap();
    let hostname = item(&full, "/etc/hostname");
    assert_eq!((hostname.mode, hostname.uid), (0o600, 4321));
    assert_eq!(item(&full, "/etc/debian_version").size, 3);
    let r = incremental::crawl(&crawler, &target, Some(&first.state), &[]).unwrap();
    assert_eq!(comparable(&r.frame), comparable(&full));
    let v = &r.report.volumes[0];
    assert!(v.dirs_patched >= 1 && v.dirs_read == 0, "{v:?}");
    assert_eq!(r.events.len(), 2, "{:?}", r.events);
    let _ = std::fs::remove_dir_all(&dir);
}
