//! Content hashes: what tells a changed item from an unchanged one.
//!
//! Each item's fields are laid out as bytes, field by field without serialising, and hashed
//! with xxh3; a section's items laid out back to back also give the section's digest, so
//! re-indexing an unchanged frame costs one pass over its bytes.

use origami_frame::{
    ConfigItem, Connection, Extra, FileItem, Item, KernelLogRecord, Module, Mount, Os, Package,
    Process, Section, Service, User,
};

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
pub(crate) trait HashContent: Item {
    /// Appends the bytes the content hash covers (every field, the key's included, so equal
    /// bytes mean an equal item) to `buf`.
    fn write_content(&self, buf: &mut Vec<u8>);
    /// xxh3 of [`HashContent::write_content`]'s bytes (the writer hashes its buffer itself).
    #[cfg(test)]
    fn content_hash(&self) -> u64 {
        let mut buf = Vec::with_capacity(256);
        self.write_content(&mut buf);
        xxhash_rust::xxh3::xxh3_64(&buf)
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

impl HashContent for Module {
    fn write_content(&self, buf: &mut Vec<u8>) {
        let mut h = ContentHash::start(buf, Section::Module);
        h.s(&self.name)
            .u(self.size)
            .s(&self.state)
            .extra(&self.extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
