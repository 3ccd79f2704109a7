//! The integration tests of `origami-index` that start PostgreSQL servers of their own
//! (`origami_testsupport::postgres`), one module per former test file, in one test binary:
//! its two test threads keep the servers' start-up waits overlapping.

mod pg;
mod pg_schema;
