//! [`PostgresIndex`]: the index in a PostgreSQL database (feature `postgres`), answering as
//! [`crate::TantivyIndex`] does: one row per item version with `valid_from` / `valid_to`,
//! the latest state by default, `as_of:`, `changed:`, [`Search::changes`], facets, results
//! grouped by machine with snippets.
//!
//! - **Same versions.** Frames are diffed by the tantivy backend's own code (key ids are
//!   xxh3-128 of section and key, content hashes the same), so an unchanged item writes
//!   nothing and both backends hold the same versions.
//! - **Same tokens.** Each version's text is tokenised by origami's tokenizer in Rust and
//!   stored as a `tsvector` (GIN-indexed) with the token positions, so `10.20.30.40`,
//!   `host:port`, paths and versions are whole lexemes and phrases match the same
//!   positions; PostgreSQL's own text parser is never used.
//! - **Bound parameters only.** The query AST is compiled to SQL whose text holds only
//!   constant fragments and `$n` placeholders ([`query`]).
//! - **Ingest.** New versions go in with `COPY ... (FORMAT binary)`, one COPY per frame;
//!   versions a frame closes get their `valid_to` in one `UPDATE`. Frames are written inside
//!   one transaction until [`Index::commit`] (or the commit interval); searches use a
//!   second connection and see only committed frames.
//! - **Many writers.** Each system is locked (`pg_advisory_xact_lock`) by the transaction
//!   that writes it, and its in-memory state is checked against the database (frames
//!   count and latest time) when the transaction first touches it, so several processes
//!   can write one database, each its own machines or even the same ones, without losing
//!   or duplicating a version; a frame older than the system's latest is skipped as stale
//!   (as the tantivy writer does), so a system's frames stay in time order whichever
//!   writer sends them. A writer never waits for a system's lock while it holds another:
//!   when the lock is taken it commits what it has first, then waits, so two writers
//!   crossing over the same machines cannot deadlock.
//! - **Connections.** URLs are checked by [`url::config`]: plain text (this build has no
//!   TLS) only to loopback unless the URL says `sslmode=disable`; `PGPASSWORD` is used
//!   when the URL has no password; messages show URLs through [`url::redact`].
//! - **Failures.** A failed statement (a server gone away) rolls the open transaction back:
//!   the frames added since the last commit are lost and reported, committed ones never; the
//!   next call reconnects.
//!
//! Limits, where PostgreSQL differs from tantivy: a `tsvector` keeps positions up to 16,383
//! and 256 positions per lexeme, so a phrase deep into a very long text (a large config
//! file) can miss; ranking is not BM25 (see [`query`]); a search reads every matching
//! row's (system, kind, host, os, package, ports, users, time) to group and count them,
//! as the tantivy collector reads its fast columns, which costs more over a network.

mod ingest;
pub mod query;
pub mod schema;
pub mod url;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ::postgres::{Client, Config, NoTls};
use origami_frame::{Frame, FrameDiff, Section};
use time::OffsetDateTime;
use xxhash_rust::xxh3::xxh3_64;

use crate::collect::{kind_weight, recency_weight, MachineAcc};
use crate::diff::{diff_frame, Current, Scratch, SystemState, NO_SECTION};
use crate::schema::{fields_of, from_ns, schema as tantivy_schema, to_ns, Fields, OPEN};
use crate::snippet::{self, SnippetTerms};
use crate::{
    query as ql, Error, Facets, FrameVersion, Hit, Index, IndexStats, MachineResult, Result,
    Search, SearchOptions, SearchResults,
};

use ingest::{copy_rows, key_bytes, ns_of_sql, ns_sql, row_of};
use schema::OPEN_SQL;
pub use schema::{Layout, CITUS_DISTRIBUTE, DEFAULT_PARTITIONS, SCHEMA_VERSION};

