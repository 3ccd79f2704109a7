//! `origami serve`: the fleet's search page and its JSON API, over an index.
//!
//! - [`http`]: a bounded HTTP/1.1 server (fixed worker pool, bounded request head, body and
//!   read time); every response carries a strict Content-Security-Policy.
//! - [`html`]: the one way pages make HTML: text escaped by construction, links percent-
//!   encoded.
//! - [`pages`]: search, fleet, machine (state by section, history, diff, `as_of`), login.
//! - [`api`]: the JSON twins, the same JSON as `origami search --json`.
//! - [`schedule`]: with a manifest, the crawl scheduler that keeps every machine fresh in
//!   the index the page is served from.
//! - [`live`]: the watcher of a running VM (a manifest's `qemu_pid`, or a VM `--local-vms`
//!   found), which keeps its processes, connections and modules fresh at its interval.
//! - [`local_vms`]: the QEMU VMs running on this host, found from their processes.
//!
//! Without a manifest, `serve` opens the index read-only (no lock), so another process
//! (`crawl-fleet`) may write it. With one (`origami serve FLEET.toml --index DIR`), this
//! process is the index's writer: it crawls every machine on its own schedule and serves
//! searches from the writer, which sees each commit (at least one a second while frames
//! arrive). SIGHUP re-reads the manifest; SIGTERM and Ctrl-C commit and exit 0.
//!
//! Safe by default: it listens on loopback; any other address needs `--token` (a bearer
//! token, or a login form that sets an `HttpOnly`, `SameSite=Strict` cookie) or an explicit
//! `--insecure-no-auth`. Only `GET` and `HEAD` are answered (and `POST /login`). On loopback
//! without a token, requests must name a loopback host, so a web page cannot read the API
//! through DNS rebinding.
//!
//! ```no_run
//! use origami_examples::serve::check_listen;
//! let addr = "127.0.0.1:8080".parse().unwrap();
//! check_listen(addr, None, false).unwrap();
//! assert!(check_listen("0.0.0.0:8080".parse().unwrap(), None, false).is_err());
//! ```

pub mod api;
pub mod html;
pub mod http;
pub mod live;
pub mod local_vms;
pub mod pages;
pub mod schedule;

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use origami_index::{FrameVersion, ReadOnlyIndex, Search, TantivyIndex};
use origami_introspect::CrawlOptions;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use self::http::{Limits, Method, Request, Response};
use self::schedule::{Planned, Policy, Scheduler, StatusBoard};
use crate::manifest::{parse_interval, Manifest, ManifestError};

/// What the server needs of an index: the [`Search`] reads, and the list of systems.
pub trait ServedIndex: Search {
    /// Every system and the time of its latest frame, sorted by system.
    fn systems(&self) -> origami_index::Result<Vec<(String, OffsetDateTime)>>;
}

impl ServedIndex for TantivyIndex {
    fn systems(&self) -> origami_index::Result<Vec<(String, OffsetDateTime)>> {
        TantivyIndex::systems(self)
    }
}

impl ServedIndex for ReadOnlyIndex {
    fn systems(&self) -> origami_index::Result<Vec<(String, OffsetDateTime)>> {
        ReadOnlyIndex::systems(self)
    }
}

