//! The command's fleet sink: each frame indexed (and, when asked, written as JSON Lines) on
//! the calling thread as it arrives from the library's fleet engine
//! ([`origami_introspect::fleet`]), then one commit.

use origami_frame::{Frame, FrameWriter};
use origami_index::Index;
use origami_introspect::fleet::{Fleet, FleetError, FleetReport, Machine, MachineError, Sink};

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