/// How a [`PostgresIndex`] is set up.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The layout of a new database (an existing one keeps its own).
    pub layout: Layout,
    /// Frames are committed at the next `add_frame` once this long has passed since the
    /// last commit (default 1 s, as tantivy's); `None`: only [`Index::commit`] commits.
    pub commit_interval: Option<Duration>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            layout: Layout::Local {
                partitions: DEFAULT_PARTITIONS,
            },
            commit_interval: Some(Duration::from_secs(1)),
        }
    }
}

/// A connection that reconnects after the server went away.
struct Conn {
    config: Config,
    client: Option<Client>,
}

impl Conn {
    fn get(&mut self) -> Result<&mut Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            self.client = Some(self.config.connect(NoTls)?);
        }
        self.client.as_mut().ok_or(Error::Poisoned)
    }
}

struct WriterState {
    conn: Conn,
    in_tx: bool,
    /// Systems locked and checked by the open transaction.
    touched: HashSet<String>,
    systems: HashMap<String, SystemState>,
    scratch: Scratch,
    frames: u64,
    last_commit: Instant,
    commit_interval: Option<Duration>,
}

/// The index in PostgreSQL: see the module documentation. `Send + Sync`.
pub struct PostgresIndex {
    f: Fields,
    writer: Mutex<WriterState>,
    reader: Mutex<Conn>,
}

impl std::fmt::Debug for PostgresIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresIndex").finish_non_exhaustive()
    }
}

/// The advisory lock key of a system.
fn system_lock(system: &str) -> i64 {
    xxh3_64(system.as_bytes()) as i64
}

impl PostgresIndex {
    /// Opens the index in the database at `url` (`postgres://USER@HOST:PORT/DB`), creating
    /// or migrating its schema.
    pub fn open(url: &str) -> Result<PostgresIndex> {
        Self::open_with(url, &PgOptions::default())
    }

    /// Opens the index at `url` to search it, changing nothing: a database without the
    /// origami schema is [`Error::NoIndex`], one of an older or newer schema version an
    /// error (a writer's [`PostgresIndex::open`] migrates). Its writer connects only if
    /// [`Index::add_frame`] is called.
    pub fn open_read_only(url: &str) -> Result<PostgresIndex> {
        let config = url::config(url)?;
        let mut r = Conn {
            config: config.clone(),
            client: None,
        };
        match schema::version(r.get()?)? {
            0 => {
                return Err(Error::NoIndex {
                    path: url::redact(url).into(),
                })
            }
            SCHEMA_VERSION => {}
            v => {
                return Err(Error::PostgresUrl {
                    url: url::redact(url),
                    reason: format!(
                        "the database's origami schema is version {v}, this program's is                          {SCHEMA_VERSION} (open it once with a writer of this version:                          `origami index`, `crawl-fleet`)"
                    ),
                })
            }
        }
        Self::with_conns(
            Conn {
                config,
                client: None,
            },
            r,
            None,
        )
    }

    fn with_conns(
        writer: Conn,
        reader: Conn,
        commit_interval: Option<Duration>,
    ) -> Result<PostgresIndex> {
        let f = fields_of(&tantivy_schema())?;
        Ok(PostgresIndex {
            f,
            writer: Mutex::new(WriterState {
                conn: writer,
                in_tx: false,
                touched: HashSet::new(),
                systems: HashMap::new(),
                scratch: Scratch::default(),
                frames: 0,
                last_commit: Instant::now(),
                commit_interval,
            }),
            reader: Mutex::new(reader),
        })
    }

    /// [`PostgresIndex::open`] with options.
    pub fn open_with(url: &str, options: &PgOptions) -> Result<PostgresIndex> {
        let config = url::config(url)?;
        let mut w = Conn {
            config: config.clone(),
            client: None,
        };
        schema::migrate(w.get()?, &options.layout)?;
        Self::with_conns(
            w,
            Conn {
                config,
                client: None,
            },
            options.commit_interval,
        )
    }

