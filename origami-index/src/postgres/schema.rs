//! The PostgreSQL schema, versioned: `origami_schema` holds the version, and each migration
//! brings it one step further inside one transaction, applied at open under an advisory
//! lock (so two processes opening a fresh database at once do not both create it).
//!
//! `origami_items` holds one row per item version, partitioned by a hash of the system id
//! (`PARTITION BY HASH (system)`), so that a system's versions live in one partition: a
//! single server has [`DEFAULT_PARTITIONS`] local partitions; a sharded layout
//! ([`crate::postgres::PostgresIndex::create_sharded`]) makes some partitions
//! `postgres_fdw` foreign tables on other servers. The same table is a Citus distributed
//! table by `SELECT create_distributed_table('origami_items', 'system')` (see
//! [`CITUS_DISTRIBUTE`]).
//!
//! Instants are nanoseconds since the epoch in `bigint`; a current version has
//! `valid_to = i64::MAX` (`OPEN_SQL`). Key ids (xxh3-128 of section and key) are 16
//! big-endian bytes. The text a tantivy document tokenises is stored as a `tsvector` made by
//! origami's own tokenizer in Rust (positions included, for phrases).

use ::postgres::Client;

use crate::Result;

/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: i32 = 1;

/// Partitions of `origami_items` on a single server.
pub const DEFAULT_PARTITIONS: u32 = 4;

/// `valid_to` of a current version, in SQL.
pub(crate) const OPEN_SQL: i64 = i64::MAX;

/// The advisory lock key that serialises migrations (`'origami'` in ASCII).
const MIGRATION_LOCK: i64 = 0x006f_7269_6761_6d69;

/// The statements of the Citus form of the schema, run on a Citus coordinator after
/// migration 1 created the (unpartitioned, see [`Layout::Citus`]) tables.
pub const CITUS_DISTRIBUTE: &str = "SELECT create_distributed_table('origami_items', 'system');\n\
     SELECT create_distributed_table('origami_frames', 'system', colocate_with => 'origami_items');";

/// How `origami_items` is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Hash partitions, all on this server.
    Local {
        /// How many.
        partitions: u32,
    },
    /// Hash partitions of which those listed live on other servers (postgres_fdw): each
    /// `(remainder, server)` partition is a foreign table on `server`, created there first.
    Sharded {
        /// How many partitions in all.
        partitions: u32,
        /// The remote ones: partition remainder and the foreign server's name.
        remote: Vec<(u32, String)>,
    },
    /// No partitions: the table is distributed by Citus instead ([`CITUS_DISTRIBUTE`]).
    Citus,
}

/// The DDL of the items table's columns, shared by the parent and a remote partition.
pub(crate) const ITEM_COLUMNS: &str = "
    system       text     NOT NULL,
    key_id       bytea    NOT NULL,
    kind         text     NOT NULL,
    host         text     NOT NULL,
    os           text     NOT NULL,
    content_hash bigint   NOT NULL,
    valid_from   bigint   NOT NULL,
    valid_to     bigint   NOT NULL,
    first        boolean  NOT NULL,
    names        text[]   NOT NULL,
    paths        text[]   NOT NULL,
    ports        text[]   NOT NULL,
    pkg          text,
    users        text[]   NOT NULL,
    exact        text[]   NOT NULL,
    tsv          tsvector NOT NULL,
    item         text     NOT NULL";

/// The indexes of an items table (`{t}` is the table).
pub(crate) const ITEM_INDEXES: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS {t}_current ON {t} (system, valid_to, key_id)",
    "CREATE INDEX IF NOT EXISTS {t}_from ON {t} (valid_from)",
    "CREATE INDEX IF NOT EXISTS {t}_to ON {t} (valid_to)",
    "CREATE INDEX IF NOT EXISTS {t}_tsv ON {t} USING gin (tsv)",
    "CREATE INDEX IF NOT EXISTS {t}_names ON {t} USING gin (names)",
    "CREATE INDEX IF NOT EXISTS {t}_paths ON {t} USING gin (paths)",
    "CREATE INDEX IF NOT EXISTS {t}_exact ON {t} USING gin (exact)",
    "CREATE INDEX IF NOT EXISTS {t}_users ON {t} USING gin (users)",
    "CREATE INDEX IF NOT EXISTS {t}_ports ON {t} USING gin (ports)",
    "CREATE INDEX IF NOT EXISTS {t}_pkg ON {t} (pkg)",
    "CREATE INDEX IF NOT EXISTS {t}_host ON {t} (host)",
];

