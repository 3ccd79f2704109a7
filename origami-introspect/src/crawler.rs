//! The Crawler: a [`Target`] (disks and memory, as files or the caller's own readers) and
//! [`CrawlOptions`] in, a [`Frame`] out.
//!
//! The disks are opened (raw or qcow2, partitioned or not), the LVM2 volume groups their
//! physical volumes make up are assembled (a VG may span disks), every file system found on
//! a partition, a whole disk or a logical volume is opened, and the guest's tree is assembled from its own `/etc/fstab`
//! ([`crate::fs::fstab`]). Each section then runs on that tree; a section that fails records
//! its error in `_frame.errors` and the others go on, and each section's time is recorded
//! in `_frame.timings` (milliseconds). The memory, when the target has it, is crawled by
//! [`crate::linux`], whose typed facts are then merged into the frame
//! ([`crate::linux::MemoryFacts::merge_into`]). [`CrawlOptions`]' sections choose among
//! disk and memory sections alike.
//!
//! ```no_run
//! use origami_introspect::{CrawlOptions, Crawler, Target};
//!
//! let options = CrawlOptions::builder().hash_files(true).exclude("/usr/share/doc/**").build()?;
//! let frame = Crawler::new(options).crawl(&Target::disk("web-01.qcow2"))?;
//! println!("{}", frame.to_json());
//! # Ok::<(), origami_introspect::Error>(())
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use globset::GlobSet;
use origami_core::partition::{read_partitions, TableKind};
use origami_core::volume::lvm;
use origami_core::ReadAt;
use origami_frame::{Frame, Section};

use crate::disk::{config, file, os, package, user, windows};
use crate::error::{Error, Result};
use crate::fs::fstab::{assemble_with, Assembly, LvmName, PartitionInfo, Volume};
use crate::fs::{open_filesystem_with, sniff, Ext4Options, FsKind, GuestTree};
use crate::limits::{Budget, Deadline, Limits, EXT4_CACHE_BYTES};
use crate::linux::{self, LinuxOptions, MEMORY_SECTIONS};
use crate::target::{Disk, Memory, Target};
use crate::timing::millis;
use crate::volume_hook::{NoHook, VolumeHook};

/// How to crawl: which sections, and their knobs. Built with [`CrawlOptions::builder`].
#[derive(Debug, Clone)]
pub struct CrawlOptions {
    system: Option<String>,
    sections: BTreeSet<Section>,
    hash_files: bool,
    max_hash_size: Option<u64>,
    exclude: Vec<String>,
    exclude_set: GlobSet,
    config_globs: Vec<String>,
    config_etc: bool,
    limits: Limits,
    use_cache: bool,
    cache_dir: Option<PathBuf>,
    disk: DiskOptions,
    threads: usize,
}

impl Default for CrawlOptions {
    fn default() -> Self {
        CrawlOptions {
            system: None,
            sections: Section::ALL.into_iter().collect(),
            hash_files: false,
            max_hash_size: None,
            exclude: Vec::new(),
            exclude_set: GlobSet::empty(),
            config_globs: Vec::new(),
            config_etc: true,
            limits: Limits::DEFAULT,
            use_cache: true,
            cache_dir: None,
            disk: DiskOptions::default(),
            threads: std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(1),
        }
    }
}

/// The sections read from disk.
pub const DISK_SECTIONS: [Section; 6] = [
    Section::Os,
    Section::Package,
    Section::User,
    Section::Service,
    Section::Config,
    Section::File,
];

impl CrawlOptions {
    /// A builder starting from the defaults: every section, no hashing, config text
    /// of `/etc`, the bounds of [`Limits::DEFAULT`].
    pub fn builder() -> CrawlOptionsBuilder {
        CrawlOptionsBuilder {
            options: CrawlOptions::default(),
        }
    }

    /// The sections that will be crawled.
    pub fn sections(&self) -> &BTreeSet<Section> {
        &self.sections
    }

