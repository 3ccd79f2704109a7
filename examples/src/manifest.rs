//! The fleet manifest: a TOML file listing machines as `[[machine]]` tables.
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

use serde::{Deserialize, Serialize};

/// One machine of a fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSpec {
    /// The system id its frames carry.
    pub name: String,
    /// Its disk images (any format `origami-core` opens).
    #[serde(default)]
    pub disks: Vec<PathBuf>,
    /// A memory dump or a running VM's memory file.
    #[serde(default)]
    pub memory: Option<PathBuf>,
    /// The guest kernel's System.map, if the caller has it.
    #[serde(default)]
    pub system_map: Option<PathBuf>,
}

/// A fleet: the machines of a manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The machines, in manifest order.
    #[serde(default, rename = "machine")]
    pub machines: Vec<MachineSpec>,
}

impl Manifest {
    /// Parses manifest text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Manifest, String> {
        let mut m: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut seen = std::collections::BTreeSet::new();
        for spec in &mut m.machines {
            if spec.name.trim().is_empty() {
                return Err("a [[machine]] has an empty name".into());
            }
            if !seen.insert(spec.name.clone()) {
                return Err(format!("machine {:?} is listed twice", spec.name));
            }
            if spec.disks.is_empty() && spec.memory.is_none() {
                return Err(format!(
                    "machine {:?} has neither disks nor memory",
                    spec.name
                ));
            }
            let abs = |p: &PathBuf| {
                if p.is_absolute() {
                    p.clone()
                } else {
                    base.join(p)
                }
            };
            spec.disks = spec.disks.iter().map(abs).collect();
            spec.memory = spec.memory.as_ref().map(abs);
            spec.system_map = spec.system_map.as_ref().map(abs);
        }
        Ok(m)
    }

    /// Reads and parses a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Manifest::parse(&text, base).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The manifest as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
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
        assert_eq!(
            m.machines[0].disks,
            vec![PathBuf::from("/fleet/x.img"), PathBuf::from("/abs/y.qcow2")]
        );
        assert_eq!(m.machines[0].memory, Some(PathBuf::from("/fleet/m.elf")));
        assert_eq!(m.machines[1].memory, None);
    }

    #[test]
    fn rejects_duplicates_empty_machines_and_unknown_keys() {
        let base = Path::new("/");
        assert!(Manifest::parse(
            "[[machine]]\nname=\"a\"\ndisks=[\"x\"]\n[[machine]]\nname=\"a\"\ndisks=[\"y\"]\n",
            base
        )
        .is_err());
        assert!(Manifest::parse("[[machine]]\nname=\"a\"\n", base).is_err());
        assert!(Manifest::parse("[[machine]]\nname=\"a\"\ndisk=[\"x\"]\n", base).is_err());
    }
}
