//! `--local-vms`: the QEMU virtual machines running on this host, found without a manifest.
//!
//! Each QEMU process (`/proc/PID/cmdline` whose program is `qemu-system-*` or `qemu-kvm`)
//! becomes a machine: its name from `-name` (or the libvirt domain whose status file in
//! `/run/libvirt/qemu/*.xml` names its pid, else `qemu-PID`), its disk images from `-drive
//! file=`, `-hda`..`-hdd` and the top nodes of its `-blockdev` graph (JSON or dotted form;
//! backing layers are left to the crawler, which follows them under the backing-file folder
//! rules) or the domain XML's `<disk><source file=...>`, and its memory from a
//! `memory-backend-file`'s `mem-path`.
//!
//! A command line and a domain file are hostile input (a guest owner may name anything):
//! everything is bounded (bytes read, arguments, names), nothing is executed or followed,
//! only absolute paths are taken, and a malformed option is skipped, never an error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The most bytes of one command line or domain file read.
pub const MAX_FILE: u64 = 1 << 20;
/// The most arguments of one command line looked at.
pub const MAX_ARGS: usize = 4096;
/// The most disks taken from one VM.
pub const MAX_DISKS: usize = 64;
/// The longest machine name kept (longer ones are cut).
pub const MAX_NAME: usize = 128;

/// One VM found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalVm {
    /// Its QEMU process.
    pub pid: u32,
    /// Its name (`-name`, the libvirt domain, or `qemu-PID`).
    pub name: String,
    /// Its disk image files, in command-line order.
    pub disks: Vec<PathBuf>,
    /// Its guest memory file (`memory-backend-file`'s `mem-path`), if any.
    pub memory: Option<PathBuf>,
}

/// Splits a QEMU option string (`a=b,c=d`, `,,` an escaped comma) into key and value
/// pairs; a leading item without `=` gets the key `implied`.
pub fn qemu_opts(s: &str, implied: &str) -> Vec<(String, String)> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                items.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    items.push(cur);
    items
        .into_iter()
        .enumerate()
        .filter(|(_, i)| !i.is_empty())
        .map(|(n, i)| match i.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None if n == 0 => (implied.to_string(), i),
            None => (i, "on".to_string()),
        })
        .collect()
}

fn abs_path(s: &str) -> Option<PathBuf> {
    (s.starts_with('/') && !s.contains('\0') && s.len() < 4096).then(|| PathBuf::from(s))
}

fn clip_name(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect()
}

/// One `-blockdev` node: its driver, file name (file-like drivers), and the children it
/// names (`file`, `backing`), by node name or inline.
#[derive(Debug, Default)]
struct Node {
    filename: Option<String>,
    children: BTreeMap<String, Child>,
}

#[derive(Debug)]
enum Child {
    Ref(String),
    Inline(Box<Node>),
}

fn node_from_json(v: &Value, depth: usize) -> Node {
    let mut n = Node::default();
    let Some(o) = v.as_object() else { return n };
    if let Some(f) = o.get("filename").and_then(Value::as_str) {
        n.filename = Some(f.to_string());
    }
    if depth > 8 {
        return n;
    }
    for key in ["file", "backing"] {
        match o.get(key) {
            Some(Value::String(r)) => {
                n.children.insert(key.into(), Child::Ref(r.clone()));
            }
            Some(v @ Value::Object(_)) => {
                n.children.insert(
                    key.into(),
                    Child::Inline(Box::new(node_from_json(v, depth + 1))),
                );
            }
            _ => {}
        }
    }
    n
}

/// The dotted form (`driver=qcow2,file.driver=file,file.filename=/x`) as JSON.
fn dotted_to_json(s: &str) -> Value {
    let mut root = serde_json::Map::new();
    for (k, v) in qemu_opts(s, "driver") {
        let parts: Vec<&str> = k.split('.').take(9).collect();
        let mut cur = &mut root;
        for p in &parts[..parts.len() - 1] {
            let e = cur
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Default::default()));
            if !e.is_object() {
                *e = Value::Object(Default::default());
            }
            match e {
                Value::Object(m) => cur = m,
                _ => unreachable!("made an object above"),
            }
        }
        cur.insert(parts[parts.len() - 1].to_string(), Value::String(v));
    }
    Value::Object(root)
}