/// Errors of `origami serve` before it serves.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address is not loopback and neither a token nor `--insecure-no-auth` was
    /// given.
    #[error("refusing to listen on {0} without access control: give --token (or --token-file), or --insecure-no-auth if everyone who can reach {0} may read the fleet")]
    Unprotected(SocketAddr),
    /// The token is too short to resist guessing.
    #[error("the token must be at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 16`)")]
    ShortToken,
    /// No index in the folder.
    #[error("no index at {0} (build one with `origami crawl-fleet MANIFEST --index {0}` or `origami index --index {0} FRAMES.jsonl`)")]
    NoIndex(PathBuf),
    /// The index could not be opened.
    #[error("opening the index at {path}: {source}")]
    Index {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: origami_index::Error,
    },
    /// The manifest cannot be used.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The crawl options cannot be built.
    #[error("crawl options: {0}")]
    Options(#[from] origami_introspect::Error),
    /// The address could not be bound, or a file read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The shortest accepted token.
pub const MIN_TOKEN_LEN: usize = 16;

/// Checks that serving on `addr` is safe: loopback, or a token, or an explicit opt-out.
pub fn check_listen(
    addr: SocketAddr,
    token: Option<&str>,
    insecure_no_auth: bool,
) -> Result<(), ServeError> {
    if let Some(t) = token {
        if t.chars().count() < MIN_TOKEN_LEN {
            return Err(ServeError::ShortToken);
        }
        return Ok(());
    }
    if addr.ip().is_loopback() || insecure_no_auth {
        Ok(())
    } else {
        Err(ServeError::Unprotected(addr))
    }
}

/// Who may read.
#[derive(Debug, Clone)]
pub enum Access {
    /// Anyone who can connect.
    Open,
    /// Requests must carry the token (bearer header) or the login cookie.
    Token {
        /// The token.
        token: String,
        /// The login cookie's value (a hash of the token).
        cookie: String,
    },
}

impl Access {
    /// Access with `token`, or open.
    pub fn new(token: Option<String>) -> Access {
        match token {
            None => Access::Open,
            Some(token) => {
                let mut h = Sha256::new();
                h.update(b"origami-serve-session\0");
                h.update(token.as_bytes());
                let cookie = h
                    .finalize()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>();
                Access::Token { token, cookie }
            }
        }
    }
}

/// Compares without an early exit on the first differing byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const COOKIE: &str = "origami_session";
const STYLE: &str = include_str!("static/style.css");
const SCRIPT: &str = include_str!("static/app.js");

/// The served application: the index, who may read, and a small cache.
pub struct App {
    /// The index (shared by every worker; searches do not block each other).
    pub index: Arc<dyn ServedIndex>,
    access: Access,
    /// On loopback without a token: the `Host` values accepted (DNS-rebinding guard).
    loopback_only_hosts: bool,
    /// The latest frame record of each system, by the time of its latest frame.
    pub(crate) fleet_cache: Mutex<HashMap<String, (OffsetDateTime, usize, FrameVersion)>>,
    /// The crawl schedule's state, when this process crawls (a manifest was given).
    pub status: Option<Arc<StatusBoard>>,
}

impl App {
    /// An app over `index`, listening on `addr`.
    pub fn new(index: Arc<dyn ServedIndex>, access: Access, addr: SocketAddr) -> App {
        let loopback_only_hosts = matches!(access, Access::Open) && addr.ip().is_loopback();
        App {
            index,
            access,
            loopback_only_hosts,
            fleet_cache: Mutex::new(HashMap::new()),
            status: None,
        }
    }

    /// The app showing `board`, the schedule of the crawls that feed its index.
    pub fn with_status(mut self, board: Arc<StatusBoard>) -> App {
        self.status = Some(board);
        self
    }

    /// Answers one request.
    pub fn handle(&self, req: &Request) -> Response {
        let segs = req.segments();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let is_login = segs == ["login"];
        match &req.method {
            Method::Get | Method::Head => {}
            Method::Post if is_login => {}
            _ => {
                return Response::text(405, "read-only: GET and HEAD only\n")
                    .with("Allow", "GET, HEAD".to_string())
            }
        }
        if self.loopback_only_hosts && !host_is_loopback(req.header("host")) {
            return Response::text(
                421,
                "this server answers only requests for localhost (start it with --token to serve other names)\n",
            );
        }
        match segs.as_slice() {
            ["static", "style.css"] => {
                return Response {
                    status: 200,
                    content_type: "text/css; charset=utf-8",
                    headers: Vec::new(),
                    body: STYLE.as_bytes().to_vec(),
                }
            }
            ["static", "app.js"] => {
                return Response {
                    status: 200,
                    content_type: "text/javascript; charset=utf-8",
                    headers: Vec::new(),
                    body: SCRIPT.as_bytes().to_vec(),
                }
            }
            ["login"] => return self.login(req),
            _ => {}
        }
        if let Access::Token { token, cookie } = &self.access {
            if !authorized(req, token, cookie) {
                return if segs.first() == Some(&"api") {
                    Response::json(
                        401,
                        "{\n  \"error\": \"send Authorization: Bearer TOKEN\"\n}".to_string(),
                    )
                    .with("WWW-Authenticate", "Bearer realm=\"origami\"".to_string())
                } else {
                    pages::login_page(401, None)
                };
            }
        }
        match segs.as_slice() {
            [] | ["search"] => pages::search_page(self, req),
            ["machines"] => pages::fleet_page(self, req),
            ["machines", name] => pages::machine_page(self, req, html::name_from_segment(name)),
            ["api", "search"] => api::api_search(self, req),
            ["api", "machines"] => api::api_machines(self),
            ["api", "machines", name] => api::api_machine(self, req, html::name_from_segment(name)),
            ["api", "machines", name, "diff"] => {
                api::api_diff(self, req, html::name_from_segment(name))
            }
            ["api", ..] => api::Fail::NotFound("no such API path".into()).json(),
            _ => pages::error_page(&api::Fail::NotFound(format!("no page at {}", req.path)), ""),
        }
    }

    fn login(&self, req: &Request) -> Response {
        let Access::Token { token, cookie } = &self.access else {
            return Response::text(303, "").with("Location", "/".to_string());
        };
        if req.method != Method::Post {
            return pages::login_page(200, None);
        }
        let form = html::parse_query(&String::from_utf8_lossy(&req.body));
        let given = form
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        if same_secret(given.as_bytes(), token.as_bytes()) {
            Response::text(303, "")
                .with("Location", "/".to_string())
                .with(
                    "Set-Cookie",
                    format!("{COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age=604800"),
                )
        } else {
            // Slow down guessing a little (the token is long enough that this is a courtesy).
            std::thread::sleep(std::time::Duration::from_millis(250));
            pages::login_page(401, Some("That is not the token."))
        }
    }
}

fn authorized(req: &Request, token: &str, cookie: &str) -> bool {
    if let Some(v) = req.header("authorization") {
        if let Some(t) = v.strip_prefix("Bearer ") {
            if same_secret(t.trim().as_bytes(), token.as_bytes()) {
                return true;
            }
        }
    }
    req.headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .any(|(k, v)| k == COOKIE && same_secret(v.as_bytes(), cookie.as_bytes()))
}

/// Is the `Host` header a loopback name (`localhost`, `127.0.0.1`, `[::1]`, with a port)?
/// A request without one (HTTP/1.0) is let through.
fn host_is_loopback(host: Option<&str>) -> bool {
    let Some(h) = host else {
        return true;
    };
    let h = h.trim().to_ascii_lowercase();
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match h.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => h.as_str(),
        }
    };
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    parse_interval(s)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?}: give seconds, or a number with s, m, h or d"))
}

