//! `origami`: crawl machines from outside, index their frames, search the fleet.
//!
//! Exit codes: 0 success; 1 an error (the message says what to do); 2 bad usage;
//! 3 a machine gave nothing: every source of a `crawl` failed (its frame, with the errors,
//! is still written), or some machines of a fleet gave no frame or read nothing;
//! 4 a search matched nothing.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use origami_examples::fleet::crawl_into_index;
use origami_examples::index_url::{self, WriteIndex};
use origami_examples::manifest::Manifest;
use origami_examples::{demo, render};
use origami_frame::{FrameReader, FrameWriter};
use origami_index::{Index, SearchOptions};
use origami_introspect::fleet::{read_nothing, Fleet, FleetReport};
use origami_introspect::linux::LayoutSource;
use origami_introspect::{CrawlOptions, CrawlOptionsBuilder, Crawler, Limits, Target};
use tracing::warn;

/// Observe virtual machines from outside: crawl their disks and memory into frames, index a
/// fleet's frames, and search it like the Web.
#[derive(Parser)]
#[command(name = "origami", version)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Crawl one machine (disks, memory, or both) into one frame (JSON to stdout by default).
    Crawl(Box<CrawlArgs>),
    /// Crawl the machines of a TOML manifest in parallel and index each frame as it arrives.
    CrawlFleet(FleetArgs),
    /// Index frames from JSON Lines files (one frame a line).
    Index(IndexArgs),
    /// Search the index: results grouped by machine, with snippets and facet counts.
    Search(SearchArgs),
    /// The frames indexed for a machine, and what changed between them.
    History(HistoryArgs),
    /// Build the demo fleet (9 small guest disks shipped with origami), crawl it, index it,
    /// and run example searches.
    Demo(DemoArgs),
    /// Serve an index's search page and JSON API (loopback only unless --token is given).
    Serve(origami_examples::serve::ServeArgs),
    /// Follow a running VM's memory (a RAM file, or a QEMU by pid) and print what changes:
    /// processes, connections, modules, host name (one JSON object a line with --json).
    Watch(origami_examples::watch::WatchArgs),
}

#[derive(Args, Clone)]
struct CrawlKnobs {
    /// Add the sha256 of every regular file (slower).
    #[arg(long)]
    hash: bool,
    /// Skip the per-kernel discovery cache for memory crawls.
    #[arg(long)]
    no_cache: bool,
    /// Also take the text of files matching GLOB into the config section (repeatable;
    /// every text file under /etc is always taken), e.g. '/home/*/.bash_history'.
    #[arg(long = "config", value_name = "GLOB")]
    config: Vec<String>,
    /// Read no guest file larger than SIZE whole (config texts, the dpkg status,
    /// passwd/group, os-release, fstab); a larger one is an error in the frame, or cut
    /// for a config text. SIZE takes K, M, G (powers of 1024). Default: each file's own
    /// bound (64K for a config text, 64M for the dpkg status, ...).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_file_size: Option<u64>,
    /// The bound on one config file's text (default 64K); a longer text is cut.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_config_size: Option<u64>,
    /// The most entries the file and config walks visit (default 10000000).
    #[arg(long, value_name = "N")]
    max_entries: Option<u64>,
    /// The most bytes of guest content one crawl holds at once (file texts, the kernel's
    /// symbol and type tables, fd tables, the file list, each ext4 volume's 8M block
    /// cache; default 1G); a read past it is an error in its section.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
    /// Stop any one section (os, package, file, process, kernel discovery, ...) that runs
    /// longer than SECS seconds; it keeps what it found and the frame says so (default:
    /// no limit).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds_or_zero)]
    section_timeout: Option<Duration>,
    /// The most tasks walked in a memory crawl (default 65536).
    #[arg(long, value_name = "N")]
    max_tasks: Option<usize>,
    /// The most bytes of one process's command line read (default 128K).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_cmdline: Option<u64>,
    /// The most open-file slots read per process (default 65536).
    #[arg(long, value_name = "N")]
    max_fds: Option<u64>,
    /// The most sockets read in all (default 262144).
    #[arg(long, value_name = "N")]
    max_sockets: Option<usize>,
    /// The most kernel modules walked (default 4096).
    #[arg(long, value_name = "N")]
    max_modules: Option<usize>,
    /// The most symbols in the kernel's kallsyms table (default 2000000).
    #[arg(long, value_name = "N")]
    max_symbols: Option<u32>,
    /// The largest kernel BTF blob read (default 64M).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_btf: Option<u64>,
    /// Let disk images name backing files (and VMDK extents) in DIR too, besides their own
    /// folder (repeatable). Image headers are user input: by default a file an image
    /// names must lie in the image's own folder.
    #[arg(long = "allow-backing", value_name = "DIR")]
    allow_backing: Vec<PathBuf>,
    /// Let a disk named by an NBD URI be on a host that is not loopback (NBD over TCP has
    /// no authentication; by default only 127.0.0.0/8 and ::1 are allowed).
    #[arg(long)]
    allow_remote_nbd: bool,
}

