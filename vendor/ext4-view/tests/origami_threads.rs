//! Origami test of `Ext4` shared between threads (with the `std` feature
//! it is `Send + Sync`): threads reading files of one loaded file system
//! at the same time, through one block cache smaller than what they read
//! (so groups are evicted while other threads read), get the bytes that
//! were written into the image by `mkfs.ext4 -d`.

#![cfg(feature = "std")]
#![allow(clippy::arithmetic_side_effects, clippy::as_conversions)]

mod origami_common;

use ext4_view::{DirEntry, Ext4, File, ReadDir};
use origami_common::{TempDir, make_image, mkfs, pseudo_random};

/// The handles are shared or sent between threads.
#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Ext4>();
    send_sync::<File>();
    send_sync::<ReadDir>();
    send_sync::<DirEntry>();
}

#[test]
fn threads_share_one_loaded_file_system() {
    let Some(mkfs) = mkfs() else { return };
    // 24 MiB of files, three times the cache, plus a directory of small
    // ones.
    let mut files: Vec<(String, Vec<u8>)> = (0..24)
        .map(|i| (format!("big/{i}"), pseudo_random(100 + i, 1 << 20)))
        .collect();
    files.extend((0..300).map(|i| {
        (
            format!("small/{i}"),
            pseudo_random(1000 + i, 100 + i as usize),
        )
    }));
    let named: Vec<(&str, Vec<u8>)> =
        files.iter().map(|(n, c)| (n.as_str(), c.clone())).collect();
    let dir = TempDir::new("threads");
    let image = make_image(&mkfs, &dir, 4096, 64 * 1024, &named);
    let fs = Ext4::load(Box::new(image)).unwrap();

    std::thread::scope(|s| {
        for t in 0..4 {
            let fs = &fs;
            let files = &files;
            s.spawn(move || {
                // Each thread starts at a different file and goes round
                // twice, so that the threads read different groups at
                // the same time.
                for k in 0..2 * files.len() {
                    let (name, truth) = &files[(k + t * 37) % files.len()];
                    let got = fs.read(format!("/{name}").as_str()).unwrap();
                    assert!(got == *truth, "thread {t}: /{name} differs");
                }
                // Listing through a handle moved to this thread.
                let clone = fs.clone();
                let names = clone
                    .read_dir("/small")
                    .unwrap()
                    .map(|e| {
                        e.unwrap().file_name().as_str().unwrap().to_owned()
                    })
                    .filter(|n| n != "." && n != "..")
                    .count();
                assert_eq!(names, 300);
            });
        }
    });
}
