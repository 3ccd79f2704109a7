//! The transmission phase: reads with several requests in flight and block status, with
//! the checks that keep a hostile server from steering the client (cookies, chunk bounds,
//! coverage, extent counts).

use std::time::Instant;

use super::connection::{message, protocol, Connection, Fail};
use super::connection::{MAX_CHUNK_EXTENTS, MAX_ERROR_CHUNK, MAX_READ_CHUNKS, MAX_STATUS_CHUNKS};
use super::proto::{self, be16, be32, be64};
use super::{Extent, NbdProblem, MAX_REQUEST};

impl Connection {
    /// The largest read request: the server's maximum, at most [`MAX_REQUEST`], a multiple
    /// of its minimum.
    pub(super) fn max_request(&self) -> u64 {
        let min = u64::from(self.info.min_block);
        let max = u64::from(self.info.max_block.min(MAX_REQUEST));
        (max / min * min).max(min)
    }

    pub(super) fn cookie(&mut self) -> u64 {
        let c = self.next_cookie;
        self.next_cookie = self.next_cookie.wrapping_add(1).max(1);
        c
    }

    /// Reads `buf.len()` bytes at `offset` (both multiples of the minimum block size),
    /// keeping up to `in_flight` requests outstanding.
    pub(super) fn read(
        &mut self,
        offset: u64,
        buf: &mut [u8],
        in_flight: usize,
    ) -> Result<(), Fail> {
        let piece = self.max_request() as usize;
        let pieces: Vec<(u64, usize, usize)> = (0..buf.len())
            .step_by(piece)
            .map(|start| (offset + start as u64, start, piece.min(buf.len() - start)))
            .collect();
        let mut pending: Vec<Pending> = Vec::new();
        let mut next = 0;
        let mut first_error: Option<Fail> = None;
        while next < pieces.len() || !pending.is_empty() {
            while first_error.is_none() && pending.len() < in_flight && next < pieces.len() {
                let (off, start, len) = pieces[next];
                let cookie = self.cookie();
                let deadline = Instant::now() + self.timeout;
                self.write_all(
                    &proto::request(0, proto::CMD_READ, cookie, off, len as u32),
                    deadline,
                    "sending a read request",
                )
                .map_err(|f| Fail { offset: off, ..f })?;
                pending.push(Pending {
                    cookie,
                    offset: off,
                    start,
                    len,
                    covered: Vec::new(),
                    error: None,
                    deadline,
                });
                next += 1;
            }
            if pending.is_empty() {
                break;
            }
            // The oldest request's deadline bounds the wait for any reply.
            let deadline = pending
                .iter()
                .map(|p| p.deadline)
                .min()
                .unwrap_or_else(Instant::now);
            if let Some(done) = self.read_chunk(buf, &mut pending, deadline)? {
                let p = pending.swap_remove(done);
                if let Err(f) = p.finish() {
                    if !f.fatal {
                        // The connection is still in step: drain what is in flight first.
                        first_error.get_or_insert(f);
                    } else {
                        return Err(f);
                    }
                }
            }
        }
        match first_error {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Reads one reply chunk of a read; returns the index of the request it completed.
    fn read_chunk(
        &mut self,
        buf: &mut [u8],
        pending: &mut [Pending],
        deadline: Instant,
    ) -> Result<Option<usize>, Fail> {
        let what = "reading a read reply";
        let mut m = [0u8; 4];
        self.read_exact(&mut m, deadline, what)?;
        let magic = u32::from_be_bytes(m);
        let find = |pending: &[Pending], cookie: u64| {
            pending
                .iter()
                .position(|p| p.cookie == cookie)
                .ok_or_else(|| Fail::at(0, NbdProblem::WrongCookie { got: cookie }))
        };
        match magic {
            proto::SIMPLE_REPLY_MAGIC => {
                let mut h = [0u8; 12];
                self.read_exact(&mut h, deadline, what)?;
                let (errno, cookie) = (be32(&h, 0), be64(&h, 4));
                let i = find(pending, cookie)?;
                let p = &mut pending[i];
                if errno != 0 {
                    p.error = Some((p.offset, errno, String::new()));
                } else {
                    let (start, len, off) = (p.start, p.len, p.offset);
                    self.read_exact(&mut buf[start..start + len], deadline, what)
                        .map_err(|f| Fail { offset: off, ..f })?;
                    p.covered.push((0, len as u64));
                }
                Ok(Some(i))
            }
            proto::STRUCTURED_REPLY_MAGIC if self.structured => {
                let mut h = [0u8; 16];
                self.read_exact(&mut h, deadline, what)?;
                let (flags, kind, cookie, len) =
                    (be16(&h, 0), be16(&h, 2), be64(&h, 4), be32(&h, 12));
                let i = find(pending, cookie)?;
                let p = &mut pending[i];
                let (poff, plen) = (p.offset, p.len as u64);
                let too_long = |max: u64| {
                    Fail::at(
                        poff,
                        NbdProblem::TooLong {
                            what: "a read reply chunk",
                            len: len.into(),
                            max,
                        },
                    )
                };
                match kind {
                    proto::REPLY_TYPE_OFFSET_DATA => {
                        if u64::from(len) > plen + 8 {
                            return Err(too_long(plen + 8));
                        }
                        if len < 9 {
                            return Err(protocol(
                                poff,
                                format!("an OFFSET_DATA chunk of {len} bytes"),
                            ));
                        }
                        let at = self.u64(deadline, what)?;
                        let n = u64::from(len) - 8;
                        let rel = chunk_inside(poff, plen, at, n)?;
                        p.add(rel, n)?;
                        let s = p.start + rel as usize;
                        self.read_exact(&mut buf[s..s + n as usize], deadline, what)
                            .map_err(|f| Fail { offset: at, ..f })?;
                    }
                    proto::REPLY_TYPE_OFFSET_HOLE => {
                        if len != 12 {
                            return Err(protocol(
                                poff,
                                format!("an OFFSET_HOLE chunk of {len} bytes"),
                            ));
                        }
                        let mut b = [0u8; 12];
                        self.read_exact(&mut b, deadline, what)?;
                        let (at, n) = (be64(&b, 0), u64::from(be32(&b, 8)));
                        if n == 0 {
                            return Err(protocol(at, "a hole of 0 bytes"));
                        }
                        let rel = chunk_inside(poff, plen, at, n)?;
                        p.add(rel, n)?;
                        let s = p.start + rel as usize;
                        buf[s..s + n as usize].fill(0);
                    }
                    proto::REPLY_TYPE_NONE if len == 0 => {
                        if flags & proto::REPLY_FLAG_DONE == 0 {
                            return Err(protocol(poff, "a NONE chunk without the DONE flag"));
                        }
                    }
                    k if k & (1 << 15) != 0 => {
                        let e = self.error_chunk(k, len, poff, deadline)?;
                        p.error.get_or_insert(e);
                    }
                    k => {
                        return Err(protocol(
                            poff,
                            format!("chunk type {k} ({len} bytes) in a read reply"),
                        ))
                    }
                }
                Ok((flags & proto::REPLY_FLAG_DONE != 0).then_some(i))
            }
            m => Err(Fail::at(
                0,
                NbdProblem::BadMagic {
                    what: "a reply",
                    got: m.into(),
                },
            )),
        }
    }

    /// An error chunk's (offset, errno, message).
    fn error_chunk(
        &mut self,
        kind: u16,
        len: u32,
        offset: u64,
        deadline: Instant,
    ) -> Result<(u64, u32, String), Fail> {
        if !(6..=MAX_ERROR_CHUNK).contains(&len) {
            return Err(Fail::at(
                offset,
                NbdProblem::TooLong {
                    what: "an error chunk",
                    len: len.into(),
                    max: MAX_ERROR_CHUNK.into(),
                },
            ));
        }
        let mut b = vec![0u8; len as usize];
        self.read_exact(&mut b, deadline, "reading an error chunk")?;
        let errno = be32(&b, 0);
        let mlen = usize::from(be16(&b, 4));
        let msg = b.get(6..6 + mlen).map(message).unwrap_or_default();
        let at = match b.get(6 + mlen..) {
            Some(rest) if kind == proto::REPLY_TYPE_ERROR_OFFSET && rest.len() == 8 => {
                be64(rest, 0)
            }
            _ => offset,
        };
        Ok((at, errno, msg))
    }

    /// The extents of `context` over `start..end` (both within the export), appended to
    /// `out` (at most `max` in all). Returns where the answer ended.
    pub(super) fn block_status(
        &mut self,
        id: u32,
        context: &str,
        start: u64,
        end: u64,
        out: &mut Vec<Extent>,
        max: usize,
    ) -> Result<u64, Fail> {
        let min = u64::from(self.info.min_block);
        let req_start = start / min * min;
        let cap = u64::from(u32::MAX) / min * min;
        let req_len = (end.div_ceil(min) * min).min(self.info.size) - req_start;
        let req_len = req_len.min(cap);
        let cookie = self.cookie();
        let deadline = Instant::now() + self.timeout;
        let what = "reading a block status reply";
        self.write_all(
            &proto::request(
                0,
                proto::CMD_BLOCK_STATUS,
                cookie,
                req_start,
                req_len as u32,
            ),
            deadline,
            "sending a block status request",
        )?;
        let req_end = req_start + req_len;
        let mut reached = None;
        let mut error = None;
        for _ in 0..MAX_STATUS_CHUNKS {
            let mut m = [0u8; 4];
            self.read_exact(&mut m, deadline, what)?;
            match u32::from_be_bytes(m) {
                proto::SIMPLE_REPLY_MAGIC => {
                    let mut h = [0u8; 12];
                    self.read_exact(&mut h, deadline, what)?;
                    let (errno, got) = (be32(&h, 0), be64(&h, 4));
                    if got != cookie {
                        return Err(Fail::at(req_start, NbdProblem::WrongCookie { got }));
                    }
                    if errno == 0 {
                        return Err(protocol(
                            req_start,
                            "a simple reply without error to a block status request",
                        ));
                    }
                    return Err(server_error(req_start, errno, String::new(), false));
                }
                proto::STRUCTURED_REPLY_MAGIC => {}
                m => {
                    return Err(Fail::at(
                        req_start,
                        NbdProblem::BadMagic {
                            what: "a reply",
                            got: m.into(),
                        },
                    ))
                }
            }
            let mut h = [0u8; 16];
            self.read_exact(&mut h, deadline, what)?;
            let (flags, kind, got, len) = (be16(&h, 0), be16(&h, 2), be64(&h, 4), be32(&h, 12));
            if got != cookie {
                return Err(Fail::at(req_start, NbdProblem::WrongCookie { got }));
            }
            match kind {
                proto::REPLY_TYPE_BLOCK_STATUS => {
                    let max_len = 4 + 8 * MAX_CHUNK_EXTENTS;
                    if len > max_len {
                        return Err(Fail::at(
                            req_start,
                            NbdProblem::TooLong {
                                what: "a block status chunk",
                                len: len.into(),
                                max: max_len.into(),
                            },
                        ));
                    }
                    if len < 12 || (len - 4) % 8 != 0 {
                        return Err(protocol(
                            req_start,
                            format!("a block status chunk of {len} bytes"),
                        ));
                    }
                    let mut b = [0u8; 4];
                    self.read_exact(&mut b, deadline, what)?;
                    let cid = u32::from_be_bytes(b);
                    if cid != id {
                        if !self.contexts.iter().any(|(i, _)| *i == cid) {
                            return Err(protocol(
                                req_start,
                                format!("block status for context id {cid}, never negotiated"),
                            ));
                        }
                        self.skip(u64::from(len) - 4, deadline, what)?;
                    } else {
                        if reached.is_some() {
                            return Err(protocol(
                                req_start,
                                format!("two block status chunks for {context}"),
                            ));
                        }
                        let n = ((len - 4) / 8) as usize;
                        if out.len().saturating_add(n) > max.saturating_add(1) {
                            return Err(Fail::at(
                                req_start,
                                NbdProblem::TooManyExtents {
                                    context: context.to_string(),
                                    max,
                                },
                            ));
                        }
                        let mut d = vec![0u8; n * 8];
                        self.read_exact(&mut d, deadline, what)?;
                        let mut pos = req_start;
                        for (k, e) in d.chunks_exact(8).enumerate() {
                            let (elen, eflags) = (u64::from(be32(e, 0)), be32(e, 4));
                            if elen == 0 {
                                return Err(protocol(pos, "an extent of 0 bytes"));
                            }
                            if pos >= req_end {
                                return Err(protocol(
                                    pos,
                                    format!("extent {k} starts past the {req_len} bytes asked for"),
                                ));
                            }
                            let stop = (pos + elen).min(req_end);
                            push_extent(out, pos, stop, eflags, start, end);
                            pos = stop;
                        }
                        if out.len() > max {
                            return Err(Fail::at(
                                req_start,
                                NbdProblem::TooManyExtents {
                                    context: context.to_string(),
                                    max,
                                },
                            ));
                        }
                        reached = Some(pos);
                    }
                }
                proto::REPLY_TYPE_NONE if len == 0 => {}
                k if k & (1 << 15) != 0 => {
                    let (at, errno, msg) = self.error_chunk(k, len, req_start, deadline)?;
                    error.get_or_insert((at, errno, msg));
                }
                k => {
                    return Err(protocol(
                        req_start,
                        format!("chunk type {k} in a block status reply"),
                    ))
                }
            }
            if flags & proto::REPLY_FLAG_DONE != 0 {
                if let Some((at, errno, msg)) = error {
                    return Err(server_error(at, errno, msg, false));
                }
                return reached
                    .ok_or_else(|| protocol(req_start, format!("no extents for {context}")));
            }
        }
        Err(Fail::at(
            req_start,
            NbdProblem::TooManyReplies {
                what: "chunks in one block status reply",
                max: MAX_STATUS_CHUNKS as u64,
            },
        ))
    }
}

/// Appends the part of `pos..stop` inside `start..end`, merged with the last extent when
/// it continues it with the same flags.
fn push_extent(out: &mut Vec<Extent>, pos: u64, stop: u64, flags: u32, start: u64, end: u64) {
    let (a, b) = (pos.max(start), stop.min(end));
    if a >= b {
        return;
    }
    if let Some(last) = out.last_mut() {
        if last.flags == flags && last.offset + last.len == a {
            last.len += b - a;
            return;
        }
    }
    out.push(Extent {
        offset: a,
        len: b - a,
        flags,
    });
}

fn server_error(offset: u64, errno: u32, message: String, fatal: bool) -> Fail {
    Fail {
        offset,
        problem: NbdProblem::Server {
            errno,
            name: proto::errno_name(errno),
            message,
        },
        fatal,
    }
}

/// The offset of chunk `at..at+n` inside the request `off..off+len`, or a protocol error.
fn chunk_inside(off: u64, len: u64, at: u64, n: u64) -> Result<u64, Fail> {
    match at.checked_sub(off) {
        Some(rel) if rel.checked_add(n).is_some_and(|e| e <= len) => Ok(rel),
        _ => Err(protocol(
            at,
            format!("a chunk of {n} bytes at {at:#x}, outside the request {off:#x}+{len:#x}"),
        )),
    }
}

/// A read request in flight.
struct Pending {
    cookie: u64,
    offset: u64,
    start: usize,
    len: usize,
    /// The chunks received, relative to `offset`.
    covered: Vec<(u64, u64)>,
    error: Option<(u64, u32, String)>,
    deadline: Instant,
}

impl Pending {
    fn add(&mut self, rel: u64, n: u64) -> Result<(), Fail> {
        if self.covered.len() >= MAX_READ_CHUNKS {
            return Err(Fail::at(
                self.offset,
                NbdProblem::TooManyReplies {
                    what: "chunks in one read reply",
                    max: MAX_READ_CHUNKS as u64,
                },
            ));
        }
        self.covered.push((rel, n));
        Ok(())
    }

    /// Checks, once the last chunk came, that the chunks cover the request exactly.
    fn finish(mut self) -> Result<(), Fail> {
        if let Some((at, errno, msg)) = self.error {
            return Err(server_error(at, errno, msg, false));
        }
        self.covered.sort_unstable();
        let mut pos = 0u64;
        for &(rel, n) in &self.covered {
            if rel != pos {
                return Err(protocol(
                    self.offset + pos.min(rel),
                    if rel < pos {
                        "overlapping chunks in a read reply"
                    } else {
                        "a gap in a read reply"
                    },
                ));
            }
            pos += n;
        }
        if pos != self.len as u64 {
            return Err(protocol(
                self.offset + pos,
                "a read reply that ends short of the request",
            ));
        }
        Ok(())
    }
}