    /// The bounds in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The threads a crawl works on (hashing files, scanning inode tables).
    pub fn threads(&self) -> usize {
        self.threads
    }
    /// What shapes the `file` section (hashing, exclusions, walk bounds), as text: two
    /// crawls' file sections compare item by item only when this is the same.
    pub(crate) fn file_fingerprint(&self) -> String {
        format!(
            "hash={} max_hash={:?} exclude={:?} walk={:?} sections={:?}",
            self.hash_files, self.max_hash_size, self.exclude, self.limits.walk, self.sections
        )
    }
}

/// Builds [`CrawlOptions`].
#[derive(Debug, Clone)]
pub struct CrawlOptionsBuilder {
    options: CrawlOptions,
}

impl CrawlOptionsBuilder {
    /// The system id written in `_frame.system` (default: the guest's host name, else the
    /// first disk's file name).
    pub fn system(mut self, id: impl Into<String>) -> Self {
        self.options.system = Some(id.into());
        self
    }

    /// Crawl only these sections (disk and memory ones alike).
    pub fn sections(mut self, sections: impl IntoIterator<Item = Section>) -> Self {
        self.options.sections = sections.into_iter().collect();
        self
    }

    /// Hash regular files (sha256) in the `file` section.
    pub fn hash_files(mut self, yes: bool) -> Self {
        self.options.hash_files = yes;
        self
    }

    /// Do not hash files larger than `bytes`.
    pub fn max_hash_size(mut self, bytes: u64) -> Self {
        self.options.max_hash_size = Some(bytes);
        self
    }

    /// Leave out of the `file` section the paths matching `glob` (e.g. `/proc/**`).
    pub fn exclude(mut self, glob: impl Into<String>) -> Self {
        self.options.exclude.push(glob.into());
        self
    }

    /// Add to the `config` section the text files matching `glob`
    /// (e.g. `/home/*/.bash_history`).
    pub fn config_glob(mut self, glob: impl Into<String>) -> Self {
        self.options.config_globs.push(glob.into());
        self
    }

    /// Whether the `config` section takes every text file under `/etc` (default yes).
    pub fn config_etc(mut self, yes: bool) -> Self {
        self.options.config_etc = yes;
        self
    }

    /// Every bound of the crawl: file sizes read, list lengths, memory, time (default
    /// [`Limits::DEFAULT`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.options.limits = limits;
        self
    }

    /// Whether memory crawls use the per-kernel discovery cache in the folder named by
    /// [`cache_dir`](Self::cache_dir) (default yes; without a folder there is no cache).
    pub fn use_cache(mut self, yes: bool) -> Self {
        self.options.use_cache = yes;
        self
    }

    /// Where the discovery cache lives; without a folder (the default) memory crawls use
    /// no cache. `linux::cache::default_dir()` is the conventional folder.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.options.cache_dir = Some(dir.into());
        self
    }

    /// Map raw disk images into memory rather than read them with `pread` (faster; only
    /// for images nothing truncates while they are read, see `origami_core::MmapSource`).
    pub fn memory_map(mut self, yes: bool) -> Self {
        self.options.disk.memory_map = yes;
        self
    }

    /// Let the files disk images name (qcow2 backing files, VMDK extents) lie in `dir` too;
    /// by default they must lie in the folder of the image that names them (see
    /// `origami_core::ImageOptions`). May be given several times.
    pub fn allow_backing_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        let image = std::mem::take(&mut self.options.disk.image);
        self.options.disk.image = image.allow_dir(dir);
        self
    }

    /// Let a disk named by an NBD URI be on a TCP host that is not loopback (off by
    /// default, see `origami_core::ImageOptions::allow_remote_nbd`).
    pub fn allow_remote_nbd(mut self, yes: bool) -> Self {
        let image = std::mem::take(&mut self.options.disk.image);
        self.options.disk.image = image.allow_remote_nbd(yes);
        self
    }

    /// Verify ext4 metadata checksums (off by default, see [`Ext4Options`]).
    pub fn verify_checksums(mut self, yes: bool) -> Self {
        self.options.disk.ext4.verify_checksums = yes;
        self
    }

    /// Threads hashing files (default: the CPUs, at most 4); each opens its own handle
    /// on the guest's disks.
    pub fn threads(mut self, n: usize) -> Self {
        self.options.threads = n.max(1);
        self
    }

    /// The options; fails when a glob does not parse.
    pub fn build(mut self) -> Result<CrawlOptions> {
        self.options.exclude_set = config::glob_set(&self.options.exclude)?;
        config::glob_set(&self.options.config_globs)?;
        Ok(self.options)
    }
}

