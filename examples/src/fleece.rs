//! `origami crawl --qmp SOCKET [--drive NAME]`: a running VM's disk crawled through a
//! fleecing export ([`origami_core::qmp::Fleece`]): QEMU keeps a point-in-time view of the
//! disk while the guest runs on, the crawl reads that view over NBD, and the export is torn
//! down afterwards (also when the crawl fails).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use origami_core::qmp::{Fleece, FleeceOptions};
use origami_core::ReadAt;
use origami_introspect::Target;

/// Starts fleecing the disk `drive` (default: the VM's first disk) of the QEMU whose QMP
/// socket is `socket`, each QMP command given `timeout`.
pub fn start(
    socket: &Path,
    drive: Option<&str>,
    timeout: Duration,
) -> origami_core::Result<Fleece> {
    let mut options = FleeceOptions::default().timeout(timeout);
    if let Some(d) = drive {
        options = options.drive(d);
    }
    Fleece::start(socket, &options)
}

/// `target` with the fleeced disk added, named after the QMP socket and the drive (the
/// frame's `_frame.source` shows it).
pub fn with_fleeced_disk(target: Target, socket: &Path, fleece: &Fleece) -> Target {
    let disk: Arc<dyn ReadAt> = fleece.disk();
    target.with_disk_reader(
        format!(
            "qmp:{} drive {} (fleecing)",
            socket.display(),
            fleece.drive()
        ),
        disk,
    )
}
