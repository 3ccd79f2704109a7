//! The fleet manifest: a TOML file listing machines as `[[machine]]` tables, read into the
//! library's [`Machine`]s.
//!
//! ```toml
//! [[machine]]
//! name = "web-01"
//! disks = ["images/web-01.qcow2"]
//! memory = "dumps/web-01.elf"      # optional: a dump or a running VM's memory file
//! # qemu_pid = 4242                # or: the running QEMU whose RAM to read (live)
//! system_map = "maps/System.map"   # optional
//! kernel_debuginfo = "debug/"       # optional: a DWARF vmlinux, or a folder of them
//! isf = "isf/web-01.json.xz"        # optional: a Volatility 3 ISF, or a folder of them
//! backing_dirs = ["images/base"]   # optional: folders its images may name backing
//!                                  # files and extents in, besides their own
//! interval = "2m"                  # optional: this machine's crawl interval
//!
//! [machine.limits]                 # optional: this machine's own bounds (see `Limits`)
//! memory = "2G"                    # sizes: bytes, or with K, M, G, T (powers of 1024)
//! section_timeout = 30             # seconds (fractions allowed)
//! tasks = 100000                   # also: cmdline, fds, sockets, modules, symbols, btf,
//!                                  # file_size, config_size, entries
//! ```
//!
//! A top-level `interval = "5m"` (or a number of seconds) sets how often `origami serve`
//! re-crawls a machine whose disk images did not change, and how often it crawls memory;
//! a machine's own `interval` overrides it. `crawl-fleet` ignores both.
//!
//! A machine with a `qemu_pid` is a running VM read live: `crawl-fleet` attaches to that
//! QEMU's guest RAM for its crawl, and `origami serve` also follows its processes,
//! connections and modules with a watcher at the machine's interval.
//!
//! Relative paths are resolved against the manifest's folder. A machine with
//! `backing_dirs` or `limits` is crawled with its own options: the fleet's plus those
//! folders ([`CrawlOptionsBuilder::allow_backing_dir`]) and with those bounds over the
//! fleet's ([`CrawlOptionsBuilder::limits`]); the command line's `--max-*` flags use the
//! same names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use origami_introspect::fleet::Machine;
use origami_introspect::linux::LayoutSource;
use origami_introspect::{CrawlOptionsBuilder, Limits, Target};
use serde::{Deserialize, Serialize};

/// A size in bytes: `4096`, `64K`, `1M`, `2G` (powers of 1024; `KiB`, `MB` ... are read
/// the same). The command line's and the manifest's one reading of sizes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("{s:?}: not a size (use e.g. 4096, 64K, 1M, 2G)")),
    };
    n.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?}: not a size (use e.g. 4096, 64K, 1M, 2G)"))
}

/// A size in a manifest: a number of bytes or a string such as `"64K"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self) -> Result<u64, String> {
        match self {
            Size::Bytes(n) => Ok(*n),
            Size::Text(t) => parse_size(t),
        }
    }
}

/// A machine's own bounds (`[machine.limits]`), each over the fleet's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MachineLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) memory: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) section_timeout: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) file_size: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) config_size: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) entries: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tasks: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cmdline: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sockets: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) modules: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) symbols: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) btf: Option<Size>,
}

impl MachineLimits {
    /// `base` with these bounds over it (`file_size` caps every file read whole, as the
    /// command line's `--max-file-size`).
    fn over(&self, base: Limits) -> Result<Limits, String> {
        let mut l = base;
        if let Some(s) = &self.file_size {
            let n = s.bytes()?;
            for b in [
                &mut l.config_file,
                &mut l.dpkg_status,
                &mut l.passwd,
                &mut l.os_release,
                &mut l.fstab,
            ] {
                *b = (*b).min(n);
            }
        }
        if let Some(s) = &self.config_size {
            l.config_file = s.bytes()?;
        }
        if let Some(s) = &self.memory {
            l.memory = s.bytes()?;
        }
        if let Some(secs) = self.section_timeout {
            l.section_time = Some(
                Duration::try_from_secs_f64(secs)
                    .map_err(|_| format!("section_timeout {secs}: not a number of seconds"))?,
            );
        }
        if let Some(s) = &self.cmdline {
            l.cmdline = s.bytes()?;
        }
        if let Some(s) = &self.btf {
            l.btf = s.bytes()?;
        }
        l.walk.max_entries = self.entries.unwrap_or(l.walk.max_entries);
        l.tasks = self.tasks.unwrap_or(l.tasks);
        l.fds_per_task = self.fds.unwrap_or(l.fds_per_task);
        l.sockets = self.sockets.unwrap_or(l.sockets);
        l.modules = self.modules.unwrap_or(l.modules);
        l.symbols = self.symbols.unwrap_or(l.symbols);
        Ok(l)
    }
}

