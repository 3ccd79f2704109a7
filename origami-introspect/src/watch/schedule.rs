//! When the next tick is due: a fixed rate, and early re-reads while a new process was seen
//! in the middle of `execve` (see [`Tick::in_execve`]).

use std::time::{Duration, Instant};

use super::Tick;

/// The fixed-rate schedule of [`Watcher::ticks`](super::Watcher::ticks), for callers
/// that drive [`Watcher::tick`](super::Watcher::tick) themselves.
///
/// Ticks are due every `interval` from the first; a tick that overruns is followed at
/// once, without a burst to catch up. A tick that saw a new process in the middle of
/// `execve` (not reported yet: what was read may be half the old program's) is followed
/// after a fifth of the interval instead, at most [`Schedule::MAX_EARLY`] times per
/// interval (a process stuck in `execve` costs at most that many more reads), so that
/// the process is reported within about one interval of its `exec` rather than two; the
/// fixed rate goes on unchanged.
///
/// ```
/// use std::time::{Duration, Instant};
/// use origami_introspect::watch::Schedule;
///
/// let mut schedule = Schedule::new(Duration::from_millis(10));
/// let mut next = None;
/// # let mut n = 0;
/// loop {
///     let due = Schedule::wait(next);
///     # let tick = origami_introspect::watch::Tick::empty(1);
///     // let tick = watcher.tick();
///     next = Some(schedule.next(due, &tick));
///     # n += 1; if n == 3 { break; }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Duration,
    regular: Option<Instant>,
    early: u32,
}

impl Schedule {
    /// At most this many early re-reads per interval.
    pub const MAX_EARLY: u32 = 4;

    /// A schedule of one tick every `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            regular: None,
            early: 0,
        }
    }

    /// Sleeps until `next` (when it is in the future) and returns the instant the tick
    /// about to run is due at: `next`, or now when there is none or it has passed.
    pub fn wait(next: Option<Instant>) -> Instant {
        let now = Instant::now();
        match next {
            Some(at) if at > now => {
                std::thread::sleep(at - now);
                at
            }
            _ => now,
        }
    }

    /// Records the tick that was due at `due` and returns when the next one is due.
    pub fn next(&mut self, due: Instant, tick: &Tick) -> Instant {
        let regular = match self.regular {
            // An early re-read: the fixed rate stands.
            Some(r) if due < r => r,
            _ => {
                self.early = 0;
                due + self.interval
            }
        };
        self.regular = Some(regular);
        if tick.in_execve > 0 && self.early < Self::MAX_EARLY {
            self.early += 1;
            return regular.min(Instant::now() + self.interval / 5);
        }
        regular
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(in_execve: usize) -> Tick {
        let mut t = Tick::empty(1);
        t.in_execve = in_execve;
        t
    }

    #[test]
    fn a_fixed_rate_without_bursts() {
        let i = Duration::from_millis(10);
        let mut s = Schedule::new(i);
        let t0 = Instant::now();
        assert_eq!(s.next(t0, &tick(0)), t0 + i);
        assert_eq!(s.next(t0 + i, &tick(0)), t0 + 2 * i);
        // A tick that began late (overran): the next is an interval after it, no burst.
        let late = t0 + 5 * i;
        assert_eq!(s.next(late, &tick(0)), late + i);
    }

    #[test]
    fn a_process_in_execve_brings_early_rereads_bounded_per_interval() {
        let i = Duration::from_secs(3600);
        let mut s = Schedule::new(i);
        let t0 = Instant::now();
        let mut due = t0;
        for _ in 0..Schedule::MAX_EARLY {
            let early = s.next(due, &tick(1));
            assert!(
                early < t0 + i && early <= Instant::now() + i / 5,
                "{early:?}"
            );
            due = early;
        }
        // Still in execve after the last early re-read allowed: the fixed rate.
        assert_eq!(s.next(due, &tick(1)), t0 + i);
        // The next regular tick may re-read early again.
        let again = s.next(t0 + i, &tick(1));
        assert!(again < t0 + 2 * i, "{again:?}");
        assert_eq!(s.next(again, &tick(0)), t0 + 2 * i);
        assert_eq!(s.next(t0 + 2 * i, &tick(0)), t0 + 3 * i);
    }
}
