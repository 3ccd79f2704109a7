//! Every bound a crawl puts on what a guest makes it read, hold, walk or wait for, in one
//! value: [`Limits`], set with [`CrawlOptionsBuilder::limits`](crate::CrawlOptionsBuilder::limits).
//!
//! Guest data is hostile input: a guest chooses its file sizes, its list lengths and the
//! shape of its kernel structures. Each bound below turns "as much as the guest says" into
//! an error recorded in the frame (`_frame.errors`), and the rest of the crawl goes on.
//! The defaults are generous for real machines and small enough that a fleet of crawls
//! fits in a control plane's memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fs::WalkLimits;

/// Bounds of one crawl, with documented defaults ([`Limits::DEFAULT`]).
///
/// ```
/// use origami_introspect::{CrawlOptions, Limits};
///
/// let mut limits = Limits::default();
/// limits.config_file = 1 << 20; // keep config files up to 1 MiB
/// limits.walk.max_entries = 2_000_000;
/// let options = CrawlOptions::builder().limits(limits).build()?;
/// assert_eq!(options.limits().config_file, 1 << 20);
/// assert_eq!(options.limits().dpkg_status, Limits::DEFAULT.dpkg_status);
/// # Ok::<(), origami_introspect::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    // --- memory per crawl ---
    /// The most bytes one crawl may hold at once in what it reads of the guest (its
    /// [`Budget`]): every buffer read whole is reserved before it is read and given back
    /// when it is dropped (the dpkg status, passwd and group, os-release, fstab, the
    /// kallsyms window and decoded symbols, the BTF blob, fd tables, TCP's hash table);
    /// what the frame keeps stays reserved to the crawl's end (config texts, command
    /// lines, the `file` section's entries, each ext4 volume's 8 MiB block cache). A read
    /// that would go over is an [`Error::OverBudget`] in its section, which stops there.
    /// Default 1 GiB.
    pub memory: u64,

    // --- sizes of what is read whole ---
    /// One config file's text (the `config` section); a larger file is listed without its
    /// content. Default 64 KiB.
    pub config_file: u64,
    /// The dpkg status file (`/var/lib/dpkg/status`). Default 64 MiB.
    pub dpkg_status: u64,
    /// `/etc/passwd` and `/etc/group`, each. Default 4 MiB.
    pub passwd: u64,
    /// `/etc/os-release` (and `/usr/lib/os-release`); a larger one is an error of the
    /// `os` section, whose os-release fields are then left out. Default 64 KiB.
    pub os_release: u64,
    /// `/etc/fstab`, read to assemble the guest's tree; a larger one is a `disk` error and
    /// the tree is the root file system alone. Default 1 MiB.
    pub fstab: u64,
    /// One process's command line, read from its memory; a longer one keeps its first
    /// bytes and is an error of the `process` section naming the process. Default 128 KiB.
    pub cmdline: u64,
    /// The kernel's BTF blob (its type layouts), found in memory; a larger one is a
    /// `kernel` error (no layouts, so no memory section). Default 64 MiB.
    pub btf: u64,

    // --- list lengths ---
    /// The tree walks of the `file` and `config` sections: entries in all, depth, entries
    /// of one directory. Default 10,000,000 entries, 512 levels, 1,000,000 a directory.
    pub walk: WalkLimits,
    /// Tasks walked on the kernel's task list; the tasks before the bound are kept (for
    /// processes and connections alike). Default 65,536.
    pub tasks: usize,
    /// Open-file slots read per task (for the sockets it holds); a task with more is an
    /// error of the `connection` section and its sockets are not read. Default 65,536.
    pub fds_per_task: u64,
    /// Sockets read in all, through the tasks' open files and TCP's hash; the sockets
    /// before the bound are kept. Default 262,144.
    pub sockets: usize,
    /// Kernel modules walked on the module list; the modules before the bound are kept.
    /// Default 4,096.
    pub modules: usize,
    /// Symbols in the kernel's kallsyms table; a larger table is a `kernel` error (no
    /// symbols, so no memory section). A table of more than 2,000,000 is never taken for
    /// kallsyms, whatever this bound. Default 2,000,000.
    pub symbols: u32,

    // --- time ---
    /// The most time one section (`os`, `package`, `file`, `process`, ..., and `kernel`,
    /// the discovery of the kernel in memory) may take. A section checks its [`Deadline`]
    /// as it walks (directory entries, files hashed, tasks, sockets, modules, banner
    /// candidates): past it, it stops, keeps what it found and records an
    /// [`Error::OverTime`] naming itself; a section that has no such loop and overran is
    /// recorded the same way when it ends. The other sections go on, each with its own
    /// time. Default: none (a fleet bounds a whole machine's crawl with
    /// [`FleetBuilder::timeout`](crate::fleet::FleetBuilder::timeout)).
    pub section_time: Option<Duration>,
}