    /// Sets up the two-server layout on loopback or anywhere: partitions `remote` of
    /// `partitions` live on the server at `shard_url`, as `postgres_fdw` foreign tables of
    /// the coordinator at `url` (server name `origami_shard`). Creates the remote tables
    /// and their indexes, the extension, server and user mapping, then opens the index.
    /// `shard_host`, `shard_port`, `shard_db`, `shard_user` are how the coordinator reaches
    /// the shard.
    pub fn create_sharded(
        url: &str,
        shard_url: &str,
        partitions: u32,
        remote: &[u32],
        options: &PgOptions,
    ) -> Result<PostgresIndex> {
        let shard: Config = url::config(shard_url)?;
        let mut sc = shard.connect(NoTls)?;
        for r in remote {
            sc.batch_execute(&schema::remote_partition_sql(partitions, *r))?;
        }
        let host = match shard.get_hosts().first() {
            Some(::postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_string(),
        };
        let port = shard.get_ports().first().copied().unwrap_or(5432);
        let db = shard.get_dbname().unwrap_or("postgres").to_string();
        let user = shard.get_user().unwrap_or("postgres").to_string();
        let mut c: Client = url::config(url)?.connect(NoTls)?;
        c.batch_execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")?;
        // CREATE SERVER takes no parameters; its options are quoted literals.
        let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
        c.batch_execute(&format!(
            "DO $origami$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_foreign_server WHERE srvname = 'origami_shard') THEN
                 CREATE SERVER origami_shard FOREIGN DATA WRAPPER postgres_fdw
                   OPTIONS (host {}, port {}, dbname {}, fetch_size '10000', batch_size '1000');
                 CREATE USER MAPPING FOR CURRENT_USER SERVER origami_shard OPTIONS (user {});
               END IF;
             END $origami$;",
            lit(&host),
            lit(&port.to_string()),
            lit(&db),
            lit(&user)
        ))?;
        let layout = Layout::Sharded {
            partitions,
            remote: remote
                .iter()
                .map(|r| (*r, "origami_shard".to_string()))
                .collect(),
        };
        Self::open_with(
            url,
            &PgOptions {
                layout,
                ..options.clone()
            },
        )
    }

    fn lock(&self) -> Result<MutexGuard<'_, WriterState>> {
        self.writer.lock().map_err(|_| Error::Poisoned)
    }