/// Makes frames of targets.
#[derive(Debug, Clone, Default)]
pub struct Crawler {
    options: CrawlOptions,
}

/// How the disks are read.
#[derive(Debug, Clone, Default)]
pub struct DiskOptions {
    /// Map raw images into memory instead of reading them with `pread`.
    pub memory_map: bool,
    /// How ext4 file systems are read.
    pub ext4: Ext4Options,
    /// Which host folders the files a disk image names (qcow2 backing files, VMDK extents)
    /// may lie in besides the image's own folder.
    pub image: origami_core::ImageOptions,
}

/// A disk image as a [`ReadAt`]: raw, qcow2 (backing chains followed), VMDK or VHDX, told
/// apart by their magic. A raw image is memory-mapped when asked.
fn open_image(path: &Path, options: &DiskOptions, images: &mut Images) -> Result<Arc<dyn ReadAt>> {
    let image = origami_core::Image::open_with(path, &options.image)?;
    if options.memory_map && image.format() == origami_core::ImageFormat::Raw {
        return Ok(Arc::new(origami_core::MmapSource::open(path)?));
    }
    let image = Arc::new(image);
    images.push(image.clone());
    Ok(image)
}

/// A caller's reader under the name the caller gave it, so that errors name the disk.
struct NamedReader {
    name: String,
    inner: Arc<dyn ReadAt>,
}

impl ReadAt for NamedReader {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> origami_core::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn name(&self) -> String {
        self.name.clone()
    }
}

/// Image files opened, to check for writes after the crawl.
type Images = Vec<Arc<origami_core::Image>>;

/// A disk's bytes: the image file opened (also put in `images`), or the caller's reader.
fn open_disk(disk: &Disk, options: &DiskOptions, images: &mut Images) -> Result<Arc<dyn ReadAt>> {
    match disk {
        Disk::Path(path) => open_image(path, options, images),
        Disk::Reader { name, reader } => Ok(Arc::new(NamedReader {
            name: name.clone(),
            inner: reader.clone(),
        })),
    }
}

/// The file system on `source` as a volume; `Ok(None)` when it holds none this crate reads
/// (swap, an empty partition).
fn volume(
    source: Arc<dyn ReadAt>,
    disk: usize,
    (partition, offset): (Option<PartitionInfo>, Option<u64>),
    ext4: Ext4Options,
    hook: &dyn VolumeHook,
) -> Result<Option<Volume>> {
    if sniff(&*source)?.is_none() {
        return Ok(None);
    }
    let fs = open_filesystem_with(source.clone(), ext4)?;
    Ok(Some(Volume {
        fs: hook.wrap(fs, &source, disk, offset),
        disk,
        partition,
        lvm: None,
    }))
}

