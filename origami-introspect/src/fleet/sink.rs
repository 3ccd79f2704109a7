//! The seam between the fleet engine and its caller: [`Sink`] receives each machine's frame
//! (or why it gave none) on the thread that called [`Fleet::crawl`](super::Fleet::crawl).

use origami_frame::Frame;

use super::{Machine, MachineError};

/// Where a fleet crawl's results go, one machine at a time, in the order the crawls end.
///
/// Every method runs on the thread that called [`Fleet::crawl`](super::Fleet::crawl), never
/// on a crawl thread, so a sink needs no locks and may hold a `&mut` to anything (an index
/// writer, a file, a progress bar). The model is ripgrep's `grep_searcher::Sink`: a `bool`
/// that says whether to go on, errors the sink's own.
///
/// A `&mut S` is a sink when `S` is, so a caller can keep its sink after the crawl.
pub trait Sink {
    /// What [`Sink::frame`] fails with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A machine's frame. `Ok(true)` goes on; `Ok(false)` stops the fleet (no crawl is
    /// started after it, frames of crawls still running are dropped, and
    /// [`FleetReport::stopped`](super::FleetReport::stopped) is set). An error marks this
    /// machine failed ([`MachineError::Sink`]) and the fleet goes on: a sink that wants to
    /// stop on its error keeps the error and returns `Ok(false)`.
    ///
    /// The frame's `_frame.system` is the machine's name.
    fn frame(&mut self, machine: &Machine, frame: Frame) -> Result<bool, Self::Error>;

    /// A machine that gave no frame: its crawl failed, panicked, timed out or was not
    /// started. Returns whether to go on (default: yes).
    fn failed(&mut self, machine: &Machine, error: &MachineError) -> bool {
        let _ = (machine, error);
        true
    }

    /// Called after each machine's outcome has been handed over (for a progress bar).
    fn progress(&mut self, progress: &Progress) {
        let _ = progress;
    }
}

impl<S: Sink + ?Sized> Sink for &mut S {
    type Error = S::Error;

    fn frame(&mut self, machine: &Machine, frame: Frame) -> Result<bool, Self::Error> {
        (**self).frame(machine, frame)
    }

    fn failed(&mut self, machine: &Machine, error: &MachineError) -> bool {
        (**self).failed(machine, error)
    }

    fn progress(&mut self, progress: &Progress) {
        (**self).progress(progress)
    }
}

/// Where a fleet crawl stands, handed to [`Sink::progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Machines in the fleet.
    pub total: usize,
    /// Machines whose outcome has been handed to the sink.
    pub done: usize,
    /// Crawls running within their time.
    pub running: usize,
    /// Crawl threads that timed out and still run (see
    /// [`FleetBuilder::max_stuck`](super::FleetBuilder::max_stuck)).
    pub stuck: usize,
}