/// `origami serve`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The fleet manifest to keep crawled into the index (`[[machine]]` tables, and an
    /// optional `interval`). Without one, the index is served read-only as it is.
    #[arg(value_name = "FLEET.toml")]
    pub manifest: Option<PathBuf>,
    /// The index folder to serve (with a manifest: created when missing, and written), or
    /// postgres://USER@HOST:PORT/DB.
    #[arg(long, value_name = "DIR|URL")]
    pub index: PathBuf,
    /// Also keep crawled the QEMU VMs running on this host, found from their processes
    /// (`-name`, `-drive file=`, `-blockdev`, libvirt's /run/libvirt/qemu/*.xml) and
    /// followed as they start and stop; no manifest needed.
    #[arg(long)]
    pub local_vms: bool,
    /// With a manifest: how many machines are crawled at once.
    #[arg(long, short = 'j', default_value_t = 2, value_name = "N")]
    pub jobs: usize,
    /// With a manifest: the crawl interval of machines whose manifest gives none (disk
    /// images are also re-crawled as soon as they change). Seconds, or 90s, 5m, 1h.
    #[arg(long, default_value = "5m", value_parser = parse_secs, value_name = "T")]
    pub interval: Duration,
    /// With a manifest: give up on one machine's crawl after this long (it shows as failed
    /// and is retried later).
    #[arg(long, default_value = "10m", value_parser = parse_secs, value_name = "T")]
    pub timeout: Duration,
    /// With a manifest: the first retry delay after a failed crawl; it doubles with each
    /// further failure, up to an hour.
    #[arg(long, default_value = "10s", value_parser = parse_secs, value_name = "T")]
    pub backoff: Duration,
    /// With a manifest: also take the text of files matching GLOB into the config section
    /// (repeatable), e.g. '/home/*/.bash_history'.
    #[arg(long = "config", value_name = "GLOB")]
    pub config: Vec<String>,
    /// With a manifest: let disk images name backing files in DIR too (repeatable).
    #[arg(long = "allow-backing", value_name = "DIR")]
    pub allow_backing: Vec<PathBuf>,
    /// The address to listen on. Anything but loopback needs --token or --insecure-no-auth.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// Require this token: `Authorization: Bearer TOKEN`, or the login form's cookie.
    #[arg(long, value_name = "T", conflicts_with_all = ["token_file", "insecure_no_auth"])]
    pub token: Option<String>,
    /// Read the token from this file (first line), so it is not on the command line.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure_no_auth")]
    pub token_file: Option<PathBuf>,
    /// Serve a non-loopback address to anyone who can reach it.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Worker threads (requests answered at once).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// A server ready to run: the bound socket and the app.
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    limits: Limits,
}

