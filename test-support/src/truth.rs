//! Frames built straight from the fixtures' ground truth (never from Origami's own
//! crawlers), for tests of the layers that take frames: the model and the index.

use origami_frame::{Connection, FileItem, FileType, Frame, Module, Package, Process, User};
use serde_json::Value;

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("truth: {v} is not a string"))
        .to_string()
}

fn n(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("truth: {v} is not a number"))
}

/// The Debian guest's disk as a frame of `system`: os-release, hostname, packages and users
/// from `rootfs.facts.json`, every file from `rootfs.manifest.json`.
pub fn debian_frame(system: &str, facts: &Value, manifest: &Value) -> Frame {
    let mut f = Frame::new(system);
    f.meta.hostname = facts["hostname"].as_str().map(String::from);
    let osr = &facts["os_release"];
    f.os.name = osr["NAME"].as_str().map(String::from);
    f.os.id = osr["ID"].as_str().map(String::from);
    f.os.version = osr["VERSION_ID"].as_str().map(String::from);
    for p in facts["packages"].as_array().into_iter().flatten() {
        f.package.push(Package {
            name: s(&p["name"]),
            version: s(&p["version"]),
            arch: s(&p["arch"]),
            manager: "dpkg".into(),
            ..Default::default()
        });
    }
    for u in facts["users"].as_array().into_iter().flatten() {
        f.user.push(User {
            name: s(&u["name"]),
            uid: n(&u["uid"]) as u32,
            gid: n(&u["gid"]) as u32,
            home: s(&u["home"]),
            shell: s(&u["shell"]),
            ..Default::default()
        });
    }
    for e in manifest["entries"].as_array().into_iter().flatten() {
        let file_type: FileType =
            serde_json::from_value(e["type"].clone()).expect("manifest entry type");
        f.file.push(FileItem {
            path: s(&e["path"]),
            file_type,
            mode: n(&e["mode"]) as u32,
            uid: n(&e["uid"]) as u32,
            gid: n(&e["gid"]) as u32,
            size: e["size"].as_u64().unwrap_or(0),
            mtime: e["mtime"].as_i64().expect("manifest mtime"),
            link_target: e["target"].as_str().map(String::from),
            sha256: e["sha256"].as_str().map(String::from),
            ..Default::default()
        });
    }
    f
}

/// A memory fixture as a frame of `system`, from its `truth.json` (the guest's own /proc):
/// kernel release, host name, processes, TCP/UDP sockets and modules.
pub fn memory_frame(system: &str, truth: &Value) -> Frame {
    let mut f = Frame::new(system);
    f.meta.hostname = truth["kernel"]["hostname"].as_str().map(String::from);
    f.os.kernel = truth["kernel"]["release"].as_str().map(String::from);
    f.os.id = Some("debian".into());
    for p in truth["processes"].as_array().into_iter().flatten() {
        f.process.push(Process {
            pid: n(&p["pid"]) as u32,
            ppid: n(&p["ppid"]) as u32,
            name: s(&p["comm"]),
            cmdline: p["cmdline"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect(),
            uid: n(&p["uid"][0]) as u32,
            state: p["state"].as_str().map(String::from),
            kernel_thread: p["kernel_thread"].as_bool().unwrap_or(false),
            ..Default::default()
        });
    }
    for fam in ["tcp", "tcp6", "udp", "udp6"] {
        for so in truth["sockets"][fam].as_array().into_iter().flatten() {
            f.connection.push(Connection {
                protocol: fam.trim_end_matches('6').into(),
                family: if fam.ends_with('6') { "ipv6" } else { "ipv4" }.into(),
                local_address: s(&so["local_ip"]),
                local_port: n(&so["local_port"]) as u16,
                remote_address: s(&so["remote_ip"]),
                remote_port: n(&so["remote_port"]) as u16,
                state: s(&so["state"]),
                pid: so["pids"]
                    .as_array()
                    .and_then(|p| p.first())
                    .and_then(Value::as_u64)
                    .map(|p| p as u32),
                ..Default::default()
            });
        }
    }
    for m in truth["modules"].as_array().into_iter().flatten() {
        f.module.push(Module {
            name: s(&m["name"]),
            size: n(&m["size"]),
            state: m["state"].as_str().unwrap_or("Live").into(),
            ..Default::default()
        });
    }
    f
}