    fn reader(&self) -> Result<MutexGuard<'_, Conn>> {
        self.reader.lock().map_err(|_| Error::Poisoned)
    }

    /// The systems of the committed index and the time of each one's latest frame.
    pub fn systems(&self) -> Result<Vec<(String, OffsetDateTime)>> {
        let mut r = self.reader()?;
        let rows = r.get()?.query(
            "SELECT system, max(ts) FROM origami_frames GROUP BY system ORDER BY system",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), from_ns(ns_of_sql(row.get(1)))))
            .collect())
    }

    /// Item versions in the committed index.
    pub fn num_versions(&self) -> Result<u64> {
        let mut r = self.reader()?;
        let n: i64 = r
            .get()?
            .query_one("SELECT count(*) FROM origami_items", &[])?
            .get(0);
        Ok(n as u64)
    }

    /// Frames added since the last commit.
    pub fn uncommitted_frames(&self) -> Result<u64> {
        Ok(self.lock()?.frames)
    }

    /// Commits when frames wait and the commit interval has passed; returns whether it did.
    pub fn commit_due(&self) -> Result<bool> {
        let mut st = self.lock()?;
        if !commit_is_due(&st) {
            return Ok(false);
        }
        commit_locked(&mut st)?;
        Ok(true)
    }

    /// The state of `system` in the database (current versions' keys and hashes, frames).
    fn load_state(client: &mut Client, system: &str) -> Result<SystemState> {
        let mut st = SystemState::default();
        let row = client.query_one(
            "SELECT count(*), coalesce(max(ts), 0) FROM origami_frames WHERE system = $1",
            &[&system],
        )?;
        st.frames = row.get::<_, i64>(0) as u64;
        st.last_ts = ns_of_sql(row.get(1));
        for row in client.query(
            "SELECT key_id, content_hash, kind FROM origami_items \
             WHERE system = $1 AND valid_to = $2",
            &[&system, &OPEN_SQL],
        )? {
            let k: &[u8] = row.get(0);
            let Ok(b) = <[u8; 16]>::try_from(k) else {
                return Err(Error::Corrupt {
                    system: system.to_string(),
                    message: format!("key id of {} bytes", k.len()),
                });
            };
            let kind: &str = row.get(2);
            st.items.insert(
                u128::from_be_bytes(b),
                Current {
                    content_hash: row.get::<_, i64>(1) as u64,
                    seen: 0,
                    section: Section::from_name(kind).map_or(NO_SECTION, |s| s as u8),
                },
            );
        }
        Ok(st)
    }

    /// Locks `system` for the open transaction and makes sure the cached state is the
    /// database's (another writer may have added frames since). When another writer holds
    /// the lock, what this transaction wrote is committed first (releasing its locks), and
    /// the wait happens in a new transaction holding nothing: no deadlock can form.
    fn take_system(st: &mut WriterState, system: &str) -> Result<SystemState> {
        if !st.touched.contains(system) {
            let key = system_lock(system);
            let got: bool = st
                .conn
                .get()?
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key])?
                .get(0);
            if !got {
                if !st.touched.is_empty() {
                    commit_locked(st)?;
                    st.conn.get()?.batch_execute("BEGIN")?;
                    st.in_tx = true;
                }
                st.conn
                    .get()?
                    .execute("SELECT pg_advisory_xact_lock($1)", &[&key])?;
            }
            let client = st.conn.get()?;
            let row = client.query_one(
                "SELECT count(*), coalesce(max(ts), 0) FROM origami_frames WHERE system = $1",
                &[&system],
            )?;
            let (n, last) = (row.get::<_, i64>(0) as u64, ns_of_sql(row.get(1)));
            let fresh = st
                .systems
                .get(system)
                .is_some_and(|s| s.frames == n && s.last_ts == last);
            if !fresh {
                let loaded = Self::load_state(client, system)?;
                st.systems.insert(system.to_string(), loaded);
            }
            st.touched.insert(system.to_string());
        }
        Ok(st.systems.remove(system).unwrap_or_default())
    }

    fn add_locked(&self, st: &mut WriterState, frame: &Frame) -> Result<IndexStats> {
        let system = frame.system();
        let ts = to_ns(frame.meta.timestamp);
        if !st.in_tx {
            st.conn.get()?.batch_execute("BEGIN")?;
            st.in_tx = true;
        }
        let mut state = Self::take_system(st, system)?;
        if state.frames > 0 && ts <= state.last_ts {
            st.systems.insert(system.to_string(), state);
            return Ok(IndexStats {
                system: system.to_string(),
                items: frame.item_count() as u64,
                stale: true,
                ..IndexStats::default()
            });
        }
        state.generation = state.generation.wrapping_add(1);
        let mut plan = diff_frame(&self.f, frame, &mut state, &mut st.scratch, ts);
        let rows: Vec<_> = plan.docs.iter().map(|d| row_of(&self.f, d)).collect();
        plan.docs.clear();
        let client = st.conn.get()?;
        let mut written = 0u64;
        if !plan.closes.is_empty() {
            let keys: Vec<Vec<u8>> = plan.closes.iter().map(|k| key_bytes(*k)).collect();
            written += client.execute(
                "UPDATE origami_items SET valid_to = $1 \
                 WHERE system = $2 AND valid_to = $3 AND key_id = ANY($4)",
                &[&ns_sql(ts), &system, &OPEN_SQL, &keys],
            )?;
        }
        written += copy_rows(client, &rows)?;
        let record = FrameVersion {
            system: system.to_string(),
            hostname: plan.host.clone(),
            timestamp: frame.meta.timestamp,
            items: plan.stats.items,
            added: plan.stats.added,
            changed: plan.stats.changed,
            removed: plan.stats.removed,
            duration_ms: frame.meta.duration_ms,
            source: frame.meta.source.clone(),
            errors: frame.meta.errors.clone(),
        };
        let json = serde_json::to_string(&record).unwrap_or_default();
        client.execute(
            "INSERT INTO origami_frames (system, ts, host, os, record) VALUES ($1, $2, $3, $4, $5)",
            &[
                &system,
                &ns_sql(ts),
                &ingest::no_nul(&plan.host),
                &ingest::no_nul(&plan.os),
                &ingest::no_nul(&json),
            ],
        )?;
        written += 1;
        let (mut stats, _) = plan.apply(&mut state, ts);
        stats.docs_written = written;
        st.systems.insert(system.to_string(), state);
        st.frames += 1;
        Ok(stats)
    }

    fn search_inner(
        &self,
        client: &mut Client,
        query: &str,
        options: &SearchOptions,
    ) -> Result<SearchResults> {
        let started = Instant::now();
        let parsed = ql::parse(query)?;
        let as_of = parsed.as_of.or(options.as_of);
        let now = options.now.unwrap_or_else(OffsetDateTime::now_utc);
        let reference = as_of.unwrap_or(now);
        let now_ns = to_ns(reference);
        let mut terms = SnippetTerms::default();
        let mut q = query::SqlQuery::default();
        let (cond, score) = match &parsed.root {
            Some(n) => {
                let c = q.compile(self.f.key, n, &mut terms, false)?;
                (c.cond, c.score)
            }
            None => ("true".to_string(), "1.0".to_string()),
        };
        let time = q.time_filter(as_of, parsed.changed, reference);
        let sql = format!(
            "SELECT system, kind, host, os, pkg, valid_from, ({score})::float4, key_id, valid_to, \
             ports, users FROM origami_items WHERE {time} AND {cond}"
        );
        let rows = client.query(&sql, &q.refs())?;
        // Rows by index; machines keep the best `hits_per_machine` rows.
        let k = options.hits_per_machine;
        let mut machines: HashMap<String, MachineAcc<usize>> = HashMap::new();
        let mut facets: [HashMap<String, u64>; 6] = Default::default();
        let mut multi: Vec<&str> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let system: &str = row.get(0);
            let kind: &str = row.get(1);
            let vf = ns_of_sql(row.get(5));
            let s: f32 = row.get(6);
            let w = kind_weight(kind) * recency_weight(now_ns, vf);
            let acc = match machines.get_mut(system) {
                Some(a) => a,
                None => machines.entry(system.to_string()).or_default(),
            };
            acc.push(s.max(0.01) * w, i, k);
            let pkg: Option<&str> = row.get(4);
            for (j, v) in [Some(kind), Some(row.get(2)), Some(row.get(3)), pkg]
                .into_iter()
                .enumerate()
            {
                if let (Some(v), Some(m)) = (v, facets.get_mut(j)) {
                    count(m, v);
                }
            }
            // Ports and users: each distinct value of the row once, as the tantivy
            // collector counts its multi-valued columns.
            for (j, col) in [(4, 9), (5, 10)] {
                multi.clear();
                multi.extend(row.get::<_, Vec<&str>>(col));
                multi.sort_unstable();
                multi.dedup();
                if let Some(m) = facets.get_mut(j) {
                    for v in &multi {
                        count(m, v);
                    }
                }
            }
        }
        let mut ranked: Vec<(String, f32, MachineAcc<usize>)> = machines
            .into_iter()
            .map(|(name, acc)| {
                let score = acc.best * (1.0 + 0.1 * (acc.count as f32).ln());
                (name, score, acc)
            })
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let total_machines = ranked.len() as u64;
        let mut out = Vec::new();
        for (system, score, mut acc) in ranked.into_iter().skip(options.offset).take(options.limit)
        {
            acc.top.sort_by(|a, b| b.0.total_cmp(&a.0));
            let top: Vec<(f32, &::postgres::Row)> = acc
                .top
                .iter()
                .filter_map(|(s, i)| rows.get(*i).map(|r| (*s, r)))
                .collect();
            let hits = self.load_hits(client, &system, &top, &terms)?;
            let (mut hostname, mut os) = (String::new(), String::new());
            if let Some((_, row)) = top.last() {
                hostname = row.get(2);
                os = row.get(3);
            }
            if hits.is_empty() {
                if let Some(row) = acc.any.and_then(|i| rows.get(i)) {
                    hostname = row.get(2);
                    os = row.get(3);
                }
            }
            out.push(MachineResult {
                system,
                hostname,
                os,
                score,
                matched: acc.count,
                hits,
            });
        }
        let limit = options.facet_limit;
        let [kind, host, os, package, port, user] = facets.map(|m| {
            let mut v: Vec<(String, u64)> = m.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(limit);
            v
        });
        Ok(SearchResults {
            query: parsed
                .root
                .as_ref()
                .map(|n| n.to_string())
                .unwrap_or_default(),
            machines: out,
            total_machines,
            total_hits: rows.len() as u64,
            facets: Facets {
                kind,
                host,
                os,
                package,
                port,
                user,
            },
            took: started.elapsed(),
        })
    }

    /// The hits of a machine's best rows: their stored items read back (one query) for
    /// the key and snippet.
    fn load_hits(
        &self,
        client: &mut Client,
        system: &str,
        top: &[(f32, &::postgres::Row)],
        terms: &SnippetTerms,
    ) -> Result<Vec<Hit>> {
        if top.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&[u8]> = top.iter().map(|(_, r)| r.get::<_, &[u8]>(7)).collect();
        let froms: Vec<i64> = top.iter().map(|(_, r)| r.get::<_, i64>(5)).collect();
        let found = client.query(
            "SELECT key_id, valid_from, item FROM origami_items WHERE system = $1 \
             AND (key_id, valid_from) IN (SELECT * FROM unnest($2::bytea[], $3::bigint[]))",
            &[&system, &keys, &froms],
        )?;
        let items: HashMap<(&[u8], i64), &str> = found
            .iter()
            .map(|r| {
                (
                    (r.get::<_, &[u8]>(0), r.get::<_, i64>(1)),
                    r.get::<_, &str>(2),
                )
            })
            .collect();
        let corrupt = |message: String| Error::Corrupt {
            system: system.to_string(),
            message,
        };
        let mut hits = Vec::with_capacity(top.len());
        for (score, row) in top {
            let kind: &str = row.get(1);
            let vf: i64 = row.get(5);
            let key: &[u8] = row.get(7);
            let vt = ns_of_sql(row.get(8));
            let section = Section::from_name(kind)
                .ok_or_else(|| corrupt(format!("unknown kind `{kind}`")))?;
            let json = items.get(&(key, vf)).copied().unwrap_or_default();
            let key = snippet::item_key(section, json)
                .map_err(|e| corrupt(format!("{kind} item: {e}")))?;
            hits.push(Hit {
                kind: section,
                key,
                snippet: snippet::snippet(section, json, terms),
                score: *score,
                valid_from: from_ns(ns_of_sql(vf)),
                valid_to: (vt != OPEN).then(|| from_ns(vt)),
            });
        }
        Ok(hits)
    }
}

