//! Fleecing: a point-in-time view of a running VM's disk, exported over QEMU's own NBD
//! server, with the guest running on.
//!
//! The recipe is QEMU's (`tests/qemu-iotests/tests/image-fleecing`, "fleecing-format
//! based fleecing"), for QEMU 7.1 and later:
//!
//! 1. a sparse raw file in a private temporary folder becomes a `file` node (the target);
//! 2. a `copy-before-write` filter is added above the disk's node, with that target and
//!    `on-cbw-error=break-snapshot` (a full target fails the snapshot's reads, never the
//!    guest's writes), and put under the guest's device with `qom-set ... drive`: from this
//!    instant, every cluster the guest overwrites is first copied to the target;
//! 3. a `snapshot-access` node above the filter reads the disk as it was at that instant;
//! 4. QEMU's NBD server listens on a Unix socket in the private folder and exports that
//!    node read-only (`nbd-server-start`, `block-export-add`), and an [`NbdClient`]
//!    connects to it.
//!
//! [`Fleece`] undoes every step it made, in reverse, when it is closed or dropped, also
//! after an error half-way through: the export is removed, the server stopped, the device
//! put back on its own node, the nodes deleted and the folder removed. The view is
//! crash-consistent (what a power cut at that instant would leave: the guest's page cache
//! is not on the disk); journaling file systems make it whole on replay, as ext4's reader
//! does.
//!
//! The nodes and the export are named `ofl-{t,c,a,e}-PID-N-TIME`.
//!
//! Limits: QEMU runs one NBD server; when something else already started it, the fleecing
//! fails (`nbd-server-start` is refused) rather than share it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{QmpClient, QmpProblem};
use crate::error::{Error, Result};
use crate::nbd::{NbdAddress, NbdClient, NbdOptions};
use crate::read::ReadAt;

/// How a [`Fleece`] is set up.
#[derive(Debug, Clone)]
pub struct FleeceOptions {
    drive: Option<String>,
    timeout: Duration,
    dir: Option<PathBuf>,
    nbd: NbdOptions,
}

impl Default for FleeceOptions {
    /// The VM's first disk, a 30 s time-out per QMP command, the system's temporary folder.
    fn default() -> Self {
        FleeceOptions {
            drive: None,
            timeout: Duration::from_secs(30),
            dir: None,
            nbd: NbdOptions::default(),
        }
    }
}

impl FleeceOptions {
    /// The disk to fleece: a drive id (`-drive id=`), a device id (`-device id=`), a
    /// device's QOM path, or a block node name; default the first disk that has a device.
    pub fn drive(mut self, name: impl Into<String>) -> Self {
        self.drive = Some(name.into());
        self
    }

    /// How long each QMP command may take (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Where the private folder (the copy-before-write target, the NBD socket) is made
    /// (default: the system's temporary folder). The target grows by what the guest
    /// writes while the fleece lives.
    pub fn temp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The options of the NBD client that reads the export.
    pub fn nbd(mut self, nbd: NbdOptions) -> Self {
        self.nbd = nbd;
        self
    }
}

/// One step made, and how to undo it.
#[derive(Debug)]
enum Undo {
    RemoveDir(PathBuf),
    BlockdevDel(String),
    QomSet { path: String, node: String },
    NbdServerStop,
    ExportDel(String),
}

/// A running fleecing export of one disk of a running VM (see the module docs); reads
/// through [`Fleece::disk`] (or the `ReadAt` of the fleece itself) see the disk as it was
/// when the fleece started.
pub struct Fleece {
    // Dropped first: our connection ends before the export is removed.
    client: Arc<NbdClient>,
    steps: Steps,
    drive: String,
    node: String,
    size: u64,
}

impl std::fmt::Debug for Fleece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleece")
            .field("qmp", &self.steps.qmp.socket())
            .field("drive", &self.drive)
            .field("node", &self.node)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The QMP connection and the steps made on it, undone when dropped.
struct Steps {
    qmp: QmpClient,
    undo: Vec<Undo>,
    timeout: Duration,
}

/// The disk chosen in `query-block`: its name for messages, node, device path and size.
struct Chosen {
    label: String,
    node: String,
    qdev: String,
    size: u64,
}

