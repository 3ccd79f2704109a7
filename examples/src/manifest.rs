//! The fleet manifest: a TOML file listing machines as `[[machine]]` tables, read into the
//! library's [`Machine`]s.
//!
//! ```toml
//! [[machine]]
//! name = "web-01"
//! disks = ["images/web-01.qcow2"]
//! memory = "dumps/web-01.elf"      # optional: a dump or a running VM's memory file
//! system_map = "maps/System.map"   # optional
//! kernel_debuginfo = "debug/"       # optional: a DWARF vmlinux, or a folder of them
//! isf = "isf/web-01.json.xz"        # optional: a Volatility 3 ISF, or a folder of them
//! backing_dirs = ["images/base"]   # optional: folders its images may name backing
//!                                  # files and extents in, besides their own
//! ```
//!
//! Relative paths are resolved against the manifest's folder. A machine with
//! `backing_dirs` is crawled with its own options: the fleet's plus those folders
//! ([`CrawlOptionsBuilder::allow_backing_dir`]).

use std::path::{Path, PathBuf};

use origami_introspect::fleet::Machine;
use origami_introspect::linux::LayoutSource;
use origami_introspect::{CrawlOptionsBuilder, Target};
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
    /// A machine naming both `kernel_debuginfo` and `isf`.
    #[error(
        "machine {0:?} names both kernel_debuginfo and isf: give one source of kernel layouts"
    )]
    TwoLayoutSources(String),
    /// A machine's own crawl options cannot be built.
    #[error("machine {name:?}: {source}")]
    Options {
        /// The machine.
        name: String,
        /// Why.
        source: origami_introspect::Error,
    },
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kernel_debuginfo: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) isf: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) backing_dirs: Vec<PathBuf>,
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
    /// Parses manifest text; relative paths are resolved against `base`. A machine with
    /// `backing_dirs` gets its own options: `options` plus those folders.
    pub fn parse(
        text: &str,
        base: &Path,
        options: &CrawlOptionsBuilder,
    ) -> Result<Manifest, ManifestError> {
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
            match (&e.kernel_debuginfo, &e.isf) {
                (Some(_), Some(_)) => return Err(ManifestError::TwoLayoutSources(e.name)),
                (Some(d), None) => {
                    target = target.with_kernel_layouts(LayoutSource::KernelDebuginfo(abs(d)))
                }
                (None, Some(i)) => target = target.with_kernel_layouts(LayoutSource::Isf(abs(i))),
                (None, None) => {}
            }
            let mut machine = Machine::new(e.name, target);
            if !e.backing_dirs.is_empty() {
                let mut own = options.clone();
                for d in &e.backing_dirs {
                    own = own.allow_backing_dir(abs(d));
                }
                let own = own.build().map_err(|source| ManifestError::Options {
                    name: machine.name.clone(),
                    source,
                })?;
                machine = machine.with_options(own);
            }
            machines.push(machine);
        }
        Ok(Manifest { machines })
    }

    /// Reads and parses a manifest file (see [`Manifest::parse`]).
    pub fn load(path: &Path, options: &CrawlOptionsBuilder) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Manifest::parse(&text, base, options).map_err(|e| ManifestError::In {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use origami_introspect::frame::Section;
    use origami_introspect::CrawlOptions;

    use super::*;

    #[test]
    fn parses_and_resolves_relative_paths() {
        let m = Manifest::parse(
            "[[machine]]\nname = \"a\"\ndisks = [\"x.img\", \"/abs/y.qcow2\"]\nmemory = \"m.elf\"\n\n[[machine]]\nname = \"b\"\ndisks = [\"z.img\"]\n",
            Path::new("/fleet"),
            &CrawlOptions::builder(),
        )
        .unwrap();
        assert_eq!(m.machines.len(), 2);
        assert_eq!(m.machines[0].name, "a");
        let names: Vec<String> = m.machines[0]
            .target
            .disks
            .iter()
            .map(|d| d.name())
            .collect();
        assert_eq!(names, ["/fleet/x.img", "/abs/y.qcow2"]);
        assert_eq!(
            m.machines[0].target.memory.as_ref().map(|m| m.name()),
            Some("/fleet/m.elf".to_string())
        );
        assert!(m.machines[1].target.memory.is_none());
        assert!(m.machines.iter().all(|m| m.options.is_none()));
    }

    #[test]
    fn kernel_debuginfo_and_isf_name_the_layout_source() {
        let m = Manifest::parse(
            "[[machine]]\nname = \"a\"\nmemory = \"a.elf\"\nkernel_debuginfo = \"dbg\"\n\n[[machine]]\nname = \"b\"\nmemory = \"b.elf\"\nisf = \"/isf/b.json.xz\"\n",
            Path::new("/fleet"),
            &CrawlOptions::builder(),
        )
        .unwrap();
        assert_eq!(
            m.machines[0].target.kernel_layouts,
            Some(LayoutSource::KernelDebuginfo("/fleet/dbg".into()))
        );
        assert_eq!(
            m.machines[1].target.kernel_layouts,
            Some(LayoutSource::Isf("/isf/b.json.xz".into()))
        );
        assert!(matches!(
            Manifest::parse(
                "[[machine]]\nname = \"a\"\nmemory = \"a.elf\"\nkernel_debuginfo = \"d\"\nisf = \"i.json\"\n",
                Path::new("/"),
                &CrawlOptions::builder()
            ),
            Err(ManifestError::TwoLayoutSources(n)) if n == "a"
        ));
    }

    #[test]
    fn backing_dirs_give_a_machine_its_own_options() {
        let m = Manifest::parse(
            "[[machine]]\nname = \"a\"\ndisks = [\"a.qcow2\"]\nbacking_dirs = [\"base\"]\n\n[[machine]]\nname = \"b\"\ndisks = [\"b.qcow2\"]\n",
            Path::new("/fleet"),
            &CrawlOptions::builder().sections([Section::Os]),
        )
        .unwrap();
        // Its own options are the fleet's plus the folder.
        let own = m.machines[0].options.as_ref().unwrap();
        assert_eq!(
            own.sections().iter().copied().collect::<Vec<_>>(),
            [Section::Os]
        );
        assert!(m.machines[1].options.is_none());
    }

    #[test]
    fn rejects_duplicates_empty_machines_and_unknown_keys() {
        let base = Path::new("/");
        assert!(matches!(
            Manifest::parse(
                "[[machine]]\nname=\"a\"\ndisks=[\"x\"]\n[[machine]]\nname=\"a\"\ndisks=[\"y\"]\n",
                base,
                &CrawlOptions::builder()
            ),
            Err(ManifestError::Duplicate(n)) if n == "a"
        ));
        assert!(matches!(
            Manifest::parse("[[machine]]\nname=\"a\"\n", base, &CrawlOptions::builder()),
            Err(ManifestError::NothingToCrawl(_))
        ));
        assert!(matches!(
            Manifest::parse(
                "[[machine]]\nname=\"a\"\ndisk=[\"x\"]\n",
                base,
                &CrawlOptions::builder()
            ),
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
                kernel_debuginfo: None,
                isf: None,
                backing_dirs: vec![],
            }],
        };
        let m =
            Manifest::parse(&file.to_toml(), Path::new("/d"), &CrawlOptions::builder()).unwrap();
        let names: Vec<String> = m.machines[0]
            .target
            .disks
            .iter()
            .map(|d| d.name())
            .collect();
        assert_eq!(names, ["/d/w.img"]);
    }
}
