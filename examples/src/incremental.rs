//! `origami crawl --state FILE [--events OUT.jsonl]` and `origami watch --disk IMG --state
//! FILE`: crawls that read only what changed since the state was saved
//! ([`origami_introspect::incremental`]), and the file events between them as JSON Lines
//! (`{"event": "file_created", "file": {...}}`, the frame's field names).
//!
//! The changed blocks come from a qcow2 persistent dirty bitmap (`--bitmap NAME`, one QEMU
//! keeps with `qemu-img bitmap --add --enable` or `block-dirty-bitmap-add persistent=on`),
//! or, for a disk that is an NBD export (`nbd+unix:///EXPORT?socket=PATH`,
//! `nbd://127.0.0.1:PORT/EXPORT`), from the server's `qemu:dirty-bitmap:NAME` meta context
//! (`qemu-nbd -B NAME`, QEMU's `block-export-add` with `bitmaps`), from the clusters of an external snapshot's overlay (`--overlay`: the disk is the
//! overlay, the state was saved from its backing image), or, with neither, from comparing
//! the digests of every inode. A missing, foreign or corrupt state file means a full crawl
//! (and no events), said on stderr; the state file is then written anew, atomically.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use origami_core::dirty::DirtyMap;
use origami_core::image::qcow2::QCOW2_MAGIC;
use origami_core::nbd::{is_nbd_uri, NbdClient, NbdOptions};
use origami_core::{FileSource, Qcow2Image, ReadAt};
use origami_introspect::frame::Frame;
use origami_introspect::incremental::{self, FileEvent, Incremental};
use origami_introspect::{Crawler, Target};

/// The flags of an incremental crawl.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StateArgs {
    /// Read the crawl state saved in FILE (if any) to read only what changed, then save
    /// this crawl's state there (atomically).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Write the file events since the state to OUT as JSON Lines (needs --state).
    #[arg(long, value_name = "OUT.jsonl", requires = "state")]
    pub events: Option<PathBuf>,
    /// Take the changed blocks from the dirty bitmap NAME of each disk: a qcow2 file's
    /// persistent bitmap, or an NBD export's `qemu:dirty-bitmap:NAME` context (it must
    /// have been enabled since before the state was saved; needs --state).
    #[arg(
        long,
        value_name = "NAME",
        requires = "state",
        conflicts_with = "overlay"
    )]
    pub bitmap: Option<String>,
    /// Each disk is the overlay of an external snapshot taken when the state was saved:
    /// its allocated clusters are the changed blocks (needs --state).
    #[arg(long, requires = "state")]
    pub overlay: bool,
}

