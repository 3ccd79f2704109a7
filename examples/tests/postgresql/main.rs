//! The integration tests of the `origami` command against PostgreSQL indexes (servers
//! started by the tests, `origami_testsupport::postgres`), one module per former test file,
//! in one test binary: its two test threads keep the servers' waits overlapping.

#![cfg(feature = "postgres")]

#[path = "../serve_support/mod.rs"]
mod serve_support;

mod cli_pg;
mod cli_pg_concurrent;
mod cli_pg_fleets;