fn choose(blocks: &Value, want: Option<&str>) -> std::result::Result<Chosen, QmpProblem> {
    let list = blocks.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut names = Vec::new();
    for b in list.iter().take(4096) {
        let device = b["device"].as_str().unwrap_or("");
        let qdev = b["qdev"].as_str().unwrap_or("");
        let inserted = &b["inserted"];
        let node = inserted["node-name"].as_str().unwrap_or("");
        let label = if device.is_empty() { qdev } else { device };
        if !label.is_empty() {
            names.push(label.to_string());
        }
        if node.is_empty() || qdev.is_empty() {
            continue;
        }
        let matches = match want {
            None => true,
            Some(w) => {
                w == device
                    || w == qdev
                    || w == node
                    || qdev.starts_with(&format!("/machine/peripheral/{w}/"))
                    || qdev == format!("/machine/peripheral/{w}")
            }
        };
        if !matches {
            continue;
        }
        let size = inserted["image"]["virtual-size"]
            .as_u64()
            .ok_or_else(|| QmpProblem::Protocol(format!("no virtual-size for {label}")))?;
        return Ok(Chosen {
            label: label.to_string(),
            node: node.to_string(),
            qdev: qdev.to_string(),
            size,
        });
    }
    Err(QmpProblem::NoDrive(match want {
        Some(w) => format!(
            "no disk {w:?} with a medium and a device (disks: {})",
            names.join(", ")
        ),
        None => format!(
            "no disk with a medium and a device (disks: {})",
            names.join(", ")
        ),
    }))
}

/// A name no other fleece (of this or another process) uses, short enough for a node name
/// (QEMU takes at most 31 characters).
fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{:x}-{:x}-{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed) & 0xffff,
        nanos & 0xf_ffff
    )
}

