//! The seam through which a crawl lets a caller wrap each file system it opens (the
//! incremental crawl's cache in front of ext4 volumes), kept out of `crawler.rs`.

use std::sync::Arc;

use origami_core::ReadAt;

use origami_frame::FileItem;

use crate::disk::file::FileOptions;
use crate::error::Error;
use crate::fs::{FileSystem, GuestTree};

/// What a crawl may do with each file system it opens before the guest's tree is
/// assembled from them, and with the tree once assembled: the seam through which an
/// incremental crawl ([`crate::incremental`]) puts its cache in front of ext4 volumes. The
/// default does nothing.
pub(crate) trait VolumeHook: Sync {
    /// The file system to use for `fs`, opened on `source`, which lies at byte `offset` of
    /// disk `disk` (`None` for a logical volume, which has no one offset).
    fn wrap(
        &self,
        fs: Box<dyn FileSystem>,
        source: &Arc<dyn ReadAt>,
        disk: usize,
        offset: Option<u64>,
    ) -> Box<dyn FileSystem> {
        let _ = (source, disk, offset);
        fs
    }
    /// Sees the assembled tree (its mounts) before the sections run.
    fn assembled(&self, tree: &GuestTree) {
        let _ = tree;
    }
    /// Makes the `file` section of `tree` (the default walks it,
    /// [`crate::disk::file::crawl`]); an incremental crawl patches the previous one.
    fn file_section(&self, tree: &GuestTree, options: &FileOptions) -> (Vec<FileItem>, Vec<Error>) {
        crate::disk::file::crawl(tree, options)
    }
}

/// The hook of a plain crawl.
pub(crate) struct NoHook;
impl VolumeHook for NoHook {}

#[cfg(test)]
mod tests {
    //! A qcow2 file written while a crawl reads it (a running VM's disk read directly):
    //! the crawl is refused, not returned mixed from two states.
    use super::*;
    use crate::{CrawlOptions, Crawler, Target};

    /// A hook that runs `qemu-io` on the image once the tree is assembled (mid-crawl).
    struct Writer(std::path::PathBuf, &'static str);
    impl VolumeHook for Writer {
        fn assembled(&self, _tree: &GuestTree) {
            let out = std::process::Command::new("qemu-io")
                .args(["-f", "qcow2", "-c", self.1])
                .arg(&self.0)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
    }

    #[test]
    fn a_qcow2_written_during_the_crawl_is_refused() {
        let Some(fx) = origami_testsupport::fixtures() else {
            return;
        };
        if !origami_testsupport::require_program("qemu-io") {
            return;
        }
        let dir = std::env::temp_dir().join(format!("origami-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("live.qcow2");
        std::fs::copy(fx.path("debian/disk-gpt-compressed.qcow2"), &image).unwrap();
        let crawler = Crawler::new(CrawlOptions::default());
        let target = Target::disk(&image);
        // Nobody writing (qemu-io only reads): the frame comes back.
        let quiet = Writer(image.clone(), "read 0 64k");
        let frame = crawler.crawl_hooked(&target, &quiet).unwrap();
        assert!(!frame.file.is_empty(), "{:?}", frame.meta.errors);
        // The first cluster (the partition table, read by the crawl) discarded: its L2
        // entry changes under the reader.
        let writer = Writer(image.clone(), "discard 0 64k");
        match crawler.crawl_hooked(&target, &writer) {
            Err(crate::Error::Core(e @ origami_core::Error::ChangedWhileRead { .. })) => {
                let t = e.to_string();
                assert!(t.contains("live.qcow2") && t.contains("changed"), "{t}");
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
