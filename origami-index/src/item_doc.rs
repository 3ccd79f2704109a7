//! From frame items to what the index searches: filter values and searchable text.
//!
//! An item becomes an [`ItemDoc`]: the values its filter fields hold (`name:`, `path:`,
//! `port:`, `pkg:`, `user:`), the exact values that rank above text matches, and the text
//! that bare words search. Names that live elsewhere in the frame are resolved here: a
//! process's and a file's owner name from the `user` section, a connection's process name and
//! user from the `process` section.

use std::collections::HashMap;

use origami_frame::{
    join_host_port, ConfigItem, Connection, Extra, FileItem, Frame, Item, KernelLogRecord, Module,
    Mount, Os, Package, Process, Section, Service, User,
};
use serde_json::Value;

/// Resolves ids that an item refers to into names found elsewhere in its frame.
pub(crate) trait Resolve {
    /// The user name of `uid`.
    fn user(&self, uid: u32) -> Option<&str>;
    /// The name and uid of process `pid`.
    fn process(&self, pid: u32) -> Option<(&str, u32)>;
}

/// The resolver of a whole frame.
pub(crate) struct FrameResolver<'f> {
    users: HashMap<u32, &'f str>,
    procs: HashMap<u32, (&'f str, u32)>,
}

impl<'f> FrameResolver<'f> {
    pub(crate) fn new(frame: &'f Frame) -> Self {
        FrameResolver {
            users: frame
                .user
                .iter()
                .map(|u| (u.uid, u.name.as_str()))
                .collect(),
            procs: frame
                .process
                .iter()
                .map(|p| (p.pid, (p.name.as_str(), p.uid)))
                .collect(),
        }
    }
}

impl Resolve for FrameResolver<'_> {
    fn user(&self, uid: u32) -> Option<&str> {
        self.users.get(&uid).copied()
    }
    fn process(&self, pid: u32) -> Option<(&str, u32)> {
        self.procs.get(&pid).copied()
    }
}

/// The resolver of a stored item version: the names it resolved when first indexed.
pub(crate) struct StoredResolver<'a> {
    /// The user name the version shows (of the file's or process's uid, or of the
    /// connection's process).
    pub(crate) user: Option<&'a str>,
    /// A connection's process name.
    pub(crate) proc_name: Option<&'a str>,
}

impl Resolve for StoredResolver<'_> {
    fn user(&self, _: u32) -> Option<&str> {
        self.user
    }
    fn process(&self, _: u32) -> Option<(&str, u32)> {
        self.proc_name.map(|n| (n, 0))
    }
}

/// What the index holds for one item version, besides time and frame context.
#[derive(Debug, Default)]
pub(crate) struct ItemDoc {
    /// `name:` values (lowercased).
    pub(crate) names: Vec<String>,
    /// `path:` values (lowercased).
    pub(crate) paths: Vec<String>,
    pub(crate) ports: Vec<u16>,
    /// `pkg:` value (lowercased package name).
    pub(crate) pkg: Option<String>,
    /// `user:` values (lowercased).
    pub(crate) users: Vec<String>,
    /// The owning process name of a connection, kept to rebuild the document later.
    pub(crate) proc_name: Option<String>,
    /// Whole field values that rank an exact match above a text match (lowercased).
    pub(crate) exact: Vec<String>,
    /// What bare words and phrases search.
    pub(crate) text: String,
}

fn lc(s: &str) -> String {
    s.to_lowercase()
}

fn push_extra_text(text: &mut String, extra: &Extra) {
    for v in extra.values() {
        push_value_text(text, v, 0);
    }
}

fn push_value_text(text: &mut String, v: &Value, depth: usize) {
    // Unknown fields of a newer crawler are searchable too; depth-bounded.
    if depth > 8 {
        return;
    }
    match v {
        Value::String(s) => {
            text.push(' ');
            text.push_str(s);
        }
        Value::Number(n) => {
            text.push(' ');
            text.push_str(&n.to_string());
        }
        Value::Array(a) => a.iter().for_each(|x| push_value_text(text, x, depth + 1)),
        Value::Object(o) => o.values().for_each(|x| push_value_text(text, x, depth + 1)),
        Value::Bool(_) | Value::Null => {}
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path)
}

