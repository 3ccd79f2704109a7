//! One connection to an NBD server: the socket with its deadlines, and the handshake
//! (fixed newstyle, structured replies, meta contexts, `NBD_OPT_GO`).

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::proto::{self, be16, be32, be64};
use super::{NbdAddress, NbdOptions, NbdProblem, MAX_REQUEST};

/// The longest option reply accepted (a block-size or export reply is 12 to 14 bytes; a
/// context name or a message is at most 4096 bytes by the protocol document).
const MAX_OPTION_REPLY: u32 = 64 << 10;
/// The most replies accepted to one option before its final one.
const MAX_OPTION_REPLIES: u64 = 256;
/// The most chunks accepted in the structured reply to one read.
pub(super) const MAX_READ_CHUNKS: usize = 1 << 16;
/// The longest error chunk: errno, message length, a 4096-byte message, an offset.
pub(super) const MAX_ERROR_CHUNK: u32 = 4 + 2 + 4096 + 8;
/// The most extents one block-status chunk may hold (1 MiB of descriptors; QEMU sends at
/// most 128 Ki).
pub(super) const MAX_CHUNK_EXTENTS: u32 = 1 << 17;
/// The most chunks in the reply to one block-status request (one per context).
pub(super) const MAX_STATUS_CHUNKS: usize = 64;
/// How much of a server's message goes into an error.
const MAX_MESSAGE: usize = 256;

/// A failure inside an exchange: where, what, and whether the connection is still in step
/// with the server.
pub(super) struct Fail {
    pub(super) offset: u64,
    pub(super) problem: NbdProblem,
    pub(super) fatal: bool,
}

impl Fail {
    pub(super) fn at(offset: u64, problem: NbdProblem) -> Fail {
        Fail {
            offset,
            problem,
            fatal: true,
        }
    }
}

pub(super) fn protocol(offset: u64, what: impl Into<String>) -> Fail {
    Fail::at(offset, NbdProblem::Protocol(what.into()))
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn set_read_timeout(&self, t: Duration) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(Some(t)),
            Stream::Tcp(s) => s.set_read_timeout(Some(t)),
        }
    }
    fn set_write_timeout(&self, t: Duration) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(Some(t)),
            Stream::Tcp(s) => s.set_write_timeout(Some(t)),
        }
    }
    fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the handshake learnt of the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ExportInfo {
    pub(super) size: u64,
    pub(super) flags: u16,
    pub(super) min_block: u32,
    pub(super) preferred_block: u32,
    pub(super) max_block: u32,
}

/// One open connection in the transmission phase.
pub(super) struct Connection {
    io: BufReader<Stream>,
    pub(super) timeout: Duration,
    pub(super) structured: bool,
    pub(super) contexts: Vec<(u32, String)>,
    pub(super) next_cookie: u64,
    pub(super) info: ExportInfo,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // NBD_CMD_DISC, best effort: a server that is gone or stuck must not hold us.
        let stream = self.io.get_mut();
        let _ = stream.set_write_timeout(Duration::from_millis(200));
        let _ = stream.write_all(&proto::request(0, proto::CMD_DISC, 0, 0, 0));
        stream.shutdown();
    }
}

/// The time left before `deadline`, or a time-out failure.
fn remaining(deadline: Instant, timeout: Duration, what: &'static str) -> Result<Duration, Fail> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Fail::at(
            0,
            NbdProblem::TimedOut {
                after: timeout,
                what,
            },
        ));
    }
    Ok(left)
}

fn io_fail(e: std::io::Error, timeout: Duration, what: &'static str) -> Fail {
    let problem = match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => NbdProblem::TimedOut {
            after: timeout,
            what,
        },
        _ => NbdProblem::Io { what, source: e },
    };
    Fail::at(0, problem)
}

