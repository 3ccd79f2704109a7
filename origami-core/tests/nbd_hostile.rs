//! The NBD client against a hostile server (issue 13, bad input): a server written here, a
//! thread on a Unix socket, that sends oversized replies, replies for the wrong cookie,
//! endless option replies, a block-status answer claiming 2^29 extents or 1-byte extents
//! without end, chunks outside the request, a gap, silence and a trickle. Each gives a
//! typed error naming the server, within the time-out, and the test's peak memory stays
//! small (nothing is allocated by a length the server sent).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use origami_core::nbd::{NbdClient, NbdOptions, NbdProblem};
use origami_core::{Error, ReadAt};

const SIZE: u64 = 1 << 30;

/// A hostile server: one connection, scripted.
struct Hostile {
    _dir: tempfile::TempDir,
    uri: String,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(script: impl FnOnce(UnixStream) + Send + 'static) -> Hostile {
    let dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = dir.path().join("evil.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let thread = std::thread::spawn(move || {
        if let Ok((s, _)) = listener.accept() {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            script(s);
        }
    });
    Hostile {
        uri: format!("nbd+unix:///x?socket={}", socket.display()),
        _dir: dir,
        thread: Some(thread),
    }
}

fn u16b(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}
fn u32b(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}
fn u64b(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;

fn greet(s: &mut UnixStream) {
    s.write_all(b"NBDMAGIC").unwrap();
    s.write_all(&u64b(IHAVEOPT)).unwrap();
    s.write_all(&u16b(3)).unwrap();
    let mut flags = [0u8; 4];
    s.read_exact(&mut flags).unwrap();
}

/// Reads one option: (option, data).
fn read_option(s: &mut UnixStream) -> Option<(u32, Vec<u8>)> {
    let mut h = [0u8; 16];
    s.read_exact(&mut h).ok()?;
    let option = u32::from_be_bytes(h[8..12].try_into().unwrap());
    let len = u32::from_be_bytes(h[12..16].try_into().unwrap());
    let mut data = vec![0u8; len as usize];
    s.read_exact(&mut data).ok()?;
    Some((option, data))
}

fn option_reply(s: &mut UnixStream, option: u32, kind: u32, data: &[u8]) -> std::io::Result<()> {
    let mut m = Vec::new();
    m.extend_from_slice(&u64b(REPLY_MAGIC));
    m.extend_from_slice(&u32b(option));
    m.extend_from_slice(&u32b(kind));
    m.extend_from_slice(&u32b(data.len() as u32));
    m.extend_from_slice(data);
    s.write_all(&m)
}

/// A correct handshake: structured replies, every context asked for (ids from 1), GO.
fn handshake(s: &mut UnixStream) {
    greet(s);
    while let Some((option, data)) = read_option(s) {
        match option {
            8 => option_reply(s, 8, 1, &[]).unwrap(),
            10 => {
                // export name, then the queries.
                let nlen = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
                let mut at = 4 + nlen;
                let count = u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
                at += 4;
                for id in 1..=count {
                    let qlen = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
                    let name = &data[at + 4..at + 4 + qlen];
                    at += 4 + qlen;
                    let mut r = u32b(id).to_vec();
                    r.extend_from_slice(name);
                    option_reply(s, 10, 4, &r).unwrap();
                }
                option_reply(s, 10, 1, &[]).unwrap();
            }
            7 => {
                let mut info = u16b(0).to_vec();
                info.extend_from_slice(&u64b(SIZE));
                info.extend_from_slice(&u16b(1));
                option_reply(s, 7, 3, &info).unwrap();
                option_reply(s, 7, 1, &[]).unwrap();
                return;
            }
            other => panic!("unexpected option {other}"),
        }
    }
}

/// Reads one request: (type, cookie, offset, len).
fn read_request(s: &mut UnixStream) -> Option<(u16, u64, u64, u32)> {
    let mut r = [0u8; 28];
    s.read_exact(&mut r).ok()?;
    Some((
        u16::from_be_bytes(r[6..8].try_into().unwrap()),
        u64::from_be_bytes(r[8..16].try_into().unwrap()),
        u64::from_be_bytes(r[16..24].try_into().unwrap()),
        u32::from_be_bytes(r[24..28].try_into().unwrap()),
    ))
}

fn chunk_header(flags: u16, kind: u16, cookie: u64, len: u32) -> Vec<u8> {
    let mut m = u32b(0x668e_33ef).to_vec();
    m.extend_from_slice(&u16b(flags));
    m.extend_from_slice(&u16b(kind));
    m.extend_from_slice(&u64b(cookie));
    m.extend_from_slice(&u32b(len));
    m
}

fn quick() -> NbdOptions {
    NbdOptions::default().timeout(Duration::from_secs(2))
}

/// Connects (and reads 4 KiB at 8 KiB when `read`), expecting an NBD error whose problem
/// `want` accepts; checks it names the server and came in time.
fn expect(h: &Hostile, options: NbdOptions, op: Op, want: impl Fn(&NbdProblem) -> bool) {
    let t = Instant::now();
    let r = NbdClient::open(&h.uri, &options).and_then(|c| match op {
        Op::Connect => Ok(()),
        Op::Read => {
            let mut b = vec![0u8; 4096];
            c.read_at(8192, &mut b)
        }
        Op::Status => c.block_status("base:allocation", 0..SIZE).map(drop),
        Op::Dirty => c.dirty_ranges("b0").map(drop),
    });
    match r {
        Err(e @ Error::Nbd { .. }) => {
            let Error::Nbd {
                server, problem, ..
            } = &e
            else {
                unreachable!()
            };
            assert!(want(problem), "unexpected problem: {e}");
            assert!(server.contains("evil.sock"), "{e}");
            assert!(e.to_string().contains("evil.sock"), "{e}");
        }
        other => panic!("expected an NBD error, got {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
}

#[derive(Clone, Copy)]
enum Op {
    Connect,
    Read,
    Status,
    Dirty,
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_hostile_server_gives_typed_errors_bounded_memory_and_no_hang() {
    let before = peak_rss_kib();

    // Not a newstyle server.
    let h = serve(|mut s| {
        let _ = s.write_all(b"NBDMAGIC\x00\x00\x42\x02\x81\x86\x12\x53");
        std::thread::sleep(Duration::from_millis(200));
    });
    expect(&h, quick(), Op::Connect, |p| {
        matches!(p, NbdProblem::NotFixedNewstyle { .. })
    });

    // An option reply claiming 4 GiB.
    let h = serve(|mut s| {
        greet(&mut s);
        let _ = read_option(&mut s);
        let mut m = u64b(REPLY_MAGIC).to_vec();
        m.extend_from_slice(&u32b(8));
        m.extend_from_slice(&u32b(1));
        m.extend_from_slice(&u32b(0xffff_fff0));
        let _ = s.write_all(&m);
    });
    expect(&h, quick(), Op::Connect, |p| {
        matches!(p, NbdProblem::TooLong { .. })
    });

    // Endless meta-context replies.
    let h = serve(|mut s| {
        greet(&mut s);
        let _ = read_option(&mut s);
        option_reply(&mut s, 8, 1, &[]).unwrap();
        let _ = read_option(&mut s);
        let mut r = u32b(1).to_vec();
        r.extend_from_slice(b"base:allocation");
        for _ in 0..100_000 {
            if option_reply(&mut s, 10, 4, &r).is_err() {
                return;
            }
        }
    });
    expect(&h, quick(), Op::Connect, |p| {
        matches!(p, NbdProblem::TooManyReplies { .. })
    });

    // Endless NBD_REP_INFO replies to GO.
    let h = serve(|mut s| {
        greet(&mut s);
        let _ = read_option(&mut s);
        option_reply(&mut s, 8, 1, &[]).unwrap();
        let _ = read_option(&mut s);
        option_reply(&mut s, 10, 1, &[]).unwrap();
        let _ = read_option(&mut s);
        let mut info = u16b(0).to_vec();
        info.extend_from_slice(&u64b(SIZE));
        info.extend_from_slice(&u16b(1));
        for _ in 0..100_000 {
            if option_reply(&mut s, 7, 3, &info).is_err() {
                return;
            }
        }
    });
    expect(&h, quick(), Op::Connect, |p| {
        matches!(p, NbdProblem::TooManyReplies { .. })
    });

    // A read answered for another cookie.
    let h = serve(|mut s| {
        handshake(&mut s);
        if let Some((_, cookie, off, len)) = read_request(&mut s) {
            let mut m = chunk_header(1, 1, cookie ^ 0xdead, len + 8);
            m.extend_from_slice(&u64b(off));
            m.extend(std::iter::repeat_n(0u8, len as usize));
            let _ = s.write_all(&m);
        }
    });
    expect(&h, quick(), Op::Read, |p| {
        matches!(p, NbdProblem::WrongCookie { .. })
    });

    // A read chunk claiming 4 GiB of data.
    let h = serve(|mut s| {
        handshake(&mut s);
        if let Some((_, cookie, off, _)) = read_request(&mut s) {
            let mut m = chunk_header(1, 1, cookie, 0xffff_ffff);
            m.extend_from_slice(&u64b(off));
            let _ = s.write_all(&m);
        }
    });
    expect(&h, quick(), Op::Read, |p| {
        matches!(p, NbdProblem::TooLong { .. })
    });

    // A data chunk outside the request.
    let h = serve(|mut s| {
        handshake(&mut s);
        if let Some((_, cookie, off, len)) = read_request(&mut s) {
            let mut m = chunk_header(1, 1, cookie, len + 8);
            m.extend_from_slice(&u64b(off + 1));
            m.extend(std::iter::repeat_n(0u8, len as usize));
            let _ = s.write_all(&m);
        }
    });
    expect(&h, quick(), Op::Read, |p| {
        matches!(p, NbdProblem::Protocol(_))
    });

    // A reply that ends with a gap (half the data, then DONE).
    let h = serve(|mut s| {
        handshake(&mut s);
        if let Some((_, cookie, off, len)) = read_request(&mut s) {
            let half = len / 2;
            let mut m = chunk_header(1, 1, cookie, half + 8);
            m.extend_from_slice(&u64b(off));
            m.extend(std::iter::repeat_n(0u8, half as usize));
            let _ = s.write_all(&m);
        }
    });
    expect(&h, quick(), Op::Read, |p| {
        matches!(p, NbdProblem::Protocol(_))
    });

    // A block-status chunk claiming 2^29 extents.
    let h = serve(|mut s| {
        handshake(&mut s);
        if let Some((_, cookie, _, _)) = read_request(&mut s) {
            let mut m = chunk_header(1, 5, cookie, 0xffff_fffc);
            m.extend_from_slice(&u32b(1));
            let _ = s.write_all(&m);
        }
    });
    expect(&h, quick(), Op::Status, |p| {
        matches!(p, NbdProblem::TooLong { .. })
    });

    // A dirty bitmap of 1-byte extents without end (2^30 of them for this export).
    let h = serve(|mut s| {
        handshake(&mut s);
        while let Some((kind, cookie, _, _)) = read_request(&mut s) {
            if kind != 7 {
                return;
            }
            let n: u32 = 1 << 17;
            for ctx in [1u32, 2] {
                let mut m = chunk_header(u16::from(ctx == 2), 5, cookie, 4 + 8 * n);
                m.extend_from_slice(&u32b(ctx));
                for i in 0..n {
                    m.extend_from_slice(&u32b(1));
                    m.extend_from_slice(&u32b(i & 1));
                }
                if s.write_all(&m).is_err() {
                    return;
                }
            }
        }
    });
    let opts = quick().meta_context("qemu:dirty-bitmap:b0");
    expect(
        &h,
        opts,
        Op::Dirty,
        |p| matches!(p, NbdProblem::TooManyExtents { max, .. } if *max == 1 << 20),
    );

    // A zero-length extent.
    let h = serve(|mut s| {
        handshake(&mut s);
        if let Some((_, cookie, _, _)) = read_request(&mut s) {
            let mut m = chunk_header(1, 5, cookie, 12);
            m.extend_from_slice(&u32b(1));
            m.extend_from_slice(&u32b(0));
            m.extend_from_slice(&u32b(0));
            let _ = s.write_all(&m);
        }
    });
    expect(&h, quick(), Op::Status, |p| {
        matches!(p, NbdProblem::Protocol(_))
    });

    // Silence after the handshake.
    let h = serve(|mut s| {
        handshake(&mut s);
        let _ = read_request(&mut s);
        std::thread::sleep(Duration::from_secs(3));
    });
    let opts = NbdOptions::default().timeout(Duration::from_millis(500));
    expect(&h, opts, Op::Read, |p| {
        matches!(p, NbdProblem::TimedOut { .. })
    });

    // A trickle: one byte every 100 ms never finishes a reply within the time-out.
    let h = serve(|mut s| {
        handshake(&mut s);
        if let Some((_, cookie, off, len)) = read_request(&mut s) {
            let mut m = chunk_header(1, 1, cookie, len + 8);
            m.extend_from_slice(&u64b(off));
            m.extend(std::iter::repeat_n(0u8, len as usize));
            for b in m {
                if s.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let opts = NbdOptions::default().timeout(Duration::from_secs(1));
    expect(&h, opts, Op::Read, |p| {
        matches!(p, NbdProblem::TimedOut { .. })
    });

    // The connection closed in the middle of a reply.
    let h = serve(|mut s| {
        handshake(&mut s);
        if let Some((_, cookie, off, len)) = read_request(&mut s) {
            let mut m = chunk_header(1, 1, cookie, len + 8);
            m.extend_from_slice(&u64b(off));
            m.extend_from_slice(&[0u8; 100]);
            let _ = s.write_all(&m);
        }
    });
    expect(&h, quick(), Op::Read, |p| {
        matches!(p, NbdProblem::Io { .. })
    });

    // An error chunk is the server's error, with its message.
    let h = serve(|mut s| {
        handshake(&mut s);
        if let Some((_, cookie, _, _)) = read_request(&mut s) {
            let msg = b"disk on fire";
            let mut m = chunk_header(1, (1 << 15) + 1, cookie, 6 + msg.len() as u32);
            m.extend_from_slice(&u32b(5));
            m.extend_from_slice(&u16b(msg.len() as u16));
            m.extend_from_slice(msg);
            let _ = s.write_all(&m);
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    expect(
        &h,
        quick(),
        Op::Read,
        |p| matches!(p, NbdProblem::Server { errno: 5, name: "EIO", message, .. } if message == "disk on fire"),
    );

    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 64 << 10, "peak memory grew by {grown} KiB");
}