#[derive(Args)]
struct CrawlArgs {
    /// A disk image (raw, qcow2, VMDK, VHDX; repeat for several disks of one machine), or
    /// an NBD export: nbd+unix:///EXPORT?socket=PATH, nbd://127.0.0.1:PORT/EXPORT.
    #[arg(long = "disk", value_name = "IMG")]
    disks: Vec<PathBuf>,
    /// A running QEMU's QMP socket: crawl its disk through a fleecing export (a
    /// point-in-time view, the guest not paused; torn down after the crawl).
    #[arg(long, value_name = "SOCKET")]
    qmp: Option<PathBuf>,
    /// With --qmp: the disk to crawl (a drive or device id, or a node name; default the
    /// first disk).
    #[arg(long, value_name = "NAME", requires = "qmp")]
    drive: Option<String>,
    /// A memory dump (QEMU ELF, kdump, LiME, raw) or a running VM's memory file.
    #[arg(long, value_name = "DUMP")]
    memory: Option<PathBuf>,
    /// The memory of a running QEMU, by its process id (read-only, the guest not stopped).
    #[arg(long, value_name = "PID", conflicts_with = "memory")]
    qemu_pid: Option<u32>,
    /// The guest kernel's System.map (otherwise kallsyms is recovered from memory).
    #[arg(long, value_name = "FILE")]
    system_map: Option<PathBuf>,
    /// The guest kernel's DWARF debug info (the vmlinux of its -dbg/debuginfo package), or
    /// a folder of them (the one whose banner is the dump's is used): type layouts for
    /// kernels without usable BTF.
    #[arg(long, value_name = "VMLINUX", conflicts_with = "isf")]
    kernel_debuginfo: Option<PathBuf>,
    /// A Volatility 3 symbol file of the guest kernel (FILE.json or FILE.json.xz), or a
    /// folder of them: type layouts (and symbols, when kallsyms cannot be recovered) for
    /// kernels without usable BTF.
    #[arg(long, value_name = "FILE")]
    isf: Option<PathBuf>,
    /// The system id of the frame (default: the guest's hostname).
    #[arg(long)]
    name: Option<String>,
    /// Write the frame here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write one line of JSON instead of indented JSON.
    #[arg(long)]
    compact: bool,
    #[command(flatten)]
    knobs: CrawlKnobs,
    #[command(flatten)]
    incremental: origami_examples::incremental::StateArgs,
}

