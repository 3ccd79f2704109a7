//! `qemu-nbd` as a test server: serves an image read-only on a Unix socket or a loopback
//! TCP port until dropped (then killed, its socket folder removed).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `qemu-nbd`.
#[derive(Debug)]
pub struct QemuNbd {
    child: Child,
    dir: Option<PathBuf>,
    /// The export's URI (`nbd+unix:///EXPORT?socket=PATH` or `nbd://127.0.0.1:PORT/EXPORT`).
    pub uri: String,
    /// The Unix socket, when it listens on one.
    pub socket: Option<PathBuf>,
    /// The TCP port, when it listens on one.
    pub port: Option<u16>,
}

/// Where the server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// A Unix socket in a fresh folder.
    Unix,
    /// A free loopback TCP port.
    Tcp,
}

impl QemuNbd {
    /// Serves `image` (format `format`: `raw`, `qcow2`) as export `export`, read-only,
    /// persistent (it outlives a client), with up to 8 clients, plus `extra` arguments
    /// (`-B BITMAP`, ...). Panics when it does not listen within 20 s.
    pub fn serve(
        image: &Path,
        format: &str,
        export: &str,
        listen: Listen,
        extra: &[&str],
    ) -> QemuNbd {
        let mut cmd = Command::new("qemu-nbd");
        cmd.args([
            "--read-only",
            "--persistent",
            "--shared=8",
            "-f",
            format,
            "-x",
            export,
        ])
        .args(extra);
        let (dir, socket, port, uri) = match listen {
            Listen::Unix => {
                let dir = std::env::temp_dir().join(format!(
                    "origami-qemu-nbd-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos())
                ));
                std::fs::create_dir_all(&dir).expect("socket folder");
                let socket = dir.join("nbd.sock");
                cmd.arg("--socket").arg(&socket);
                let uri = format!("nbd+unix:///{export}?socket={}", socket.display());
                (Some(dir), Some(socket), None, uri)
            }
            Listen::Tcp => {
                // A port free now; qemu-nbd binds it a moment later.
                let port = TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port();
                cmd.args(["-b", "127.0.0.1", "-p", &port.to_string()]);
                (
                    None,
                    None,
                    Some(port),
                    format!("nbd://127.0.0.1:{port}/{export}"),
                )
            }
        };
        let child = cmd
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("qemu-nbd starts");
        let mut server = QemuNbd {
            child,
            dir,
            uri,
            socket,
            port,
        };
        let start = Instant::now();
        loop {
            let up = match (&server.socket, server.port) {
                (Some(s), _) => std::os::unix::net::UnixStream::connect(s).is_ok(),
                (None, Some(p)) => std::net::TcpStream::connect(("127.0.0.1", p)).is_ok(),
                _ => false,
            };
            if up {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("qemu-nbd exited: {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "qemu-nbd does not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for QemuNbd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
