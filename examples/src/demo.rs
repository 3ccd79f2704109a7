//! The demo fleet: nine small guest disks compiled into the binary (about 36 KB, zstd), so
//! `origami demo` runs anywhere with nothing but cargo. `scripts/make-demo-fleet.py` made
//! them; `examples/demo-fleet/fleet.json` says what each holds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::manifest::{Entry, ManifestFile};
use crate::serve::ServeArgs;

/// The demo machines: name, compressed disk file name, and its bytes.
pub const MACHINES: &[(&str, &str, &[u8])] = &[
    (
        "web-01",
        "web-01.img",
        include_bytes!("../demo-fleet/web-01.img.zst"),
    ),
    (
        "web-02",
        "web-02.img",
        include_bytes!("../demo-fleet/web-02.img.zst"),
    ),
    (
        "db-01",
        "db-01.img",
        include_bytes!("../demo-fleet/db-01.img.zst"),
    ),
    (
        "cache-01",
        "cache-01.qcow2",
        include_bytes!("../demo-fleet/cache-01.qcow2.zst"),
    ),
    (
        "lb-01",
        "lb-01.img",
        include_bytes!("../demo-fleet/lb-01.img.zst"),
    ),
    (
        "build-01",
        "build-01.img",
        include_bytes!("../demo-fleet/build-01.img.zst"),
    ),
    (
        "mail-01",
        "mail-01.img",
        include_bytes!("../demo-fleet/mail-01.img.zst"),
    ),
    (
        "mon-01",
        "mon-01.img",
        include_bytes!("../demo-fleet/mon-01.img.zst"),
    ),
    (
        "legacy-01",
        "legacy-01.img",
        include_bytes!("../demo-fleet/legacy-01.img.zst"),
    ),
];

/// The generator's record of what each machine holds (ground truth for tests).
pub const FLEET_JSON: &str = include_str!("../demo-fleet/fleet.json");

/// Files outside `/etc` whose text the demo indexes too.
pub const CONFIG_GLOBS: &[&str] = &["/home/*/.bash_history", "/root/.bash_history"];

/// The searches the demo runs.
pub const QUERIES: &[&str] = &[
    "10.20.30.40",
    "pkg:postgresql*",
    "type:package name:openssl",
    "\"proxy_pass\" OR haproxy",
    "user:alice -host:build-*",
];

/// Unpacks the demo disks into `dir` (skipping ones already there) and writes
/// `dir/fleet.toml`; returns the manifest's path.
pub fn unpack(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut manifest = ManifestFile::default();
    for (name, file, zst) in MACHINES {
        let path = dir.join(file);
        if !path.exists() {
            let bytes = zstd::stream::decode_all(*zst)?;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
        }
        manifest.machines.push(Entry {
            name: name.to_string(),
            disks: vec![PathBuf::from(file)],
            memory: None,
            qemu_pid: None,
            system_map: None,
            kernel_debuginfo: None,
            isf: None,
            backing_dirs: Vec::new(),
            limits: None,
            interval: None,
        });
    }
    let path = dir.join("fleet.toml");
    std::fs::write(&path, manifest.to_toml())?;
    Ok(path)
}

/// The `serve` arguments that keep the demo fleet (its manifest at `manifest`) crawled into
/// `index` and serve its page on `listen`: the demo's config globs, disk images re-crawled
/// when they change.
pub fn serve_args(manifest: &Path, index: &Path, listen: std::net::SocketAddr) -> ServeArgs {
    ServeArgs {
        manifest: Some(manifest.to_path_buf()),
        local_vms: false,
        index: index.to_path_buf(),
        jobs: 2,
        interval: Duration::from_secs(300),
        timeout: Duration::from_secs(600),
        backoff: Duration::from_secs(10),
        config: CONFIG_GLOBS.iter().map(|g| g.to_string()).collect(),
        allow_backing: Vec::new(),
        listen,
        token: None,
        token_file: None,
        insecure_no_auth: false,
        threads: None,
    }
}