/// The size the vendored ext4 reader's block cache takes for each ext4 volume opened
/// (`vendor/ext4-view/src/block_cache.rs`, `CACHE_BYTES`), reserved on the crawl's
/// [`Budget`] for as long as the volume is open.
pub const EXT4_CACHE_BYTES: u64 = 8 << 20;

/// The memory budget of one crawl ([`Limits::memory`]): the bytes of guest content the
/// crawl holds, reserved before each read by [`Budget::reserve`]. Clones share one count.
///
/// ```
/// use origami_introspect::Budget;
///
/// let budget = Budget::new(100);
/// let a = budget.reserve("/etc/passwd", 60)?;
/// assert!(budget.reserve("/etc/group", 60).is_err()); // 120 > 100
/// drop(a); // given back
/// budget.reserve("/etc/group", 60)?.keep(); // held to the crawl's end
/// assert_eq!(budget.held(), 60);
/// # Ok::<(), origami_introspect::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Budget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    limit: u64,
    held: AtomicU64,
    peak: AtomicU64,
}

impl Budget {
    /// A budget of `limit` bytes, none held.
    pub fn new(limit: u64) -> Budget {
        Budget {
            inner: Arc::new(BudgetInner {
                limit,
                held: AtomicU64::new(0),
                peak: AtomicU64::new(0),
            }),
        }
    }

    /// A budget with no bound (for callers of one section's function that set none).
    pub fn unlimited() -> Budget {
        Budget::new(u64::MAX)
    }

    /// Reserves `bytes` for a buffer about to be read from `what` (a guest path or a kernel
    /// structure); fails with [`Error::OverBudget`], reserving nothing, when the crawl
    /// would then hold more than its budget.
    pub fn reserve(&self, what: impl std::fmt::Display, bytes: u64) -> Result<Reservation> {
        let i = &self.inner;
        let mut held = i.held.load(Ordering::Relaxed);
        loop {
            let after = held.checked_add(bytes).filter(|&a| a <= i.limit);
            let Some(after) = after else {
                return Err(Error::OverBudget {
                    what: what.to_string(),
                    bytes,
                    held,
                    limit: i.limit,
                });
            };
            match i
                .held
                .compare_exchange_weak(held, after, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    i.peak.fetch_max(after, Ordering::Relaxed);
                    return Ok(Reservation {
                        budget: self.clone(),
                        bytes,
                    });
                }
                Err(now) => held = now,
            }
        }
    }

    /// The bytes held now.
    pub fn held(&self) -> u64 {
        self.inner.held.load(Ordering::Relaxed)
    }

    /// The most bytes held at once so far.
    pub fn peak(&self) -> u64 {
        self.inner.peak.load(Ordering::Relaxed)
    }

    /// The bound.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// What may still be reserved.
    pub fn remaining(&self) -> u64 {
        self.inner.limit.saturating_sub(self.held())
    }
}

impl Default for Budget {
    /// The budget of [`Limits::DEFAULT`].
    fn default() -> Self {
        Budget::new(Limits::DEFAULT.memory)
    }
}

/// Bytes reserved on a [`Budget`], given back when dropped (or kept with
/// [`Reservation::keep`]).
#[derive(Debug)]
#[must_use = "a reservation is given back as soon as it is dropped"]
pub struct Reservation {
    budget: Budget,
    bytes: u64,
}

impl Reservation {
    /// Holds the bytes to the end of the crawl (for what the frame keeps).
    pub fn keep(mut self) {
        self.bytes = 0;
    }

    /// The bytes reserved.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget
                .inner
                .held
                .fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

/// What one section of a crawl runs within: the crawl's [`Limits`], its memory
/// [`Budget`] (shared by every section of the crawl) and the section's own [`Deadline`].
#[derive(Debug, Clone)]
pub struct Bounds {
    /// The crawl's limits.
    pub limits: Limits,
    /// The crawl's memory budget.
    pub budget: Budget,
    /// The section's deadline.
    pub deadline: Deadline,
}

impl Bounds {
    /// [`Limits::DEFAULT`], an unlimited budget and no deadline.
    pub fn none() -> Bounds {
        Bounds {
            limits: Limits::DEFAULT,
            budget: Budget::unlimited(),
            deadline: Deadline::none(),
        }
    }

    /// The same limits and budget, with a deadline for `section` starting now.
    pub fn section(&self, section: &'static str) -> Bounds {
        Bounds {
            limits: self.limits,
            budget: self.budget.clone(),
            deadline: Deadline::start(section, self.limits.section_time),
        }
    }
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds::none()
    }
}

