//! A small QEMU Machine Protocol (QMP) client, and [`Fleece`]: a consistent point-in-time
//! view of a running VM's disk, exported over NBD without pausing the guest.
//!
//! [`QmpClient`] connects to a QMP Unix socket (`-qmp unix:PATH,server=on,wait=off`),
//! reads the greeting, enters command mode (`qmp_capabilities`) and runs commands one at a
//! time. QEMU is trusted no more than a disk header: every message is bounded in size
//! ([`MAX_MESSAGE`]), asynchronous events between a command and its answer are skipped (at
//! most [`MAX_EVENTS`] of them), answers are matched by an `id`, and every wait has a
//! time-out.
//!
//! ```no_run
//! use origami_core::qmp::QmpClient;
//! use std::time::Duration;
//!
//! let mut qmp = QmpClient::connect("/run/vm1/qmp.sock", Duration::from_secs(10))?;
//! let blocks = qmp.execute("query-block", None)?;
//! println!("{blocks}");
//! # Ok::<(), origami_core::Error>(())
//! ```

mod fleece;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Error, Result};

pub use fleece::{Fleece, FleeceOptions};

/// The longest QMP message accepted (a `query-block` of a VM with dozens of disks is a few
/// tens of KiB).
pub const MAX_MESSAGE: usize = 4 << 20;
/// The most events skipped while waiting for one answer.
pub const MAX_EVENTS: usize = 10_000;

/// What went wrong with QMP (the socket is in [`Error::Qmp`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QmpProblem {
    /// The socket failed, or QEMU closed it.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The host's error.
        source: std::io::Error,
    },
    /// QEMU did not answer in time.
    #[error("no answer within {after:?} while {what}")]
    TimedOut {
        /// The time-out.
        after: Duration,
        /// What was awaited.
        what: String,
    },
    /// A message is not what QMP sends (not JSON, too long, no greeting, a wrong id).
    #[error("bad message: {0}")]
    Protocol(String),
    /// QEMU answered a command with an error.
    #[error("{command} failed: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QEMU's error class (`GenericError`, `DeviceNotFound`, ...).
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// The VM has no disk the fleecing can use, or not the one named.
    #[error("{0}")]
    NoDrive(String),
    /// The fleecing needs what this QEMU does not have.
    #[error("{0}")]
    Unsupported(String),
}

/// A QMP connection in command mode.
pub struct QmpClient {
    socket: PathBuf,
    io: BufReader<UnixStream>,
    timeout: Duration,
    next_id: u64,
    version: Option<(u64, u64, u64)>,
}

