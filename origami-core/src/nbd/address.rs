//! NBD URIs, in the form QEMU and libnbd write them: `nbd+unix:///EXPORT?socket=PATH` for a
//! Unix socket, `nbd://HOST[:PORT]/EXPORT` (or `nbd+tcp://`) for TCP, port 10809 by
//! default. The export name is the path after the host's `/`, percent-decoded. TLS
//! schemes (`nbds://`) and the older `nbd:unix:PATH` form are refused.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use super::NbdProblem;

/// The NBD port assigned by IANA.
pub const DEFAULT_PORT: u16 = 10809;

/// The longest export name the protocol allows.
const MAX_NAME: usize = 4096;

/// Where an NBD export is: its server and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NbdAddress {
    /// A Unix socket.
    Unix {
        /// The socket's path.
        socket: PathBuf,
        /// The export name (may be empty: the server's default export).
        export: String,
    },
    /// TCP.
    Tcp {
        /// The host as written (an IP address or a name).
        host: String,
        /// The port.
        port: u16,
        /// The export name.
        export: String,
    },
}

/// True when `name` is written as an NBD URI (`nbd://`, `nbd+tcp://`, `nbd+unix://`), so
/// that it names a server rather than a file.
pub fn is_nbd_uri(name: &str) -> bool {
    ["nbd://", "nbd+tcp://", "nbd+unix://"]
        .iter()
        .any(|p| name.starts_with(p))
}

fn bad(uri: &str, reason: impl Into<String>) -> NbdProblem {
    NbdProblem::BadUri {
        uri: uri.to_string(),
        reason: reason.into(),
    }
}

/// `%XX` decoding; a `%` not followed by two hex digits is an error.
fn percent_decode(uri: &str, s: &str) -> Result<String, NbdProblem> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(uri, "a % not followed by two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(uri, "the decoded text is not UTF-8"))
}

impl NbdAddress {
    /// Parses an NBD URI (see the module docs).
    pub fn parse(uri: &str) -> crate::Result<NbdAddress> {
        Self::parse_problem(uri).map_err(|problem| crate::Error::Nbd {
            server: uri.to_string(),
            offset: 0,
            problem,
        })
    }

    fn parse_problem(uri: &str) -> Result<NbdAddress, NbdProblem> {
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| {
            bad(
                uri,
                "not a URI (nbd://HOST/EXPORT or nbd+unix:///EXPORT?socket=PATH)",
            )
        })?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        if rest.contains('#') || query.is_some_and(|q| q.contains('#')) {
            return Err(bad(uri, "fragments (#) are not allowed"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let export = percent_decode(uri, path)?;
        if export.len() > MAX_NAME {
            return Err(bad(uri, format!("export name over {MAX_NAME} bytes")));
        }
        let mut params = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            params.push((k.to_string(), percent_decode(uri, v)?));
        }
        match scheme {
            "nbd+unix" => {
                if !authority.is_empty() {
                    return Err(bad(
                        uri,
                        "nbd+unix takes no host (nbd+unix:///EXPORT?socket=PATH)",
                    ));
                }
                let mut socket = None;
                for (k, v) in params {
                    match k.as_str() {
                        "socket" if socket.is_none() && !v.is_empty() => socket = Some(v),
                        "socket" => return Err(bad(uri, "socket= given twice or empty")),
                        other => return Err(bad(uri, format!("unknown parameter {other:?}"))),
                    }
                }
                let socket = socket.ok_or_else(|| bad(uri, "no socket=PATH"))?;
                if socket.contains('\0') {
                    return Err(bad(uri, "the socket path holds a NUL byte"));
                }
                Ok(NbdAddress::Unix {
                    socket: PathBuf::from(socket),
                    export,
                })
            }
            "nbd" | "nbd+tcp" => {
                if let Some((k, _)) = params.first() {
                    return Err(bad(uri, format!("unknown parameter {k:?}")));
                }
                if authority.contains('@') {
                    return Err(bad(uri, "user names are not allowed"));
                }
                let (host, port) = split_host_port(uri, authority)?;
                Ok(NbdAddress::Tcp { host, port, export })
            }
            "nbds" | "nbds+tcp" | "nbds+unix" => Err(bad(uri, "NBD over TLS is not supported")),
            other => Err(bad(uri, format!("unknown scheme {other:?}"))),
        }
    }

    /// The export name.
    pub fn export(&self) -> &str {
        match self {
            NbdAddress::Unix { export, .. } | NbdAddress::Tcp { export, .. } => export,
        }
    }

    /// The server, for messages: the socket path or `HOST:PORT`.
    pub fn server(&self) -> String {
        match self {
            NbdAddress::Unix { socket, .. } => socket.display().to_string(),
            NbdAddress::Tcp { host, port, .. } if host.contains(':') => format!("[{host}]:{port}"),
            NbdAddress::Tcp { host, port, .. } => format!("{host}:{port}"),
        }
    }

    /// The addresses to connect to for TCP, all checked to be loopback unless `remote`.
    pub(crate) fn tcp_addrs(&self, remote: bool) -> Result<Vec<SocketAddr>, NbdProblem> {
        let NbdAddress::Tcp { host, port, .. } = self else {
            return Ok(Vec::new());
        };
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, *port)],
            Err(_) => (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|source| NbdProblem::Io {
                    what: "resolving the host",
                    source,
                })?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(NbdProblem::BadUri {
                uri: self.to_string(),
                reason: format!("{host} resolves to no address"),
            });
        }
        if !remote && !addrs.iter().all(|a| a.ip().is_loopback()) {
            return Err(NbdProblem::RemoteRefused { host: host.clone() });
        }
        Ok(addrs)
    }
}

