//! What a [`Watcher`](super::Watcher) reports: one [`Event`] per change between two good
//! crawls, each carrying the item under its frame section's name and with the frame's field
//! names, so that a consumer of frames already knows its shape.
//!
//! Serialized (serde), an event is one JSON object tagged by `event`:
//! `{"event": "process_started", "process": {"pid": 42, ...}}`.

use origami_frame::{Connection, Module, Process, Section};
use serde::{Deserialize, Serialize};

/// A change the watcher saw between two good crawls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A process (identity: pid and start time) that the previous crawl did not hold.
    ProcessStarted {
        /// The process as first reported (name and command line after they settled).
        process: Process,
    },
    /// A process the previous crawl held and this one does not (reaped: a zombie is still
    /// listed, as in `/proc`).
    ProcessExited {
        /// The process as last seen.
        process: Process,
    },
    /// A TCP or UDP socket that appeared.
    ConnectionOpened {
        /// The socket.
        connection: Connection,
    },
    /// A TCP or UDP socket that went away.
    ConnectionClosed {
        /// The socket as last seen.
        connection: Connection,
    },
    /// A kernel module that appeared on the module list.
    ModuleLoaded {
        /// The module.
        module: Module,
    },
    /// A kernel module that left the module list.
    ModuleUnloaded {
        /// The module as last seen.
        module: Module,
    },
    /// The kernel's host name (the initial UTS namespace's) changed.
    HostnameChanged {
        /// The new host name, as the frame's `os.hostname`.
        os: OsHostname,
        /// The host name before.
        previous: OsHostname,
    },
}

/// The `os` section's host name, the item of a [`Event::HostnameChanged`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsHostname {
    /// The host name.
    pub hostname: String,
}

impl Event {
    /// The event's name as serialized (`process_started`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Event::ProcessStarted { .. } => "process_started",
            Event::ProcessExited { .. } => "process_exited",
            Event::ConnectionOpened { .. } => "connection_opened",
            Event::ConnectionClosed { .. } => "connection_closed",
            Event::ModuleLoaded { .. } => "module_loaded",
            Event::ModuleUnloaded { .. } => "module_unloaded",
            Event::HostnameChanged { .. } => "hostname_changed",
        }
    }

    /// The frame section the event's item belongs to.
    pub fn section(&self) -> Section {
        match self {
            Event::ProcessStarted { .. } | Event::ProcessExited { .. } => Section::Process,
            Event::ConnectionOpened { .. } | Event::ConnectionClosed { .. } => Section::Connection,
            Event::ModuleLoaded { .. } | Event::ModuleUnloaded { .. } => Section::Module,
            Event::HostnameChanged { .. } => Section::Os,
        }
    }

    /// The process, for process events.
    pub fn process(&self) -> Option<&Process> {
        match self {
            Event::ProcessStarted { process } | Event::ProcessExited { process } => Some(process),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_under_their_section_name() {
        let e = Event::ProcessStarted {
            process: Process {
                pid: 42,
                ppid: 1,
                name: "sleep".into(),
                cmdline: vec!["sleep".into(), "9".into()],
                uid: 0,
                start_time: Some(1234),
                ..Process::default()
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "process_started");
        assert_eq!(v["process"]["pid"], 42);
        assert_eq!(v["process"]["cmdline"][1], "9");
        assert_eq!(v["process"]["start_time"], 1234);
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);

        let h = Event::HostnameChanged {
            os: OsHostname {
                hostname: "b".into(),
            },
            previous: OsHostname {
                hostname: "a".into(),
            },
        };
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["event"], h.name());
        assert_eq!(v["os"]["hostname"], "b");
        assert_eq!(v["previous"]["hostname"], "a");
        assert_eq!(h.section(), Section::Os);
    }
}