fn node_name(v: &Value) -> Option<String> {
    v.get("node-name")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The file a node reads, following `file` children (bounded).
fn file_of(n: &Node, nodes: &BTreeMap<String, Node>, depth: usize) -> Option<String> {
    if let Some(f) = &n.filename {
        return Some(f.clone());
    }
    if depth > 8 {
        return None;
    }
    match n.children.get("file")? {
        Child::Ref(r) => file_of(nodes.get(r)?, nodes, depth + 1),
        Child::Inline(c) => file_of(c, nodes, depth + 1),
    }
}

/// Parses a QEMU command line (its arguments, program first). `None` when it is not QEMU.
pub fn parse_cmdline(pid: u32, args: &[String]) -> Option<LocalVm> {
    let prog = Path::new(args.first()?).file_name()?.to_str()?;
    if !(prog.starts_with("qemu-system-") || prog == "qemu-kvm") {
        return None;
    }
    let mut name = None;
    let mut disks: Vec<PathBuf> = Vec::new();
    let mut memory = None;
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut anonymous: Vec<Node> = Vec::new();
    // Node names in command-line order.
    let mut order: Vec<String> = Vec::new();
    let args = &args[..args.len().min(MAX_ARGS)];
    let mut i = 1;
    while i + 1 < args.len() {
        let (opt, val) = (args[i].trim_start_matches('-'), args[i + 1].as_str());
        if !args[i].starts_with('-') {
            i += 1;
            continue;
        }
        match opt {
            "name" => {
                name = qemu_opts(val, "guest")
                    .into_iter()
                    .find(|(k, _)| k == "guest")
                    .map(|(_, v)| clip_name(&v))
                    .filter(|n| !n.trim().is_empty());
            }
            "drive" => {
                let o = qemu_opts(val, "file");
                if let Some(p) = o
                    .iter()
                    .find(|(k, _)| k == "file")
                    .and_then(|(_, v)| abs_path(v))
                {
                    // A CD-ROM drive is not the guest's disk.
                    if !o.iter().any(|(k, v)| k == "media" && v == "cdrom") {
                        disks.push(p);
                    }
                }
            }
            "hda" | "hdb" | "hdc" | "hdd" => disks.extend(abs_path(val)),
            "blockdev" => {
                let v = if val.trim_start().starts_with('{') {
                    serde_json::from_str::<Value>(val).unwrap_or(Value::Null)
                } else {
                    dotted_to_json(val)
                };
                let node = node_from_json(&v, 0);
                match node_name(&v) {
                    Some(n) => {
                        if nodes.insert(n.clone(), node).is_none() {
                            order.push(n);
                        }
                    }
                    None => anonymous.push(node),
                }
            }
            "object" => {
                let o = if val.trim_start().starts_with('{') {
                    serde_json::from_str::<Value>(val)
                        .ok()
                        .and_then(|v| v.as_object().cloned())
                        .map(|m| {
                            m.into_iter()
                                .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
                                .collect()
                        })
                        .unwrap_or_default()
                } else {
                    qemu_opts(val, "qom-type")
                };
                let is_file = o
                    .iter()
                    .any(|(k, v)| k == "qom-type" && v == "memory-backend-file");
                if is_file {
                    memory = o
                        .iter()
                        .find(|(k, _)| k == "mem-path")
                        .and_then(|(_, v)| abs_path(v))
                        .or(memory);
                }
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    // The -blockdev graph's top nodes: named by no other node as `file` or `backing`.
    let mut referenced = BTreeSet::new();
    for n in nodes.values().chain(&anonymous) {
        for c in n.children.values() {
            if let Child::Ref(r) = c {
                referenced.insert(r.clone());
            }
        }
    }
    for name in &order {
        if let Some(n) = nodes.get(name).filter(|_| !referenced.contains(name)) {
            disks.extend(file_of(n, &nodes, 0).as_deref().and_then(abs_path));
        }
    }
    for n in &anonymous {
        disks.extend(file_of(n, &nodes, 0).as_deref().and_then(abs_path));
    }
    let mut seen = BTreeSet::new();
    disks.retain(|d| seen.insert(d.clone()));
    disks.truncate(MAX_DISKS);
    Some(LocalVm {
        pid,
        name: name.unwrap_or_else(|| format!("qemu-{pid}")),
        disks,
        memory,
    })
}

/// A libvirt domain status file (`/run/libvirt/qemu/NAME.xml`): the QEMU pid, the domain's
/// name and its disk files (backing layers left out).
pub fn parse_libvirt_status(xml: &str) -> Option<(u32, String, Vec<PathBuf>)> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 200_000,
    };
    let doc = roxmltree::Document::parse_with_options(xml, opts).ok()?;
    let root = doc.root_element();
    let (status, domain) = if root.has_tag_name("domstatus") {
        (
            Some(root),
            root.children().find(|n| n.has_tag_name("domain"))?,
        )
    } else if root.has_tag_name("domain") {
        (None, root)
    } else {
        return None;
    };
    let pid: u32 = status?.attribute("pid")?.parse().ok()?;
    let name = domain
        .children()
        .find(|n| n.has_tag_name("name"))
        .and_then(|n| n.text())
        .map(clip_name)?;
    let mut disks = Vec::new();
    if let Some(devices) = domain.children().find(|n| n.has_tag_name("devices")) {
        for disk in devices.children().filter(|n| n.has_tag_name("disk")) {
            if disk.attribute("device").is_some_and(|d| d != "disk") {
                continue;
            }
            // The disk's own source; a <backingStore>'s sources are its layers.
            let file = disk
                .children()
                .find(|n| n.has_tag_name("source"))
                .and_then(|s| s.attribute("file").or_else(|| s.attribute("dev")));
            disks.extend(file.and_then(abs_path));
        }
    }
    disks.truncate(MAX_DISKS);
    Some((pid, name, disks))
}

fn read_bounded(p: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(p)
        .ok()?
        .take(MAX_FILE)
        .read_to_end(&mut buf)
        .ok()?;
    Some(buf)
}

/// The QEMU VMs running on this host now, sorted by name; names made unique with `-PID`.
/// `proc` and `libvirt` are the folders to look in (`/proc`, `/run/libvirt/qemu`).
pub fn scan(proc: &Path, libvirt: &Path) -> Vec<LocalVm> {
    let mut domains: BTreeMap<u32, (String, Vec<PathBuf>)> = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(libvirt) {
        for e in rd.flatten().take(10_000) {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "xml") {
                if let Some(text) = read_bounded(&p).and_then(|b| String::from_utf8(b).ok()) {
                    if let Some((pid, name, disks)) = parse_libvirt_status(&text) {
                        domains.insert(pid, (name, disks));
                    }
                }
            }
        }
    }
    let mut vms = Vec::new();
    if let Ok(rd) = std::fs::read_dir(proc) {
        for e in rd.flatten().take(1_000_000) {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Some(raw) = read_bounded(&e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .take(MAX_ARGS)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if let Some(mut vm) = parse_cmdline(pid, &args) {
                if let Some((name, disks)) = domains.get(&pid) {
                    vm.name = name.clone();
                    if vm.disks.is_empty() {
                        vm.disks = disks.clone();
                    }
                }
                vms.push(vm);
            }
        }
    }
    vms.sort_by(|a, b| a.name.cmp(&b.name).then(a.pid.cmp(&b.pid)));
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for v in &vms {
        *count.entry(v.name.clone()).or_default() += 1;
    }
    for v in &mut vms {
        if count[&v.name] > 1 {
            v.name = format!("{}-{}", v.name, v.pid);
        }
    }
    vms
}

/// The VMs on this host (`/proc`, `/run/libvirt/qemu`).
pub fn scan_host() -> Vec<LocalVm> {
    scan(Path::new("/proc"), Path::new("/run/libvirt/qemu"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn options_split_on_single_commas() {
        assert_eq!(
            qemu_opts("web,,01,debug-threads=on", "guest"),
            [
                ("guest".to_string(), "web,01".to_string()),
                ("debug-threads".to_string(), "on".to_string())
            ]
        );
        assert_eq!(qemu_opts("", "x"), []);
    }

    #[test]
    fn a_plain_command_line() {
        let vm = parse_cmdline(
            7,
            &args(&[
                "/usr/bin/qemu-system-x86_64",
                "-name",
                "guest=web-01,debug-threads=on",
                "-m",
                "1024",
                "-drive",
                "file=/vm/web-01.qcow2,if=virtio,format=qcow2",
                "-drive",
                "file=/iso/debian.iso,media=cdrom",
                "-drive",
                "file=relative.img",
                "-hdb",
                "/vm/data.img",
                "-object",
                "memory-backend-file,id=mem,size=1G,mem-path=/dev/shm/web-01,share=on",
                "-nographic",
            ]),
        )
        .unwrap();
        assert_eq!(vm.name, "web-01");
        assert_eq!(
            vm.disks,
            [
                PathBuf::from("/vm/web-01.qcow2"),
                PathBuf::from("/vm/data.img")
            ]
        );
        assert_eq!(vm.memory, Some(PathBuf::from("/dev/shm/web-01")));
        assert!(parse_cmdline(1, &args(&["/bin/bash", "-name", "x"])).is_none());
        let unnamed = parse_cmdline(9, &args(&["qemu-kvm", "-hda", "/a.img"])).unwrap();
        assert_eq!(unnamed.name, "qemu-9");
    }

    #[test]
    fn blockdev_graphs_give_their_top_files_only() {
        // libvirt's JSON form: a two-layer chain; only the top layer is the disk.
        let vm = parse_cmdline(
            3,
            &args(&[
                "qemu-system-x86_64",
                "-blockdev",
                r#"{"driver":"file","filename":"/var/lib/libvirt/images/base.qcow2","node-name":"libvirt-2-storage"}"#,
                "-blockdev",
                r#"{"node-name":"libvirt-2-format","driver":"qcow2","file":"libvirt-2-storage"}"#,
                "-blockdev",
                r#"{"driver":"file","filename":"/var/lib/libvirt/images/top.qcow2","node-name":"libvirt-1-storage"}"#,
                "-blockdev",
                r#"{"node-name":"libvirt-1-format","driver":"qcow2","file":"libvirt-1-storage","backing":"libvirt-2-format"}"#,
                // The dotted form, with an inline file child.
                "-blockdev",
                "driver=qcow2,node-name=d2,file.driver=file,file.filename=/vm/second.qcow2",
                "-object",
                r#"{"qom-type":"memory-backend-file","id":"m","mem-path":"/dev/hugepages/x"}"#,
            ]),
        )
        .unwrap();
        assert_eq!(
            vm.disks,
            [
                PathBuf::from("/var/lib/libvirt/images/top.qcow2"),
                PathBuf::from("/vm/second.qcow2")
            ]
        );
        assert_eq!(vm.memory, Some(PathBuf::from("/dev/hugepages/x")));
    }

    #[test]
    fn hostile_command_lines_are_bounded_and_never_panic() {
        let mut a = args(&["qemu-system-aarch64"]);
        for i in 0..10_000 {
            a.push("-drive".into());
            a.push(format!("file=/d/{i}.img"));
        }
        a.push("-blockdev".into());
        a.push("{\"file\":".repeat(10_000));
        a.push("-name".into());
        a.push(format!("{}\u{1b}[31m", "n".repeat(10_000)));
        let vm = parse_cmdline(1, &a).unwrap();
        assert_eq!(vm.disks.len(), MAX_DISKS);
        for odd in [
            "",
            ",",
            ",,,,",
            "=",
            "file",
            "{",
            "{\"file\":{\"file\":{\"file\":{\"file\":{\"file\":{\"file\":{\"file\":{\"file\":{\"file\":{\"file\":{\"filename\":\"/deep\"}}}}}}}}}}}",
            "a.b.c.d.e.f.g.h.i.j.k.l=1,a=2,a.b=3",
        ] {
            for opt in ["-name", "-drive", "-blockdev", "-object"] {
                let _ = parse_cmdline(1, &args(&["qemu-kvm", opt, odd, opt]));
            }
        }
        // A cyclic graph ends.
        let vm = parse_cmdline(
            1,
            &args(&[
                "qemu-kvm",
                "-blockdev",
                r#"{"node-name":"a","driver":"qcow2","file":"b"}"#,
                "-blockdev",
                r#"{"node-name":"b","driver":"qcow2","file":"a"}"#,
            ]),
        )
        .unwrap();
        assert!(vm.disks.is_empty());
    }

    #[test]
    fn libvirt_status_files() {
        let xml = r#"<domstatus state='running' reason='booted' pid='4242'>
  <monitor path='/var/lib/libvirt/qemu/domain-1-db/monitor.sock' type='unix'/>
  <domain type='kvm' id='1'>
    <name>db-01</name>
    <devices>
      <disk type='file' device='disk'>
        <driver name='qemu' type='qcow2'/>
        <source file='/var/lib/libvirt/images/db-01.qcow2' index='2'/>
        <backingStore type='file' index='3'>
          <format type='qcow2'/>
          <source file='/var/lib/libvirt/images/base.qcow2'/>
        </backingStore>
        <target dev='vda' bus='virtio'/>
      </disk>
      <disk type='file' device='cdrom'>
        <source file='/iso/install.iso'/>
      </disk>
    </devices>
  </domain>
</domstatus>"#;
        let (pid, name, disks) = parse_libvirt_status(xml).unwrap();
        assert_eq!((pid, name.as_str()), (4242, "db-01"));
        assert_eq!(
            disks,
            [PathBuf::from("/var/lib/libvirt/images/db-01.qcow2")]
        );
        // A domain definition without status (no pid), a DTD, garbage: nothing.
        assert!(parse_libvirt_status("<domain><name>x</name></domain>").is_none());
        assert!(parse_libvirt_status(
            "<!DOCTYPE d [<!ENTITY a \"aaaa\">]><domstatus pid='1'><domain><name>&a;</name></domain></domstatus>"
        )
        .is_none());
        assert!(parse_libvirt_status("<domstatus pid='x'>").is_none());
    }

    #[test]
    fn scanning_a_fake_proc_names_each_vm_once() {
        let d = std::env::temp_dir().join(format!("origami-local-vms-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let (proc, lv) = (d.join("proc"), d.join("libvirt"));
        for (pid, cmd) in [
            ("10", "qemu-system-x86_64\0-name\0twin\0-hda\0/a.img\0"),
            ("11", "qemu-system-x86_64\0-name\0twin\0-hda\0/b.img\0"),
            ("12", "/usr/bin/qemu-system-x86_64\0-blockdev\0{}\0"),
            ("13", "sshd\0"),
        ] {
            std::fs::create_dir_all(proc.join(pid)).unwrap();
            std::fs::write(proc.join(pid).join("cmdline"), cmd).unwrap();
        }
        std::fs::create_dir_all(&lv).unwrap();
        std::fs::write(
            lv.join("x.xml"),
            "<domstatus pid='12'><domain><name>lv-dom</name><devices><disk device='disk'><source file='/lv.qcow2'/></disk></devices></domain></domstatus>",
        )
        .unwrap();
        let vms = scan(&proc, &lv);
        let got: Vec<(String, Vec<PathBuf>)> = vms.into_iter().map(|v| (v.name, v.disks)).collect();
        assert_eq!(
            got,
            [
                ("lv-dom".to_string(), vec![PathBuf::from("/lv.qcow2")]),
                ("twin-10".to_string(), vec![PathBuf::from("/a.img")]),
                ("twin-11".to_string(), vec![PathBuf::from("/b.img")]),
            ]
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
