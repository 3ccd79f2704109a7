//! Shared by the `serve` tests: the demo index, starting `origami serve`, a tiny HTTP client,
//! and the frames the tests build (a hostile one, a machine with two frames).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use origami_frame::{ConfigItem, FileItem, Frame, Package, Process, User};
use serde_json::Value;

pub fn origami(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_origami"))
        .args(args)
        .output()
        .expect("run origami")
}

pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(env!("CARGO_CRATE_NAME"))
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The demo fleet unpacked, crawled and indexed once per test binary by `origami demo`.
pub fn demo_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch(&format!("serve-demo-{}", std::process::id()));
        let out = origami(&["demo", "--dir", dir.to_str().unwrap(), "--jobs", "2"]);
        assert!(
            out.status.success(),
            "demo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// The demo generator's record of the fleet (independent of origami's crawl).
pub fn fleet_truth() -> Value {
    serde_json::from_str(origami_examples::demo::FLEET_JSON).unwrap()
}

/// A copy of a folder (an index: each server holds its index's writer lock).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// A copy of the demo index under `name`.
pub fn demo_index(name: &str) -> PathBuf {
    let d = scratch(name);
    let idx = d.join("index");
    copy_dir(&demo_dir().join("index"), &idx);
    idx
}

/// Indexes frames with `origami index`.
pub fn index_frames(index: &Path, frames: &[Frame]) {
    let file = index.with_extension("frames.jsonl");
    let text: String = frames.iter().map(|f| f.to_json() + "\n").collect();
    std::fs::write(&file, text).unwrap();
    let out = origami(&[
        "index",
        "--index",
        index.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "index: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `origami serve`, killed when dropped.
pub struct Served {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `origami serve --index INDEX --listen 127.0.0.1:0 EXTRA...` and waits for its
/// `serving http://ADDR/` line.
pub fn serve(index: &Path, extra: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_origami"))
        .args([
            "serve",
            "--index",
            index.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start origami serve");
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let Some(rest) = line.strip_prefix("serving http://") else {
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        let _ = child.kill();
        panic!("serve did not start: {line:?} {err}");
    };
    let addr: SocketAddr = rest.split('/').next().unwrap().parse().unwrap();
    Served { child, addr }
}

/// A response as the tests see it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One request over a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

pub fn get(addr: SocketAddr, target: &str) -> Reply {
    request(addr, "GET", target, &[], "")
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub const PWN_FILE: &str = "<script>window.__pwned=1</script>";
pub const PWN_CMD: &str = "<img src=x onerror=window.__pwned=1>";
pub const PWN_PKG: &str = "\"><svg onload=window.__pwned=1>";
pub const PWN_SYSTEM: &str = "evil-01";

/// A frame whose guest is hostile: a file, a process command line, a package, a user's
/// name and another's shell, a config file's text and a crawl error made to break out of
/// HTML.
pub fn hostile_frame() -> Frame {
    let mut f = Frame::new(PWN_SYSTEM);
    f.meta.hostname = Some(format!("evil{PWN_PKG}"));
    f.file.push(FileItem {
        path: format!("/tmp/{PWN_FILE}"),
        mode: 0o644,
        size: 13,
        ..Default::default()
    });
    f.process.push(Process {
        pid: 666,
        ppid: 1,
        name: "sh".into(),
        cmdline: vec!["sh".into(), "-c".into(), PWN_CMD.into()],
        ..Default::default()
    });
    f.process.push(Process {
        pid: 1,
        ppid: 0,
        name: "init".into(),
        cmdline: vec!["/sbin/init".into()],
        ..Default::default()
    });
    f.package.push(Package {
        name: PWN_PKG.into(),
        version: "1.0".into(),
        arch: "amd64".into(),
        manager: "dpkg".into(),
        ..Default::default()
    });
    // uid 0, the default owner of the file and the processes: its name shows in the user
    // facet.
    f.user.push(User {
        name: PWN_FILE.into(),
        uid: 0,
        gid: 0,
        home: "/root".into(),
        shell: "/bin/sh".into(),
        ..Default::default()
    });
    f.user.push(User {
        name: "mallory".into(),
        uid: 1000,
        gid: 1000,
        home: "/home/mallory".into(),
        shell: PWN_CMD.into(),
        ..Default::default()
    });
    f.config.push(ConfigItem {
        path: "/etc/motd".into(),
        content: format!("hello\n{PWN_FILE}\n{PWN_PKG}\n"),
        ..Default::default()
    });
    f.os.name = Some(format!("Evil{PWN_FILE}"));
    f.os.version = Some("1".into());
    f.os.id = Some("evil".into());
    f.record_error("package", format!("dpkg status: {PWN_CMD}"));
    f
}

/// A machine with two frames: `first` has packages a, b, c; `second` drops a, changes b's
/// version, keeps c, adds d. Returns the frames.
pub fn two_frames(system: &str) -> (Frame, Frame) {
    let pkg = |name: &str, version: &str| Package {
        name: name.into(),
        version: version.into(),
        arch: "amd64".into(),
        manager: "dpkg".into(),
        ..Default::default()
    };
    let mut a = Frame::new(system);
    a.meta.timestamp = time::macros::datetime!(2026-11-20 10:00:00 UTC);
    a.os.id = Some("debian".into());
    a.os.version = Some("12".into());
    a.package = vec![
        pkg("alpha", "1.0"),
        pkg("bravo", "2.0"),
        pkg("charlie", "3.0"),
    ];
    let mut b = a.clone();
    b.meta.timestamp = time::macros::datetime!(2026-11-21 10:00:00 UTC);
    b.package = vec![
        pkg("bravo", "2.1"),
        pkg("charlie", "3.0"),
        pkg("delta", "4.0"),
    ];
    (a, b)
}
