//! Crawling a fleet in parallel: a bounded pool of crawler threads, results handed to the
//! caller's sink (the indexer) on the calling thread as they arrive.
//!
//! One broken machine never stops the fleet: a crawl that fails, or even panics, becomes a
//! failed entry in the report and the other machines go on.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use origami_frame::{Frame, FrameWriter};
use origami_index::Index;
use origami_introspect::{CrawlOptions, Crawler, Target};
use serde::Serialize;

use crate::manifest::{MachineSpec, Manifest};

/// What a fleet crawl did, machine by machine.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetReport {
    /// Machines in the manifest.
    pub machines: usize,
    /// Machines that gave a frame.
    pub crawled: usize,
    /// Items in all frames.
    pub items: usize,
    /// Per machine: the errors recorded in its frame (features that failed).
    pub feature_errors: BTreeMap<String, Vec<String>>,
    /// Machines that gave no frame at all, with why.
    pub failed: BTreeMap<String, String>,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
}

impl FleetReport {
    /// Machines per second over the whole run.
    pub fn machines_per_second(&self) -> f64 {
        self.machines as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The outcome of crawling one machine.
pub type CrawlOutcome = Result<Frame, String>;

/// Crawls `specs` with at most `jobs` threads. `crawl` runs on the pool; `sink` runs on the
/// calling thread, once per machine, in completion order, and may fail a machine (for
/// example when indexing its frame fails) by returning an error.
pub fn crawl_fleet<C, S>(specs: &[MachineSpec], jobs: usize, crawl: C, mut sink: S) -> FleetReport
where
    C: Fn(&MachineSpec) -> CrawlOutcome + Sync,
    S: FnMut(&MachineSpec, &CrawlOutcome) -> Result<(), String>,
{
    let start = Instant::now();
    let mut report = FleetReport {
        machines: specs.len(),
        ..FleetReport::default()
    };
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, CrawlOutcome)>();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, specs.len().max(1)) {
            let tx = tx.clone();
            let (next, crawl) = (&next, &crawl);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(spec) = specs.get(i) else { break };
                let outcome = catch_unwind(AssertUnwindSafe(|| crawl(spec))).unwrap_or_else(|p| {
                    let why = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    Err(format!("crawler panicked: {why}"))
                });
                if tx.send((i, outcome)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (i, outcome) in rx {
            let spec = &specs[i];
            let sunk = sink(spec, &outcome);
            match (outcome, sunk) {
                (Ok(frame), Ok(())) => {
                    report.crawled += 1;
                    report.items += frame.item_count();
                    if !frame.meta.errors.is_empty() {
                        report.feature_errors.insert(
                            spec.name.clone(),
                            frame
                                .meta
                                .errors
                                .iter()
                                .map(|e| format!("{}: {}", e.feature, e.message))
                                .collect(),
                        );
                    }
                }
                (Ok(_), Err(why)) | (Err(why), _) => {
                    report.failed.insert(spec.name.clone(), why);
                }
            }
        }
    });
    report.elapsed = start.elapsed();
    report
}

/// How the machines of a fleet are crawled.
#[derive(Debug, Clone, Default)]
pub struct FleetOptions {
    /// Threads crawling at once.
    pub jobs: usize,
    /// Hash regular files (sha256).
    pub hash: bool,
    /// Skip the per-kernel discovery cache of memory crawls.
    pub no_cache: bool,
    /// Extra config globs (e.g. `/home/*/.bash_history`), besides every text file of `/etc`.
    pub config_globs: Vec<String>,
}

impl FleetOptions {
    /// The crawl options for one machine named `name` (the manifest's name is its system id).
    pub fn crawl_options(&self, name: Option<&str>) -> Result<CrawlOptions, String> {
        let mut b = CrawlOptions::builder().hash_files(self.hash);
        // The library uses a discovery cache only in a folder its caller names: the CLI
        // names the conventional one unless told not to.
        if !self.no_cache {
            if let Some(dir) = origami_introspect::linux::cache::default_dir() {
                b = b.cache_dir(dir);
            }
        }
        for g in &self.config_globs {
            b = b.config_glob(g.clone());
        }
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            b = b.system(n);
        }
        b.build().map_err(|e| e.to_string())
    }
}

/// The crawl target of a manifest entry.
pub fn target_of(spec: &MachineSpec) -> Target {
    let mut t = Target::default();
    for d in &spec.disks {
        t = t.with_disk(d);
    }
    if let Some(m) = &spec.memory {
        t = t.with_memory(m);
    }
    if let Some(s) = &spec.system_map {
        t = t.with_system_map(s);
    }
    t
}

/// Crawls one manifest entry.
pub fn crawl_machine(spec: &MachineSpec, options: &FleetOptions) -> CrawlOutcome {
    let crawler = Crawler::new(options.crawl_options(Some(&spec.name))?);
    crawler.crawl(&target_of(spec)).map_err(|e| e.to_string())
}

/// Crawls a fleet in parallel and indexes each frame as it arrives, then commits.
/// `on_machine` is called after each machine (for a progress bar); `frames_out`, when
/// given, receives every frame as JSON Lines.
pub fn crawl_fleet_into<I, W>(
    manifest: &Manifest,
    index: &I,
    options: &FleetOptions,
    mut frames_out: Option<&mut FrameWriter<W>>,
    mut on_machine: impl FnMut(&MachineSpec, &CrawlOutcome),
) -> Result<FleetReport, String>
where
    I: Index + ?Sized,
    W: std::io::Write,
{
    let report = crawl_fleet(
        &manifest.machines,
        options.jobs,
        |spec| crawl_machine(spec, options),
        |spec, outcome| {
            on_machine(spec, outcome);
            let Ok(frame) = outcome else { return Ok(()) };
            if let Some(w) = frames_out.as_deref_mut() {
                w.write(frame).map_err(|e| format!("writing frames: {e}"))?;
            }
            let stats = index
                .add_frame(frame)
                .map_err(|e| format!("indexing: {e}"))?;
            tracing::info!(
                "{}: {} items ({} new, {} changed, {} removed)",
                spec.name,
                stats.items,
                stats.added,
                stats.changed,
                stats.removed
            );
            Ok(())
        },
    );
    index
        .commit()
        .map_err(|e| format!("committing the index: {e}"))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> MachineSpec {
        MachineSpec {
            name: name.into(),
            disks: vec![],
            memory: None,
            system_map: None,
        }
    }

    #[test]
    fn a_failing_or_panicking_machine_does_not_stop_the_fleet() {
        let specs: Vec<_> = (0..20).map(|i| spec(&format!("m{i}"))).collect();
        let mut seen = Vec::new();
        let report = crawl_fleet(
            &specs,
            3,
            |s| match s.name.as_str() {
                "m3" => Err("disk unreadable".into()),
                "m7" => panic!("boom"),
                n => Ok(Frame::new(n)),
            },
            |s, _| {
                seen.push(s.name.clone());
                Ok(())
            },
        );
        assert_eq!(seen.len(), 20);
        assert_eq!(report.crawled, 18);
        assert_eq!(report.failed.len(), 2);
        assert!(report.failed["m7"].contains("boom"));
        assert_eq!(report.failed["m3"], "disk unreadable");
    }
}
