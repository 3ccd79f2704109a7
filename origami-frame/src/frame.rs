//! The frame itself: `_frame` metadata plus one section per feature.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::items::{
    ConfigItem, Connection, Extra, FileItem, KernelLogRecord, Module, Mount, Os, Package, Process,
    Section, Service, User,
};

/// The schema version this crate writes into `_frame.schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

/// An error that a feature met while it crawled; the rest of the crawl went on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureError {
    /// The feature (`package`, `process`, ...), or `crawl` for the crawl as a whole.
    pub feature: String,
    /// What went wrong, naming the file and offset or address where it can.
    pub message: String,
    /// Fields this version does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `_frame` section: what the frame is of, when, from what, and how the crawl went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FrameMeta {
    /// The frame schema version (see [`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The stable id of the system (a name the operator gave, else the hostname).
    pub system: String,
    /// The guest's host name, when the crawl found it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// When the frame was taken.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// What was read: image and dump paths.
    pub source: Vec<String>,
    /// The crawler that made the frame, e.g. `origami/0.1.0`.
    pub crawler_version: String,
    /// How long the whole crawl took, in milliseconds.
    pub duration_ms: u64,
    /// How long each feature took, in milliseconds.
    pub timings: BTreeMap<String, f64>,
    /// The errors features met; each names the feature.
    pub errors: Vec<FeatureError>,
    /// Fields this version does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for FrameMeta {
    fn default() -> Self {
        FrameMeta {
            schema_version: SCHEMA_VERSION,
            system: String::new(),
            hostname: None,
            timestamp: OffsetDateTime::UNIX_EPOCH,
            source: Vec::new(),
            crawler_version: String::new(),
            duration_ms: 0,
            timings: BTreeMap::new(),
            errors: Vec::new(),
            extra: Extra::new(),
        }
    }
}

/// One machine at one instant.
///
/// Its JSON is one object: `_frame` and `os` are objects, every other section is an array of
/// items (empty when absent), and unknown fields, top-level or inside items, are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Frame {
    /// Metadata: system id, time, source, timings, errors.
    #[serde(rename = "_frame")]
    pub meta: FrameMeta,
    /// The operating system.
    pub os: Os,
    /// File inventory.
    pub file: Vec<FileItem>,
    /// Configuration file contents.
    pub config: Vec<ConfigItem>,
    /// Installed packages.
    pub package: Vec<Package>,
    /// User accounts.
    pub user: Vec<User>,
    /// Running processes.
    pub process: Vec<Process>,
    /// Sockets.
    pub connection: Vec<Connection>,
    /// Kernel modules.
    pub module: Vec<Module>,
    /// Mounted file systems.
    pub mount: Vec<Mount>,
    /// Kernel log records, in sequence order.
    pub kernel_log: Vec<KernelLogRecord>,
    /// Services (Windows services and drivers).
    pub service: Vec<Service>,
    /// Top-level sections this version does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Frame {
    /// An empty frame of `system`, stamped now.
    pub fn new(system: impl Into<String>) -> Frame {
        Frame {
            meta: FrameMeta {
                system: system.into(),
                timestamp: OffsetDateTime::now_utc(),
                crawler_version: concat!("origami/", env!("CARGO_PKG_VERSION")).to_string(),
                ..FrameMeta::default()
            },
            ..Frame::default()
        }
    }

    /// The system id (`_frame.system`).
    pub fn system(&self) -> &str {
        &self.meta.system
    }

    /// Records an error met by `feature`; the crawl goes on.
    pub fn record_error(&mut self, feature: impl Into<String>, message: impl Into<String>) {
        self.meta.errors.push(FeatureError {
            feature: feature.into(),
            message: message.into(),
            extra: Extra::new(),
        });
    }

    /// How many items the frame holds (the `os` item counts when it is not empty).
    pub fn item_count(&self) -> usize {
        usize::from(!self.os.is_empty())
            + self.file.len()
            + self.config.len()
            + self.package.len()
            + self.user.len()
            + self.process.len()
            + self.connection.len()
            + self.module.len()
            + self.mount.len()
            + self.kernel_log.len()
            + self.service.len()
    }

    /// How many items one section holds.
    pub fn section_len(&self, section: Section) -> usize {
        match section {
            Section::Os => usize::from(!self.os.is_empty()),
            Section::File => self.file.len(),
            Section::Config => self.config.len(),
            Section::Package => self.package.len(),
            Section::User => self.user.len(),
            Section::Process => self.process.len(),
            Section::Connection => self.connection.len(),
            Section::Module => self.module.len(),
            Section::Mount => self.mount.len(),
            Section::KernelLog => self.kernel_log.len(),
            Section::Service => self.service.len(),
        }
    }

    /// The frame as one line of JSON.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("frame serialisation: {e}"))
    }

    /// The frame as indented JSON, for people.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| unreachable!("frame serialisation: {e}"))
    }

    /// Reads a frame from JSON text.
    pub fn from_json(text: &str) -> Result<Frame, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn frame_with_mount_and_log() -> Frame {
        let mut f = Frame::new("vm");
        f.mount.push(Mount {
            device: "tmpfs".into(),
            path: "/tmp".into(),
            fs_type: "tmpfs".into(),
            options: "rw,relatime,size=65536k,inode64".into(),
            mount_id: Some(27),
            ..Mount::default()
        });
        f.kernel_log.push(KernelLogRecord {
            seq: 0,
            time: 0,
            level: 5,
            facility: 0,
            message: "Linux version 6.1.0".into(),
            ..KernelLogRecord::default()
        });
        f
    }

    #[test]
    fn mount_and_kernel_log_round_trip_with_unknown_fields() {
        let f = frame_with_mount_and_log();
        assert_eq!(f.item_count(), 2);
        assert_eq!(f.section_len(Section::Mount), 1);
        assert_eq!(f.section_len(Section::KernelLog), 1);
        let mut v: Value = serde_json::from_str(&f.to_json()).unwrap();
        assert_eq!(v["mount"][0]["type"], "tmpfs");
        assert_eq!(v["kernel_log"][0]["seq"], 0);
        v["mount"][0]["propagation"] = json!("shared:1");
        v["kernel_log"][0]["caller"] = json!("T1");
        let back = Frame::from_json(&v.to_string()).unwrap();
        assert_eq!(back.mount[0].extra["propagation"], "shared:1");
        let again: Value = serde_json::from_str(&back.to_json()).unwrap();
        assert_eq!(again, v);
    }

    #[test]
    fn frames_without_the_new_sections_read_them_as_empty_and_write_arrays() {
        let f = Frame::from_json(r#"{"_frame":{"system":"x"},"module":[]}"#).unwrap();
        assert!(f.mount.is_empty() && f.kernel_log.is_empty());
        let v: Value = serde_json::from_str(&f.to_json()).unwrap();
        assert_eq!(v["mount"], json!([]));
        assert_eq!(v["kernel_log"], json!([]));
    }

    #[test]
    fn panic_state_fields_live_in_os() {
        let mut f = Frame::new("vm");
        f.os.tainted = Some(1 << 7);
        f.os.taint_flags = Some("D".into());
        f.os.oopsed = Some(true);
        f.os.panicked = Some(true);
        f.os.panic_cpu = Some(1);
        let v: Value = serde_json::from_str(&f.to_json()).unwrap();
        assert_eq!(v["os"]["tainted"], 128);
        assert_eq!(v["os"]["panic_cpu"], 1);
        assert!(v["os"].get("oops_in_progress").is_none());
        assert_eq!(Frame::from_json(&f.to_json()).unwrap(), f);
    }
}