/// When a section must stop ([`Limits::section_time`]): started when the section starts,
/// checked by its loops.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    section: &'static str,
    start: Instant,
    limit: Option<Duration>,
}

impl Deadline {
    /// A deadline for `section` starting now; `None` never passes.
    pub fn start(section: &'static str, limit: Option<Duration>) -> Deadline {
        Deadline {
            section,
            start: Instant::now(),
            limit,
        }
    }

    /// A deadline that never passes.
    pub fn none() -> Deadline {
        Deadline::start("", None)
    }

    /// The section this deadline is for.
    pub fn section(&self) -> &'static str {
        self.section
    }

    /// True once the section has run past its time.
    pub fn passed(&self) -> bool {
        self.limit.is_some_and(|l| self.start.elapsed() >= l)
    }

    /// `Err(Error::OverTime)` naming the section once it has run past its time.
    pub fn check(&self) -> Result<()> {
        if self.passed() {
            return Err(self.error());
        }
        Ok(())
    }

    /// The error of this section's overrun.
    pub fn error(&self) -> Error {
        Error::OverTime {
            section: self.section.to_string(),
            limit_ms: self
                .limit
                .map_or(0, |l| l.as_millis().try_into().unwrap_or(u64::MAX)),
            elapsed_ms: self
                .start
                .elapsed()
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
        }
    }
}

impl Default for Deadline {
    fn default() -> Self {
        Deadline::none()
    }
}

