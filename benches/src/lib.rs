//! Shared helpers of Origami's benchmarks (the benchmarks are under `benches/`).
//!
//! ```
//! assert!(origami_benches::fixtures_hint().contains("ORIGAMI_FIXTURES"));
//! ```
#![warn(missing_docs)]

/// Where the benchmarks look for their inputs.
pub fn fixtures_hint() -> &'static str {
    "benchmarks read the shared fixtures (ORIGAMI_FIXTURES, default ../shared/fixtures)"
}