/// The document of the `os` item.
pub(crate) fn os_doc(os: &Os) -> ItemDoc {
    let mut d = ItemDoc::default();
    for v in [
        &os.name,
        &os.version,
        &os.id,
        &os.id_like,
        &os.pretty_name,
        &os.kernel,
        &os.arch,
        &os.hostname,
        &os.boot_time,
    ]
    .into_iter()
    .flatten()
    {
        d.text.push_str(v);
        d.text.push(' ');
        d.exact.push(lc(v));
    }
    if let Some(id) = &os.id {
        d.names.push(lc(id));
    }
    push_extra_text(&mut d.text, &os.extra);
    d
}

/// The document of a `file` item.
pub(crate) fn file_doc(f: &FileItem, r: &dyn Resolve) -> ItemDoc {
    let mut d = ItemDoc {
        names: vec![lc(basename(&f.path))],
        paths: vec![lc(&f.path)],
        ..ItemDoc::default()
    };
    d.text.push_str(&f.path);
    d.text.push(' ');
    d.text.push_str(f.file_type.name());
    if let Some(t) = &f.link_target {
        d.text.push(' ');
        d.text.push_str(t);
        d.exact.push(lc(t));
    }
    if let Some(h) = &f.sha256 {
        d.text.push(' ');
        d.text.push_str(h);
        d.exact.push(lc(h));
    }
    if let Some(u) = r.user(f.uid) {
        d.users.push(lc(u));
        d.text.push(' ');
        d.text.push_str(u);
    }
    push_extra_text(&mut d.text, &f.extra);
    d
}

/// The document of a `config` item.
pub(crate) fn config_doc(c: &ConfigItem) -> ItemDoc {
    let mut d = ItemDoc {
        names: vec![lc(basename(&c.path))],
        paths: vec![lc(&c.path)],
        ..ItemDoc::default()
    };
    d.text.reserve(c.path.len() + c.content.len() + 1);
    d.text.push_str(&c.path);
    d.text.push('\n');
    d.text.push_str(&c.content);
    push_extra_text(&mut d.text, &c.extra);
    d
}

/// The document of a `package` item.
pub(crate) fn package_doc(p: &Package) -> ItemDoc {
    let name = lc(&p.name);
    let mut d = ItemDoc {
        names: vec![name.clone()],
        exact: vec![
            name.clone(),
            lc(&p.version),
            format!("{name}={}", lc(&p.version)),
        ],
        pkg: Some(name),
        ..ItemDoc::default()
    };
    d.text = format!("{} {} {} {}", p.name, p.version, p.arch, p.manager);
    if let Some(s) = &p.source {
        d.text.push(' ');
        d.text.push_str(s);
    }
    push_extra_text(&mut d.text, &p.extra);
    d
}

/// The document of a `user` item.
pub(crate) fn user_doc(u: &User) -> ItemDoc {
    let name = lc(&u.name);
    let mut d = ItemDoc {
        names: vec![name.clone()],
        users: vec![name.clone()],
        paths: vec![lc(&u.home), lc(&u.shell)],
        exact: vec![name],
        ..ItemDoc::default()
    };
    d.text = format!("{} {} {}", u.name, u.home, u.shell);
    if let Some(desc) = &u.description {
        d.text.push(' ');
        d.text.push_str(desc);
    }
    for g in &u.groups {
        d.text.push(' ');
        d.text.push_str(g);
    }
    push_extra_text(&mut d.text, &u.extra);
    d
}

/// The document of a `process` item.
pub(crate) fn process_doc(p: &Process, r: &dyn Resolve) -> ItemDoc {
    let mut d = ItemDoc {
        names: vec![lc(&p.name)],
        exact: vec![lc(&p.name)],
        ..ItemDoc::default()
    };
    d.text.push_str(&p.name);
    for a in &p.cmdline {
        d.text.push(' ');
        d.text.push_str(a);
    }
    if let Some(exe) = p.cmdline.first().filter(|a| a.starts_with('/')) {
        d.paths.push(lc(exe));
        let b = lc(basename(exe));
        if !d.names.contains(&b) {
            d.names.push(b);
        }
    }
    if let Some(u) = r.user(p.uid) {
        d.users.push(lc(u));
        d.text.push(' ');
        d.text.push_str(u);
    }
    push_extra_text(&mut d.text, &p.extra);
    d
}