fn private_dir(base: &Path, name: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = base.join(format!("origami-fleece-{name}"));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

impl Fleece {
    /// Connects to the QMP socket of a running QEMU and starts fleecing its disk (see the
    /// module docs). On an error every step already made is undone.
    pub fn start(qmp_socket: impl AsRef<Path>, options: &FleeceOptions) -> Result<Fleece> {
        let qmp = QmpClient::connect(qmp_socket, options.timeout)?;
        if let Some(v) = qmp.version() {
            if v < (7, 1, 0) {
                return Err(Error::Qmp {
                    socket: qmp.socket().to_path_buf(),
                    problem: QmpProblem::Unsupported(format!(
                        "QEMU {}.{}.{} has no snapshot-access fleecing (7.1 or later needed)",
                        v.0, v.1, v.2
                    )),
                });
            }
        }
        let mut steps = Steps {
            qmp,
            undo: Vec::new(),
            timeout: options.timeout,
        };
        // On an error `steps` drops here and undoes what was made.
        let blocks = steps.qmp.execute("query-block", None)?;
        let chosen = choose(&blocks, options.drive.as_deref()).map_err(|problem| Error::Qmp {
            socket: steps.qmp.socket().to_path_buf(),
            problem,
        })?;
        let client = steps.set_up(&chosen, options)?;
        Ok(Fleece {
            client,
            steps,
            drive: chosen.label,
            node: chosen.node,
            size: chosen.size,
        })
    }

    /// The point-in-time disk, as an NBD client (share it; it is `Send + Sync`). Reads
    /// fail once the fleece is closed.
    pub fn disk(&self) -> Arc<NbdClient> {
        self.client.clone()
    }

    /// The disk's name as QEMU knows it (the drive id or the device's QOM path).
    pub fn drive(&self) -> &str {
        &self.drive
    }

    /// The block node fleeced.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Ends the fleece: every step undone in reverse. The first failure is returned (the
    /// other steps are still tried).
    pub fn close(self) -> Result<()> {
        let Fleece {
            client, mut steps, ..
        } = self;
        drop(client);
        let errors = steps.tear_down();
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Steps {
    fn set_up(&mut self, chosen: &Chosen, options: &FleeceOptions) -> Result<Arc<NbdClient>> {
        let name = unique();
        let base = options.dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = private_dir(&base, &name).map_err(|source| Error::Io {
            path: base.clone(),
            offset: 0,
            source,
        })?;
        self.undo.push(Undo::RemoveDir(dir.clone()));
        let target_file = dir.join("cbw-target.raw");
        let io = |source| Error::Io {
            path: target_file.clone(),
            offset: 0,
            source,
        };
        std::fs::File::create(&target_file)
            .and_then(|f| f.set_len(chosen.size))
            .map_err(io)?;

        let target = format!("ofl-t-{name}");
        let cbw = format!("ofl-c-{name}");
        let access = format!("ofl-a-{name}");
        let export = format!("ofl-e-{name}");
        let socket = dir.join("nbd.sock");

        self.qmp.execute(
            "blockdev-add",
            Some(json!({"driver": "file", "node-name": target, "filename": target_file})),
        )?;
        self.undo.push(Undo::BlockdevDel(target.clone()));
        self.qmp.execute(
            "blockdev-add",
            Some(json!({
                "driver": "copy-before-write", "node-name": cbw,
                "file": chosen.node, "target": target,
                "on-cbw-error": "break-snapshot",
            })),
        )?;
        self.undo.push(Undo::BlockdevDel(cbw.clone()));
        // The instant of the view: from here on the guest's writes go through the filter.
        self.qmp.execute(
            "qom-set",
            Some(json!({"path": chosen.qdev, "property": "drive", "value": cbw})),
        )?;
        self.undo.push(Undo::QomSet {
            path: chosen.qdev.clone(),
            node: chosen.node.clone(),
        });
        self.qmp.execute(
            "blockdev-add",
            Some(json!({"driver": "snapshot-access", "node-name": access, "file": cbw})),
        )?;
        self.undo.push(Undo::BlockdevDel(access.clone()));
        self.qmp.execute(
            "nbd-server-start",
            Some(json!({"addr": {"type": "unix", "data": {"path": socket}}})),
        )?;
        self.undo.push(Undo::NbdServerStop);
        self.qmp.execute(
            "block-export-add",
            Some(json!({
                "type": "nbd", "id": export, "node-name": access,
                "name": access, "writable": false,
            })),
        )?;
        self.undo.push(Undo::ExportDel(export));
        let address = NbdAddress::Unix {
            socket,
            export: access,
        };
        Ok(Arc::new(NbdClient::connect(&address, &options.nbd)?))
    }

    fn tear_down(&mut self) -> Vec<Error> {
        let mut errors = Vec::new();
        while let Some(step) = self.undo.pop() {
            let r = match &step {
                Undo::RemoveDir(dir) => std::fs::remove_dir_all(dir).map_err(|source| Error::Io {
                    path: dir.clone(),
                    offset: 0,
                    source,
                }),
                Undo::BlockdevDel(node) => self
                    .qmp
                    .execute("blockdev-del", Some(json!({"node-name": node})))
                    .map(drop),
                Undo::QomSet { path, node } => self
                    .qmp
                    .execute(
                        "qom-set",
                        Some(json!({"path": path, "property": "drive", "value": node})),
                    )
                    .map(drop),
                Undo::NbdServerStop => self.qmp.execute("nbd-server-stop", None).map(drop),
                Undo::ExportDel(id) => self.delete_export(id),
            };
            if let Err(e) = r {
                errors.push(e);
            }
        }
        errors
    }

    /// Removes the export and waits until QEMU has let go of its node.
    fn delete_export(&mut self, id: &str) -> Result<()> {
        self.qmp
            .execute("block-export-del", Some(json!({"id": id, "mode": "hard"})))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let exports = self.qmp.execute("query-block-exports", None)?;
            let listed = exports
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e["id"] == id));
            if !listed {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Qmp {
                    socket: self.qmp.socket().to_path_buf(),
                    problem: QmpProblem::TimedOut {
                        after: self.timeout,
                        what: format!("export {id} to go away"),
                    },
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        self.tear_down();
    }
}

impl ReadAt for Fleece {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.client.read_at(offset, buf)
    }
    fn len(&self) -> u64 {
        self.client.len()
    }
    fn name(&self) -> String {
        format!("{} (fleece of {})", self.client.name(), self.drive)
    }
}
