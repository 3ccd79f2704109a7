//! A small, bounded HTTP/1.1 server: one acceptor, a fixed pool of workers, one request per
//! connection. `httparse` parses the request head; this module bounds everything around it:
//! the head's size and header count, the body's size, the time a client may take to send
//! its request, the number of connections waiting for a worker (past it: `503` at once).
//! Every response carries the security headers (Content-Security-Policy and friends), so no
//! page can forget them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::html::{parse_query, percent_decode};

/// The bounds of the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request head (request line and headers), in bytes.
    pub max_head: usize,
    /// Most header fields in a request.
    pub max_headers: usize,
    /// Largest request body, in bytes (only the login form has one).
    pub max_body: usize,
    /// How long a client may take to send its whole request.
    pub read_timeout: Duration,
    /// How long writing a response may take.
    pub write_timeout: Duration,
    /// Worker threads: how many requests are answered at once.
    pub workers: usize,
    /// Connections accepted and waiting for a worker; more get `503` at once.
    pub queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 << 10,
            max_headers: 64,
            max_body: 4 << 10,
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            // Workers mostly wait on sockets: a few slow clients must not hold them all.
            workers: std::thread::available_parallelism()
                .map(|n| n.get() * 2)
                .unwrap_or(4)
                .clamp(8, 32),
            queue: 64,
        }
    }
}

/// The request methods the server tells apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// HEAD: answered like GET, without the body.
    Head,
    /// POST (only the login form takes it).
    Post,
    /// Anything else (refused by the application).
    Other(String),
}

/// A parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path as sent, without the query string (still percent-encoded).
    pub path: String,
    /// The query string's parameters, decoded.
    pub query: Vec<(String, String)>,
    /// Header fields, names lowercased, values as text (invalid UTF-8 replaced).
    pub headers: Vec<(String, String)>,
    /// The body (at most [`Limits::max_body`] bytes).
    pub body: Vec<u8>,
}

impl Request {
    /// The first header field named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter, `None` when missing or empty.
    pub fn param_nonempty(&self, name: &str) -> Option<&str> {
        self.param(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The path's segments, each percent-decoded (`/machines/a%2Fb` -> `["machines", "a/b"]`).
    pub fn segments(&self) -> Vec<String> {
        self.path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(s, false))
            .collect()
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The media type of the body.
    pub content_type: &'static str,
    /// Extra header fields (`Location`, `Set-Cookie`, ...).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// An HTML page.
    pub fn html(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "text/html; charset=utf-8",
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    /// A JSON document.
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    /// Plain text.
    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// Adds a header field.
    pub fn with(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }
}

/// The Content-Security-Policy of every response: nothing from elsewhere, no inline script
/// or style, no framing, forms post only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Writes `resp` (without its body for HEAD) with the security headers, and closes.
fn write_response(stream: &mut TcpStream, resp: &Response, head_only: bool) {
    let mut h = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Content-Security-Policy: {CSP}\r\nX-Content-Type-Options: nosniff\r\n\
         X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n\
         Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Resource-Policy: same-origin\r\n\
         Cache-Control: no-store\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    for (name, value) in &resp.headers {
        // A header value never carries a line break (no response splitting).
        if !value.contains(['\r', '\n']) {
            h.push_str(name);
            h.push_str(": ");
            h.push_str(value);
            h.push_str("\r\n");
        }
    }
    h.push_str("\r\n");
    let _ = stream.write_all(h.as_bytes());
    if !head_only {
        let _ = stream.write_all(&resp.body);
    }
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Let the client read the response before the socket closes under unread input.
    let mut sink = [0u8; 512];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    for _ in 0..16 {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

/// Reads and parses one request within the limits; `Err` is the response to send instead.
fn read_request(stream: &mut TcpStream, limits: &Limits) -> Result<Request, Response> {
    let deadline = Instant::now() + limits.read_timeout;
    let timeout = || Response::text(408, "request timeout\n");
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let read_more = |stream: &mut TcpStream, buf: &mut Vec<u8>, chunk: &mut [u8], cap: usize| {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timeout());
        }
        let _ = stream.set_read_timeout(Some(left));
        let want = chunk.len().min(cap.saturating_sub(buf.len()).max(1));
        match stream.read(&mut chunk[..want]) {
            Ok(0) => Err(Response::text(400, "connection closed mid-request\n")),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(timeout())
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
            Err(_) => Err(Response::text(400, "read error\n")),
        }
    };
    loop {
        if !buf.is_empty() {
            let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let r = build(&req, limits)?;
                    let content_length = r.1;
                    let mut request = r.0;
                    let mut body: Vec<u8> = buf[head_len..].to_vec();
                    while body.len() < content_length {
                        read_more(stream, &mut body, &mut chunk, content_length)?;
                    }
                    body.truncate(content_length);
                    request.body = body;
                    return Ok(request);
                }
                Ok(httparse::Status::Partial) => {
                    if buf.len() >= limits.max_head {
                        return Err(Response::text(431, "request head too large\n"));
                    }
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(Response::text(431, "too many header fields\n"))
                }
                Err(e) => return Err(Response::text(400, &format!("bad request: {e}\n"))),
            }
        }
        read_more(stream, &mut buf, &mut chunk, limits.max_head)?;
    }
}

/// The request from a parsed head, and its body length.
fn build(req: &httparse::Request<'_, '_>, limits: &Limits) -> Result<(Request, usize), Response> {
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        m => Method::Other(m.to_string()),
    };
    let target = req.path.unwrap_or("");
    if !target.starts_with('/') {
        return Err(Response::text(400, "request target must be a path\n"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err(Response::text(
            501,
            "chunked request bodies are not accepted\n",
        ));
    }
    let mut content_length = 0usize;
    for (n, v) in &headers {
        if n == "content-length" {
            match v.trim().parse::<usize>() {
                Ok(l) if l <= limits.max_body => content_length = l,
                Ok(_) => return Err(Response::text(413, "request body too large\n")),
                Err(_) => return Err(Response::text(400, "bad Content-Length\n")),
            }
        }
    }
    Ok((
        Request {
            method,
            path: path.to_string(),
            query: parse_query(query),
            headers,
            body: Vec::new(),
        },
        content_length,
    ))
}

/// What answers requests.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

fn handle_connection(mut stream: TcpStream, limits: &Limits, handler: &Handler) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(limits.write_timeout));
    let req = match read_request(&mut stream, limits) {
        Ok(r) => r,
        Err(resp) => return write_response(&mut stream, &resp, false),
    };
    let resp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&req)))
        .unwrap_or_else(|_| Response::text(500, "internal error\n"));
    write_response(&mut stream, &resp, req.method == Method::Head);
}