/// The file systems on one disk: each partition's, or the whole disk's when it has no
/// partition table. Partitions holding no file system this crate reads (swap, extended)
/// are skipped; one that fails to open is reported and the others go on.
/// LVM2 physical volumes (a partition or a whole disk with an LVM label) go to `pvs`, with
/// their disk's index, for [`lvm_volumes`].
fn disk_volumes(
    disk: Arc<dyn ReadAt>,
    index: usize,
    ext4: Ext4Options,
    pvs: &mut Vec<(usize, lvm::PhysicalVolume)>,
    hook: &dyn VolumeHook,
) -> (Vec<Volume>, Vec<Error>) {
    let mut volumes = Vec::new();
    let mut errors = Vec::new();
    let table = match read_partitions(&*disk) {
        Ok(t) => t,
        Err(e) => return (volumes, vec![e.into()]),
    };
    // An LVM2 PV: kept for the volume groups, not sniffed for a file system.
    let mut take_pv = |source: &Arc<dyn ReadAt>, errors: &mut Vec<Error>| -> bool {
        if !lvm::label::has_label(&**source) {
            return false;
        }
        match lvm::probe(source.clone()) {
            Ok(Some(pv)) => {
                errors.extend(pv.problems.iter().map(|e| Error::FileSystem {
                    source_name: source.name(),
                    fs: "lvm2",
                    path: None,
                    what: e.to_string(),
                }));
                pvs.push((index, pv));
            }
            Ok(None) => {}
            Err(e) => errors.push(Error::Core(e.into())),
        }
        true
    };
    if table.kind == TableKind::None {
        if take_pv(&disk, &mut errors) {
            return (volumes, errors);
        }
        match volume(disk, index, (None, Some(0)), ext4, hook) {
            Ok(v) => volumes.extend(v),
            Err(e) => errors.push(e),
        }
        return (volumes, errors);
    }
    for p in table.partitions.iter().filter(|p| !p.is_extended()) {
        let info = PartitionInfo {
            number: p.number,
            uuid: p.uuid.clone(),
            label: p.label.clone(),
            type_id: p.type_id.clone(),
        };
        let opened = p.open(disk.clone()).map_err(Error::from).and_then(|slice| {
            let slice: Arc<dyn ReadAt> = Arc::new(slice);
            if take_pv(&slice, &mut errors) {
                return Ok(None);
            }
            volume(slice, index, (Some(info), Some(p.start)), ext4, hook)
        });
        match opened {
            Ok(v) => volumes.extend(v),
            Err(e) => errors.push(e),
        }
    }
    (volumes, errors)
}

