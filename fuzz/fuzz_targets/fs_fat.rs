//! A patched FAT12 image (long names, nested directories; see
//! templates/make-templates.sh) opened by origami's FAT (fatfs, read-only, under origami's
//! guards) and crawled: errors, never a crash, an unbounded allocation or a hang.
#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use origami_introspect::fs::FatFs;

mod fs_common;

static TEMPLATE: &[u8] = include_bytes!("../templates/fat12.img");

fuzz_target!(|data: &[u8]| {
    fs_common::quiet_panics();
    let img = fs_common::patched(TEMPLATE, data);
    if let Ok(fs) = FatFs::open(Arc::new(img)) {
        fs_common::exercise(Box::new(fs));
    }
});
