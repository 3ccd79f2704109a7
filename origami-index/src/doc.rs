//! From frame items to what the index stores: filter values, searchable text, content hashes
//! and snippets.
//!
//! An item becomes an [`ItemDoc`]: its key, the values its filter fields hold (`name:`,
//! `path:`, `port:`, `pkg:`, `user:`), the exact values that rank above text matches, and the
//! text that bare words search. Names that live elsewhere in the frame are resolved here: a
//! process's and a file's owner name from the `user` section, a connection's process name and
//! user from the `process` section. Content hashes are computed field by field without
//! serialising, so re-indexing an unchanged frame stays cheap.

use std::collections::HashMap;

use origami_frame::{
    ConfigItem, Connection, Extra, FileItem, Frame, Item, KernelLogRecord, Module, Mount, Os,
    Package, Process, Section, Service, User,
};
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

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
pub(crate) struct StoredResolver {
    pub(crate) user: Option<String>,
    pub(crate) proc_name: Option<String>,
}

impl Resolve for StoredResolver {
    fn user(&self, _: u32) -> Option<&str> {
        self.user.as_deref()
    }
    fn process(&self, _: u32) -> Option<(&str, u32)> {
        self.proc_name.as_deref().map(|n| (n, 0))
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

fn join_host_port(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// The document of the `os` item.
pub(crate) fn os_doc(os: &Os) -> ItemDoc {
    let mut d = ItemDoc {
        ..ItemDoc::default()
    };
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

pub(crate) fn kernel_log_doc(r: &KernelLogRecord) -> ItemDoc {
    let mut d = ItemDoc::default();
    d.text.clone_from(&r.message);
    push_extra_text(&mut d.text, &r.extra);
    d
}

/// The bytes an item's content hash covers, written field by field into a buffer.
///
/// Fields are laid out in a buffer and hashed in one shot: one-shot xxh3 of a short input is
/// several times faster than the streaming state, and this runs for every item of every frame.
/// The buffer is the caller's, so a whole section is laid out in one reused buffer (see
/// [`HashContent::write_content`]) and no item allocates.
pub(crate) struct ContentHash<'b>(&'b mut Vec<u8>);

impl<'b> ContentHash<'b> {
    /// Starts an item of `section` at the end of `buf`.
    pub(crate) fn start(buf: &'b mut Vec<u8>, section: Section) -> Self {
        buf.extend_from_slice(section.name().as_bytes());
        ContentHash(buf)
    }
    fn s(&mut self, s: &str) -> &mut Self {
        self.0.extend_from_slice(&(s.len() as u64).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn o(&mut self, s: &Option<String>) -> &mut Self {
        match s {
            Some(s) => self.u(1).s(s),
            None => self.u(0),
        }
    }
    fn u(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn extra(&mut self, e: &Extra) -> &mut Self {
        if e.is_empty() {
            self.u(0)
        } else {
            // Rare (a newer crawler's fields): serialising is fine here.
            let text = serde_json::to_string(e).unwrap_or_default();
            self.u(1).s(&text)
        }
    }
}

/// The hash of an item's content, to tell a changed item from an unchanged one.
pub(crate) trait HashContent {
    /// Appends the bytes the content hash covers (every field, the key's included, so equal
    /// bytes mean an equal item) to `buf`.
    fn write_content(&self, buf: &mut Vec<u8>);
    /// xxh3 of [`HashContent::write_content`]'s bytes.
    fn content_hash(&self) -> u64 {
        let mut buf = Vec::with_capacity(256);
        self.write_content(&mut buf);
        xxh3_64(&buf)
    }
}

impl HashContent for Os {
    fn write_content(&self, buf: &mut Vec<u8>) {
        let mut h = ContentHash::start(buf, Section::Os);
        h.o(&self.name)
            .o(&self.version)
            .o(&self.id)
            .o(&self.id_like)
            .o(&self.pretty_name)
            .o(&self.kernel)
            .o(&self.arch)
            .o(&self.hostname)
            .o(&self.boot_time);
        // The panic state only when a memory crawl read it, so that the hashes of frames
        // without it are those of earlier versions.
        if self.tainted.is_some()
            || self.taint_flags.is_some()
            || self.oopsed.is_some()
            || self.oops_in_progress.is_some()
            || self.panicked.is_some()
            || self.panic_cpu.is_some()
        {
            h.s("health")
                .u(self.tainted.unwrap_or(u64::MAX))
                .o(&self.taint_flags)
                .u(self.oopsed.map_or(2, u64::from))
                .u(self.oops_in_progress.map_or(2, u64::from))
                .u(self.panicked.map_or(2, u64::from))
                .u(self.panic_cpu.map_or(u64::MAX, u64::from));
        }
        h.extra(&self.extra);
    }
}

impl HashContent for FileItem {
    fn write_content(&self, buf: &mut Vec<u8>) {
        let mut h = ContentHash::start(buf, Section::File);
        h.s(&self.path)
            .s(self.file_type.name())
            .u(u64::from(self.mode))
            .u(u64::from(self.uid))
            .u(u64::from(self.gid))
            .u(self.size)
            .u(self.mtime as u64)
            .o(&self.link_target)
            .o(&self.sha256)
            .extra(&self.extra);
    }
}

impl HashContent for ConfigItem {
    fn write_content(&self, buf: &mut Vec<u8>) {
        let mut h = ContentHash::start(buf, Section::Config);
        h.s(&self.path)
            .s(&self.content)
            .u(u64::from(self.truncated))
            .extra(&self.extra);
    }
}

impl HashContent for Package {
    fn write_content(&self, buf: &mut Vec<u8>) {
        let mut h = ContentHash::start(buf, Section::Package);
        h.s(&self.name)
            .s(&self.version)
            .s(&self.arch)
            .o(&self.source)
            .u(self.size.map_or(u64::MAX, |s| s))
            .s(&self.manager)
            .o(&self.status)
            .extra(&self.extra);
    }
}

impl HashContent for User {
    fn write_content(&self, buf: &mut Vec<u8>) {
        let mut h = ContentHash::start(buf, Section::User);
        h.s(&self.name)
            .u(u64::from(self.uid))
            .u(u64::from(self.gid))
            .o(&self.description)
            .s(&self.home)
            .s(&self.shell)
            .u(self.groups.len() as u64);
        for g in &self.groups {
            h.s(g);
        }
        h.extra(&self.extra);
    }
}

impl HashContent for Process {
    fn write_content(&self, buf: &mut Vec<u8>) {
        let mut h = ContentHash::start(buf, Section::Process);
        h.u(u64::from(self.pid))
            .u(u64::from(self.ppid))
            .s(&self.name)
            .u(self.cmdline.len() as u64);
        for a in &self.cmdline {
            h.s(a);
        }
        h.u(u64::from(self.uid))
            .o(&self.state)
            .u(self.start_time.map_or(u64::MAX, |v| v))
            .u(self.rss.map_or(u64::MAX, |v| v))
            .u(u64::from(self.kernel_thread))
            .extra(&self.extra);
    }
}

impl HashContent for Connection {
    fn write_content(&self, buf: &mut Vec<u8>) {
        let mut h = ContentHash::start(buf, Section::Connection);
        h.s(&self.protocol)
            .s(&self.family)
            .s(&self.local_address)
            .u(u64::from(self.local_port))
            .s(&self.remote_address)
            .u(u64::from(self.remote_port))
            .s(&self.state)
            .u(self.pid.map_or(u64::MAX, u64::from))
            .extra(&self.extra);
    }
}

impl HashContent for Mount {
    fn write_content(&self, buf: &mut Vec<u8>) {
        let mut h = ContentHash::start(buf, Section::Mount);
        h.s(&self.device)
            .s(&self.path)
            .s(&self.fs_type)
            .s(&self.options)
            .u(self.mount_id.map_or(u64::MAX, u64::from))
            .u(u64::from(self.stack))
            .extra(&self.extra);
    }
}

impl HashContent for KernelLogRecord {
    fn write_content(&self, buf: &mut Vec<u8>) {
        let mut h = ContentHash::start(buf, Section::KernelLog);
        h.u(self.seq)
            .u(u64::from(self.line))
            .u(self.time)
            .u(u64::from(self.level))
            .u(u64::from(self.facility))
            .s(&self.message)
            .extra(&self.extra);
    }
}

impl HashContent for Module {
    fn write_content(&self, buf: &mut Vec<u8>) {
        let mut h = ContentHash::start(buf, Section::Module);
        h.s(&self.name)
            .u(self.size)
            .s(&self.state)
            .extra(&self.extra);
    }
}

impl HashContent for Service {
    fn write_content(&self, buf: &mut Vec<u8>) {
        let mut h = ContentHash::start(buf, Section::Service);
        h.s(&self.name)
            .o(&self.display_name)
            .s(&self.path)
            .s(&self.start_type)
            .o(&self.account)
            .s(&self.service_type)
            .o(&self.state)
            .extra(&self.extra);
    }
}

/// The hash of an item's key within its section.
pub(crate) fn key_hash(section: Section, key: &str) -> u64 {
    let mut buf = Vec::with_capacity(key.len() + 16);
    KeyHasher::start(&mut buf, section)
        .0
        .extend_from_slice(key.as_bytes());
    xxh3_64(&buf)
}

/// Streams an item's key into the hash without building the key string: the same bytes as
/// [`Item::key`], so `key_hash(section, &item.key()) == item.key_hash()`.
pub(crate) struct KeyHasher<'b>(&'b mut Vec<u8>);

impl<'b> KeyHasher<'b> {
    fn start(buf: &'b mut Vec<u8>, section: Section) -> Self {
        buf.extend_from_slice(section.name().as_bytes());
        buf.push(0);
        KeyHasher(buf)
    }
}

impl std::fmt::Write for KeyHasher<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The key hash of an item, computed without building its key.
pub(crate) trait HashKey: Item {
    fn write_key(&self, h: &mut KeyHasher<'_>);
    /// The key hash, with `buf` as scratch space (cleared first), so no call allocates.
    fn key_hash_in(&self, buf: &mut Vec<u8>) -> u64 {
        buf.clear();
        self.write_key(&mut KeyHasher::start(buf, Self::SECTION));
        xxh3_64(buf)
    }
    /// The key hash.
    #[cfg(test)]
    fn key_hash(&self) -> u64 {
        self.key_hash_in(&mut Vec::new())
    }
}

impl HashKey for Os {
    fn write_key(&self, h: &mut KeyHasher<'_>) {
        h.0.extend_from_slice(b"os");
    }
}
impl HashKey for FileItem {
    fn write_key(&self, h: &mut KeyHasher<'_>) {
        h.0.extend_from_slice(self.path.as_bytes());
    }
}
impl HashKey for ConfigItem {
    fn write_key(&self, h: &mut KeyHasher<'_>) {
        h.0.extend_from_slice(self.path.as_bytes());
    }
}
impl HashKey for Package {
    fn write_key(&self, h: &mut KeyHasher<'_>) {
        h.0.extend_from_slice(self.name.as_bytes());
        if !self.arch.is_empty() {
            h.0.extend_from_slice(b":");
            h.0.extend_from_slice(self.arch.as_bytes());
        }
    }
}
impl HashKey for User {
    fn write_key(&self, h: &mut KeyHasher<'_>) {
        h.0.extend_from_slice(self.name.as_bytes());
    }
}
impl HashKey for Process {
    fn write_key(&self, h: &mut KeyHasher<'_>) {
        use std::fmt::Write;
        let _ = write!(h, "{}", self.pid);
    }
}
impl HashKey for Connection {
    fn write_key(&self, h: &mut KeyHasher<'_>) {
        use std::fmt::Write;
        let hp = |h: &mut KeyHasher<'_>, addr: &str, port: u16| {
            if addr.contains(':') {
                let _ = write!(h, "[{addr}]:{port}");
            } else {
                let _ = write!(h, "{addr}:{port}");
            }
        };
        h.0.extend_from_slice(self.protocol.as_bytes());
        h.0.extend_from_slice(b"/");
        hp(h, &self.local_address, self.local_port);
        h.0.extend_from_slice(b"/");
        hp(h, &self.remote_address, self.remote_port);
    }
}
impl HashKey for Mount {
    fn write_key(&self, h: &mut KeyHasher<'_>) {
        h.0.extend_from_slice(self.key().as_bytes());
    }
}

impl HashKey for KernelLogRecord {
    fn write_key(&self, h: &mut KeyHasher<'_>) {
        h.0.extend_from_slice(self.key().as_bytes());
    }
}

impl HashKey for Module {
    fn write_key(&self, h: &mut KeyHasher<'_>) {
        h.0.extend_from_slice(self.name.as_bytes());
    }
}

impl HashKey for Service {
    fn write_key(&self, h: &mut KeyHasher<'_>) {
        h.0.extend_from_slice(self.name.as_bytes());
    }
}

/// A `HashMap` hasher for keys that already are good hashes (xxh3 of the item key).
#[derive(Default, Clone, Copy)]
pub(crate) struct PrehashedKey(u64);

impl std::hash::Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed with this hasher; fold anything else in.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The map type of per-system item versions.
pub(crate) type PrehashedMap<V> =
    std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<PrehashedKey>>;

/// What a snippet looks for: the positive words and values of the query.
#[derive(Debug, Default, Clone)]
pub(crate) struct SnippetTerms {
    /// Whole tokens (lowercased).
    pub(crate) exact: Vec<String>,
    /// Wildcard patterns (lowercased, `*` and `?`).
    pub(crate) globs: Vec<String>,
}

impl SnippetTerms {
    fn matches(&self, token: &str) -> bool {
        self.exact.iter().any(|t| t == token) || self.globs.iter().any(|g| glob_match(g, token))
    }
}

/// `*`/`?` wildcard match, iterative (no recursion, linear backtracking).
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == '*')
}

const SNIPPET_MAX: usize = 200;

fn clip(s: &str) -> String {
    let s = s.trim();
    if s.len() <= SNIPPET_MAX {
        return s.to_string();
    }
    let mut end = SNIPPET_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The key of a stored item (its JSON).
pub(crate) fn item_key(section: Section, item_json: &str) -> serde_json::Result<String> {
    fn key<T: Item + serde::de::DeserializeOwned>(s: &str) -> serde_json::Result<String> {
        serde_json::from_str::<T>(s).map(|x| x.key())
    }
    match section {
        Section::Os => key::<Os>(item_json),
        Section::File => key::<FileItem>(item_json),
        Section::Config => key::<ConfigItem>(item_json),
        Section::Package => key::<Package>(item_json),
        Section::User => key::<User>(item_json),
        Section::Process => key::<Process>(item_json),
        Section::Connection => key::<Connection>(item_json),
        Section::Module => key::<Module>(item_json),
        Section::Mount => key::<Mount>(item_json),
        Section::KernelLog => key::<KernelLogRecord>(item_json),
        Section::Service => key::<Service>(item_json),
    }
}

/// A one-line summary of a stored item, or for a config file the first line that holds a
/// query term (`L12: Listen 10.20.30.40:80`).
pub(crate) fn snippet(section: Section, item_json: &str, terms: &SnippetTerms) -> String {
    fn get<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
        serde_json::from_str(s).ok()
    }
    match section {
        Section::Config => {
            let Some(c) = get::<ConfigItem>(item_json) else {
                return clip(item_json);
            };
            let mut first_text = None;
            for (n, line) in c.content.lines().enumerate() {
                if first_text.is_none() && !line.trim().is_empty() {
                    first_text = Some((n, line));
                }
                if crate::tokenizer::tokens(line)
                    .iter()
                    .any(|t| terms.matches(t))
                {
                    return clip(&format!("L{}: {}", n + 1, line.trim()));
                }
            }
            match first_text {
                Some((n, line)) => clip(&format!("L{}: {}", n + 1, line.trim())),
                None => String::from("(empty)"),
            }
        }
        Section::Connection => get::<Connection>(item_json).map_or_else(
            || clip(item_json),
            |c| {
                clip(&format!(
                    "{} {} -> {} {}{}",
                    c.protocol,
                    join_host_port(&c.local_address, c.local_port),
                    join_host_port(&c.remote_address, c.remote_port),
                    c.state,
                    c.pid.map(|p| format!(" pid {p}")).unwrap_or_default()
                ))
            },
        ),
        Section::Process => get::<Process>(item_json).map_or_else(
            || clip(item_json),
            |p| {
                let cmd = if p.cmdline.is_empty() {
                    format!("[{}]", p.name)
                } else {
                    p.cmdline.join(" ")
                };
                clip(&format!("pid {} {}: {cmd}", p.pid, p.name))
            },
        ),
        Section::Package => get::<Package>(item_json).map_or_else(
            || clip(item_json),
            |p| {
                clip(&format!(
                    "{} {} {} ({})",
                    p.name, p.version, p.arch, p.manager
                ))
            },
        ),
        Section::File => get::<FileItem>(item_json).map_or_else(
            || clip(item_json),
            |f| {
                let link = f
                    .link_target
                    .map(|t| format!(" -> {t}"))
                    .unwrap_or_default();
                clip(&format!(
                    "{} {} {:o} uid {} size {}{link}",
                    f.path,
                    f.file_type.name(),
                    f.mode,
                    f.uid,
                    f.size
                ))
            },
        ),
        Section::User => get::<User>(item_json).map_or_else(
            || clip(item_json),
            |u| {
                clip(&format!(
                    "{} uid {} gid {} {} {}",
                    u.name, u.uid, u.gid, u.home, u.shell
                ))
            },
        ),
        Section::Module => get::<Module>(item_json).map_or_else(
            || clip(item_json),
            |m| clip(&format!("{} size {} {}", m.name, m.size, m.state)),
        ),
        Section::Service => get::<Service>(item_json).map_or_else(
            || clip(item_json),
            |v| clip(&format!("{} {} ({})", v.name, v.path, v.start_type)),
        ),
        Section::Mount => get::<Mount>(item_json).map_or_else(
            || clip(item_json),
            |m| {
                clip(&format!(
                    "{} on {} type {} ({})",
                    m.device, m.path, m.fs_type, m.options
                ))
            },
        ),
        Section::KernelLog => get::<KernelLogRecord>(item_json).map_or_else(
            || clip(item_json),
            |r| {
                clip(&format!(
                    "[{:5}.{:06}] {}",
                    r.time / 1_000_000_000,
                    r.time % 1_000_000_000 / 1_000,
                    r.message
                ))
            },
        ),
        Section::Os => get::<Os>(item_json).map_or_else(
            || clip(item_json),
            |o| {
                let parts: Vec<String> = [o.pretty_name.or(o.name), o.kernel, o.arch]
                    .into_iter()
                    .flatten()
                    .collect();
                clip(&parts.join(" "))
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("web-*", "web-01"));
        assert!(glob_match("*ssh*", "openssh-server"));
        assert!(glob_match("10.20.30.4?", "10.20.30.40"));
        assert!(!glob_match("10.20.30.4?", "10.20.30.4"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acbd"));
    }

    #[test]
    fn config_snippet_shows_the_matching_line() {
        let c = ConfigItem {
            path: "/etc/hosts".into(),
            content: "127.0.0.1 localhost\n10.20.30.40\tvmi-fixture\n".into(),
            ..Default::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        let terms = SnippetTerms {
            exact: vec!["10.20.30.40".into()],
            globs: vec![],
        };
        assert_eq!(
            snippet(Section::Config, &json, &terms),
            "L2: 10.20.30.40\tvmi-fixture"
        );
    }

    #[test]
    fn streamed_key_hashes_equal_hashes_of_the_key_string() {
        let c = Connection {
            protocol: "tcp".into(),
            local_address: "::1".into(),
            local_port: 22,
            remote_address: "10.0.0.1".into(),
            remote_port: 5000,
            ..Default::default()
        };
        assert_eq!(c.key_hash(), key_hash(Section::Connection, &c.key()));
        let p = Process {
            pid: 4242,
            ..Default::default()
        };
        assert_eq!(p.key_hash(), key_hash(Section::Process, "4242"));
        let k = Package {
            name: "openssl".into(),
            arch: "amd64".into(),
            ..Default::default()
        };
        assert_eq!(k.key_hash(), key_hash(Section::Package, "openssl:amd64"));
        let n = Package {
            name: "x".into(),
            ..Default::default()
        };
        assert_eq!(n.key_hash(), key_hash(Section::Package, "x"));
        assert_eq!(Os::default().key_hash(), key_hash(Section::Os, "os"));
    }

    #[test]
    fn hashes_see_every_field() {
        let a = Package {
            name: "openssl".into(),
            version: "3.0.11-1".into(),
            ..Default::default()
        };
        let mut b = a.clone();
        assert_eq!(a.content_hash(), b.content_hash());
        b.version = "3.0.13-1".into();
        assert_ne!(a.content_hash(), b.content_hash());
        let mut c = a.clone();
        c.extra.insert("license".into(), "x".into());
        assert_ne!(a.content_hash(), c.content_hash());
    }
}