#[derive(Args)]
struct FleetArgs {
    /// The fleet manifest (`[[machine]]` tables: name, disks, memory or qemu_pid, system_map,
    /// kernel_debuginfo, isf, backing_dirs, and a `[machine.limits]` table of that machine's own bounds).
    #[arg(required_unless_present = "local_vms")]
    manifest: Option<PathBuf>,
    /// Also crawl the QEMU VMs running on this host (found from their processes: `-name`,
    /// `-drive file=`, `-blockdev`, libvirt's /run/libvirt/qemu/*.xml; memory read through
    /// each QEMU).
    #[arg(long)]
    local_vms: bool,
    /// The index folder (created when missing), or postgres://USER@HOST:PORT/DB.
    #[arg(long, value_name = "DIR|URL")]
    index: PathBuf,
    /// How many machines to crawl at once.
    #[arg(long, short = 'j', default_value_t = default_jobs())]
    jobs: usize,
    /// Also write every frame to this JSON Lines file.
    #[arg(long, value_name = "FILE")]
    frames: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Give up on a machine whose crawl takes longer than SECS seconds (it is reported as
    /// timed out; default: no limit).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    timeout: Option<Duration>,
    #[command(flatten)]
    knobs: CrawlKnobs,
}

#[derive(Args)]
struct IndexArgs {
    /// The index folder (created when missing), or postgres://USER@HOST:PORT/DB.
    #[arg(long, value_name = "DIR|URL")]
    index: PathBuf,
    /// JSON Lines files of frames.
    #[arg(required = true)]
    frames: Vec<PathBuf>,
}

#[derive(Args)]
struct SearchArgs {
    /// The index folder, or postgres://USER@HOST:PORT/DB.
    #[arg(long, value_name = "DIR|URL")]
    index: PathBuf,
    /// The query: words, "phrases", field:value (host: type: name: path: port: pkg: user: os:),
    /// -exclusions, OR, as_of:T, changed:24h.
    query: String,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// How many machines to show.
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// How many matching items to show per machine.
    #[arg(long, default_value_t = 5)]
    hits: usize,
    /// See the fleet as it was at this instant (RFC 3339, e.g. 2026-11-20T10:00Z).
    #[arg(long, value_name = "T")]
    as_of: Option<String>,
}

#[derive(Args)]
struct HistoryArgs {
    /// The index folder, or postgres://USER@HOST:PORT/DB.
    #[arg(long, value_name = "DIR|URL")]
    index: PathBuf,
    /// The machine's system id.
    host: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DemoArgs {
    /// Where to unpack the demo disks and build the index (default: a folder under the
    /// system's temporary directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// How many machines to crawl at once.
    #[arg(long, short = 'j', default_value_t = default_jobs())]
    jobs: usize,
    /// End by serving the demo fleet's search page (kept fresh: `origami serve`) until
    /// Ctrl-C.
    #[arg(long)]
    serve: bool,
    /// With --serve: the address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    listen: std::net::SocketAddr,
}

/// A size in bytes: `4096`, `64K`, `1M`, `2G` (see [`origami_examples::manifest::parse_size`]).
fn parse_size(s: &str) -> std::result::Result<u64, String> {
    origami_examples::manifest::parse_size(s)
}

/// A number of seconds, zero allowed (`--section-timeout 30`, `--section-timeout 0.5`).
fn parse_seconds_or_zero(s: &str) -> std::result::Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

/// A positive number of seconds (`--timeout 90`, `--timeout 0.5`).
fn parse_seconds(s: &str) -> std::result::Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a positive number of seconds"))
}

fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Crawl(a) => cmd_crawl(*a),
        Command::CrawlFleet(a) => cmd_crawl_fleet(a),
        Command::Index(a) => cmd_index(a),
        Command::Search(a) => cmd_search(a),
        Command::History(a) => cmd_history(a),
        Command::Demo(a) => cmd_demo(a),
        Command::Serve(a) => origami_examples::serve::run_cli(a)
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Watch(a) if !a.disks.is_empty() => cmd_watch_disks(a),
        Command::Watch(a) => origami_examples::watch::run(&a, &mut std::io::stdout().lock())
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("origami: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

impl CrawlKnobs {
    /// The crawl options these flags say; `system` is the frame's system id.
    fn options(&self, system: Option<&str>) -> CrawlOptionsBuilder {
        let mut b = CrawlOptions::builder()
            .hash_files(self.hash)
            .use_cache(!self.no_cache)
            .limits(self.limits());
        // The library uses a discovery cache only in a folder its caller names: the CLI
        // names the conventional one unless told not to.
        if !self.no_cache {
            if let Some(dir) = origami_introspect::linux::cache::default_dir() {
                b = b.cache_dir(dir);
            }
        }
        for g in &self.config {
            b = b.config_glob(g.clone());
        }
        for d in &self.allow_backing {
            b = b.allow_backing_dir(d);
        }
        b = b.allow_remote_nbd(self.allow_remote_nbd);
        if let Some(n) = system.filter(|n| !n.is_empty()) {
            b = b.system(n);
        }
        b
    }

    /// The bounds these flags say, over the defaults.
    fn limits(&self) -> Limits {
        let mut l = Limits::DEFAULT;
        if let Some(n) = self.max_file_size {
            for bound in [
                &mut l.config_file,
                &mut l.dpkg_status,
                &mut l.passwd,
                &mut l.os_release,
                &mut l.fstab,
            ] {
                *bound = (*bound).min(n);
            }
        }
        if let Some(n) = self.max_config_size {
            l.config_file = n;
        }
        if let Some(n) = self.max_entries {
            l.walk.max_entries = n;
        }
        if let Some(n) = self.max_memory {
            l.memory = n;
        }
        if self.section_timeout.is_some() {
            l.section_time = self.section_timeout;
        }
        if let Some(n) = self.max_tasks {
            l.tasks = n;
        }
        if let Some(n) = self.max_cmdline {
            l.cmdline = n;
        }
        if let Some(n) = self.max_fds {
            l.fds_per_task = n;
        }
        if let Some(n) = self.max_sockets {
            l.sockets = n;
        }
        if let Some(n) = self.max_modules {
            l.modules = n;
        }
        if let Some(n) = self.max_symbols {
            l.symbols = n;
        }
        if let Some(n) = self.max_btf {
            l.btf = n;
        }
        l
    }
}

fn cmd_crawl(a: CrawlArgs) -> Result<ExitCode> {
    if a.disks.is_empty() && a.memory.is_none() && a.qemu_pid.is_none() && a.qmp.is_none() {
        bail!("nothing to crawl: give --disk IMG (repeatable) and/or --memory DUMP (or --qemu-pid PID, --qmp SOCKET)");
    }
    let mut target = Target::default();
    for d in a.disks {
        target = target.with_disk(d);
    }
    // Torn down when dropped, also when the crawl fails.
    let fleece = match &a.qmp {
        Some(socket) => {
            let f = origami_examples::fleece::start(
                socket,
                a.drive.as_deref(),
                Duration::from_secs(30),
            )
            .with_context(|| format!("fleecing the disk of the VM at {}", socket.display()))?;
            target = origami_examples::fleece::with_fleeced_disk(target, socket, &f);
            Some(f)
        }
        None => None,
    };
    if let Some(m) = a.memory {
        target = target.with_memory(m);
    }
    if let Some(pid) = a.qemu_pid {
        target = target.with_memory_source(origami_examples::watch::attach(pid)?);
    }
    if let Some(s) = a.system_map {
        target = target.with_system_map(s);
    }
    if let Some(d) = a.kernel_debuginfo {
        target = target.with_kernel_layouts(LayoutSource::KernelDebuginfo(d));
    }
    if let Some(i) = a.isf {
        target = target.with_kernel_layouts(LayoutSource::Isf(i));
    }
    let options = a.knobs.options(a.name.as_deref()).build()?;
    let crawler = Crawler::new(options);
    let frame = if a.incremental.state.is_some() {
        use origami_examples::incremental as inc;
        let nbd = origami_core::nbd::NbdOptions::default().allow_remote(a.knobs.allow_remote_nbd);
        let dirty = inc::dirty_maps(&nbd, &target, &a.incremental)?;
        inc::crawl(&crawler, &target, &a.incremental, &dirty, &mut |n| {
            eprintln!("origami: {n}")
        })?
        .frame
    } else {
        crawler.crawl(&target).context("crawl failed")?
    };
    if let Some(f) = fleece {
        f.close().context("tearing down the fleecing export")?;
    }
    for e in &frame.meta.errors {
        warn!("{}: {}", e.feature, e.message);
    }
    let text = if a.compact {
        frame.to_json()
    } else {
        frame.to_json_pretty()
    };
    match a.out {
        Some(p) => {
            std::fs::write(&p, text + "\n").with_context(|| format!("writing {}", p.display()))?
        }
        None => println!("{text}"),
    }
    if read_nothing(&frame) {
        eprintln!("origami: no source could be read; the frame records why");
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

/// `origami watch --disk IMG --state FILE`: file events as JSON Lines.
fn cmd_watch_disks(a: origami_examples::watch::WatchArgs) -> Result<ExitCode> {
    let target = a
        .disks
        .iter()
        .fold(Target::default(), |t, d| t.with_disk(d));
    let mut options = CrawlOptions::builder().hash_files(true);
    if let Some(n) = &a.name {
        options = options.system(n);
    }
    let crawler = Crawler::new(options.build()?);
    let mut out = std::io::stdout().lock();
    origami_examples::incremental::watch(
        &crawler,
        &target,
        &a.incremental,
        a.interval,
        a.count,
        &mut out,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn progress(len: usize, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// Crawls a fleet into an index with a progress bar; returns the report.
fn run_fleet(
    machines: &[origami_introspect::fleet::Machine],
    index: &dyn Index,
    fleet: &mut Fleet,
    frames_out: Option<&mut FrameWriter<BufWriter<File>>>,
) -> Result<FleetReport> {
    let pb = progress(machines.len(), "crawling");
    let report = crawl_into_index(fleet, machines, index, frames_out, |m, error| {
        pb.inc(1);
        pb.set_message(m.name.clone());
        if let Some(e) = error {
            warn!("{}: {e}", m.name);
        }
    })?;
    pb.finish_and_clear();
    Ok(report)
}

fn cmd_crawl_fleet(a: FleetArgs) -> Result<ExitCode> {
    let options = a.knobs.options(None);
    let manifest = match &a.manifest {
        Some(p) => Manifest::load(p, &options)?,
        None => Manifest::default(),
    };
    let local = if a.local_vms {
        origami_examples::serve::local_vms::scan_host()
    } else {
        Vec::new()
    };
    let machines = origami_examples::fleet::machines_to_crawl(&manifest, &local, |w| warn!("{w}"));
    if machines.is_empty() {
        bail!("nothing to crawl: the manifest lists no machine and no QEMU VM runs on this host");
    }
    let mut fleet = Fleet::builder().jobs(a.jobs);
    if let Some(limit) = a.timeout {
        fleet = fleet.timeout(limit);
    }
    let mut fleet = fleet.build(options.build()?);
    let index = open_index(&a.index)?;
    let mut frames_out = match &a.frames {
        Some(p) => Some(FrameWriter::new(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        ))),
        None => None,
    };
    let report = run_fleet(&machines, &*index, &mut fleet, frames_out.as_mut())?;
    if let Some(w) = frames_out {
        w.into_inner().context("writing frames")?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render::fleet_summary(&report));
    }
    Ok(
        if report.failed.is_empty() && report.read_nothing.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        },
    )
}

/// Opens a tantivy folder or a PostgreSQL URL to write it ([`index_url`]).
fn open_index(index: &Path) -> Result<std::sync::Arc<dyn WriteIndex>> {
    Ok(index_url::open_writer(index)?)
}

/// Opens an index to search it: no lock, so it works while `crawl-fleet` writes it.
fn open_reader(index: &Path) -> Result<std::sync::Arc<dyn origami_examples::serve::ServedIndex>> {
    Ok(index_url::open_reader(index)?)
}

fn cmd_index(a: IndexArgs) -> Result<ExitCode> {
    let index = open_index(&a.index)?;
    let (mut frames, mut items, mut bad) = (0u64, 0u64, 0u64);
    let t = Instant::now();
    for path in &a.frames {
        let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        for item in FrameReader::new(BufReader::new(f)) {
            match item {
                Ok(frame) => {
                    let s = index.add_frame(&frame)?;
                    frames += 1;
                    items += s.items;
                }
                Err(e) => {
                    bad += 1;
                    warn!("{}: {e}", path.display());
                    if matches!(e, origami_frame::JsonlError::Io { .. }) {
                        bail!("{}: {e}", path.display());
                    }
                }
            }
        }
    }
    index.commit()?;
    println!(
        "indexed {frames} frames ({items} items) in {:.2} s{}",
        t.elapsed().as_secs_f64(),
        if bad > 0 {
            format!("; skipped {bad} bad lines")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_search(a: SearchArgs) -> Result<ExitCode> {
    let index = open_reader(&a.index)?;
    let as_of = match &a.as_of {
        Some(t) => Some(origami_index::query::parse_instant(t).with_context(|| {
            format!("--as-of {t:?}: not a time (use RFC 3339, e.g. 2026-11-20T10:00Z)")
        })?),
        None => None,
    };
    let opts = SearchOptions {
        limit: a.limit,
        hits_per_machine: a.hits,
        as_of,
        ..SearchOptions::default()
    };
    let results = match index.search(&a.query, &opts) {
        Ok(r) => r,
        Err(origami_index::Error::Query(q)) => {
            eprintln!("{}", q.render(&a.query));
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", render::results(&a.query, &results));
    }
    Ok(if results.total_hits == 0 {
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    })
}

fn cmd_history(a: HistoryArgs) -> Result<ExitCode> {
    let index = open_reader(&a.index)?;
    let versions = index.history(&a.host)?;
    if versions.is_empty() {
        bail!("no frames of {:?} in the index", a.host);
    }
    let mut changes = Vec::new();
    for pair in versions.windows(2) {
        changes.push(index.changes(&a.host, pair[0].timestamp, pair[1].timestamp)?);
    }
    if a.json {
        let v = serde_json::json!({"system": a.host, "frames": versions, "changes": changes});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render::history(&a.host, &versions, &changes));
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_demo(a: DemoArgs) -> Result<ExitCode> {
    let dir = a
        .dir
        .unwrap_or_else(|| std::env::temp_dir().join("origami-demo"));
    let out = &mut std::io::stdout();
    writeln!(
        out,
        "Origami demo: a fleet of {} machines, crawled from outside.\n",
        demo::MACHINES.len()
    )?;
    let t = Instant::now();
    let manifest_path = demo::unpack(&dir).context("unpacking the demo fleet")?;
    writeln!(
        out,
        "1. Unpacked {} guest disks (GPT+ESP, MBR, bare ext4, qcow2; one broken) into {} ({:.2} s)",
        demo::MACHINES.len(),
        dir.display(),
        t.elapsed().as_secs_f64()
    )?;
    let mut options = CrawlOptions::builder();
    for g in demo::CONFIG_GLOBS {
        options = options.config_glob(*g);
    }
    let manifest = Manifest::load(&manifest_path, &options)?;
    let index_dir = dir.join("index");
    if index_dir.exists() {
        std::fs::remove_dir_all(&index_dir)
            .with_context(|| format!("clearing {}", index_dir.display()))?;
    }
    let index = open_index(&index_dir)?;
    let mut fleet = Fleet::builder().jobs(a.jobs).build(options.build()?);
    writeln!(
        out,
        "2. Crawling them with {} jobs and indexing each frame as it arrives ...",
        a.jobs
    )?;
    let report = run_fleet(&manifest.machines, &*index, &mut fleet, None)?;
    write!(out, "{}", render::fleet_summary(&report))?;
    writeln!(out, "\n3. Searching the index ({}):", index_dir.display())?;
    for q in demo::QUERIES {
        let results = index.search(
            q,
            &SearchOptions {
                limit: 10,
                hits_per_machine: 3,
                ..Default::default()
            },
        )?;
        writeln!(
            out,
            "\n$ origami search --index {} '{q}'",
            index_dir.display()
        )?;
        write!(out, "{}", render::results(q, &results))?;
    }
    writeln!(
        out,
        "\nTry your own: cargo run --release -p origami-examples --bin origami -- search --index {} 'QUERY'",
        index_dir.display()
    )?;
    if a.serve {
        // The writer lock passes to the server, which keeps the demo fleet crawled.
        drop(index);
        writeln!(
            out,
            "\n4. Serving the demo fleet's search page (Ctrl-C to stop):"
        )?;
        origami_examples::serve::run_cli(demo::serve_args(&manifest_path, &index_dir, a.listen))?;
    }
    Ok(ExitCode::SUCCESS)
}
