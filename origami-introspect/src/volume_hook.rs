//! The seam through which a crawl lets a caller wrap each file system it opens (the
//! incremental crawl's cache in front of ext4 volumes), kept out of `crawler.rs`.

use std::sync::Arc;

use origami_core::ReadAt;

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
}

/// The hook of a plain crawl.
pub(crate) struct NoHook;
impl VolumeHook for NoHook {}
