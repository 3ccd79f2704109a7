//! Real PostgreSQL clusters for the tests of the PostgreSQL index backend.
//!
//! [`PgCluster::start`] runs Debian's PostgreSQL binaries (`/usr/lib/postgresql/N/bin`, the
//! highest N, or `ORIGAMI_PG_BIN`): `initdb` into a fresh temporary folder (as the
//! `postgres` user when the tests run as root, since PostgreSQL refuses to run as root),
//! then `pg_ctl start` on a free loopback port with its unix socket inside that folder. The
//! cluster is stopped and its folder removed when the value is dropped. Nothing is mocked.
//!
//! Where the binaries are missing, [`PgCluster::start`] returns `None` after printing why
//! (the test skips), except under `CI=true`, where it panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The folder of PostgreSQL's server binaries, when installed.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("ORIGAMI_PG_BIN") {
        return Some(PathBuf::from(d)).filter(|d| d.join("initdb").is_file());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

/// One running PostgreSQL cluster in a temporary folder.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

impl PgCluster {
    /// Creates and starts a cluster; `None` (after printing why) where PostgreSQL is not
    /// installed, a panic under `CI=true`.
    pub fn start() -> Option<PgCluster> {
        let Some(bin) = bin_dir() else {
            crate::skip(
                "PostgreSQL server binaries are not installed (apt-get install postgresql)",
            );
            return None;
        };
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = std::env::temp_dir().join(format!(
            "origami-pg-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let c = PgCluster {
            bin,
            dir,
            port: free_port(),
            as_postgres: is_root,
        };
        if is_root {
            c.must(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&c.dir),
            );
        }
        let data = c.data_dir();
        c.must(c.cmd("initdb").args([
            "-D",
            &data.to_string_lossy(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]));
        c.start_server();
        Some(c)
    }

    fn cmd(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn must(&self, c: &mut Command) {
        let out = c
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{c:?}: {e}"));
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            panic!(
                "{c:?} failed: {}\n{}\n{}\nserver log:\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The cluster's folder (data, socket, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The loopback TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL to database `db` as the `postgres` superuser.
    pub fn url_db(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A connection URL to the `postgres` database.
    pub fn url(&self) -> String {
        self.url_db("postgres")
    }

    /// Creates database `name` (with Debian's `createdb`); returns its URL.
    pub fn create_db(&self, name: &str) -> String {
        self.must(self.cmd("createdb").args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            name,
        ]));
        self.url_db(name)
    }

    /// Runs one SQL statement with `psql` in database `db`; its output, unaligned, without
    /// headers, trimmed (panics when psql fails).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .cmd("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-d",
                db,
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("psql: {e}"));
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Starts the server (after [`PgCluster::stop`]); waits until it accepts connections.
    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50 \
             -c shared_buffers=64MB",
            self.port,
            self.dir.display()
        );
        self.must(self.cmd("pg_ctl").args([
            "-D",
            &self.data_dir().to_string_lossy(),
            "-l",
            &self.dir.join("server.log").to_string_lossy(),
            "-w",
            "-t",
            "60",
            "-o",
            &opts,
            "start",
        ]));
    }

    /// Stops the server at once (`-m immediate`: as a crash would, without a checkpoint).
    pub fn stop(&self) {
        self.must(self.cmd("pg_ctl").args([
            "-D",
            &self.data_dir().to_string_lossy(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]));
    }

    /// Bytes under the data folder (the disk the cluster uses).
    pub fn disk_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(rd) = std::fs::read_dir(p) else {
                return 0;
            };
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.data_dir())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .args([
                "-D",
                &self.data_dir().to_string_lossy(),
                "-m",
                "immediate",
                "stop",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