/// A fleet read from a manifest.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// The machines, in manifest order.
    pub machines: Vec<Machine>,
    /// The fleet's crawl interval (top-level `interval`), if given.
    pub interval: Option<Duration>,
    /// Machines' own intervals (their `interval`), by name.
    pub intervals: BTreeMap<String, Duration>,
    /// The QEMU process of each machine read live (its `qemu_pid`), by name.
    pub qemu_pids: BTreeMap<String, u32>,
}

impl Manifest {
    /// How often `name` is crawled: its own interval, the fleet's, or `default`.
    pub fn interval_of(&self, name: &str, default: Duration) -> Duration {
        self.intervals
            .get(name)
            .copied()
            .or(self.interval)
            .unwrap_or(default)
    }
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
    #[error("machine {0:?} has neither disks nor memory (nor a qemu_pid)")]
    NothingToCrawl(String),
    /// A machine naming both a `memory` file and a `qemu_pid`.
    #[error("machine {0:?} names both memory and qemu_pid: give one source of memory")]
    TwoMemorySources(String),
    /// An `interval` that is not a duration.
    #[error("interval {0:?}: not a duration (give seconds, or a number with s, m, h or d, e.g. \"5m\"; at least 1 s)")]
    Interval(String),
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
    /// A machine's `[machine.limits]` holds a value that does not parse.
    #[error("machine {name:?}: limits: {what}")]
    Limits {
        /// The machine.
        name: String,
        /// What is wrong.
        what: String,
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
    pub(crate) qemu_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) system_map: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kernel_debuginfo: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) isf: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) backing_dirs: Vec<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) limits: Option<MachineLimits>,
    pub(crate) interval: Option<IntervalText>,
}

/// An interval as written: seconds, or text such as `"90s"`, `"5m"`, `"1h"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum IntervalText {
    Seconds(u64),
    Text(String),
}

impl IntervalText {
    fn duration(&self) -> Result<Duration, ManifestError> {
        let bad = || {
            ManifestError::Interval(match self {
                IntervalText::Seconds(n) => n.to_string(),
                IntervalText::Text(t) => t.clone(),
            })
        };
        let secs = match self {
            IntervalText::Seconds(n) => Some(*n),
            IntervalText::Text(t) => parse_interval(t),
        }
        .ok_or_else(bad)?;
        if secs == 0 {
            return Err(bad());
        }
        Ok(Duration::from_secs(secs))
    }
}

