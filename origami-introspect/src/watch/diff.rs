//! The watcher's last good state and the events between it and a new crawl: pure
//! functions over what was read, with no memory access, so that every rule (identity,
//! settling, what counts as opened or closed) is tested on its own.
//!
//! Identities: a process is its pid and start time (a reused pid is a new process); a
//! socket is its protocol, family and both endpoints (its state and owner may change
//! without an event; two sockets with one identity are counted); a module is its name.

use std::collections::{BTreeMap, BTreeSet};

use origami_frame::{Connection, Module, Process};

use super::event::{Event, OsHostname};

/// A process's identity: its pid and its start time (clock ticks after boot).
pub type ProcessId = (u32, u64);

/// The identity of `p` (a process with no start time gets 0: the kernel always has one).
pub fn process_id(p: &Process) -> ProcessId {
    (p.pid, p.start_time.unwrap_or(0))
}

/// A process the watcher knows.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    /// The process as last read.
    pub process: Process,
    /// True once its `process_started` was reported.
    pub reported: bool,
    /// Successive good crawls that read the same name and command line since it was
    /// first seen (it is reported when this reaches the settle count).
    pub same_for: u32,
}

/// The connection identity: protocol, family, local and remote endpoints.
pub fn connection_key(c: &Connection) -> String {
    format!(
        "{}/{}/{}:{}/{}:{}",
        c.protocol, c.family, c.local_address, c.local_port, c.remote_address, c.remote_port
    )
}

/// When a new process is reported (see [`processes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settle {
    /// Further crawls with the same name and command line before a new process is
    /// reported, when the crawl cannot tell whether it is in the middle of `execve`.
    pub after: u32,
    /// The same, while the process still looks like a child between `fork` and `exec`
    /// (its parent's very name and command line).
    pub after_fork: u32,
}

/// Whether each process of a crawl was seen in the middle of `execve`.
#[derive(Debug, Clone, Copy)]
pub enum ExecState<'a> {
    /// The kernel does not say (its layout lacks `task_struct.in_execve`): new processes
    /// wait [`Settle::after`] crawls.
    Unknown,
    /// The kernel says: these processes were in the middle of `execve`; the others were
    /// not, and are reported when first seen.
    Known(&'a BTreeSet<ProcessId>),
}

/// Processes after a good crawl, and the events since `prev` (`None`: this crawl is the
/// first, which reports nothing unless `report_existing`).
///
/// A forked child is seen with its parent's name and arguments until it calls `exec`, and
/// reporting it then would name the parent; `exec` itself changes the command line before
/// the name. So a new process is reported
///
/// - when first seen, if the kernel says it is not in the middle of `execve` (`exec`) and
///   it does not have its parent's very name and command line;
/// - once it is out of `execve`, if it was in it;
/// - when the kernel cannot say (`exec` [`ExecState::Unknown`]), once its name and
///   command line read the same on `settle.after` more crawls;
/// - while it still has its parent's name and command line, after `settle.after_fork`
///   crawls (a guest's vCPU may stall between `fork` and `exec`; a child that never calls
///   `exec` is reported after that wait).
///
/// A process that exits before it was reported is reported as started, then exited,
/// with what was last read.
pub fn processes(
    prev: Option<&BTreeMap<ProcessId, Tracked>>,
    now: Vec<Process>,
    settle: Settle,
    exec: ExecState<'_>,
    report_existing: bool,
) -> (BTreeMap<ProcessId, Tracked>, Vec<Event>) {
    let mut started = Vec::new();
    let mut out = BTreeMap::new();
    let Some(prev) = prev else {
        for p in now {
            if report_existing {
                started.push(Event::ProcessStarted { process: p.clone() });
            }
            out.insert(
                process_id(&p),
                Tracked {
                    process: p,
                    reported: true,
                    same_for: 0,
                },
            );
        }
        return (out, started);
    };
    let by_pid: BTreeMap<u32, (&str, &[String])> = now
        .iter()
        .map(|p| (p.pid, (p.name.as_str(), p.cmdline.as_slice())))
        .collect();
    // Per process: further crawls it must read the same before it is reported (`None`:
    // not this crawl, it is in the middle of `execve`).
    let mut settled = Vec::new();
    for p in &now {
        let forked = p.ppid != p.pid
            && by_pid.get(&p.ppid) == Some(&(p.name.as_str(), p.cmdline.as_slice()));
        settled.push(match exec {
            _ if forked => Some(settle.after_fork),
            ExecState::Unknown => Some(settle.after),
            ExecState::Known(in_exec) if in_exec.contains(&process_id(p)) => None,
            ExecState::Known(_) => Some(0),
        });
    }
    for (p, settle) in now.into_iter().zip(settled) {
        let id = process_id(&p);
        let t = match prev.get(&id) {
            Some(old) if old.reported => Tracked {
                process: p,
                reported: true,
                same_for: old.same_for,
            },
            Some(old) => {
                let same = old.process.name == p.name && old.process.cmdline == p.cmdline;
                Tracked {
                    process: p,
                    reported: false,
                    same_for: if same { old.same_for + 1 } else { 0 },
                }
            }
            None => Tracked {
                process: p,
                reported: false,
                same_for: 0,
            },
        };
        let mut t = t;
        let Some(settle) = settle else {
            // In the middle of `execve`: what was read may be half the old program's.
            t.same_for = 0;
            out.insert(id, t);
            continue;
        };
        if !t.reported && t.same_for >= settle {
            t.reported = true;
            started.push(Event::ProcessStarted {
                process: t.process.clone(),
            });
        }
        out.insert(id, t);
    }
    let mut events = started;
    for (id, old) in prev {
        if out.contains_key(id) {
            continue;
        }
        if !old.reported {
            events.push(Event::ProcessStarted {
                process: old.process.clone(),
            });
        }
        events.push(Event::ProcessExited {
            process: old.process.clone(),
        });
    }
    (out, events)
}