/// One more item under facet value `v`.
fn count(m: &mut HashMap<String, u64>, v: &str) {
    match m.get_mut(v) {
        Some(c) => *c += 1,
        None => {
            m.insert(v.to_string(), 1);
        }
    }
}

fn commit_is_due(st: &WriterState) -> bool {
    st.frames > 0
        && st
            .commit_interval
            .is_some_and(|i| st.last_commit.elapsed() >= i)
}

fn commit_locked(st: &mut WriterState) -> Result<()> {
    if st.in_tx {
        let r = st.conn.get().and_then(|c| Ok(c.batch_execute("COMMIT")?));
        st.in_tx = false;
        st.touched.clear();
        if let Err(e) = r {
            st.systems.clear();
            st.frames = 0;
            return Err(e);
        }
    }
    st.frames = 0;
    st.last_commit = Instant::now();
    Ok(())
}

/// After a failed statement: the open transaction is rolled back, and every cached state
/// is dropped (reloaded from the database when next needed).
fn roll_back(st: &mut WriterState) {
    if st.in_tx {
        if let Some(c) = st.conn.client.as_mut() {
            if !c.is_closed() {
                let _ = c.batch_execute("ROLLBACK");
            }
        }
    }
    st.in_tx = false;
    st.touched.clear();
    st.systems.clear();
    st.frames = 0;
}