impl Server {
    /// Checks the options, opens the index once (shared by every request) and binds.
    pub fn bind(args: &ServeArgs) -> Result<Server, ServeError> {
        let token = token_of(args)?;
        check_listen(args.listen, token.as_deref(), args.insecure_no_auth)?;
        // Read-only: no lock, so `crawl-fleet` (or another writer) can feed the same folder
        // while the page is served; the reader picks up each commit.
        let index = crate::index_url::open_reader(&args.index)?;
        Server::bind_with(args, token, App::new(index, Access::Open, args.listen))
    }

    /// Binds `args.listen` and serves `app` (its access set from `token`).
    pub fn bind_with(
        args: &ServeArgs,
        token: Option<String>,
        mut app: App,
    ) -> Result<Server, ServeError> {
        check_listen(args.listen, token.as_deref(), args.insecure_no_auth)?;
        let listener = TcpListener::bind(args.listen).map_err(|source| ServeError::Io {
            what: format!("listening on {}", args.listen),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Io {
            what: "reading the bound address".into(),
            source,
        })?;
        let mut limits = Limits::default();
        if let Some(n) = args.threads {
            limits.workers = n.clamp(1, 256);
        }
        app.loopback_only_hosts = token.is_none() && addr.ip().is_loopback();
        app.access = Access::new(token);
        Ok(Server {
            listener,
            app: Arc::new(app),
            limits,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the process ends.
    pub fn run(self) -> Result<(), ServeError> {
        let app = Arc::clone(&self.app);
        http::serve(
            self.listener,
            self.limits,
            Arc::new(move |r: &Request| app.handle(r)),
        )
        .map_err(|source| ServeError::Io {
            what: "serving".into(),
            source,
        })
    }
}

fn read_token(p: &Path) -> Result<String, ServeError> {
    let text = std::fs::read_to_string(p).map_err(|source| ServeError::Io {
        what: format!("reading the token from {}", p.display()),
        source,
    })?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

fn token_of(args: &ServeArgs) -> Result<Option<String>, ServeError> {
    Ok(match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.trim().to_string()),
        (None, Some(p)) => Some(read_token(p)?),
        (None, None) => None,
    })
}

/// How often `--local-vms` looks for VMs that started or stopped.
const LOCAL_VMS_SCAN: Duration = Duration::from_secs(2);

/// The flags the signals set: SIGTERM/SIGINT (stop), SIGHUP (reload).
struct Signals {
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

/// Signals through `signal-hook`'s flags: the handler only sets an atomic flag (all a
/// signal handler may safely do); the main loop looks at the flags between rounds. A
/// second SIGTERM or Ctrl-C while the first is handled ends the process at once.
fn signals() -> Result<Signals, ServeError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let io = |source| ServeError::Io {
        what: "installing signal handlers".into(),
        source,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop)).map_err(io)?;
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(io)?;
    }
    signal_hook::flag::register(SIGHUP, Arc::clone(&reload)).map_err(io)?;
    Ok(Signals { stop, reload })
}

/// The crawl options of a `serve` with a manifest.
fn crawl_options(args: &ServeArgs) -> origami_introspect::CrawlOptionsBuilder {
    let mut b = CrawlOptions::builder();
    if let Some(dir) = origami_introspect::linux::cache::default_dir() {
        b = b.cache_dir(dir);
    }
    for g in &args.config {
        b = b.config_glob(g.clone());
    }
    for d in &args.allow_backing {
        b = b.allow_backing_dir(d);
    }
    b
}

/// The manifest's machines, then (with `--local-vms`) the VMs running here.
fn planned(manifest: &Manifest, args: &ServeArgs) -> Vec<Planned> {
    let mut out: Vec<Planned> = manifest
        .machines
        .iter()
        .map(|m| Planned {
            machine: m.clone(),
            interval: manifest.interval_of(&m.name, args.interval),
            qemu_pid: manifest.qemu_pids.get(&m.name).copied(),
        })
        .collect();
    if args.local_vms {
        out.extend(local_vms::scan_host().into_iter().map(|vm| Planned {
            machine: local_vm_machine(&vm),
            interval: args.interval,
            qemu_pid: Some(vm.pid),
        }));
    }
    out
}

/// A VM found on this host as a fleet machine: its disks, and its memory file if any.
pub fn local_vm_machine(vm: &local_vms::LocalVm) -> origami_introspect::fleet::Machine {
    let mut target = origami_introspect::Target::default();
    for d in &vm.disks {
        target = target.with_disk(d);
    }
    if let Some(m) = &vm.memory {
        target = target.with_memory(m);
    }
    origami_introspect::fleet::Machine::new(vm.name.clone(), target)
}

/// Runs the server on its own thread.
fn spawn_server(server: Server) -> Result<(), ServeError> {
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            if let Err(e) = server.run() {
                eprintln!("origami: error: {e}");
                std::process::exit(1);
            }
        })
        .map(|_| ())
        .map_err(|source| ServeError::Io {
            what: "starting the server thread".into(),
            source,
        })
}