/// The SQL of migration 1 for a layout (every name in it is a constant or a number).
pub(crate) fn migration_1(layout: &Layout) -> String {
    let mut sql = String::new();
    let partitioned = !matches!(layout, Layout::Citus);
    sql.push_str(&format!(
        "CREATE TABLE origami_items ({ITEM_COLUMNS}\n){};\n",
        if partitioned {
            " PARTITION BY HASH (system)"
        } else {
            ""
        }
    ));
    let (n, remote): (u32, &[(u32, String)]) = match layout {
        Layout::Local { partitions } => (*partitions, &[]),
        Layout::Sharded { partitions, remote } => (*partitions, remote),
        Layout::Citus => (0, &[]),
    };
    for r in 0..n {
        let t = format!("origami_items_p{r}");
        let bound = format!("FOR VALUES WITH (MODULUS {n}, REMAINDER {r})");
        match remote.iter().find(|(rr, _)| *rr == r) {
            Some((_, server)) => sql.push_str(&format!(
                "CREATE FOREIGN TABLE {t} PARTITION OF origami_items {bound} SERVER {} \
                 OPTIONS (table_name '{t}');\n",
                sql_ident(server)
            )),
            None => sql.push_str(&format!(
                "CREATE TABLE {t} PARTITION OF origami_items {bound};\n"
            )),
        }
    }
    // On a partitioned table the indexes are made on each local partition (foreign ones
    // are skipped: their server indexes them, see `remote_partition_sql`).
    for ix in ITEM_INDEXES {
        sql.push_str(&ix.replace("{t}", "origami_items"));
        sql.push_str(";\n");
    }
    sql.push_str(
        "CREATE TABLE origami_frames (
            system text   NOT NULL,
            ts     bigint NOT NULL,
            host   text   NOT NULL,
            os     text   NOT NULL,
            record text   NOT NULL,
            PRIMARY KEY (system, ts)
        );\n",
    );
    sql
}

/// The SQL that makes partition `r` of `n` on a remote server (run there, before the
/// coordinator's migration makes it a foreign partition).
pub fn remote_partition_sql(n: u32, r: u32) -> String {
    // A plain table: the coordinator routes rows to it by the hash of the system id.
    let _ = n;
    let t = format!("origami_items_p{r}");
    let mut sql = format!("CREATE TABLE IF NOT EXISTS {t} ({ITEM_COLUMNS}\n);\n");
    for ix in ITEM_INDEXES {
        sql.push_str(&ix.replace("{t}", &t));
        sql.push_str(";\n");
    }
    sql
}

/// A quoted SQL identifier (for the server names of a layout, which the caller chooses).
pub(crate) fn sql_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The origami schema version of the database (0: none), read without changing anything.
pub(crate) fn version(client: &mut Client) -> Result<i32> {
    let exists: bool = client
        .query_one("SELECT to_regclass('origami_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_opt("SELECT max(version) FROM origami_schema", &[])?
        .and_then(|r| r.get::<_, Option<i32>>(0))
        .unwrap_or(0))
}

/// Applies the migrations the database lacks; returns the version found before.
pub(crate) fn migrate(client: &mut Client, layout: &Layout) -> Result<i32> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS origami_schema (version integer NOT NULL)")?;
    let found: i32 = tx
        .query_opt("SELECT version FROM origami_schema", &[])?
        .map_or(0, |r| r.get(0));
    if found > SCHEMA_VERSION {
        return Err(crate::Error::Corrupt {
            system: String::new(),
            message: format!(
                "the database's origami schema is version {found}, newer than this program's \
                 {SCHEMA_VERSION}"
            ),
        });
    }
    if found < 1 {
        tx.batch_execute(&migration_1(layout))?;
    }
    // Later migrations go here, each `if found < N { ... }`.
    if found == 0 {
        tx.execute(
            "INSERT INTO origami_schema (version) VALUES ($1)",
            &[&SCHEMA_VERSION],
        )?;
    } else if found < SCHEMA_VERSION {
        tx.execute("UPDATE origami_schema SET version = $1", &[&SCHEMA_VERSION])?;
    }
    tx.commit()?;
    Ok(found)
}