impl Index for PostgresIndex {
    fn add_frame(&self, frame: &Frame) -> Result<IndexStats> {
        if frame.system().is_empty() {
            return Err(Error::NoSystem);
        }
        let mut st = self.lock()?;
        if commit_is_due(&st) {
            commit_locked(&mut st)?;
        }
        match self.add_locked(&mut st, frame) {
            Ok(s) => Ok(s),
            Err(e) => {
                roll_back(&mut st);
                Err(e)
            }
        }
    }

    fn commit(&self) -> Result<()> {
        let mut st = self.lock()?;
        commit_locked(&mut st)
    }
}

impl Search for PostgresIndex {
    fn search(&self, query: &str, options: &SearchOptions) -> Result<SearchResults> {
        let mut r = self.reader()?;
        let client = r.get()?;
        self.search_inner(client, query, options)
    }

    fn history(&self, system: &str) -> Result<Vec<FrameVersion>> {
        let mut r = self.reader()?;
        let rows = r.get()?.query(
            "SELECT record FROM origami_frames WHERE system = $1 ORDER BY ts",
            &[&system],
        )?;
        rows.iter()
            .map(|row| {
                let json: &str = row.get(0);
                serde_json::from_str(json).map_err(|e| Error::Corrupt {
                    system: system.to_string(),
                    message: format!("frame record: {e}"),
                })
            })
            .collect()
    }

    fn changes(&self, system: &str, from: OffsetDateTime, to: OffsetDateTime) -> Result<FrameDiff> {
        if from > to {
            return Err(Error::BadRange { from, to });
        }
        let (a, b) = (to_ns(from), to_ns(to));
        let mut r = self.reader()?;
        let rows = r.get()?.query(
            "SELECT kind, valid_from, valid_to, item FROM origami_items WHERE system = $1 \
             AND ((valid_from > $2 AND valid_from <= $3) OR (valid_to > $2 AND valid_to <= $3))",
            &[&system, &ns_sql(a), &ns_sql(b)],
        )?;
        let mut old = Frame::default();
        let mut new = Frame::default();
        for row in &rows {
            let Some(section) = Section::from_name(row.get(0)) else {
                continue;
            };
            let vf = ns_of_sql(row.get(1));
            let vt = ns_of_sql(row.get(2));
            let json: &str = row.get(3);
            for (frame, at) in [(&mut old, a), (&mut new, b)] {
                if vf <= at && at < vt {
                    crate::read::push_item(frame, section, json).map_err(|e| Error::Corrupt {
                        system: system.to_string(),
                        message: format!("{section} item: {e}"),
                    })?;
                }
            }
        }
        Ok(new.diff(&old))
    }
}