impl Limits {
    /// The defaults, documented field by field.
    pub const DEFAULT: Limits = Limits {
        memory: 1 << 30,
        config_file: 64 << 10,
        dpkg_status: 64 << 20,
        passwd: 4 << 20,
        os_release: 64 << 10,
        fstab: 1 << 20,
        cmdline: 128 << 10,
        btf: 64 << 20,
        walk: WalkLimits {
            max_entries: 10_000_000,
            max_depth: 512,
            max_dir_entries: 1_000_000,
        },
        tasks: 1 << 16,
        fds_per_task: 1 << 16,
        sockets: 1 << 18,
        modules: 4096,
        symbols: 2_000_000,
        section_time: None,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use origami_frame::Section;

    use super::*;
    use crate::{CrawlOptions, Crawler, Target};

    /// One of the demo fleet's disks: a real Debian-like ext4 root whose generator put
    /// packages, users and config files in it (examples/demo-fleet/fleet.json).
    fn web02() -> PathBuf {
        let zst = include_bytes!("../../examples/demo-fleet/web-02.img.zst");
        let path = std::env::temp_dir().join(format!(
            "origami-limits-{}-{:?}.img",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, zstd::stream::decode_all(&zst[..]).unwrap()).unwrap();
        path
    }

    fn crawl(limits: Limits) -> origami_frame::Frame {
        let disk = web02();
        let options = CrawlOptions::builder().limits(limits).build().unwrap();
        let frame = Crawler::new(options).crawl(&Target::disk(&disk)).unwrap();
        std::fs::remove_file(&disk).unwrap();
        frame
    }

    fn errors_of(frame: &origami_frame::Frame, section: Section) -> Vec<&str> {
        frame
            .meta
            .errors
            .iter()
            .filter(|e| e.feature == section.name())
            .map(|e| e.message.as_str())
            .collect()
    }

    #[test]
    fn the_defaults_are_the_documented_ones_and_the_builder_keeps_them() {
        let o = CrawlOptions::builder().build().unwrap();
        assert_eq!(*o.limits(), Limits::DEFAULT);
        assert_eq!(Limits::DEFAULT.config_file, 64 * 1024);
        assert_eq!(Limits::DEFAULT.dpkg_status, 64 * 1024 * 1024);
        assert_eq!(Limits::DEFAULT.passwd, 4 * 1024 * 1024);
        assert_eq!(WalkLimits::default(), Limits::DEFAULT.walk);
    }

    #[test]
    fn each_file_and_walk_bound_reaches_its_section() {
        let full = crawl(Limits::DEFAULT);
        assert!(full.meta.errors.is_empty(), "{:?}", full.meta.errors);
        assert!(!full.package.is_empty() && !full.user.is_empty());
        let big_config = full.config.iter().map(|c| c.content.len()).max().unwrap();
        assert!(big_config > 64);

        let mut tight = Limits::DEFAULT;
        tight.dpkg_status = 64;
        tight.passwd = 16;
        tight.config_file = 64;
        tight.walk.max_entries = 10;
        let f = crawl(tight);
        assert!(f.package.is_empty());
        assert!(
            errors_of(&f, Section::Package)
                .iter()
                .any(|e| e.contains("/var/lib/dpkg/status") && e.contains("64-byte bound")),
            "{:?}",
            f.meta.errors
        );
        assert!(f.user.is_empty());
        assert!(errors_of(&f, Section::User)
            .iter()
            .any(|e| e.contains("/etc/passwd") && e.contains("16-byte bound")));
        assert!(f.file.len() <= 10, "{} files", f.file.len());
        assert!(!errors_of(&f, Section::File).is_empty());
        assert!(f.config.iter().all(|c| c.content.len() <= 64));
    }

    #[test]
    fn os_release_and_fstab_bounds_reach_the_os_section_and_the_assembly() {
        let full = crawl(Limits::DEFAULT);
        assert!(full.os.name.is_some());
        let mut tight = Limits::DEFAULT;
        tight.os_release = 16;
        tight.fstab = 8;
        let f = crawl(tight);
        assert!(f.os.name.is_none());
        assert!(
            errors_of(&f, Section::Os)
                .iter()
                .any(|e| e.contains("/etc/os-release") && e.contains("over the 16-byte bound")),
            "{:?}",
            f.meta.errors
        );
        let disk: Vec<&str> = f
            .meta
            .errors
            .iter()
            .filter(|e| e.feature == "disk")
            .map(|e| e.message.as_str())
            .collect();
        assert!(
            disk.iter()
                .any(|e| e.starts_with("/etc/fstab: ") && e.contains("over the 8-byte bound")),
            "{disk:?}"
        );
        // The root alone is still crawled.
        assert_eq!(f.package.len(), full.package.len());
    }

    #[test]
    fn the_memory_budget_stops_the_section_that_would_go_over() {
        let full = crawl(Limits::DEFAULT);
        // Less than one ext4 volume's block cache: the root cannot be opened.
        let mut l = Limits::DEFAULT;
        l.memory = EXT4_CACHE_BYTES - 1;
        let f = crawl(l);
        assert!(f.package.is_empty() && f.file.is_empty());
        assert!(f.meta.errors.iter().any(|e| e.feature == "disk"
            && e.message.contains("ext4 block cache")
            && e.message.contains("over its memory budget")));

        // The cache and one byte more: every file read whole, every config text and every
        // file listed is over the budget, in each section; the crawl goes on past each.
        l.memory = EXT4_CACHE_BYTES + 1;
        let f = crawl(l);
        assert!(f.package.is_empty() && f.user.is_empty() && f.config.is_empty());
        assert!(f.file.is_empty() && f.os.name.is_none());
        for (section, what) in [
            (Section::Os, "/etc/os-release: reading"),
            (Section::Package, "/var/lib/dpkg/status: reading"),
            (Section::User, "/etc/passwd: reading"),
            (Section::Config, "/etc/"),
            (Section::File, "/: reading"),
        ] {
            assert!(
                errors_of(&f, section).iter().any(|e| e.starts_with(what)
                    && e.contains("over its memory budget of 8388609 bytes")),
                "{section:?}: {:?}",
                f.meta.errors
            );
        }
        assert!(full.file.len() > 1);
    }

    #[test]
    fn each_disk_section_stops_at_its_time_and_the_others_go_on() {
        let full = crawl(Limits::DEFAULT);
        let mut l = Limits::DEFAULT;
        l.section_time = Some(Duration::ZERO);
        let f = crawl(l);
        for s in [
            Section::Os,
            Section::Package,
            Section::User,
            Section::Config,
            Section::File,
        ] {
            let over: Vec<&str> = errors_of(&f, s)
                .into_iter()
                .filter(|e| e.starts_with(&format!("section {}: stopped after", s.name())))
                .collect();
            assert_eq!(over.len(), 1, "{s:?}: {:?}", f.meta.errors);
        }
        // The walks stopped at their first entry; the sections without a walk finished
        // (their overrun is recorded when they end).
        assert!(f.file.is_empty() && f.config.is_empty());
        assert_eq!(f.package.len(), full.package.len());
    }

    #[test]
    fn a_budget_gives_back_what_is_dropped_and_holds_what_is_kept() {
        let b = Budget::new(10);
        let r = b.reserve("a", 6).unwrap();
        let e = b.reserve("b", 5).unwrap_err().to_string();
        assert_eq!(
            e,
            "b: reading 5 bytes would take the crawl to 11 bytes held, over its memory budget of 10 bytes"
        );
        drop(r);
        assert_eq!(b.held(), 0);
        b.reserve("b", 5).unwrap().keep();
        assert_eq!((b.held(), b.peak()), (5, 6));
        assert!(b.reserve("c", u64::MAX).is_err());
        assert_eq!(b.remaining(), 5);
    }
}