/// Errors of an incremental crawl on the command line.
#[derive(Debug, thiserror::Error)]
pub enum IncrementalError {
    /// The crawl failed.
    #[error(transparent)]
    Crawl(#[from] origami_introspect::Error),
    /// A disk's change source could not be read.
    #[error("{disk}: changed blocks: {error}")]
    Changes {
        /// The disk.
        disk: String,
        /// Why.
        error: origami_core::Error,
    },
    /// The state could not be saved.
    #[error(transparent)]
    State(#[from] incremental::StateError),
    /// Writing the events failed.
    #[error("writing events: {0}")]
    Output(#[from] std::io::Error),
}

/// The changed blocks of each disk of `target` that `args` names a source for (a disk that
/// is neither a qcow2 file nor, for `--bitmap`, an NBD export gets none: its inodes are
/// compared). An NBD export is asked over a connection of its own with `nbd` (loopback
/// or Unix socket only unless it allows remote hosts, as `--allow-remote-nbd` does for the
/// disk itself).
pub fn dirty_maps(
    nbd: &NbdOptions,
    target: &Target,
    args: &StateArgs,
) -> Result<Vec<Option<DirtyMap>>, IncrementalError> {
    if args.bitmap.is_none() && !args.overlay {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for disk in &target.disks {
        let origami_introspect::Disk::Path(path) = disk else {
            out.push(None);
            continue;
        };
        let err = |error| IncrementalError::Changes {
            disk: path.display().to_string(),
            error,
        };
        if let Some(uri) = path.to_str().filter(|p| is_nbd_uri(p)) {
            out.push(match &args.bitmap {
                Some(name) => Some(nbd_bitmap(uri, name, nbd).map_err(err)?),
                // An export has no overlay clusters: its inodes are compared.
                None => None,
            });
            continue;
        }
        // Only the image's own file is read: its backing file holds no changes.
        let file = FileSource::open(path).map_err(err)?;
        let mut magic = [0u8; 4];
        if file.len() >= 4 {
            file.read_at(0, &mut magic).map_err(err)?;
        }
        if magic != QCOW2_MAGIC {
            out.push(None);
            continue;
        }
        let q = Qcow2Image::from_source(file).map_err(err)?;
        out.push(Some(match &args.bitmap {
            Some(name) => q.persistent_bitmap(name).map_err(err)?,
            None => q.allocated_ranges().map_err(err)?,
        }));
    }
    Ok(out)
}

/// The changed blocks QEMU dirty bitmap `name` of the NBD export at `uri` marks (its
/// `qemu:dirty-bitmap:NAME` meta context; the server answers in its own granularity, so
/// the map is kept at 512 bytes, never coarser than what it said), connecting with
/// `options` (whether a remote host is allowed; the meta context is added).
pub fn nbd_bitmap(uri: &str, name: &str, options: &NbdOptions) -> origami_core::Result<DirtyMap> {
    let context = format!("qemu:dirty-bitmap:{name}");
    let client = NbdClient::open(uri, &options.clone().meta_context(context))?;
    let ranges = client.dirty_ranges(name)?;
    DirtyMap::from_ranges(client.len(), 512, ranges)
}

/// One crawl of `target` against the state file `args.state`, which is then rewritten;
/// the notes (why something was read in full) go to `notes`.
pub fn crawl(
    crawler: &Crawler,
    target: &Target,
    args: &StateArgs,
    dirty: &[Option<DirtyMap>],
    notes: &mut dyn FnMut(&str),
) -> Result<Incremental, IncrementalError> {
    let path = args.state.as_deref().unwrap_or(Path::new("origami.state"));
    let (previous, note) = incremental::load_state(path);
    if let Some(n) = note {
        notes(&n);
    }
    // A dirty map says what changed since the state it goes with: without one, no map.
    let dirty = if previous.is_some() { dirty } else { &[] };
    let result = incremental::crawl(crawler, target, previous.as_ref(), dirty)?;
    for n in &result.report.notes {
        notes(n);
    }
    result.state.save(path)?;
    if let Some(out) = &args.events {
        let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
        write_events(&result.events, &mut f)?;
        f.flush()?;
    }
    Ok(result)
}

/// Writes events as JSON Lines.
pub fn write_events(events: &[FileEvent], out: &mut dyn Write) -> std::io::Result<()> {
    for e in events {
        let line = serde_json::to_string(e).map_err(std::io::Error::other)?;
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// `origami watch --disk IMG --state FILE`: crawls every `interval` (at most `count`
/// times) against the state file and prints each crawl's file events as JSON Lines.
pub fn watch(
    crawler: &Crawler,
    target: &Target,
    args: &StateArgs,
    interval: Duration,
    count: Option<u64>,
    out: &mut dyn Write,
) -> Result<Frame, IncrementalError> {
    let mut crawls = 0u64;
    let mut next = Instant::now();
    loop {
        // `origami watch` opens loopback and Unix-socket exports only.
        let dirty = dirty_maps(&NbdOptions::default(), target, args)?;
        let result = crawl(crawler, target, args, &dirty, &mut |n| {
            eprintln!("origami: {n}")
        })?;
        crawls += 1;
        match write_events(&result.events, out).and_then(|()| out.flush()) {
            Ok(()) => {}
            // A closed pipe (`| head`) ends the watch quietly.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(result.frame),
            Err(e) => return Err(e.into()),
        }
        if count.is_some_and(|c| crawls >= c) {
            return Ok(result.frame);
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}
