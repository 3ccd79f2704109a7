//! The JSON API (`/api/...`) and the reads from the index that the pages share with it.
//!
//! `/api/search` prints [`SearchResults`] exactly as `origami search --json` does (the same
//! `Serialize` impl, pretty-printed); `/api/machines/NAME` carries the machine's frames as
//! `origami history --json` lists them, and `/api/machines/NAME/diff` a [`FrameDiff`] as
//! `history --json` lists its changes.

use std::collections::HashMap;

use origami_frame::{Frame, FrameDiff, Item, Section};
use origami_index::{FrameVersion, SearchOptions, SearchResults};
use serde::Serialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::http::{Request, Response};
use super::App;

/// Most machines a search page or API call returns at once.
pub const MAX_LIMIT: usize = 100;
/// Most hits per machine a search returns.
pub const MAX_HITS: usize = 200;
/// Deepest paging offset (machines).
pub const MAX_OFFSET: usize = 100_000;
/// Most values a facet lists.
pub const MAX_FACET_VALUES: usize = 1_000;

/// A request the API or a page cannot answer, and why.
#[derive(Debug)]
pub enum Fail {
    /// A malformed query: the query and the error (column, message).
    Query(String, origami_index::QueryError),
    /// A bad parameter.
    BadRequest(String),
    /// No such machine or frame.
    NotFound(String),
    /// The index failed.
    Index(String),
}

impl Fail {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Fail::Query(..) | Fail::BadRequest(_) => 400,
            Fail::NotFound(_) => 404,
            Fail::Index(_) => 500,
        }
    }

    /// A one-line message.
    pub fn message(&self) -> String {
        match self {
            Fail::Query(q, e) => e.render(q),
            Fail::BadRequest(m) | Fail::NotFound(m) | Fail::Index(m) => m.clone(),
        }
    }

    /// The JSON answer.
    pub fn json(&self) -> Response {
        let v = match self {
            Fail::Query(q, e) => {
                json!({"error": {"column": e.column, "message": e.message}, "query": q})
            }
            other => json!({"error": other.message()}),
        };
        Response::json(self.status(), pretty(&v))
    }
}

impl From<origami_index::Error> for Fail {
    fn from(e: origami_index::Error) -> Fail {
        Fail::Index(e.to_string())
    }
}

/// JSON as `origami ... --json` prints it.
pub fn pretty<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// RFC 3339 text of an instant.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// An instant as a person or a form gives it: RFC 3339 (shortened forms too), a bare date,
/// or a `datetime-local` value without an offset (taken as UTC).
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    origami_index::query::parse_instant(s).or_else(|| {
        let hm = s.len() == 16 || s.len() == 19;
        (hm && s.as_bytes().get(10) == Some(&b'T'))
            .then(|| origami_index::query::parse_instant(&format!("{s}Z")))
            .flatten()
    })
}

fn time_param(req: &Request, name: &str) -> Result<Option<OffsetDateTime>, Fail> {
    match req.param_nonempty(name) {
        None => Ok(None),
        Some(v) => parse_time(v).map(Some).ok_or_else(|| {
            Fail::BadRequest(format!(
                "{name}={v:?} is not a time: use RFC 3339, e.g. 2026-11-20T10:00Z"
            ))
        }),
    }
}

fn num_param(req: &Request, name: &str, default: usize, max: usize) -> Result<usize, Fail> {
    match req.param_nonempty(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map(|n| n.min(max))
            .map_err(|_| Fail::BadRequest(format!("{name}={v:?} is not a number"))),
    }
}

/// The search a request asks for: the query text and the options, with the defaults of
/// `origami search` (10 machines, 5 hits each, 10 values a facet; parameters `limit`,
/// `offset`, `hits`, `facets`, `as_of`).
pub fn search_request(req: &Request) -> Result<(String, SearchOptions), Fail> {
    let q = req.param("q").unwrap_or("").trim().to_string();
    let options = SearchOptions {
        limit: num_param(req, "limit", 10, MAX_LIMIT)?,
        offset: num_param(req, "offset", 0, MAX_OFFSET)?,
        hits_per_machine: num_param(req, "hits", 5, MAX_HITS)?,
        facet_limit: num_param(req, "facets", 10, MAX_FACET_VALUES)?,
        as_of: time_param(req, "as_of")?,
        ..SearchOptions::default()
    };
    Ok((q, options))
}