/// The document of a `connection` item.
pub(crate) fn connection_doc(c: &Connection, r: &dyn Resolve) -> ItemDoc {
    let local = join_host_port(&c.local_address, c.local_port);
    let remote = join_host_port(&c.remote_address, c.remote_port);
    let mut d = ItemDoc {
        exact: vec![
            lc(&c.local_address),
            lc(&c.remote_address),
            lc(&local),
            lc(&remote),
        ],
        ..ItemDoc::default()
    };
    d.ports.push(c.local_port);
    if c.remote_port != 0 && c.remote_port != c.local_port {
        d.ports.push(c.remote_port);
    }
    d.text = format!("{} {} {local} {remote} {}", c.protocol, c.family, c.state);
    if let Some((name, uid)) = c.pid.and_then(|pid| r.process(pid)) {
        d.names.push(lc(name));
        d.proc_name = Some(name.to_string());
        d.text.push(' ');
        d.text.push_str(name);
        if let Some(u) = r.user(uid) {
            d.users.push(lc(u));
            d.text.push(' ');
            d.text.push_str(u);
        }
    }
    push_extra_text(&mut d.text, &c.extra);
    d
}

/// The document of a `module` item.
pub(crate) fn module_doc(m: &Module) -> ItemDoc {
    let mut d = ItemDoc {
        names: vec![lc(&m.name)],
        exact: vec![lc(&m.name)],
        ..ItemDoc::default()
    };
    d.text = format!("{} {}", m.name, m.state);
    push_extra_text(&mut d.text, &m.extra);
    d
}

/// The document of a `service` item (a Windows service).
pub(crate) fn service_doc(v: &Service) -> ItemDoc {
    let mut d = ItemDoc {
        names: vec![lc(&v.name)],
        exact: vec![lc(&v.name)],
        ..ItemDoc::default()
    };
    d.text = format!(
        "{} {} {} {} {}",
        v.name,
        v.display_name.as_deref().unwrap_or_default(),
        v.path,
        v.start_type,
        v.account.as_deref().unwrap_or_default()
    );
    push_extra_text(&mut d.text, &v.extra);
    d
}

/// The document of a `mount` item.
pub(crate) fn mount_doc(m: &Mount) -> ItemDoc {
    let mut d = ItemDoc {
        names: vec![lc(&m.path)],
        exact: vec![lc(&m.path), lc(&m.device), lc(&m.fs_type)],
        ..ItemDoc::default()
    };
    d.text = format!("{} {} {} {}", m.device, m.path, m.fs_type, m.options);
    push_extra_text(&mut d.text, &m.extra);
    d
}

/// The document of a `kernel_log` line.
pub(crate) fn kernel_log_doc(r: &KernelLogRecord) -> ItemDoc {
    let mut d = ItemDoc::default();
    d.text.clone_from(&r.message);
    push_extra_text(&mut d.text, &r.extra);
    d
}

/// The document of a stored item, from its JSON, with the names it resolved when stored;
/// and the item's key.
pub(crate) fn item_doc_from_json(
    section: Section,
    json: &str,
    r: &dyn Resolve,
) -> serde_json::Result<(ItemDoc, String)> {
    fn parse<T: serde::de::DeserializeOwned + Item>(
        json: &str,
        make: impl FnOnce(&T) -> ItemDoc,
    ) -> serde_json::Result<(ItemDoc, String)> {
        let x: T = serde_json::from_str(json)?;
        Ok((make(&x), x.key()))
    }
    match section {
        Section::Os => parse::<Os>(json, os_doc),
        Section::File => parse::<FileItem>(json, |x| file_doc(x, r)),
        Section::Config => parse::<ConfigItem>(json, config_doc),
        Section::Package => parse::<Package>(json, package_doc),
        Section::User => parse::<User>(json, user_doc),
        Section::Process => parse::<Process>(json, |x| process_doc(x, r)),
        Section::Connection => parse::<Connection>(json, |x| connection_doc(x, r)),
        Section::Module => parse::<Module>(json, module_doc),
        Section::Mount => parse::<Mount>(json, mount_doc),
        Section::KernelLog => parse::<KernelLogRecord>(json, kernel_log_doc),
        Section::Service => parse::<Service>(json, service_doc),
    }
}
