//! Section timings: the one way this crate turns a start instant into the milliseconds a
//! frame's `_frame.timings` records.

use std::time::Instant;

/// Milliseconds since `start`, to the microsecond.
pub(crate) fn millis(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1e6).round() / 1e3
}