/// Runs a search; a malformed query is [`Fail::Query`].
pub fn search(app: &App, q: &str, options: &SearchOptions) -> Result<SearchResults, Fail> {
    match app.index.search(q, options) {
        Ok(r) => Ok(r),
        Err(origami_index::Error::Query(e)) => Err(Fail::Query(q.to_string(), e)),
        Err(e) => Err(e.into()),
    }
}

/// One machine of the fleet: its latest frame's record and what the index says of it.
#[derive(Debug, Clone, Serialize)]
pub struct MachineSummary {
    /// The system id.
    pub system: String,
    /// The host name of its latest frame.
    pub hostname: String,
    /// The OS label (`debian 12`), empty when the frame has no OS.
    pub os: String,
    /// When its latest frame was taken.
    #[serde(with = "time::serde::rfc3339")]
    pub last_frame: OffsetDateTime,
    /// Seconds since then.
    pub age_seconds: i64,
    /// Frames indexed.
    pub frames: usize,
    /// Its latest frame's record (items, changes, crawl duration, sources, errors).
    pub latest: FrameVersion,
}

/// How many frames `system` has and its latest frame's record (taken at `last`), from the
/// cache when that frame is the one cached; `None` when the index lists no frame.
pub fn latest_record(
    app: &App,
    system: &str,
    last: OffsetDateTime,
) -> Result<Option<(usize, FrameVersion)>, Fail> {
    let cached = app
        .fleet_cache
        .lock()
        .ok()
        .and_then(|c| c.get(system).cloned());
    if let Some((t, n, v)) = cached {
        if t == last {
            return Ok(Some((n, v)));
        }
    }
    let h = app.index.history(system)?;
    let Some(v) = h.last().cloned() else {
        return Ok(None);
    };
    if let Ok(mut c) = app.fleet_cache.lock() {
        c.insert(system.to_string(), (last, h.len(), v.clone()));
    }
    Ok(Some((h.len(), v)))
}

/// Every machine, sorted by system id. Frame records are cached by (system, latest time),
/// so a fleet page costs one query per machine only when that machine has a new frame.
pub fn fleet(app: &App) -> Result<Vec<MachineSummary>, Fail> {
    let systems = app.index.systems()?;
    let now = OffsetDateTime::now_utc();
    // One search gives every machine's OS label and host name.
    let os: HashMap<String, (String, String)> = if systems.is_empty() {
        HashMap::new()
    } else {
        let r = app.index.search(
            "type:os",
            &SearchOptions {
                limit: systems.len(),
                hits_per_machine: 0,
                facet_limit: 0,
                ..SearchOptions::default()
            },
        )?;
        r.machines
            .into_iter()
            .map(|m| (m.system, (m.os, m.hostname)))
            .collect()
    };
    let mut out = Vec::with_capacity(systems.len());
    for (system, last) in systems {
        let Some((frames, latest)) = latest_record(app, &system, last)? else {
            continue;
        };
        let (os, hostname) = os
            .get(&system)
            .cloned()
            .unwrap_or_else(|| (String::new(), latest.hostname.clone()));
        out.push(MachineSummary {
            age_seconds: (now - last).whole_seconds(),
            system,
            hostname,
            os,
            last_frame: last,
            frames,
            latest,
        });
    }
    Ok(out)
}

/// A machine at one instant: its frames, the one in effect, and the state then.
pub struct MachineView {
    /// Every frame of the machine, oldest first.
    pub versions: Vec<FrameVersion>,
    /// The instant asked for (`as_of`), if any.
    pub as_of: Option<OffsetDateTime>,
    /// The index of the frame in effect in `versions`.
    pub current: usize,
    /// The machine's state then, as a frame (`_frame` from the frame's record).
    pub frame: Frame,
}