impl std::fmt::Display for NbdAddress {
    /// The address as a URI.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NbdAddress::Unix { socket, export } => {
                write!(f, "nbd+unix:///{export}?socket={}", socket.display())
            }
            NbdAddress::Tcp { export, .. } => write!(f, "nbd://{}/{export}", self.server()),
        }
    }
}

fn split_host_port(uri: &str, authority: &str) -> Result<(String, u16), NbdProblem> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| bad(uri, "an IPv6 address without its closing ]"))?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad(uri, "text after the ]"))?,
                ),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad(uri, "no host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(uri, format!("bad port {p:?}")))?,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_as_qemu_writes_them() {
        assert_eq!(
            NbdAddress::parse("nbd+unix:///fl-access?socket=/tmp/x/nbd.sock").unwrap(),
            NbdAddress::Unix {
                socket: "/tmp/x/nbd.sock".into(),
                export: "fl-access".into()
            }
        );
        assert_eq!(
            NbdAddress::parse("nbd+unix://?socket=/s").unwrap().export(),
            ""
        );
        assert_eq!(
            NbdAddress::parse("nbd://127.0.0.1:10810/a%20b").unwrap(),
            NbdAddress::Tcp {
                host: "127.0.0.1".into(),
                port: 10810,
                export: "a b".into()
            }
        );
        let v6 = NbdAddress::parse("nbd://[::1]/e").unwrap();
        assert_eq!(v6.server(), "[::1]:10809");
        assert_eq!(v6.to_string(), "nbd://[::1]:10809/e");
        for bad in [
            "nbd+unix:///e",
            "nbd+unix://host/e?socket=/s",
            "nbd+unix:///e?socket=/s&socket=/t",
            "nbd+unix:///e?socket=/s&x=1",
            "nbd://:10809/e",
            "nbd://h:0/e",
            "nbd://h:99999/e",
            "nbd://h/e?x=1",
            "nbd://u@h/e",
            "nbds://h/e",
            "nbd://h/%zz",
            "nbd:unix:/s",
            "/path/disk.qcow2",
        ] {
            assert!(NbdAddress::parse(bad).is_err(), "{bad}");
        }
        assert!(is_nbd_uri("nbd+unix:///e?socket=/s"));
        assert!(!is_nbd_uri("nbd.qcow2"));
    }

    #[test]
    fn tcp_is_loopback_only_unless_allowed() {
        let a = NbdAddress::parse("nbd://192.0.2.1/e").unwrap();
        assert!(matches!(
            a.tcp_addrs(false),
            Err(NbdProblem::RemoteRefused { .. })
        ));
        assert_eq!(a.tcp_addrs(true).unwrap().len(), 1);
        for ok in ["nbd://127.0.0.1/e", "nbd://127.8.9.1:1/e", "nbd://[::1]/e"] {
            assert!(
                NbdAddress::parse(ok).unwrap().tcp_addrs(false).is_ok(),
                "{ok}"
            );
        }
    }
}