/// The file systems on the logical volumes of the volume groups the PVs of all the target's
/// disks make up (a VG may span disks). An LV that cannot be served (thin, RAID, a missing
/// PV, a segment past its PV) is reported by name; swap LVs hold no file system and are
/// skipped.
fn lvm_volumes(
    pvs: Vec<(usize, lvm::PhysicalVolume)>,
    ext4: Ext4Options,
    hook: &dyn VolumeHook,
) -> (Vec<Volume>, Vec<Error>) {
    let mut volumes = Vec::new();
    let mut errors = Vec::new();
    if pvs.is_empty() {
        return (volumes, errors);
    }
    // The disk of each PV, by UUID, for the LVs' `disk`.
    let disk_of: Vec<(String, usize)> = pvs.iter().map(|(d, p)| (p.uuid.clone(), *d)).collect();
    let (vgs, vg_errors) = lvm::assemble(pvs.into_iter().map(|(_, p)| p).collect());
    errors.extend(vg_errors.into_iter().map(|e| Error::Core(e.into())));
    for vg in vgs {
        let disk = vg
            .pv_uuids()
            .iter()
            .find_map(|u| disk_of.iter().find(|(id, _)| id == u).map(|(_, d)| *d))
            .unwrap_or(0);
        for (name, lv) in vg.logical_volumes() {
            let opened = lv.map_err(|e| Error::Core(e.into())).and_then(|lv| {
                let source: Arc<dyn ReadAt> = Arc::new(lv);
                volume(source, disk, (None, None), ext4, hook)
            });
            match opened {
                Ok(Some(mut v)) => {
                    v.lvm = Some(LvmName {
                        vg: vg.name.clone(),
                        lv: name,
                    });
                    volumes.push(v);
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
    }
    (volumes, errors)
}

/// Opens the disks of a target and assembles the guest's tree. Problems that did not stop
/// the assembly (an unreadable partition, an fstab line naming no disk) are returned too.
pub fn open_guest(disks: &[Disk], options: DiskOptions) -> Result<(Assembly, Vec<Error>)> {
    open_guest_with(disks, options, &Limits::DEFAULT, &Budget::unlimited())
}

/// As [`open_guest`], within `limits` (the size of `/etc/fstab`) and a crawl's memory
/// `budget`, on which each ext4 volume's block cache ([`EXT4_CACHE_BYTES`]) is reserved
/// for the crawl; a volume the budget cannot hold is left out and reported.
pub fn open_guest_with(
    disks: &[Disk],
    options: DiskOptions,
    limits: &Limits,
    budget: &Budget,
) -> Result<(Assembly, Vec<Error>)> {
    open_guest_hooked(disks, options, limits, budget, &NoHook, &mut Vec::new())
}

/// As [`open_guest_with`], file systems passed through `hook`, image files put in `images`.
fn open_guest_hooked(
    disks: &[Disk],
    options: DiskOptions,
    limits: &Limits,
    budget: &Budget,
    hook: &dyn VolumeHook,
    images: &mut Images,
) -> Result<(Assembly, Vec<Error>)> {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let mut pvs = Vec::new();
    for (i, disk) in disks.iter().enumerate() {
        let image = open_disk(disk, &options, images)?;
        let (v, e) = disk_volumes(image, i, options.ext4, &mut pvs, hook);
        found.extend(v);
        problems.extend(e);
    }
    let (v, e) = lvm_volumes(pvs, options.ext4, hook);
    found.extend(v);
    problems.extend(e);
    let mut volumes = Vec::new();
    for v in found {
        if v.fs.info().kind == FsKind::Ext4 {
            let what = format!("{} (ext4 block cache)", v.fs.info().source);
            match budget.reserve(what, EXT4_CACHE_BYTES) {
                Ok(held) => held.keep(),
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            }
        }
        volumes.push(v);
    }
    if volumes.is_empty() {
        return Err(match problems.into_iter().next() {
            Some(e) => e,
            None => Error::NoRoot {
                looked_at: disks.iter().map(Disk::name).collect::<Vec<_>>().join(", "),
            },
        });
    }
    match assemble_with(volumes, limits.fstab, budget) {
        Ok(a) => Ok((a, problems)),
        // The root may be on a volume that could not be opened (a thin LV, a VG missing a
        // disk): say which.
        Err(Error::NoRoot { looked_at }) if !problems.is_empty() => Err(Error::NoRoot {
            looked_at: format!(
                "{looked_at}; not readable: {}",
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }),
        Err(e) => Err(e),
    }
}

impl Crawler {
    /// A crawler with `options`.
    pub fn new(options: CrawlOptions) -> Crawler {
        Crawler { options }
    }

    /// The options in force.
    pub fn options(&self) -> &CrawlOptions {
        &self.options
    }

    /// Crawls `target` into a frame. Only a target with neither disk nor memory, or a qcow2
    /// image written while read (`ChangedWhileRead`: the frame could mix two states), is an
    /// error: a disk or dump that cannot be read, or a section that fails, is recorded in
    /// `_frame.errors` and the rest goes on.
    pub fn crawl(&self, target: &Target) -> Result<Frame> {
        self.crawl_hooked(target, &NoHook)
    }

    /// [`Crawler::crawl`], each file system opened passed through `hook`.
    pub(crate) fn crawl_hooked(&self, target: &Target, hook: &dyn VolumeHook) -> Result<Frame> {
        if target.disks.is_empty() && target.memory.is_none() {
            return Err(Error::NoRoot {
                looked_at: "a target with neither disk nor memory".into(),
            });
        }
        let start = Instant::now();
        let budget = Budget::new(self.options.limits.memory);
        let names: Vec<String> = target
            .disks
            .iter()
            .map(Disk::name)
            .chain(target.memory.iter().map(Memory::name))
            .collect();
        // Without a host name from the guest, the system is named after its first source.
        let fallback_id = names
            .first()
            .and_then(|n| Path::new(n).file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut frame = Frame::new(self.options.system.clone().unwrap_or(fallback_id));
        frame.meta.source = names;
        let wants_disk = DISK_SECTIONS
            .iter()
            .any(|s| self.options.sections.contains(s));
        if !target.disks.is_empty() && wants_disk {
            let t = Instant::now();
            let mut images = Vec::new();
            let opened = open_guest_hooked(
                &target.disks,
                self.options.disk.clone(),
                &self.options.limits,
                &budget,
                hook,
                &mut images,
            );
            frame.meta.timings.insert("disk".into(), millis(t));
            match opened {
                Ok((assembly, problems)) => {
                    for e in problems {
                        frame.record_error("disk", e.to_string());
                    }
                    for note in &assembly.notes {
                        frame.record_error("disk", note.clone());
                    }
                    hook.assembled(&assembly.tree);
                    self.crawl_tree_with(&assembly.tree, &mut frame, &budget, hook);
                }
                Err(e) => frame.record_error("disk", e.to_string()),
            }
            // A qcow2 written while read (a running VM's disk) may mix two states: refused.
            for image in &images {
                image.check_unchanged()?;
            }
        }
        if let Some(memory) = &target.memory {
            let mut opts = self.linux_options(target.system_map.as_deref(), &budget);
            opts.layouts = target.kernel_layouts.clone();
            self.crawl_memory_with(memory, opts, &mut frame);
        }
        if self.options.system.is_none() {
            if let Some(h) = &frame.meta.hostname {
                frame.meta.system = h.clone();
            }
        }
        frame.meta.duration_ms = start.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
        Ok(frame)
    }

    /// The memory crawl's options: the cache, sections and limits in force, `system_map`,
    /// and the crawl's memory `budget`.
    fn linux_options(&self, system_map: Option<&Path>, budget: &Budget) -> LinuxOptions {
        let mut o = LinuxOptions::default().with_limits(self.options.limits);
        o.system_map = system_map.map(Path::to_path_buf);
        o.cache_dir = self
            .options
            .cache_dir
            .clone()
            .filter(|_| self.options.use_cache);
        o.sections = self.options.sections.clone();
        o.budget = Some(budget.clone());
        o
    }

    /// Crawls a Linux guest's memory (a dump, a running VM's memory file, or the caller's
    /// own source) into `frame`: the running kernel, host name, processes, connections and
    /// modules, as far as the options' sections ask. The facts are merged by
    /// [`MemoryFacts::merge_into`](crate::linux::MemoryFacts::merge_into): what the disk
    /// said of the OS stays, the memory's kernel release and host name win.
    pub fn crawl_memory(&self, memory: &Memory, system_map: Option<&Path>, frame: &mut Frame) {
        let budget = Budget::new(self.options.limits.memory);
        self.crawl_memory_with(memory, self.linux_options(system_map, &budget), frame);
    }

    /// [`Crawler::crawl_memory`] with the memory crawl's options made (their budget
    /// included).
    fn crawl_memory_with(&self, memory: &Memory, opts: LinuxOptions, frame: &mut Frame) {
        if !MEMORY_SECTIONS.iter().any(|s| opts.sections.contains(s)) {
            return;
        }
        let facts = match memory {
            Memory::Path(path) => {
                let t = Instant::now();
                let dump = origami_core::memory::MemoryDump::open(path);
                frame.meta.timings.insert("memory".into(), millis(t));
                match dump {
                    Ok(d) => linux::crawl(&d, &opts),
                    Err(e) => {
                        frame.record_error("memory", e.to_string());
                        return;
                    }
                }
            }
            Memory::Source(source) => linux::crawl(source, &opts),
        };
        facts.merge_into(frame);
    }

    /// Runs the chosen disk sections on an assembled guest tree, into `frame` (files are
    /// hashed on the crawler's threads, all sharing `tree`).
    pub fn crawl_tree(&self, tree: &GuestTree, frame: &mut Frame) {
        let budget = Budget::new(self.options.limits.memory);
        self.crawl_tree_with(tree, frame, &budget, &NoHook);
    }

    /// As [`crawl_tree`](Self::crawl_tree), on a crawl's memory `budget`; each section has
    /// its own [`Deadline`] of [`Limits::section_time`]; `hook` makes the `file` section.
    fn crawl_tree_with(
        &self,
        tree: &GuestTree,
        frame: &mut Frame,
        budget: &Budget,
        hook: &dyn VolumeHook,
    ) {
        let o = &self.options;
        // A Windows guest: the registry is read once for os, packages, users, services and
        // network config; the file section walks the tree as for any guest.
        let mut win = None;
        let registry_sections = [
            Section::Os,
            Section::Package,
            Section::User,
            Section::Service,
            Section::Config,
        ];
        if registry_sections.iter().any(|s| o.sections.contains(s)) && windows::is_windows(tree) {
            let t = Instant::now();
            win = Some(windows::crawl(tree));
            frame.meta.timings.insert("registry".into(), millis(t));
        }
        if let Some(w) = win.as_mut() {
            for (section, e) in std::mem::take(&mut w.errors) {
                frame.record_error(section, e.to_string());
            }
        }
        for section in DISK_SECTIONS {
            if !o.sections.contains(&section) {
                continue;
            }
            let t = Instant::now();
            let deadline = Deadline::start(section.name(), o.limits.section_time);
            let mut errors: Vec<Error> = match (section, win.as_mut()) {
                (Section::Os, Some(w)) => {
                    frame.os = std::mem::take(&mut w.os);
                    frame.meta.hostname = frame.os.hostname.clone();
                    Vec::new()
                }
                (Section::Package, Some(w)) => {
                    frame.package = std::mem::take(&mut w.packages);
                    Vec::new()
                }
                (Section::User, Some(w)) => {
                    frame.user = std::mem::take(&mut w.users);
                    Vec::new()
                }
                (Section::Service, Some(w)) => {
                    frame.service = std::mem::take(&mut w.services);
                    Vec::new()
                }
                (Section::Config, Some(w)) => {
                    let mut items = std::mem::take(&mut w.config);
                    let mut errors = Vec::new();
                    if !o.config_globs.is_empty() {
                        let opts = config::ConfigOptions {
                            max_size: o.limits.config_file,
                            etc: false,
                            globs: o.config_globs.clone(),
                            limits: o.limits.walk,
                            budget: budget.clone(),
                            deadline,
                        };
                        let (c, e) = config::crawl(tree, &opts);
                        items.extend(c);
                        errors = e;
                    }
                    frame.config = items;
                    errors
                }
                (Section::Service, None) => Vec::new(),
                (Section::Os, None) => {
                    let (found, e) = os::crawl_with(tree, o.limits.os_release, budget);
                    frame.meta.hostname = found.hostname.clone();
                    frame.os = found;
                    e
                }
                (Section::Package, None) => {
                    let (p, e) = package::crawl_budgeted(tree, o.limits.dpkg_status, budget);
                    frame.package = p;
                    e
                }
                (Section::User, None) => {
                    let (u, e) = user::crawl_with(tree, o.limits.passwd, budget);
                    frame.user = u;
                    e
                }
                (Section::Config, None) => {
                    let opts = config::ConfigOptions {
                        max_size: o.limits.config_file,
                        etc: o.config_etc,
                        globs: o.config_globs.clone(),
                        limits: o.limits.walk,
                        budget: budget.clone(),
                        deadline,
                    };
                    let (c, e) = config::crawl(tree, &opts);
                    frame.config = c;
                    e
                }
                (Section::File, _) => {
                    let opts = file::FileOptions {
                        hash: o.hash_files,
                        max_hash_size: o.max_hash_size,
                        exclude: o.exclude_set.clone(),
                        limits: o.limits.walk,
                        hash_threads: o.threads,
                        budget: budget.clone(),
                        deadline,
                    };
                    let (f, e) = hook.file_section(tree, &opts);
                    frame.file = f;
                    e
                }
                _ => Vec::new(),
            };
            // A section without a loop that checks its deadline is held to it when it
            // ends.
            if deadline.passed() && !errors.iter().any(|e| matches!(e, Error::OverTime { .. })) {
                errors.push(deadline.error());
            }
            frame
                .meta
                .timings
                .insert(section.name().to_string(), millis(t));
            for e in errors {
                frame.record_error(section.name(), e.to_string());
            }
        }
    }
}