/// Reads a machine's state at `as_of` (default: its latest frame).
pub fn machine(
    app: &App,
    system: &str,
    as_of: Option<OffsetDateTime>,
) -> Result<MachineView, Fail> {
    let versions = app.index.history(system)?;
    if versions.is_empty() {
        return Err(Fail::NotFound(format!(
            "no frames of {system:?} in the index"
        )));
    }
    let current = match as_of {
        None => versions.len() - 1,
        Some(t) => match versions.iter().rposition(|v| v.timestamp <= t) {
            Some(i) => i,
            None => {
                return Err(Fail::NotFound(format!(
                    "{system:?} has no frame at or before {} (its first is {})",
                    rfc3339(t),
                    rfc3339(versions[0].timestamp)
                )))
            }
        },
    };
    let v = &versions[current];
    // The state at an instant is what changed since before the first frame.
    let state = app
        .index
        .changes(system, OffsetDateTime::UNIX_EPOCH, v.timestamp)?;
    let mut frame = Frame::new(system);
    frame.meta.timestamp = v.timestamp;
    frame.meta.hostname = Some(v.hostname.clone());
    frame.meta.duration_ms = v.duration_ms;
    frame.meta.source = v.source.clone();
    frame.meta.errors = v.errors.clone();
    frame.meta.crawler_version = String::new();
    if let Some(c) = state.os {
        frame.os = c.new;
    }
    frame.file = state.file.added;
    frame.config = state.config.added;
    frame.package = state.package.added;
    frame.user = state.user.added;
    frame.process = state.process.added;
    frame.connection = state.connection.added;
    frame.module = state.module.added;
    frame.mount = state.mount.added;
    frame.kernel_log = state.kernel_log.added;
    frame.service = state.service.added;
    Ok(MachineView {
        versions,
        as_of,
        current,
        frame,
    })
}

/// One item as a row: its key and its fields.
pub type Row = (String, Value);

fn rows<T: Item>(items: &[T]) -> Vec<Row> {
    items
        .iter()
        .map(|i| (i.key(), serde_json::to_value(i).unwrap_or(Value::Null)))
        .collect()
}

/// The item sections of a frame (not `os`), in frame order, as rows.
pub fn sections(f: &Frame) -> Vec<(Section, Vec<Row>)> {
    vec![
        (Section::File, rows(&f.file)),
        (Section::Config, rows(&f.config)),
        (Section::Package, rows(&f.package)),
        (Section::User, rows(&f.user)),
        (Section::Process, rows(&f.process)),
        (Section::Connection, rows(&f.connection)),
        (Section::Module, rows(&f.module)),
        (Section::Mount, rows(&f.mount)),
        (Section::KernelLog, rows(&f.kernel_log)),
        (Section::Service, rows(&f.service)),
    ]
}

/// One section of a diff as rows: added, removed, changed (key, old, new).
pub struct DiffRows {
    /// The section.
    pub section: Section,
    /// Items only in the newer state.
    pub added: Vec<Row>,
    /// Items only in the older state.
    pub removed: Vec<Row>,
    /// Items in both with different content: key, old, new.
    pub changed: Vec<(String, Value, Value)>,
}

fn diff_rows<T: Item>(section: Section, d: &origami_frame::SectionDiff<T>) -> DiffRows {
    DiffRows {
        section,
        added: rows(&d.added),
        removed: rows(&d.removed),
        changed: d
            .changed
            .iter()
            .map(|c| {
                (
                    c.new.key(),
                    serde_json::to_value(&c.old).unwrap_or(Value::Null),
                    serde_json::to_value(&c.new).unwrap_or(Value::Null),
                )
            })
            .collect(),
    }
}

