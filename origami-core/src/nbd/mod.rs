//! An NBD client: any Network Block Device export (`qemu-nbd`, QEMU's built-in NBD server,
//! other storage) read as a [`ReadAt`](crate::ReadAt), with the export's allocation and
//! dirty bitmaps through `NBD_CMD_BLOCK_STATUS`.
//!
//! [`NbdClient`] speaks the newstyle fixed handshake (`NBD_OPT_STRUCTURED_REPLY`,
//! `NBD_OPT_SET_META_CONTEXT`, `NBD_OPT_GO` with the export size and block sizes), then
//! reads with `NBD_CMD_READ` (split at the server's maximum block size, several requests in
//! flight for a large read) and asks `NBD_CMD_BLOCK_STATUS` for the `base:allocation`
//! and `qemu:dirty-bitmap:NAME` contexts; it ends with `NBD_CMD_DISC`. It connects over a
//! Unix socket or TCP; TCP to a host that is not loopback is refused unless
//! [`NbdOptions::allow_remote`] allows it (NBD has no authentication without TLS, which this
//! client does not speak).
//!
//! The server is hostile input: every reply length, option reply count and extent count is
//! bounded before anything is allocated for it, every reply's cookie is checked against
//! the request in flight, chunks must lie inside what was asked for and cover it exactly,
//! and every wait on the socket has a time-out ([`NbdOptions::timeout`]). Errors are
//! [`Error::Nbd`](crate::Error::Nbd), naming the server, the offset and an [`NbdProblem`].
//!
//! The client is `Send + Sync`: one connection behind a mutex, so threads sharing it take
//! turns (a read is one turn, whatever its size). A connection left in an unknown state
//! by an error is dropped and the next call connects again.
//!
//! ```no_run
//! use origami_core::nbd::{NbdAddress, NbdClient, NbdOptions};
//! use origami_core::ReadAt;
//!
//! let address = NbdAddress::parse("nbd+unix:///disk0?socket=/run/fleece/nbd.sock")?;
//! let disk = NbdClient::connect(&address, &NbdOptions::default())?;
//! let mut mbr = [0u8; 512];
//! disk.read_at(0, &mut mbr)?;
//! for e in disk.block_status("base:allocation", 0..disk.len())? {
//!     println!("{:#x}+{:#x} flags {:#x}", e.offset, e.len, e.flags);
//! }
//! # Ok::<(), origami_core::Error>(())
//! ```

mod address;
mod client;
mod connection;
mod proto;
mod transmission;

use std::time::Duration;

pub use address::{is_nbd_uri, NbdAddress};
pub use client::NbdClient;

/// The `base:allocation` context: flag [`STATE_HOLE`] (not allocated) and [`STATE_ZERO`]
/// (reads as zeros).
pub const BASE_ALLOCATION: &str = "base:allocation";
/// `base:allocation`: the extent is not allocated.
pub const STATE_HOLE: u32 = 1;
/// `base:allocation`: the extent reads as zeros.
pub const STATE_ZERO: u32 = 2;
/// `qemu:dirty-bitmap:NAME`: the extent is dirty.
pub const STATE_DIRTY: u32 = 1;

/// The default bound on the extents one [`NbdClient::block_status`] call returns.
pub const DEFAULT_MAX_EXTENTS: usize = 1 << 20;

/// The largest read request sent, whatever maximum the server announces (32 MiB, the
/// size every server must accept by the protocol document).
pub const MAX_REQUEST: u32 = 32 << 20;

/// How an [`NbdClient`] connects and how far it trusts the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdOptions {
    timeout: Duration,
    allow_remote: bool,
    meta_contexts: Vec<String>,
    max_extents: usize,
    max_in_flight: usize,
}

impl Default for NbdOptions {
    /// A 30 s time-out, loopback TCP only, `base:allocation`, at most
    /// [`DEFAULT_MAX_EXTENTS`] extents a call, 8 requests in flight.
    fn default() -> Self {
        NbdOptions {
            timeout: Duration::from_secs(30),
            allow_remote: false,
            meta_contexts: Vec::new(),
            max_extents: DEFAULT_MAX_EXTENTS,
            max_in_flight: 8,
        }
    }
}

impl NbdOptions {
    /// How long one exchange with the server (the handshake, a request and its reply) may
    /// take before it fails with [`NbdProblem::TimedOut`] (default 30 s; at least 1 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Allows TCP to hosts that are not loopback (off by default: NBD without TLS is
    /// neither authenticated nor encrypted, and a disk name is user input that must not
    /// make the crawler reach into the network on its own). Unix sockets are always allowed.
    pub fn allow_remote(mut self, yes: bool) -> Self {
        self.allow_remote = yes;
        self
    }

    /// Also negotiates this meta context at connect time (`qemu:dirty-bitmap:NAME`, ...);
    /// `base:allocation` always is. A context the server does not know is left out (its
    /// [`NbdClient::block_status`] calls fail with [`NbdProblem::NoMetaContext`]).
    pub fn meta_context(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !self.meta_contexts.contains(&name) {
            self.meta_contexts.push(name);
        }
        self
    }