/// Serves `listener` forever with `limits.workers` threads.
pub fn serve(listener: TcpListener, limits: Limits, handler: Handler) -> std::io::Result<()> {
    let (tx, rx) = sync_channel::<TcpStream>(limits.queue.max(1));
    let rx: Arc<Mutex<Receiver<TcpStream>>> = Arc::new(Mutex::new(rx));
    for i in 0..limits.workers.max(1) {
        let rx = Arc::clone(&rx);
        let handler = Arc::clone(&handler);
        let limits = limits.clone();
        std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .spawn(move || loop {
                let next = match rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => return,
                };
                match next {
                    Ok(stream) => handle_connection(stream, &limits, &handler),
                    Err(_) => return,
                }
            })?;
    }
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => match tx.try_send(stream) {
                Ok(()) => {}
                Err(TrySendError::Full(mut stream)) => {
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                    write_response(&mut stream, &Response::text(503, "busy\n"), false);
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err(std::io::Error::other("every worker thread has stopped"))
                }
            },
            // Out of descriptors and the like: wait a little rather than spin.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(limits: Limits) -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h: Handler = Arc::new(|r: &Request| {
            Response::text(
                200,
                &format!("{:?} {} {:?} {}", r.method, r.path, r.query, r.body.len()),
            )
        });
        std::thread::spawn(move || serve(l, limits, h));
        addr
    }

    fn roundtrip(addr: std::net::SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(raw);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn answers_with_security_headers_and_bounds_the_request() {
        let addr = start(Limits {
            read_timeout: Duration::from_millis(500),
            ..Limits::default()
        });
        let r = roundtrip(addr, b"GET /a%2Fb?q=x+y&n=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains("Content-Security-Policy: default-src 'none'"),
            "{r}"
        );
        assert!(r.contains("X-Content-Type-Options: nosniff"), "{r}");
        assert!(r.contains("frame-ancestors 'none'"), "{r}");
        assert!(
            r.ends_with("Get /a%2Fb [(\"q\", \"x y\"), (\"n\", \"1\")] 0"),
            "{r}"
        );

        // HEAD: the headers only.
        let r = roundtrip(addr, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n\r\n"),
            "{r}"
        );

        // A head that never ends is cut at the limit.
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 64 << 10));
        let r = roundtrip(addr, &big);
        assert!(r.starts_with("HTTP/1.1 431"), "{r}");

        // Bodies past the limit and chunked bodies are refused before they are read.
        let r = roundtrip(
            addr,
            b"POST /login HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 413"), "{r}");
        let r = roundtrip(
            addr,
            b"POST /login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 501"), "{r}");

        // A client that stops sending gets a timeout, not a worker held forever.
        let t = Instant::now();
        let r = roundtrip(addr, b"GET / HTTP/1.1\r\n");
        assert!(r.starts_with("HTTP/1.1 408"), "{r}");
        assert!(t.elapsed() < Duration::from_secs(5));

        // Garbage and absolute-form targets are refused.
        assert!(roundtrip(addr, b"\x00\x01\x02\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(roundtrip(addr, b"GET http://evil/ HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));

        // A body within the limit is read.
        let r = roundtrip(
            addr,
            b"POST /login HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde",
        );
        assert!(r.ends_with("Post /login [] 5"), "{r}");
    }

    #[test]
    fn header_values_with_line_breaks_are_dropped() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h: Handler = Arc::new(|_: &Request| {
            Response::text(303, "")
                .with("Location", "/x\r\nSet-Cookie: evil=1".to_string())
                .with("Location", "/ok".to_string())
        });
        std::thread::spawn(move || serve(l, Limits::default(), h));
        let r = roundtrip(addr, b"GET / HTTP/1.1\r\n\r\n");
        assert!(!r.contains("evil"), "{r}");
        assert!(r.contains("Location: /ok\r\n"), "{r}");
    }
}
