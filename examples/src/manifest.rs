//! The fleet manifest: a TOML file listing machines as `[[machine]]` tables, read into the
//! library's [`Machine`]s.
//!
//! ```toml
//! [[machine]]
//! name = "web-01"
//! disks = ["images/web-01.qcow2"]
//! memory = "dumps/web-01.elf"      # optional: a dump or a running VM's memory file
//! system_map = "maps/System.map"   # optional
//! ```
//!
//! Relative paths are resolved against the manifest's folder.

use std::path::{Path, PathBuf};

use origami_introspect::fleet::Machine;
use origami_introspect::Target;
use serde::{Deserialize, Serialize};

/// A fleet read from a manifest.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// The machines, in manifest order.
    pub machines: Vec<Machine>,
}

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The manifest.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A problem in the manifest file at `path`.
    #[error("{}: {source}", path.display())]
    In {
        /// The manifest.
        path: PathBuf,
        /// The problem.
        source: Box<ManifestError>,
    },
    /// Not TOML of the manifest's shape (the message names the line and column).
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    /// A `[[machine]]` without a name.
    #[error("a [[machine]] has an empty name")]
    EmptyName,
    /// Two machines with one name.
    #[error("machine {0:?} is listed twice")]
    Duplicate(String),
    /// A machine with neither disks nor memory.
    #[error("machine {0:?} has neither disks nor memory")]
    NothingToCrawl(String),
}

/// One `[[machine]]` table as written in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) disks: Vec<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) memory: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) system_map: Option<PathBuf>,
}

/// The file's top level.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManifestFile {
    #[serde(default, rename = "machine")]
    pub(crate) machines: Vec<Entry>,
}

impl ManifestFile {
    /// The file as TOML text.
    pub(crate) fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

impl Manifest {
    /// Parses manifest text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Manifest, ManifestError> {
        let file: ManifestFile = toml::from_str(text)?;
        let mut seen = std::collections::BTreeSet::new();
        let abs = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        let mut machines = Vec::with_capacity(file.machines.len());
        for e in file.machines {
            if e.name.trim().is_empty() {
                return Err(ManifestError::EmptyName);
            }
            if !seen.insert(e.name.clone()) {
                return Err(ManifestError::Duplicate(e.name));
            }
            if e.disks.is_empty() && e.memory.is_none() {
                return Err(ManifestError::NothingToCrawl(e.name));
            }
            let mut target = Target::default();
            for d in &e.disks {
                target = target.with_disk(abs(d));
            }
            if let Some(m) = &e.memory {
                target = target.with_memory(abs(m));
            }
            if let Some(s) = &e.system_map {
                target = target.with_system_map(abs(s));
            }
            machines.push(Machine::new(e.name, target));
        }
        Ok(Manifest { machines })
    }

    /// Reads and parses a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Manifest::parse(&text, base).map_err(|e| ManifestError::In {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves_relative_paths() {
        let m = Manifest::parse(
            "[[machine]]\nname = \"a\"\ndisks = [\"x.img\", \"/abs/y.qcow2\"]\nmemory = \"m.elf\"\n\n[[machine]]\nname = \"b\"\ndisks = [\"z.img\"]\n",
            Path::new("/fleet"),
        )
        .unwrap();
        assert_eq!(m.machines.len(), 2);
        assert_eq!(m.machines[0].name, "a");
        assert_eq!(
            m.machines[0].target.disks,
            vec![PathBuf::from("/fleet/x.img"), PathBuf::from("/abs/y.qcow2")]
        );
        assert_eq!(
            m.machines[0].target.memory,
            Some(PathBuf::from("/fleet/m.elf"))
        );
        assert_eq!(m.machines[1].target.memory, None);
    }

    #[test]
    fn rejects_duplicates_empty_machines_and_unknown_keys() {
        let base = Path::new("/");
        assert!(matches!(
            Manifest::parse(
                "[[machine]]\nname=\"a\"\ndisks=[\"x\"]\n[[machine]]\nname=\"a\"\ndisks=[\"y\"]\n",
                base
            ),
            Err(ManifestError::Duplicate(n)) if n == "a"
        ));
        assert!(matches!(
            Manifest::parse("[[machine]]\nname=\"a\"\n", base),
            Err(ManifestError::NothingToCrawl(_))
        ));
        assert!(matches!(
            Manifest::parse("[[machine]]\nname=\"a\"\ndisk=[\"x\"]\n", base),
            Err(ManifestError::Toml(_))
        ));
    }

    #[test]
    fn written_entries_read_back() {
        let file = ManifestFile {
            machines: vec![Entry {
                name: "w".into(),
                disks: vec!["w.img".into()],
                memory: None,
                system_map: None,
            }],
        };
        let m = Manifest::parse(&file.to_toml(), Path::new("/d")).unwrap();
        assert_eq!(m.machines[0].target.disks, [PathBuf::from("/d/w.img")]);
    }
}
