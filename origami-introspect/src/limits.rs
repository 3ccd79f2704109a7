//! Every bound a crawl puts on what a guest makes it read, hold, walk or wait for, in one
//! value: [`Limits`], set with [`CrawlOptionsBuilder::limits`](crate::CrawlOptionsBuilder::limits).
//!
//! Guest data is hostile input: a guest chooses its file sizes, its list lengths and the
//! shape of its kernel structures. Each bound below turns "as much as the guest says" into
//! an error recorded in the frame (`_frame.errors`), and the rest of the crawl goes on.
//! The defaults are generous for real machines and small enough that a fleet of crawls
//! fits in a control plane's memory.

use std::time::Duration;

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
    /// The most bytes of guest content one crawl reads whole into memory, all reads
    /// together (config texts, the dpkg status, passwd and group, command lines, the
    /// kernel's symbol and type tables). Default 1 GiB.
    pub memory: u64,

    // --- sizes of what is read whole ---
    /// One config file's text (the `config` section); a larger file is listed without its
    /// content. Default 64 KiB.
    pub config_file: u64,
    /// The dpkg status file (`/var/lib/dpkg/status`). Default 64 MiB.
    pub dpkg_status: u64,
    /// `/etc/passwd` and `/etc/group`, each. Default 4 MiB.
    pub passwd: u64,
    /// `/etc/os-release` (and `/usr/lib/os-release`). Default 64 KiB.
    pub os_release: u64,
    /// `/etc/fstab`, read to assemble the guest's tree. Default 1 MiB.
    pub fstab: u64,
    /// One process's command line, read from its memory. Default 128 KiB.
    pub cmdline: u64,
    /// The kernel's BTF blob (its type layouts), found in memory. Default 64 MiB.
    pub btf: u64,

    // --- list lengths ---
    /// The tree walks of the `file` and `config` sections: entries in all, depth, entries
    /// of one directory. Default 10,000,000 entries, 512 levels, 1,000,000 a directory.
    pub walk: WalkLimits,
    /// Tasks walked on the kernel's task list. Default 65,536.
    pub tasks: usize,
    /// Open-file slots read per task (for the sockets it holds). Default 65,536.
    pub fds_per_task: u64,
    /// Sockets read from the kernel's socket tables. Default 262,144.
    pub sockets: usize,
    /// Kernel modules walked on the module list. Default 4,096.
    pub modules: usize,
    /// Symbols in the kernel's kallsyms table. Default 2,000,000.
    pub symbols: u32,

    // --- time ---
    /// The most time one section (`os`, `package`, `file`, `process`, ...) may take; a
    /// section past it stops, keeps what it found and records the overrun. Default: none
    /// (a fleet bounds a whole machine's crawl with
    /// [`FleetBuilder::timeout`](crate::fleet::FleetBuilder::timeout)).
    pub section_time: Option<Duration>,
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
}