/// A diff's sections as rows, `os` first.
pub fn diff_sections(d: &FrameDiff) -> Vec<DiffRows> {
    let mut os = DiffRows {
        section: Section::Os,
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
    };
    if let Some(c) = &d.os {
        os.changed.push((
            "os".to_string(),
            serde_json::to_value(&c.old).unwrap_or(Value::Null),
            serde_json::to_value(&c.new).unwrap_or(Value::Null),
        ));
    }
    vec![
        os,
        diff_rows(Section::File, &d.file),
        diff_rows(Section::Config, &d.config),
        diff_rows(Section::Package, &d.package),
        diff_rows(Section::User, &d.user),
        diff_rows(Section::Process, &d.process),
        diff_rows(Section::Connection, &d.connection),
        diff_rows(Section::Module, &d.module),
        diff_rows(Section::Mount, &d.mount),
        diff_rows(Section::KernelLog, &d.kernel_log),
        diff_rows(Section::Service, &d.service),
    ]
}

/// The two instants of a diff request: `from` and `to`, by default the machine's last two
/// frames (or its only one, twice).
pub fn diff_range(
    req: &Request,
    versions: &[FrameVersion],
) -> Result<(OffsetDateTime, OffsetDateTime), Fail> {
    let last = versions
        .last()
        .map(|v| v.timestamp)
        .ok_or_else(|| Fail::NotFound("the machine has no frames".into()))?;
    let before = versions
        .len()
        .checked_sub(2)
        .map_or(last, |i| versions[i].timestamp);
    let from = time_param(req, "from")?.unwrap_or(before);
    let to = time_param(req, "to")?.unwrap_or(last);
    Ok(if from <= to { (from, to) } else { (to, from) })
}

/// `GET /api/search?q=&limit=&hits=&offset=&as_of=`.
pub fn api_search(app: &App, req: &Request) -> Response {
    let (q, options) = match search_request(req) {
        Ok(v) => v,
        Err(f) => return f.json(),
    };
    match search(app, &q, &options) {
        Ok(r) => Response::json(200, pretty(&r)),
        Err(f) => f.json(),
    }
}

/// `GET /api/machines`.
pub fn api_machines(app: &App) -> Response {
    match fleet(app) {
        Ok(m) => {
            let mut v = json!({"now": rfc3339(OffsetDateTime::now_utc()), "machines": m});
            // With a manifest: every scheduled machine's crawl status, crawled yet or not.
            if let Some(board) = &app.status {
                v["schedule"] = serde_json::to_value(board.snapshot()).unwrap_or(Value::Null);
            }
            Response::json(200, pretty(&v))
        }
        Err(f) => f.json(),
    }
}

/// `GET /api/machines/NAME?as_of=`: the frames (as `origami history --json` lists them) and
/// the state at `as_of` (default: the latest frame) as a frame.
pub fn api_machine(app: &App, req: &Request, system: &str) -> Response {
    let as_of = match time_param(req, "as_of") {
        Ok(t) => t,
        Err(f) => return f.json(),
    };
    match machine(app, system, as_of) {
        Ok(v) => {
            let frame: Value = serde_json::to_value(&v.frame).unwrap_or(Value::Null);
            Response::json(
                200,
                pretty(&json!({
                    "system": system,
                    "as_of": v.as_of.map(rfc3339),
                    "frames": v.versions,
                    "frame": frame,
                })),
            )
        }
        Err(f) => f.json(),
    }
}

/// `GET /api/machines/NAME/diff?from=&to=`: what changed between the two instants.
pub fn api_diff(app: &App, req: &Request, system: &str) -> Response {
    let run = || -> Result<Value, Fail> {
        let versions = app.index.history(system)?;
        if versions.is_empty() {
            return Err(Fail::NotFound(format!(
                "no frames of {system:?} in the index"
            )));
        }
        let (from, to) = diff_range(req, &versions)?;
        let diff = app.index.changes(system, from, to)?;
        Ok(json!({"system": system, "from": rfc3339(from), "to": rfc3339(to), "diff": diff}))
    };
    match run() {
        Ok(v) => Response::json(200, pretty(&v)),
        Err(f) => f.json(),
    }
}
