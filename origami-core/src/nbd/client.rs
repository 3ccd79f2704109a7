//! [`NbdClient`]: the export as a `ReadAt`, one connection behind a mutex, reconnecting
//! after a failure that left the connection out of step.

use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

use super::connection::{protocol, Connection, ExportInfo, Fail};
use super::{Extent, NbdAddress, NbdOptions, NbdProblem, STATE_DIRTY};
use crate::error::{Error, Result};
use crate::read::{check_range, ReadAt};

/// The connection and what it must negotiate when it is (re)opened.
struct State {
    conn: Option<Connection>,
    contexts: Vec<String>,
}

/// An NBD export as a [`ReadAt`] (see the [module docs](super)).
///
/// `Send + Sync`: one connection behind a mutex; threads take turns.
pub struct NbdClient {
    address: NbdAddress,
    options: NbdOptions,
    info: ExportInfo,
    state: Mutex<State>,
}

impl std::fmt::Debug for NbdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdClient")
            .field("address", &self.address)
            .field("size", &self.info.size)
            .finish_non_exhaustive()
    }
}

impl NbdClient {
    /// Connects to the export at `address` and negotiates (see the module docs).
    pub fn connect(address: &NbdAddress, options: &NbdOptions) -> Result<NbdClient> {
        let contexts = options.meta_contexts();
        let conn = Connection::open(address, options, &contexts).map_err(|f| Error::Nbd {
            server: address.to_string(),
            offset: f.offset,
            problem: f.problem,
        })?;
        Ok(NbdClient {
            address: address.clone(),
            options: options.clone(),
            info: conn.info,
            state: Mutex::new(State {
                conn: Some(conn),
                contexts,
            }),
        })
    }

    /// Parses `uri` ([`NbdAddress::parse`]) and connects.
    pub fn open(uri: &str, options: &NbdOptions) -> Result<NbdClient> {
        Self::connect(&NbdAddress::parse(uri)?, options)
    }

    /// Where the export is.
    pub fn address(&self) -> &NbdAddress {
        &self.address
    }

    /// The export's (minimum, preferred, maximum) block sizes as the server announced
    /// them (1, 4096 and 32 MiB when it did not).
    pub fn block_sizes(&self) -> (u32, u32, u32) {
        (
            self.info.min_block,
            self.info.preferred_block,
            self.info.max_block,
        )
    }

    /// The transmission flags the server sent.
    pub fn transmission_flags(&self) -> u16 {
        self.info.flags
    }