/// The server's message of an error reply, cut and made printable.
pub(super) fn message(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(MAX_MESSAGE)]);
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl Connection {
    /// Fills `buf` from the socket by `deadline`; each wait is bounded by what is left.
    pub(super) fn read_exact(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
        what: &'static str,
    ) -> Result<(), Fail> {
        let mut pos = 0;
        while pos < buf.len() {
            // Bytes already buffered need no wait.
            if self.io.buffer().is_empty() {
                let left = remaining(deadline, self.timeout, what)?;
                self.io
                    .get_ref()
                    .set_read_timeout(left)
                    .map_err(|e| io_fail(e, self.timeout, what))?;
            }
            match self.io.read(&mut buf[pos..]) {
                Ok(0) => {
                    return Err(Fail::at(
                        0,
                        NbdProblem::Io {
                            what,
                            source: std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "the server closed the connection",
                            ),
                        },
                    ))
                }
                Ok(n) => pos += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_fail(e, self.timeout, what)),
            }
        }
        Ok(())
    }

    /// Reads and throws away `len` bytes (a chunk for a context nobody asked about).
    pub(super) fn skip(
        &mut self,
        mut len: u64,
        deadline: Instant,
        what: &'static str,
    ) -> Result<(), Fail> {
        let mut scratch = [0u8; 4096];
        while len > 0 {
            let n = len.min(scratch.len() as u64) as usize;
            self.read_exact(&mut scratch[..n], deadline, what)?;
            len -= n as u64;
        }
        Ok(())
    }

    pub(super) fn write_all(
        &mut self,
        data: &[u8],
        deadline: Instant,
        what: &'static str,
    ) -> Result<(), Fail> {
        let left = remaining(deadline, self.timeout, what)?;
        let stream = self.io.get_mut();
        stream
            .set_write_timeout(left)
            .map_err(|e| io_fail(e, self.timeout, what))?;
        stream
            .write_all(data)
            .map_err(|e| io_fail(e, self.timeout, what))
    }

    pub(super) fn u64(&mut self, deadline: Instant, what: &'static str) -> Result<u64, Fail> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b, deadline, what)?;
        Ok(u64::from_be_bytes(b))
    }

    /// Connects and negotiates: fixed newstyle, structured replies, the meta contexts, GO.
    pub(super) fn open(
        address: &NbdAddress,
        options: &NbdOptions,
        contexts: &[String],
    ) -> Result<Connection, Fail> {
        let timeout = options.timeout;
        let deadline = Instant::now() + timeout;
        let stream = match address {
            NbdAddress::Unix { socket, .. } => Stream::Unix(
                UnixStream::connect(socket).map_err(|e| io_fail(e, timeout, "connecting"))?,
            ),
            NbdAddress::Tcp { .. } => {
                let addrs = address
                    .tcp_addrs(options.allow_remote)
                    .map_err(|p| Fail::at(0, p))?;
                let mut last = None;
                let mut found = None;
                for a in addrs {
                    let left = remaining(deadline, timeout, "connecting")?;
                    match TcpStream::connect_timeout(&a, left) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let s = match (found, last) {
                    (Some(s), _) => s,
                    (None, Some(e)) => return Err(io_fail(e, timeout, "connecting")),
                    (None, None) => return Err(protocol(0, "no address to connect to")),
                };
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
        };
        let mut conn = Connection {
            io: BufReader::with_capacity(64 << 10, stream),
            timeout,
            structured: false,
            contexts: Vec::new(),
            next_cookie: 1,
            info: ExportInfo {
                size: 0,
                flags: 0,
                min_block: 1,
                preferred_block: 4096,
                max_block: MAX_REQUEST,
            },
        };
        let what = "reading the server's greeting";
        let magic = conn.u64(deadline, what)?;
        if magic != proto::INIT_MAGIC {
            return Err(Fail::at(
                0,
                NbdProblem::BadMagic {
                    what: "the greeting",
                    got: magic,
                },
            ));
        }
        let magic = conn.u64(deadline, what)?;
        if magic != proto::IHAVEOPT {
            // 0x00420281861253 is the oldstyle handshake.
            return Err(Fail::at(0, NbdProblem::NotFixedNewstyle { flags: 0 }));
        }
        let mut b = [0u8; 2];
        conn.read_exact(&mut b, deadline, what)?;
        let flags = u16::from_be_bytes(b);
        if flags & proto::FLAG_FIXED_NEWSTYLE == 0 {
            return Err(Fail::at(0, NbdProblem::NotFixedNewstyle { flags }));
        }
        let mut client = proto::FLAG_C_FIXED_NEWSTYLE;
        if flags & proto::FLAG_NO_ZEROES != 0 {
            client |= proto::FLAG_C_NO_ZEROES;
        }
        conn.write_all(&client.to_be_bytes(), deadline, "sending client flags")?;

        // Structured replies: needed for block status and for reads that skip holes.
        conn.structured = conn.simple_option(proto::OPT_STRUCTURED_REPLY, &[], deadline)?;
        if conn.structured && !contexts.is_empty() {
            conn.set_meta_contexts(address.export(), contexts, deadline)?;
        }
        conn.go(address.export(), deadline)?;
        Ok(conn)
    }

    /// Reads one option reply header and its data: (type, data).
    fn option_reply(&mut self, option: u32, deadline: Instant) -> Result<(u32, Vec<u8>), Fail> {
        let what = "reading an option reply";
        let mut h = [0u8; 20];
        self.read_exact(&mut h, deadline, what)?;
        let magic = be64(&h, 0);
        if magic != proto::OPTION_REPLY_MAGIC {
            return Err(Fail::at(
                0,
                NbdProblem::BadMagic {
                    what: "an option reply",
                    got: magic,
                },
            ));
        }
        if be32(&h, 8) != option {
            return Err(protocol(
                0,
                format!(
                    "a reply to option {} while {} was asked",
                    be32(&h, 8),
                    proto::option_name(option)
                ),
            ));
        }
        let (kind, len) = (be32(&h, 12), be32(&h, 16));
        if len > MAX_OPTION_REPLY {
            return Err(Fail::at(
                0,
                NbdProblem::TooLong {
                    what: "an option reply",
                    len: len.into(),
                    max: MAX_OPTION_REPLY.into(),
                },
            ));
        }
        let mut data = vec![0u8; len as usize];
        self.read_exact(&mut data, deadline, what)?;
        Ok((kind, data))
    }

    fn refused(option: u32, kind: u32, data: &[u8]) -> Fail {
        Fail::at(
            0,
            NbdProblem::OptionRefused {
                option: proto::option_name(option),
                reply: proto::option_error_name(kind),
                message: message(data),
            },
        )
    }

    /// Sends an option answered by a single ACK: true when acknowledged, false when the
    /// server does not support it.
    fn simple_option(&mut self, option: u32, data: &[u8], deadline: Instant) -> Result<bool, Fail> {
        self.write_all(&proto::option(option, data), deadline, "sending an option")?;
        let (kind, data) = self.option_reply(option, deadline)?;
        match kind {
            proto::REP_ACK => Ok(true),
            k if k == proto::REP_FLAG_ERROR | 1 => Ok(false),
            k if k & proto::REP_FLAG_ERROR != 0 => Err(Self::refused(option, k, &data)),
            k => Err(protocol(
                0,
                format!("reply type {k} to {}", proto::option_name(option)),
            )),
        }
    }

    fn set_meta_contexts(
        &mut self,
        export: &str,
        queries: &[String],
        deadline: Instant,
    ) -> Result<(), Fail> {
        let option = proto::OPT_SET_META_CONTEXT;
        let data = proto::meta_context_data(export, queries);
        self.write_all(&proto::option(option, &data), deadline, "sending an option")?;
        for _ in 0..MAX_OPTION_REPLIES {
            let (kind, data) = self.option_reply(option, deadline)?;
            match kind {
                proto::REP_ACK => return Ok(()),
                proto::REP_META_CONTEXT => {
                    if data.len() < 4 {
                        return Err(protocol(0, "a meta context reply shorter than its id"));
                    }
                    let name = String::from_utf8_lossy(&data[4..]).into_owned();
                    if !queries.contains(&name) {
                        return Err(protocol(
                            0,
                            format!("meta context {name:?}, which was not asked for"),
                        ));
                    }
                    self.contexts.push((be32(&data, 0), name));
                }
                // Contexts are an extra: a server without them still serves reads.
                k if k == proto::REP_FLAG_ERROR | 1 => {
                    self.contexts.clear();
                    return Ok(());
                }
                k if k & proto::REP_FLAG_ERROR != 0 => return Err(Self::refused(option, k, &data)),
                k => {
                    return Err(protocol(
                        0,
                        format!("reply type {k} to NBD_OPT_SET_META_CONTEXT"),
                    ))
                }
            }
        }
        Err(Fail::at(
            0,
            NbdProblem::TooManyReplies {
                what: "replies to NBD_OPT_SET_META_CONTEXT",
                max: MAX_OPTION_REPLIES,
            },
        ))
    }

    fn go(&mut self, export: &str, deadline: Instant) -> Result<(), Fail> {
        let option = proto::OPT_GO;
        let data = proto::go_data(export, &[proto::INFO_BLOCK_SIZE]);
        self.write_all(&proto::option(option, &data), deadline, "sending an option")?;
        let mut export_seen = false;
        for _ in 0..MAX_OPTION_REPLIES {
            let (kind, data) = self.option_reply(option, deadline)?;
            match kind {
                proto::REP_ACK if export_seen => return self.check_export(),
                proto::REP_ACK => {
                    return Err(protocol(
                        0,
                        "NBD_OPT_GO acknowledged without NBD_INFO_EXPORT",
                    ))
                }
                proto::REP_INFO => match (be16(&data, 0), data.len()) {
                    (proto::INFO_EXPORT, 12) => {
                        self.info.size = be64(&data, 2);
                        self.info.flags = be16(&data, 10);
                        export_seen = true;
                    }
                    (proto::INFO_BLOCK_SIZE, 14) => {
                        self.info.min_block = be32(&data, 2);
                        self.info.preferred_block = be32(&data, 6);
                        self.info.max_block = be32(&data, 10);
                    }
                    (proto::INFO_EXPORT | proto::INFO_BLOCK_SIZE, n) => {
                        return Err(protocol(0, format!("an NBD_REP_INFO of {n} bytes")))
                    }
                    // NBD_INFO_NAME, NBD_INFO_DESCRIPTION, ...: not needed.
                    _ => {}
                },
                k if k & proto::REP_FLAG_ERROR != 0 => return Err(Self::refused(option, k, &data)),
                k => return Err(protocol(0, format!("reply type {k} to NBD_OPT_GO"))),
            }
        }
        Err(Fail::at(
            0,
            NbdProblem::TooManyReplies {
                what: "replies to NBD_OPT_GO",
                max: MAX_OPTION_REPLIES,
            },
        ))
    }

    fn check_export(&mut self) -> Result<(), Fail> {
        let i = &mut self.info;
        let bad = |s: String| Err(Fail::at(0, NbdProblem::BadExport(s)));
        if i.size > i64::MAX as u64 {
            return bad(format!("size {:#x} over 2^63", i.size));
        }
        if !i.min_block.is_power_of_two() || i.min_block > 64 << 10 {
            return bad(format!("minimum block size {}", i.min_block));
        }
        if i.max_block < i.min_block || !i.max_block.is_multiple_of(i.min_block) {
            return bad(format!(
                "maximum block size {} for a minimum of {}",
                i.max_block, i.min_block
            ));
        }
        if i.flags & proto::FLAG_HAS_FLAGS == 0 {
            i.flags = 0;
        }
        Ok(())
    }
}
