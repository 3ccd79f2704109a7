//! The Origami data model: a **frame** is one machine at one instant.
//!
//! A frame has `_frame` metadata (system id, time, source, per-feature timings and errors)
//! and the sections `os`, `file`, `config`, `package`, `user`, `process`, `connection`,
//! `module`, `mount`, `kernel_log` and `service`. Items carry a stable key, so two frames of one system diff item by item. Frames
//! read and write as JSON and JSON Lines; fields this version does not know survive a round
//! trip. This crate depends on nothing else of Origami, so a control plane can take frames
//! without the parsers or the index.
//!
//! ```
//! use origami_frame::{Frame, Package, FrameReader, FrameWriter};
//!
//! let mut old = Frame::new("web-01");
//! old.package.push(Package { name: "openssl".into(), version: "3.0.11-1".into(),
//!                            arch: "amd64".into(), manager: "dpkg".into(), ..Default::default() });
//! let mut new = old.clone();
//! new.package[0].version = "3.0.13-1".into();
//!
//! // What changed, by key.
//! let diff = new.diff(&old);
//! assert_eq!(diff.package.changed[0].new.version, "3.0.13-1");
//!
//! // JSON Lines out and back in.
//! let mut w = FrameWriter::new(Vec::new());
//! w.write(&old).unwrap();
//! w.write(&new).unwrap();
//! let bytes = w.into_inner().unwrap();
//! let back: Vec<Frame> = FrameReader::new(&bytes[..]).collect::<Result<_, _>>().unwrap();
//! assert_eq!(back, vec![old, new]);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod diff;
mod frame;
mod items;
mod jsonl;

pub use diff::{Changed, DiffCounts, FrameDiff, SectionDiff};
pub use frame::{FeatureError, Frame, FrameMeta, SCHEMA_VERSION};
pub use items::{
    join_host_port, ConfigItem, Connection, Extra, FileItem, FileType, Item, KernelLogRecord,
    Module, Mount, Os, Package, Process, Section, Service, User,
};
pub use jsonl::{FrameReader, FrameWriter, JsonlError, DEFAULT_MAX_LINE};
pub use time::OffsetDateTime;