/// Connections by identity, after a good crawl.
pub type Connections = BTreeMap<String, Vec<Connection>>;

/// Groups connections by identity.
pub fn group_connections(now: Vec<Connection>) -> Connections {
    let mut out: Connections = BTreeMap::new();
    for c in now {
        out.entry(connection_key(&c)).or_default().push(c);
    }
    out
}

/// The events between two good crawls' connections (`prev` `None`: the first crawl).
pub fn connections(
    prev: Option<&Connections>,
    now: &Connections,
    report_existing: bool,
) -> Vec<Event> {
    let mut events = Vec::new();
    let empty = Vec::new();
    let Some(prev) = prev else {
        if report_existing {
            for c in now.values().flatten() {
                events.push(Event::ConnectionOpened {
                    connection: c.clone(),
                });
            }
        }
        return events;
    };
    for (key, cs) in now {
        let before = prev.get(key).map_or(0, Vec::len);
        for c in cs.iter().skip(before) {
            events.push(Event::ConnectionOpened {
                connection: c.clone(),
            });
        }
    }
    for (key, cs) in prev {
        let after = now.get(key).unwrap_or(&empty).len();
        for c in cs.iter().skip(after) {
            events.push(Event::ConnectionClosed {
                connection: c.clone(),
            });
        }
    }
    events
}

/// Modules by name, after a good crawl.
pub type Modules = BTreeMap<String, Module>;

/// The events between two good crawls' modules (`prev` `None`: the first crawl).
pub fn modules(prev: Option<&Modules>, now: &Modules, report_existing: bool) -> Vec<Event> {
    let mut events = Vec::new();
    let Some(prev) = prev else {
        if report_existing {
            for m in now.values() {
                events.push(Event::ModuleLoaded { module: m.clone() });
            }
        }
        return events;
    };
    for (name, m) in now {
        if !prev.contains_key(name) {
            events.push(Event::ModuleLoaded { module: m.clone() });
        }
    }
    for (name, m) in prev {
        if !now.contains_key(name) {
            events.push(Event::ModuleUnloaded { module: m.clone() });
        }
    }
    events
}

