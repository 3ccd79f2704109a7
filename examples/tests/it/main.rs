//! The fast integration tests of the `origami` command and `origami serve`, one module per
//! former test file, in one test binary (each separate binary re-instantiated the same
//! generic code of the workspace and its dependencies). `env!("CARGO_BIN_EXE_origami")`
//! works in every module.
//!
//! Kept as binaries of their own, because they boot QEMU guests, start a browser or wait
//! minutes on servers and must keep overlapping with the other slow suites under
//! `scripts/test`: `cli_incremental`, `cli_nbd`, `cli_watch`, `serve_browser`, `serve_live`,
//! and the PostgreSQL suites (the `postgresql` binary).

#[path = "../serve_support/mod.rs"]
mod serve_support;

mod cli;
mod cli_backing;
mod cli_exit;
mod cli_limits;
mod concurrent_search;
mod serve;
mod serve_fleet;