    /// The meta contexts the current connection negotiated.
    pub fn meta_contexts(&self) -> Vec<String> {
        self.lock()
            .conn
            .as_ref()
            .map(|c| c.contexts.iter().map(|(_, n)| n.clone()).collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a connection or none; a panic elsewhere leaves nothing half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, f: Fail) -> Error {
        Error::Nbd {
            server: self.address.to_string(),
            offset: f.offset,
            problem: f.problem,
        }
    }

    /// Runs `f` on the connection, connecting first when there is none; a failure that
    /// leaves the connection out of step with the server drops it.
    fn with_conn<T>(
        &self,
        state: &mut State,
        f: impl FnOnce(&mut Connection) -> Result<T, Fail>,
    ) -> Result<T> {
        if state.conn.is_none() {
            let conn = Connection::open(&self.address, &self.options, &state.contexts)
                .map_err(|f| self.error(f))?;
            if conn.info.size != self.info.size || conn.info.min_block != self.info.min_block {
                return Err(self.error(Fail::at(
                    0,
                    NbdProblem::BadExport(format!(
                        "the export changed on reconnecting: {} bytes, was {}",
                        conn.info.size, self.info.size
                    )),
                )));
            }
            state.conn = Some(conn);
        }
        let Some(conn) = state.conn.as_mut() else {
            return Err(self.error(protocol(0, "no connection")));
        };
        match f(conn) {
            Ok(v) => Ok(v),
            Err(fail) => {
                if fail.fatal {
                    state.conn = None;
                }
                Err(self.error(fail))
            }
        }
    }

    /// The extents of meta context `context` (`base:allocation`,
    /// `qemu:dirty-bitmap:NAME`) over `range`, clipped to it, adjacent extents with the
    /// same flags merged. At most [`NbdOptions::max_extents`] extents, else
    /// [`NbdProblem::TooManyExtents`].
    ///
    /// A context not negotiated yet is asked for by reconnecting (this needs a server that
    /// takes a new connection: QEMU's, or `qemu-nbd --persistent`); one the server does not
    /// know fails with [`NbdProblem::NoMetaContext`].
    pub fn block_status(&self, context: &str, range: Range<u64>) -> Result<Vec<Extent>> {
        let end = range.end.min(self.info.size);
        let mut out = Vec::new();
        if range.start >= end {
            return Ok(out);
        }
        let mut state = self.lock();
        let id = self.context_id(&mut state, context)?;
        let max = self.options.max_extents;
        let mut pos = range.start;
        while pos < end {
            let reached = self.with_conn(&mut state, |c| {
                c.block_status(id, context, pos, end, &mut out, max)
            })?;
            // Each answer covers at least one byte past `pos` (extents are never empty).
            if reached <= pos {
                return Err(
                    self.error(protocol(pos, "a block status answer that does not advance"))
                );
            }
            pos = reached;
        }
        Ok(out)
    }

    /// The id of `context` on the connection, reconnecting to negotiate it when needed.
    fn context_id(&self, state: &mut State, context: &str) -> Result<u32> {
        let find = |s: &State| {
            s.conn.as_ref().and_then(|c| {
                c.contexts
                    .iter()
                    .find(|(_, n)| n == context)
                    .map(|(i, _)| *i)
            })
        };
        if let Some(id) = find(state) {
            return Ok(id);
        }
        if !state.contexts.iter().any(|c| c == context) {
            if context.len() > 4096 {
                return Err(self.error(Fail::at(
                    0,
                    NbdProblem::TooLong {
                        what: "a meta context name",
                        len: context.len() as u64,
                        max: 4096,
                    },
                )));
            }
            state.contexts.push(context.to_string());
            state.conn = None;
        } else if state.conn.is_none() {
            // Negotiated on the next connection.
        } else {
            return Err(self.no_context(state, context));
        }
        self.with_conn(state, |_| Ok(()))?;
        find(state).ok_or_else(|| self.no_context(state, context))
    }

    fn no_context(&self, state: &State, context: &str) -> Error {
        let negotiated = state
            .conn
            .as_ref()
            .map(|c| {
                c.contexts
                    .iter()
                    .map(|(_, n)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        self.error(Fail::at(
            0,
            NbdProblem::NoMetaContext {
                context: context.to_string(),
                negotiated: if negotiated.is_empty() {
                    "none".into()
                } else {
                    negotiated
                },
            },
        ))
    }

    /// The dirty ranges of QEMU dirty bitmap `bitmap` over the whole export (the
    /// `qemu:dirty-bitmap:NAME` context), sorted and merged; bounded like
    /// [`NbdClient::block_status`].
    pub fn dirty_ranges(&self, bitmap: &str) -> Result<Vec<Range<u64>>> {
        let context = format!("qemu:dirty-bitmap:{bitmap}");
        Ok(self
            .block_status(&context, 0..self.info.size)?
            .into_iter()
            .filter(|e| e.flags & STATE_DIRTY != 0)
            .map(|e| e.offset..e.offset + e.len)
            .collect())
    }
}

impl ReadAt for NbdClient {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(|| self.name(), offset, buf.len(), self.info.size)?;
        if buf.is_empty() {
            return Ok(());
        }
        let min = u64::from(self.info.min_block);
        let in_flight = self.options.max_in_flight;
        let mut state = self.lock();
        let end = offset + buf.len() as u64;
        if offset.is_multiple_of(min) && end.is_multiple_of(min) {
            return self.with_conn(&mut state, |c| c.read(offset, buf, in_flight));
        }
        // The server takes only whole blocks: read around the range and copy.
        let start = offset / min * min;
        let stop = (end.div_ceil(min) * min).min(self.info.size);
        let mut whole = vec![0u8; (stop - start) as usize];
        self.with_conn(&mut state, |c| c.read(start, &mut whole, in_flight))?;
        let from = (offset - start) as usize;
        buf.copy_from_slice(&whole[from..from + buf.len()]);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.info.size
    }

    fn name(&self) -> String {
        self.address.to_string()
    }
}