/// The event between two good reads of the host name (`prev` `None`: the first read).
pub fn hostname(prev: Option<&str>, now: &str) -> Option<Event> {
    let prev = prev?;
    (prev != now).then(|| Event::HostnameChanged {
        os: OsHostname {
            hostname: now.to_string(),
        },
        previous: OsHostname {
            hostname: prev.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: Settle = Settle {
        after: 1,
        after_fork: 3,
    };
    const S0: Settle = Settle {
        after: 0,
        after_fork: 0,
    };
    const S3: Settle = Settle {
        after: 3,
        after_fork: 3,
    };

    fn proc(pid: u32, start: u64, name: &str, args: &[&str]) -> Process {
        Process {
            pid,
            ppid: 1,
            name: name.into(),
            cmdline: args.iter().map(|s| s.to_string()).collect(),
            start_time: Some(start),
            ..Process::default()
        }
    }

    fn names(events: &[Event]) -> Vec<(&'static str, u32, String)> {
        events
            .iter()
            .map(|e| {
                let p = e.process().unwrap();
                (e.name(), p.pid, p.cmdline.join(" "))
            })
            .collect()
    }

    #[test]
    fn the_first_crawl_is_the_baseline() {
        let (s, ev) = processes(
            None,
            vec![proc(1, 0, "init", &["init"])],
            S1,
            ExecState::Unknown,
            false,
        );
        assert!(ev.is_empty());
        assert!(s[&(1, 0)].reported);
        let (_, ev) = processes(
            None,
            vec![proc(1, 0, "init", &["init"])],
            S1,
            ExecState::Unknown,
            true,
        );
        assert_eq!(names(&ev), [("process_started", 1, "init".into())]);
    }

    #[test]
    fn a_new_process_is_reported_once_it_settled_after_exec() {
        let (s0, _) = processes(
            None,
            vec![proc(1, 0, "sh", &["sh"])],
            S1,
            ExecState::Unknown,
            false,
        );
        // Forked: the child still has its parent's name and arguments.
        let (s1, ev) = processes(
            Some(&s0),
            vec![proc(1, 0, "sh", &["sh"]), proc(7, 50, "sh", &["sh"])],
            S1,
            ExecState::Unknown,
            false,
        );
        assert!(ev.is_empty());
        // Exec'd: it changed, so it waits one more crawl.
        let (s2, ev) = processes(
            Some(&s1),
            vec![
                proc(1, 0, "sh", &["sh"]),
                proc(7, 50, "sleep", &["sleep", "9"]),
            ],
            S1,
            ExecState::Unknown,
            false,
        );
        assert!(ev.is_empty());
        let now = vec![
            proc(1, 0, "sh", &["sh"]),
            proc(7, 50, "sleep", &["sleep", "9"]),
        ];
        let (s3, ev) = processes(Some(&s2), now.clone(), S1, ExecState::Unknown, false);
        assert_eq!(names(&ev), [("process_started", 7, "sleep 9".into())]);
        let (s4, ev) = processes(Some(&s3), now, S1, ExecState::Unknown, false);
        assert!(ev.is_empty());
        let (_, ev) = processes(
            Some(&s4),
            vec![proc(1, 0, "sh", &["sh"])],
            S1,
            ExecState::Unknown,
            false,
        );
        assert_eq!(names(&ev), [("process_exited", 7, "sleep 9".into())]);
    }

    #[test]
    fn a_reused_pid_is_another_process_and_short_lives_are_not_lost() {
        let (s0, _) = processes(
            None,
            vec![proc(7, 50, "a", &["a"])],
            S0,
            ExecState::Unknown,
            false,
        );
        let (s1, ev) = processes(
            Some(&s0),
            vec![proc(7, 90, "b", &["b"])],
            S0,
            ExecState::Unknown,
            false,
        );
        assert_eq!(
            names(&ev),
            [
                ("process_started", 7, "b".into()),
                ("process_exited", 7, "a".into())
            ]
        );
        // Seen once, unsettled, then gone: started and exited together.
        let (s2, ev) = processes(
            Some(&s1),
            vec![proc(7, 90, "b", &["b"]), proc(8, 95, "c", &["c"])],
            S3,
            ExecState::Unknown,
            false,
        );
        assert!(ev.is_empty());
        let (_, ev) = processes(
            Some(&s2),
            vec![proc(7, 90, "b", &["b"])],
            S3,
            ExecState::Unknown,
            false,
        );
        assert_eq!(
            names(&ev),
            [
                ("process_started", 8, "c".into()),
                ("process_exited", 8, "c".into())
            ]
        );
    }

    #[test]
    fn a_child_stalled_between_fork_and_exec_waits_longer() {
        let sh = || proc(1, 0, "sh", &["sh"]);
        let (mut s, _) = processes(None, vec![sh()], S1, ExecState::Unknown, false);
        // Seen three times with its parent's name and arguments: not reported.
        for _ in 0..3 {
            let (next, ev) = processes(
                Some(&s),
                vec![sh(), proc(7, 50, "sh", &["sh"])],
                S1,
                ExecState::Unknown,
                false,
            );
            assert!(ev.is_empty(), "{ev:?}");
            s = next;
        }
        let now = vec![sh(), proc(7, 50, "ow-1", &["/bin/sh", "/tmp/ow-1"])];
        let (s, ev) = processes(Some(&s), now.clone(), S1, ExecState::Unknown, false);
        assert!(ev.is_empty());
        let (_, ev) = processes(Some(&s), now, S1, ExecState::Unknown, false);
        assert_eq!(
            names(&ev),
            [("process_started", 7, "/bin/sh /tmp/ow-1".into())]
        );
        // A child that never calls exec is reported after the longer wait.
        let (mut s, _) = processes(None, vec![sh()], S1, ExecState::Unknown, false);
        let mut seen = Vec::new();
        for _ in 0..5 {
            let (next, ev) = processes(
                Some(&s),
                vec![sh(), proc(8, 60, "sh", &["sh"])],
                S1,
                ExecState::Unknown,
                false,
            );
            seen.push(ev.len());
            s = next;
        }
        assert_eq!(seen, [0, 0, 0, 1, 0]);
    }

    #[test]
    fn when_the_kernel_tells_exec_a_process_is_reported_when_first_seen_out_of_it() {
        let sh = || proc(1, 0, "sh", &["sh"]);
        let none = BTreeSet::new();
        let (s, _) = processes(None, vec![sh()], S1, ExecState::Known(&none), false);
        // Forked, not yet exec'd: waits as before.
        let (s, ev) = processes(
            Some(&s),
            vec![sh(), proc(7, 50, "sh", &["sh"])],
            S1,
            ExecState::Known(&none),
            false,
        );
        assert!(ev.is_empty());
        // In the middle of exec (the new command line, the old name): not reported.
        let in_exec: BTreeSet<ProcessId> = [(7, 50)].into();
        let half = vec![sh(), proc(7, 50, "sh", &["/bin/sh", "/tmp/lat-1"])];
        let (s, ev) = processes(Some(&s), half, S1, ExecState::Known(&in_exec), false);
        assert!(ev.is_empty(), "{ev:?}");
        // Out of exec: reported at once, with the new name.
        let done = vec![sh(), proc(7, 50, "lat-1", &["/bin/sh", "/tmp/lat-1"])];
        let (s, ev) = processes(Some(&s), done.clone(), S1, ExecState::Known(&none), false);
        assert_eq!(
            names(&ev),
            [("process_started", 7, "/bin/sh /tmp/lat-1".into())]
        );
        assert_eq!(ev[0].process().unwrap().name, "lat-1");
        let (s, ev) = processes(Some(&s), done, S1, ExecState::Known(&none), false);
        assert!(ev.is_empty());
        // A new process seen once, out of exec: reported in the crawl that first sees it.
        let (_, ev) = processes(
            Some(&s),
            vec![sh(), proc(9, 70, "sleep", &["sleep", "9"])],
            S1,
            ExecState::Known(&none),
            false,
        );
        assert_eq!(
            names(&ev),
            [
                ("process_started", 9, "sleep 9".into()),
                ("process_exited", 7, "/bin/sh /tmp/lat-1".into())
            ]
        );
    }

    fn conn(port: u16, state: &str, pid: Option<u32>) -> Connection {
        Connection {
            protocol: "tcp".into(),
            family: "ipv4".into(),
            local_address: "0.0.0.0".into(),
            local_port: port,
            remote_address: "0.0.0.0".into(),
            remote_port: 0,
            state: state.into(),
            pid,
            ..Connection::default()
        }
    }

    #[test]
    fn connections_open_and_close_by_identity_and_count() {
        let a = group_connections(vec![conn(80, "LISTEN", Some(1))]);
        assert!(connections(None, &a, false).is_empty());
        assert_eq!(connections(None, &a, true).len(), 1);
        // A state or owner change is no event.
        let b = group_connections(vec![conn(80, "CLOSE", None)]);
        assert!(connections(Some(&a), &b, false).is_empty());
        // A second socket with the same identity opens; then both close.
        let c = group_connections(vec![
            conn(80, "LISTEN", Some(1)),
            conn(80, "LISTEN", Some(2)),
        ]);
        let ev = connections(Some(&b), &c, false);
        assert_eq!(ev.len(), 1);
        assert!(
            matches!(&ev[0], Event::ConnectionOpened { connection } if connection.pid == Some(2))
        );
        let ev = connections(Some(&c), &Connections::new(), false);
        assert_eq!(ev.len(), 2);
        assert!(ev.iter().all(|e| e.name() == "connection_closed"));
    }

    #[test]
    fn modules_and_host_names() {
        let m = |n: &str| Module {
            name: n.into(),
            ..Module::default()
        };
        let a: Modules = [("e1000".to_string(), m("e1000"))].into();
        let b: Modules = [("dummy".to_string(), m("dummy"))].into();
        let ev = modules(Some(&a), &b, false);
        assert_eq!(
            ev.iter().map(Event::name).collect::<Vec<_>>(),
            ["module_loaded", "module_unloaded"]
        );
        assert!(modules(None, &a, false).is_empty());
        assert!(hostname(None, "a").is_none());
        assert!(hostname(Some("a"), "a").is_none());
        assert_eq!(hostname(Some("a"), "b").unwrap().name(), "hostname_changed");
    }
}
