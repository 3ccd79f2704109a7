//! What a fleet crawl did: the report, and the typed reasons a machine gave no frame.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use origami_frame::Frame;
use serde::{Serialize, Serializer};

/// Why a machine gave no frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MachineError {
    /// The crawler refused the target (for example one with neither disk nor memory).
    /// A disk or dump that cannot be read is not this: it is recorded in the frame.
    #[error("crawl failed: {0}")]
    Crawl(#[source] crate::Error),
    /// The crawl panicked; the panic was caught on its thread and the fleet went on.
    #[error("the crawl panicked: {message}")]
    Panicked {
        /// The panic's message, when it carried text.
        message: String,
    },
    /// The crawl gave no frame within the fleet's per-machine timeout. A thread cannot be
    /// killed: it is left to end on its own, its frame dropped.
    #[error("no frame within {} s: timed out (its crawl is left to end on its own)", after.as_secs_f64())]
    TimedOut {
        /// The timeout in force.
        after: Duration,
    },
    /// Not crawled: as many timed-out crawls still run as the fleet allows
    /// ([`FleetBuilder::max_stuck`](super::FleetBuilder::max_stuck)), so no thread was
    /// started for it.
    #[error("not crawled: {stuck} timed-out crawls still run, the most this fleet allows")]
    TooManyStuck {
        /// The timed-out crawls still running.
        stuck: usize,
    },
    /// The operating system refused a thread for the crawl.
    #[error("could not start a crawl thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The sink failed on the machine's frame ([`Sink::frame`](super::Sink::frame)).
    #[error("{0}")]
    Sink(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A fleet that cannot be crawled at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// Two machines share a name; names are the frames' system ids and the report's keys.
    #[error("machine {name:?} is listed twice (names are system ids and must be unique)")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// A machine has an empty name.
    #[error("machine #{index} has an empty name")]
    EmptyName {
        /// Its position in the list.
        index: usize,
    },
}

/// What a fleet crawl did, machine by machine. Serialises (for `--json`) with each error
/// as its message.
#[derive(Debug, Default, Serialize)]
pub struct FleetReport {
    /// Machines in the fleet.
    pub machines: usize,
    /// Machines whose frame the sink took.
    pub crawled: usize,
    /// Items in those frames.
    pub items: usize,
    /// Per machine: the errors recorded in its frame (`feature: message`).
    pub feature_errors: BTreeMap<String, Vec<String>>,
    /// Machines whose frame the sink took but whose crawl read nothing: no item, only
    /// errors (see [`read_nothing`]). They are counted in `crawled` too.
    pub read_nothing: BTreeSet<String>,
    /// Machines that gave no frame, and why.
    #[serde(serialize_with = "messages")]
    pub failed: BTreeMap<String, MachineError>,
    /// The sink stopped the fleet; machines neither crawled nor failed were not crawled.
    pub stopped: bool,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
}

impl FleetReport {
    /// Machines per second over the whole run.
    pub fn machines_per_second(&self) -> f64 {
        self.machines as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn messages<S: Serializer>(
    failed: &BTreeMap<String, MachineError>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(failed.iter().map(|(k, e)| (k, e.to_string())))
}

/// Whether a crawl read nothing from any of its sources: the frame holds no item at all
/// and records at least one error (a disk that is missing or holds no file system this
/// crate reads, a "memory dump" in which no kernel is found). The `origami` command exits
/// non-zero for such a crawl.
pub fn read_nothing(frame: &Frame) -> bool {
    frame.item_count() == 0 && !frame.meta.errors.is_empty()
}
