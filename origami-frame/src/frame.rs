//! The frame itself: `_frame` metadata plus one section per feature.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::items::{
    ConfigItem, Connection, Extra, FileItem, Module, Os, Package, Process, Section, User,
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