fn say(line: String) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `origami serve`: binds, says where on stdout (`serving http://ADDR/`), and serves until
/// SIGTERM or Ctrl-C (then exits 0). With a manifest it also keeps every machine crawled
/// into the index ([`schedule`]), re-reads the manifest on SIGHUP and commits before it
/// returns.
pub fn run_cli(args: ServeArgs) -> Result<(), ServeError> {
    let sig = signals()?;
    let protected = if args.token.is_some() || args.token_file.is_some() {
        ", token required"
    } else {
        ""
    };
    if args.manifest.is_none() && !args.local_vms {
        let server = Server::bind(&args)?;
        let addr = server.local_addr().map_err(|source| ServeError::Io {
            what: "reading the bound address".into(),
            source,
        })?;
        let machines = server.app.index.systems().map_or(0, |s| s.len());
        say(format!(
            "serving http://{addr}/ ({machines} machines from {}{protected})",
            crate::index_url::shown(&args.index)
        ));
        spawn_server(server)?;
        while !sig.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
        return Ok(());
    }
    let options = crawl_options(&args);
    let load = |args: &ServeArgs| -> Result<Manifest, ManifestError> {
        match &args.manifest {
            Some(p) => Manifest::load(p, &options),
            None => Ok(Manifest::default()),
        }
    };
    let mut manifest = load(&args)?;
    let source = match (&args.manifest, args.local_vms) {
        (Some(p), false) => p.display().to_string(),
        (Some(p), true) => format!("{} and this host's VMs", p.display()),
        (None, _) => "this host's VMs".to_string(),
    };
    let index = crate::index_url::open_writer(&args.index)?;
    let board = Arc::new(StatusBoard::default());
    let served: Arc<dyn ServedIndex> = index.clone();
    let app = App::new(served, Access::Open, args.listen).with_status(board.clone());
    let server = Server::bind_with(&args, token_of(&args)?, app)?;
    let addr = server.local_addr().map_err(|source| ServeError::Io {
        what: "reading the bound address".into(),
        source,
    })?;
    let jobs = args.jobs.max(1);
    let policy = Policy {
        jobs,
        timeout: args.timeout,
        max_stuck: jobs,
        backoff_min: args.backoff,
        backoff_max: Duration::from_secs(3600).max(args.backoff),
        ..Policy::default()
    };
    let mut scheduler = Scheduler::new(index, options.clone().build()?, policy, board);
    scheduler.set_machines(planned(&manifest, &args));
    say(format!(
        "serving http://{addr}/ ({} machines of {source} crawled into {}{protected})",
        scheduler.machines().len(),
        crate::index_url::shown(&args.index)
    ));
    spawn_server(server)?;
    let mut last_scan = std::time::Instant::now();
    while !sig.stop.load(Ordering::SeqCst) {
        if sig.reload.swap(false, Ordering::SeqCst) {
            match load(&args) {
                Ok(m) => {
                    manifest = m;
                    scheduler.set_machines(planned(&manifest, &args));
                    say(format!(
                        "reloaded {source}: {} machines",
                        scheduler.machines().len()
                    ));
                }
                // A broken edit keeps the machines as they were.
                Err(e) => tracing::warn!("SIGHUP: keeping the old manifest: {e}"),
            }
        } else if args.local_vms && last_scan.elapsed() >= LOCAL_VMS_SCAN {
            // VMs that started or stopped.
            last_scan = std::time::Instant::now();
            scheduler.set_machines(planned(&manifest, &args));
        }
        let pause = scheduler.step();
        std::thread::sleep(pause);
    }
    scheduler.commit().map_err(|source| ServeError::Index {
        path: crate::index_url::shown(&args.index).into(),
        source,
    })?;
    say("committed; bye".to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_beyond_loopback_needs_a_token_or_an_explicit_opt_out() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(check_listen(a("127.0.0.1:1"), None, false).is_ok());
        assert!(check_listen(a("[::1]:1"), None, false).is_ok());
        assert!(matches!(
            check_listen(a("0.0.0.0:1"), None, false),
            Err(ServeError::Unprotected(_))
        ));
        assert!(check_listen(a("0.0.0.0:1"), None, true).is_ok());
        assert!(check_listen(a("0.0.0.0:1"), Some("0123456789abcdef"), false).is_ok());
        assert!(matches!(
            check_listen(a("0.0.0.0:1"), Some("short"), false),
            Err(ServeError::ShortToken)
        ));
    }

    #[test]
    fn only_loopback_host_names_pass_the_rebinding_guard() {
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:80",
            "[::1]:8080",
            "LOCALHOST",
            "x.localhost",
        ] {
            assert!(host_is_loopback(Some(ok)), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "10.0.0.1",
            "[2001:db8::1]:1",
            "",
        ] {
            assert!(!host_is_loopback(Some(bad)), "{bad}");
        }
        assert!(host_is_loopback(None));
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
