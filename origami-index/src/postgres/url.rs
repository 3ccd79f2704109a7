//! Connection URLs: parsed, checked for where they lead, and shown without their password.
//!
//! This build speaks to PostgreSQL without TLS (the `postgres` crate with `NoTls`: no
//! OpenSSL to build or configure). A connection in plain text is safe on loopback (or a
//! unix socket) and nowhere else, so [`config`] refuses a URL whose host is anything but
//! loopback unless the URL says `sslmode=disable` itself: the explicit choice of someone
//! whose network is already private (an SSH tunnel, a VPN, a host-only bridge). The
//! default `sslmode=prefer` would otherwise fall back to plain text without a word.
//!
//! A password may be given in the URL (`postgres://USER:PASSWORD@HOST:PORT/DB`) or, to
//! keep it off command lines and out of `ps`, in the `PGPASSWORD` environment variable
//! (used when the URL has none). Errors and messages show URLs through [`redact`].

use std::net::IpAddr;

use ::postgres::config::{Host, SslMode};
use ::postgres::Config;

use crate::{Error, Result};

/// Whether `s` is a PostgreSQL URL (`postgres://` or `postgresql://`).
pub fn is_url(s: &str) -> bool {
    let l = s.trim_start().to_ascii_lowercase();
    l.starts_with("postgres://") || l.starts_with("postgresql://")
}

/// `url` with its password (`USER:PASSWORD@`, or a `password=` parameter) replaced by
/// `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    // USER:PASSWORD@ in the authority (between "://" and the first '/', '?' or end).
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let rest = &out[start..];
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                let (a, b) = (start + colon + 1, start + at);
                out.replace_range(a..b, "***");
            }
        }
    }
    // password=... among the query parameters.
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let params: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", params.join("&"));
    }
    out
}

fn is_loopback_name(h: &str) -> bool {
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.to_ascii_lowercase().ends_with(".localhost")
        || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The connection settings of `url`, checked: parsed, `PGPASSWORD` applied when the URL has
/// no password, and refused when it would talk plain text beyond loopback (see the module
/// documentation).
pub fn config(url: &str) -> Result<Config> {
    let refuse = |reason: String| Error::PostgresUrl {
        url: redact(url),
        reason,
    };
    if !is_url(url) {
        return Err(refuse(
            "not a postgres:// or postgresql:// URL (postgres://USER@HOST:PORT/DB)".into(),
        ));
    }
    let mut config: Config = url.parse().map_err(|e| refuse(format!("{e}")))?;
    if config.get_password().is_none() {
        if let Some(p) = std::env::var_os("PGPASSWORD") {
            config.password(p.as_encoded_bytes());
        }
    }
    if config.get_hosts().is_empty() {
        return Err(refuse("no host (postgres://USER@HOST:PORT/DB)".into()));
    }
    if config.get_ssl_mode() != SslMode::Disable {
        let addrs = config.get_hostaddrs();
        let remote: Vec<String> = if addrs.is_empty() {
            config
                .get_hosts()
                .iter()
                .filter_map(|h| match h {
                    Host::Tcp(name) if !is_loopback_name(name) => Some(name.clone()),
                    _ => None,
                })
                .collect()
        } else {
            addrs
                .iter()
                .filter(|a| !a.is_loopback())
                .map(|a| a.to_string())
                .collect()
        };
        if let Some(h) = remote.first() {
            return Err(refuse(format!(
                "{h} is not a loopback address, and this build connects without TLS: the \
                 data (and a password) would cross the network in plain text. Reach the \
                 server through a tunnel to a loopback port, or add `sslmode=disable` to \
                 the URL to accept plain text on a network you trust"
            )));
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact("postgres://bob:s3cr:et@db.example:5432/x"),
            "postgres://bob:***@db.example:5432/x"
        );
        assert_eq!(
            redact("postgresql://bob@127.0.0.1/x?password=hunter2&sslmode=disable"),
            "postgresql://bob@127.0.0.1/x?password=***&sslmode=disable"
        );
        assert_eq!(
            redact("postgres://bob@localhost:5/x"),
            "postgres://bob@localhost:5/x"
        );
        // A '@' inside the password does not leak its tail.
        assert_eq!(
            redact("postgres://bob:p@ss@localhost/x"),
            "postgres://bob:***@localhost/x"
        );
    }

    #[test]
    fn plain_text_beyond_loopback_needs_an_explicit_sslmode_disable() {
        for ok in [
            "postgres://u@127.0.0.1:5432/db",
            "postgres://u@localhost/db",
            "postgres://u@[::1]:5432/db",
            "postgresql://u@db.example/x?sslmode=disable",
            "postgres://u@db.example/x?hostaddr=127.0.0.1",
        ] {
            assert!(config(ok).is_ok(), "{ok}");
        }
        for bad in [
            "postgres://u:pw@db.example:5432/db",
            "postgres://u@10.0.0.5/db",
            "postgres://u@127.0.0.1,10.0.0.5/db",
            "postgres://u@localhost/db?hostaddr=10.0.0.5",
            "postgres://u@db.example/x?sslmode=require",
        ] {
            let e = config(bad).unwrap_err().to_string();
            assert!(e.contains("not a loopback"), "{bad}: {e}");
            assert!(!e.contains(":pw@"), "{e}");
        }
        assert!(config("/var/lib/origami").is_err());
        assert!(config("postgres://u@localhost:notaport/db").is_err());
    }
}