impl std::fmt::Debug for QmpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QmpClient")
            .field("socket", &self.socket)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl QmpClient {
    /// Connects to the QMP socket at `path`, reads the greeting and runs
    /// `qmp_capabilities`; each exchange may take up to `timeout`.
    pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<QmpClient> {
        let socket = path.as_ref().to_path_buf();
        let timeout = timeout.max(Duration::from_millis(1));
        let stream = UnixStream::connect(&socket).map_err(|source| Error::Qmp {
            socket: socket.clone(),
            problem: QmpProblem::Io {
                what: "connecting",
                source,
            },
        })?;
        let mut qmp = QmpClient {
            socket,
            io: BufReader::new(stream),
            timeout,
            next_id: 1,
            version: None,
        };
        let deadline = Instant::now() + timeout;
        let greeting = qmp.message(deadline, "reading the greeting")?;
        let Some(q) = greeting.get("QMP") else {
            return Err(qmp.problem(QmpProblem::Protocol(format!(
                "the first message is no QMP greeting: {}",
                short(&greeting)
            ))));
        };
        let v = &q["version"]["qemu"];
        qmp.version = match (
            v["major"].as_u64(),
            v["minor"].as_u64(),
            v["micro"].as_u64(),
        ) {
            (Some(a), Some(b), Some(c)) => Some((a, b, c)),
            _ => None,
        };
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// The QEMU version from the greeting (major, minor, micro).
    pub fn version(&self) -> Option<(u64, u64, u64)> {
        self.version
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn problem(&self, problem: QmpProblem) -> Error {
        Error::Qmp {
            socket: self.socket.clone(),
            problem,
        }
    }

    /// Reads one message (a line of JSON), bounded by [`MAX_MESSAGE`] and `deadline`.
    fn message(&mut self, deadline: Instant, what: &str) -> Result<Value> {
        let mut line = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timed_out = || QmpProblem::TimedOut {
                after: self.timeout,
                what: what.to_string(),
            };
            if left.is_zero() {
                return Err(self.problem(timed_out()));
            }
            if let Err(source) = self.io.get_ref().set_read_timeout(Some(left)) {
                return Err(self.problem(QmpProblem::Io {
                    what: "setting a time-out",
                    source,
                }));
            }
            let room = (MAX_MESSAGE + 1).saturating_sub(line.len()) as u64;
            match (&mut self.io).take(room).read_until(b'\n', &mut line) {
                Ok(0) if line.len() > MAX_MESSAGE => {
                    return Err(self.problem(QmpProblem::Protocol(format!(
                        "a message over {MAX_MESSAGE} bytes"
                    ))))
                }
                Ok(0) => {
                    return Err(self.problem(QmpProblem::Io {
                        what: "reading",
                        source: std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "QEMU closed the socket",
                        ),
                    }))
                }
                Ok(_) if line.ends_with(b"\n") => break,
                Ok(_) if line.len() > MAX_MESSAGE => {
                    return Err(self.problem(QmpProblem::Protocol(format!(
                        "a message over {MAX_MESSAGE} bytes"
                    ))))
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(self.problem(timed_out()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(self.problem(QmpProblem::Io {
                        what: "reading",
                        source,
                    }))
                }
            }
        }
        serde_json::from_slice(&line).map_err(|e| {
            self.problem(QmpProblem::Protocol(format!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&line[..line.len().min(200)])
            )))
        })
    }

    /// Runs `command` with `arguments` and returns its `return` value; an `error` answer
    /// is [`QmpProblem::Command`]. Events that arrive meanwhile are skipped.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"execute": command, "id": id});
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        let deadline = Instant::now() + self.timeout;
        let stream = self.io.get_mut();
        let sent = stream
            .set_write_timeout(Some(self.timeout))
            .and_then(|()| stream.write_all(text.as_bytes()));
        if let Err(source) = sent {
            return Err(self.problem(QmpProblem::Io {
                what: "sending a command",
                source,
            }));
        }
        let what = format!("waiting for the answer to {command}");
        for _ in 0..=MAX_EVENTS {
            let m = self.message(deadline, &what)?;
            if m.get("event").is_some() {
                continue;
            }
            if m.get("id").and_then(Value::as_u64) != Some(id) {
                return Err(self.problem(QmpProblem::Protocol(format!(
                    "an answer for another id to {command}: {}",
                    short(&m)
                ))));
            }
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                return Err(self.problem(QmpProblem::Command {
                    command: command.to_string(),
                    class: e["class"].as_str().unwrap_or("?").to_string(),
                    desc: e["desc"].as_str().unwrap_or("").chars().take(500).collect(),
                }));
            }
            return Err(self.problem(QmpProblem::Protocol(format!(
                "an answer to {command} with neither return nor error: {}",
                short(&m)
            ))));
        }
        Err(self.problem(QmpProblem::Protocol(format!(
            "more than {MAX_EVENTS} events before the answer to {command}"
        ))))
    }
}

/// A message cut short for an error.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!("{}...", &s[..s.floor_char_boundary_compat(200)])
    } else {
        s
    }
}

/// `str::floor_char_boundary`, which is not stable yet.
trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        i = i.min(self.len());
        while !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}
