//! The command's fleet sink: each frame indexed (and, when asked, written as JSON Lines) on
//! the calling thread as it arrives from the library's fleet engine
//! ([`origami_introspect::fleet`]), then one commit; and the machines `crawl-fleet` crawls
//! ([`machines_to_crawl`]): a manifest's, and the VMs running on this host.

use origami_frame::{Frame, FrameWriter};
use origami_index::Index;
use origami_introspect::fleet::{Fleet, FleetError, FleetReport, Machine, MachineError, Sink};

use crate::manifest::Manifest;
use crate::serve::local_vms::LocalVm;

/// Why a frame did not reach the index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexSinkError {
    /// Writing the frame to the JSON Lines file failed.
    #[error("writing frames: {0}")]
    Frames(#[source] std::io::Error),
    /// The index refused the frame.
    #[error("indexing: {0}")]
    Index(#[source] origami_index::Error),
}

/// Why a fleet crawl into an index did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetRunError {
    /// The fleet cannot be crawled (names not unique).
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// The frames were indexed but the commit failed: nothing is searchable.
    #[error("committing the index: {0}")]
    Commit(#[source] origami_index::Error),
}

/// A [`Sink`] that indexes every frame, writes it to `frames` when given, and tells
/// `on_machine` of each machine's outcome (for a progress bar).
pub struct IndexSink<'a, I: ?Sized, W, F> {
    index: &'a I,
    frames: Option<&'a mut FrameWriter<W>>,
    on_machine: F,
}

impl<'a, I, W, F> IndexSink<'a, I, W, F>
where
    I: Index + ?Sized,
    W: std::io::Write,
    F: FnMut(&Machine, Option<&MachineError>),
{
    /// A sink into `index`.
    pub fn new(index: &'a I, frames: Option<&'a mut FrameWriter<W>>, on_machine: F) -> Self {
        IndexSink {
            index,
            frames,
            on_machine,
        }
    }
}

impl<I, W, F> Sink for IndexSink<'_, I, W, F>
where
    I: Index + ?Sized,
    W: std::io::Write,
    F: FnMut(&Machine, Option<&MachineError>),
{
    type Error = IndexSinkError;

    fn frame(&mut self, machine: &Machine, frame: Frame) -> Result<bool, IndexSinkError> {
        (self.on_machine)(machine, None);
        if let Some(w) = self.frames.as_deref_mut() {
            w.write(&frame).map_err(IndexSinkError::Frames)?;
        }
        let stats = self
            .index
            .add_frame(&frame)
            .map_err(IndexSinkError::Index)?;
        tracing::info!(
            "{}: {} items ({} new, {} changed, {} removed)",
            machine.name,
            stats.items,
            stats.added,
            stats.changed,
            stats.removed
        );
        Ok(true)
    }

    fn failed(&mut self, machine: &Machine, error: &MachineError) -> bool {
        (self.on_machine)(machine, Some(error));
        true
    }
}

/// Crawls `machines` with `fleet`, indexing each frame as it arrives, then commits.
pub fn crawl_into_index<I, W>(
    fleet: &mut Fleet,
    machines: &[Machine],
    index: &I,
    frames: Option<&mut FrameWriter<W>>,
    on_machine: impl FnMut(&Machine, Option<&MachineError>),
) -> Result<FleetReport, FleetRunError>
where
    I: Index + ?Sized,
    W: std::io::Write,
{
    let report = fleet.crawl(machines, IndexSink::new(index, frames, on_machine))?;
    index.commit().map_err(FleetRunError::Commit)?;
    Ok(report)
}

/// The machines `crawl-fleet` crawls: the manifest's (a machine with a `qemu_pid` with that
/// QEMU's guest RAM attached as its memory), then the VMs running on this host (`local`,
/// from [`crate::serve::local_vms::scan_host`]) that the manifest does not name, each with
/// its disks and its QEMU's guest RAM. A QEMU that cannot be attached is told to `warn`
/// and its machine crawled without it (its disks, or a VM's RAM file), so that the fleet's
/// report names it when nothing else can be read.
pub fn machines_to_crawl(
    manifest: &Manifest,
    local: &[LocalVm],
    mut warn: impl FnMut(String),
) -> Vec<Machine> {
    let mut attach = |m: &mut Machine, pid: u32| match crate::watch::attach(pid) {
        Ok(source) => m.target = m.target.clone().with_memory_source(source),
        Err(e) => warn(format!("{}: its memory is not read: {e}", m.name)),
    };
    let mut out = Vec::with_capacity(manifest.machines.len() + local.len());
    for m in &manifest.machines {
        let mut m = m.clone();
        if let Some(&pid) = manifest.qemu_pids.get(&m.name) {
            attach(&mut m, pid);
        }
        out.push(m);
    }
    for vm in local {
        if out.iter().any(|m| m.name == vm.name) {
            continue;
        }
        let mut m = crate::serve::local_vm_machine(vm);
        attach(&mut m, vm.pid);
        out.push(m);
    }
    out
}