    /// The most extents one [`NbdClient::block_status`] call returns before it fails with
    /// [`NbdProblem::TooManyExtents`] (default [`DEFAULT_MAX_EXTENTS`]).
    pub fn max_extents(mut self, n: usize) -> Self {
        self.max_extents = n.max(1);
        self
    }

    /// How many read requests a large read keeps in flight (default 8, 1 to 64).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.clamp(1, 64);
        self
    }

    /// Whether non-loopback TCP is allowed.
    pub fn remote_allowed(&self) -> bool {
        self.allow_remote
    }

    /// The contexts negotiated at connect time: `base:allocation` and those added.
    pub fn meta_contexts(&self) -> Vec<String> {
        let mut all = vec![BASE_ALLOCATION.to_string()];
        all.extend(
            self.meta_contexts
                .iter()
                .filter(|c| *c != BASE_ALLOCATION)
                .cloned(),
        );
        all
    }
}

/// One extent of a block-status answer: `len` bytes at `offset` with the context's
/// `flags` (for `base:allocation` [`STATE_HOLE`] and [`STATE_ZERO`]; for a dirty bitmap
/// [`STATE_DIRTY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Where the extent starts in the export.
    pub offset: u64,
    /// Its length in bytes (never 0).
    pub len: u64,
    /// The context's flags.
    pub flags: u32,
}

/// What went wrong talking to an NBD server (the server and offset are in
/// [`Error::Nbd`](crate::Error::Nbd)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NbdProblem {
    /// The disk name is not an NBD URI this client reads.
    #[error("bad NBD URI {uri:?}: {reason}")]
    BadUri {
        /// The name given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// TCP to a host that is not loopback, without [`NbdOptions::allow_remote`].
    #[error(
        "refused to connect to {host}: not a loopback address; NBD over TCP has no \
         authentication, so only 127.0.0.0/8 and ::1 are allowed unless the caller opts in \
         (NbdOptions::allow_remote, ImageOptions::allow_remote_nbd, --allow-remote-nbd)"
    )]
    RemoteRefused {
        /// The host named.
        host: String,
    },
    /// The socket failed (connect, read, write), or the server closed the connection.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The host's error.
        source: std::io::Error,
    },
    /// The server did not answer in time.
    #[error("no answer within {after:?} while {what}")]
    TimedOut {
        /// The time-out in force.
        after: Duration,
        /// What was awaited.
        what: &'static str,
    },
    /// A magic number is not the protocol's.
    #[error("bad magic in {what}: {got:#x}")]
    BadMagic {
        /// Which message.
        what: &'static str,
        /// What was received.
        got: u64,
    },
    /// The server does not do the fixed newstyle handshake (oldstyle servers are not read).
    #[error("the server does not speak the fixed newstyle handshake (flags {flags:#x})")]
    NotFixedNewstyle {
        /// The server's handshake flags.
        flags: u16,
    },
    /// The server refused an option (an unknown export, a policy, ...).
    #[error("{option} refused: {reply}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    OptionRefused {
        /// The option.
        option: &'static str,
        /// The error reply's name.
        reply: &'static str,
        /// The server's message (cut to 256 bytes).
        message: String,
    },
    /// A reply is longer than the client accepts for its kind.
    #[error("{what} of {len} bytes, over the bound of {max}")]
    TooLong {
        /// Which reply.
        what: &'static str,
        /// The length the server announced.
        len: u64,
        /// The bound.
        max: u64,
    },
    /// The server sent more replies to one option or request than any answer needs.
    #[error("more than {max} {what}")]
    TooManyReplies {
        /// Which replies.
        what: &'static str,
        /// The bound.
        max: u64,
    },
    /// A block-status answer holds more extents than [`NbdOptions::max_extents`].
    #[error("block status of {context} holds more than {max} extents")]
    TooManyExtents {
        /// The context.
        context: String,
        /// The bound.
        max: usize,
    },
    /// A reply names a cookie (handle) that no request in flight has.
    #[error("reply for cookie {got:#x}, which no request in flight has")]
    WrongCookie {
        /// The cookie received.
        got: u64,
    },
    /// A reply breaks the protocol (a chunk outside its request, a gap, a zero-length
    /// extent, a reply type that does not fit, ...).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The server answered a request with an error.
    #[error("the server failed the request: {name} ({errno}){}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Server {
        /// The NBD error number.
        errno: u32,
        /// Its name (`EIO`, `EINVAL`, ...).
        name: &'static str,
        /// The server's message, when it sent one (cut to 256 bytes).
        message: String,
    },
    /// A block-status context was not negotiated (the server does not know it, or it was
    /// not asked for at connect time and reconnecting did not get it).
    #[error(
        "meta context {context:?} is not available on this connection (negotiated: {negotiated})"
    )]
    NoMetaContext {
        /// The context asked for.
        context: String,
        /// The contexts the server agreed to.
        negotiated: String,
    },
    /// The export's size or block sizes are unusable.
    #[error("unusable export: {0}")]
    BadExport(String),
}
