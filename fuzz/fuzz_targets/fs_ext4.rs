//! A patched ext4 image (1 KiB blocks, journal, metadata_csum, htree, extents, inline and
//! block symlinks, a sparse file; or the same tree with inline_data; see
//! templates/make-templates.sh) opened by origami's
//! ext4 (the vendored ext4-view under origami's guards) and crawled: errors, never a
//! crash, an unbounded allocation or a hang. Checksums are verified in one run out of two
//! (otherwise every patched block would fail its checksum first); bits 1-2 of the first byte
//! pick the inline_data template or the one with a journal to replay.
#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use origami_introspect::fs::{Ext4Fs, Ext4Options};

mod fs_common;

static TEMPLATE: &[u8] = include_bytes!("../templates/ext4.img");
static INLINE: &[u8] = include_bytes!("../templates/ext4-inline.img");
static JOURNAL: &[u8] = include_bytes!("../templates/ext4-journal.img");

fuzz_target!(|data: &[u8]| {
    fs_common::quiet_panics();
    let flags = data.first().copied().unwrap_or(0);
    let verify = flags & 1 == 1;
    let template = match (flags >> 1) & 3 {
        1 => INLINE,
        2 => JOURNAL,
        _ => TEMPLATE,
    };
    let img = fs_common::patched(template, data.get(1..).unwrap_or_default());
    let options = Ext4Options {
        verify_checksums: verify,
    };
    if let Ok(fs) = Ext4Fs::open_with(Arc::new(img), options) {
        fs_common::exercise(Box::new(fs));
    }
});
