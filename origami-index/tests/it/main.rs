//! The integration tests of `origami-index` that need no PostgreSQL server, one module per
//! former test file, in one test binary (one codegen of the crate's generic code instead of
//! one per file). The PostgreSQL ones are the `postgresql` binary.

mod crash;
mod readers;
mod search;
