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