/// Seconds of `"90"`, `"90s"`, `"5m"`, `"2h"`, `"1d"`.
pub fn parse_interval(t: &str) -> Option<u64> {
    let t = t.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The file's top level.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManifestFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) interval: Option<IntervalText>,
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
        let interval = file.interval.as_ref().map(|i| i.duration()).transpose()?;
        let mut intervals = BTreeMap::new();
        let mut qemu_pids = BTreeMap::new();
        for e in file.machines {
            if e.name.trim().is_empty() {
                return Err(ManifestError::EmptyName);
            }
            if !seen.insert(e.name.clone()) {
                return Err(ManifestError::Duplicate(e.name));
            }
            if e.disks.is_empty() && e.memory.is_none() && e.qemu_pid.is_none() {
                return Err(ManifestError::NothingToCrawl(e.name));
            }
            if e.memory.is_some() && e.qemu_pid.is_some() {
                return Err(ManifestError::TwoMemorySources(e.name));
            }
            if let Some(pid) = e.qemu_pid {
                qemu_pids.insert(e.name.clone(), pid);
            }
            if let Some(i) = &e.interval {
                intervals.insert(e.name.clone(), i.duration()?);
            }
            let mut target = Target::default();
            for d in &e.disks {
                // An NBD URI names a server, not a file next to the manifest.
                let nbd = d.to_str().is_some_and(origami_core::nbd::is_nbd_uri);
                target = target.with_disk(if nbd { d.clone() } else { abs(d) });
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
            if !e.backing_dirs.is_empty() || e.limits.is_some() {
                let mut own = options.clone();
                for d in &e.backing_dirs {
                    own = own.allow_backing_dir(abs(d));
                }
                if let Some(ml) = &e.limits {
                    let fleet =
                        options
                            .clone()
                            .build()
                            .map_err(|source| ManifestError::Options {
                                name: machine.name.clone(),
                                source,
                            })?;
                    let l = ml
                        .over(*fleet.limits())
                        .map_err(|what| ManifestError::Limits {
                            name: machine.name.clone(),
                            what,
                        })?;
                    own = own.limits(l);
                }
                let own = own.build().map_err(|source| ManifestError::Options {
                    name: machine.name.clone(),
                    source,
                })?;
                machine = machine.with_options(own);
            }
            machines.push(machine);
        }
        Ok(Manifest {
            machines,
            interval,
            intervals,
            qemu_pids,
        })
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
    fn qemu_pid_names_a_live_machine() {
        let m = Manifest::parse(
            "[[machine]]\nname = \"live\"\nqemu_pid = 4242\n\n[[machine]]\nname = \"disk\"\ndisks = [\"d.img\"]\n",
            Path::new("/fleet"),
            &CrawlOptions::builder(),
        )
        .unwrap();
        assert_eq!(m.qemu_pids.get("live"), Some(&4242));
        assert_eq!(m.qemu_pids.len(), 1);
        assert!(
            m.machines[0].target.memory.is_none(),
            "attached when crawled"
        );
        let both = Manifest::parse(
            "[[machine]]\nname = \"x\"\nmemory = \"m.elf\"\nqemu_pid = 1\n",
            Path::new("/fleet"),
            &CrawlOptions::builder(),
        );
        assert!(matches!(both, Err(ManifestError::TwoMemorySources(n)) if n == "x"));
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
    fn intervals_are_read_in_seconds_or_with_a_unit() {
        let m = Manifest::parse(
            "interval = \"5m\"\n[[machine]]\nname = \"a\"\ndisks = [\"a.img\"]\ninterval = 90\n[[machine]]\nname = \"b\"\ndisks = [\"b.img\"]\n",
            Path::new("/f"),
            &CrawlOptions::builder(),
        )
        .unwrap();
        let d = Duration::from_secs(7);
        assert_eq!(m.interval_of("a", d), Duration::from_secs(90));
        assert_eq!(m.interval_of("b", d), Duration::from_secs(300));
        let none = Manifest::parse(
            "[[machine]]\nname = \"b\"\ndisks = [\"b.img\"]\n",
            Path::new("/f"),
            &CrawlOptions::builder(),
        )
        .unwrap();
        assert_eq!(none.interval_of("b", d), d);
        for bad in ["\"5 parsecs\"", "0", "\"\"", "\"99999999999999999999d\""] {
            let text = format!("interval = {bad}\n[[machine]]\nname=\"a\"\ndisks=[\"x\"]\n");
            assert!(
                Manifest::parse(&text, Path::new("/"), &CrawlOptions::builder()).is_err(),
                "{bad}"
            );
        }
        assert_eq!(parse_interval("2h"), Some(7200));
        assert_eq!(parse_interval("1d"), Some(86_400));
    }

    #[test]
    fn written_entries_read_back() {
        let file = ManifestFile {
            machines: vec![Entry {
                name: "w".into(),
                disks: vec!["w.img".into()],
                memory: None,
                qemu_pid: None,
                system_map: None,
                kernel_debuginfo: None,
                isf: None,
                backing_dirs: vec![],
                limits: Some(MachineLimits {
                    memory: Some(Size::Text("2G".into())),
                    tasks: Some(7),
                    ..MachineLimits::default()
                }),
                interval: None,
            }],
            interval: None,
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
        let l = m.machines[0].options.as_ref().unwrap().limits();
        assert_eq!((l.memory, l.tasks), (2 << 30, 7));
    }

    #[test]
    fn limits_give_a_machine_its_own_bounds_over_the_fleets() {
        let mut fleet = Limits::DEFAULT;
        fleet.modules = 9;
        let m = Manifest::parse(
            "[[machine]]\nname = \"a\"\ndisks = [\"a.img\"]\n[machine.limits]\nmemory = \"64M\"\nsection_timeout = 1.5\ntasks = 100\nfile_size = 4096\nbtf = 1048576\n\n[[machine]]\nname = \"b\"\ndisks = [\"b.img\"]\n",
            Path::new("/fleet"),
            &CrawlOptions::builder().limits(fleet),
        )
        .unwrap();
        let l = m.machines[0].options.as_ref().unwrap().limits();
        assert_eq!(l.memory, 64 << 20);
        assert_eq!(l.section_time, Some(Duration::from_millis(1500)));
        assert_eq!(l.tasks, 100);
        assert_eq!(l.btf, 1 << 20);
        assert_eq!((l.dpkg_status, l.passwd, l.os_release), (4096, 4096, 4096));
        assert_eq!(l.modules, 9, "the fleet's own bound stays");
        assert!(m.machines[1].options.is_none());
        for bad in ["memory = \"12Q\"", "taks = 3", "section_timeout = -1.0"] {
            let text = format!(
                "[[machine]]\nname = \"a\"\ndisks = [\"a.img\"]\n[machine.limits]\n{bad}\n"
            );
            assert!(
                Manifest::parse(&text, Path::new("/"), &CrawlOptions::builder()).is_err(),
                "{bad}"
            );
        }
    }
}
