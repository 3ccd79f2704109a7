//! Text output for people: search results grouped by machine, facets, fleet summaries,
//! history. `--json` output bypasses this module.

use std::fmt::Write;

use origami_frame::FrameDiff;
use origami_index::{FrameVersion, SearchResults};

use origami_introspect::fleet::FleetReport;

/// Search results as a terminal page: machines like web results by site, then facets.
pub fn results(query: &str, r: &SearchResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} matching items on {} machines ({:.1} ms) for {query}",
        r.total_hits,
        r.total_machines,
        r.took.as_secs_f64() * 1000.0
    );
    for m in &r.machines {
        let _ = writeln!(
            s,
            "\n  {}  ({}, {} matches, score {:.2})",
            m.system, m.os, m.matched, m.score
        );
        for h in &m.hits {
            let _ = writeln!(s, "    {:<10} {}", h.kind.name(), h.key);
            if !h.snippet.is_empty() && h.snippet != h.key {
                let _ = writeln!(s, "               {}", h.snippet.trim());
            }
        }
        let more = m.matched.saturating_sub(m.hits.len() as u64);
        if more > 0 {
            let _ = writeln!(s, "    ... and {more} more");
        }
    }
    let facet = |name: &str, v: &[(String, u64)], s: &mut String| {
        if !v.is_empty() {
            let list: Vec<String> = v.iter().map(|(k, n)| format!("{k} ({n})")).collect();
            let _ = writeln!(s, "  {name:<8} {}", list.join(", "));
        }
    };
    if r.total_hits > 0 {
        let _ = writeln!(s, "\n  facets:");
        facet("kind", &r.facets.kind, &mut s);
        facet("host", &r.facets.host, &mut s);
        facet("os", &r.facets.os, &mut s);
        facet("package", &r.facets.package, &mut s);
        facet("port", &r.facets.port, &mut s);
        facet("user", &r.facets.user, &mut s);
    }
    s
}

/// A fleet crawl's summary.
pub fn fleet_summary(r: &FleetReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "   {} machines, {} crawled, {} items, {} failed, {:.2} s ({:.1} machines/s)",
        r.machines,
        r.crawled,
        r.items,
        r.failed.len(),
        r.elapsed.as_secs_f64(),
        r.machines_per_second()
    );
    for (m, why) in &r.failed {
        let _ = writeln!(s, "   FAILED {m}: {why}");
    }
    for m in &r.read_nothing {
        let _ = writeln!(s, "   EMPTY  {m}: no source could be read (errors below)");
    }
    for (m, errs) in &r.feature_errors {
        for e in errs {
            let _ = writeln!(s, "   error  {m}: {e}");
        }
    }
    s
}

/// A machine's frames and what changed between consecutive ones.
pub fn history(system: &str, versions: &[FrameVersion], changes: &[FrameDiff]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{system}: {} frames", versions.len());
    for (i, v) in versions.iter().enumerate() {
        let _ = writeln!(s, "  {}  {} items", v.timestamp, v.items);
        if let Some(d) = i.checked_sub(1).and_then(|j| changes.get(j)) {
            for section in origami_frame::Section::ALL {
                let c = d.counts(section);
                if c != Default::default() {
                    let _ = writeln!(
                        s,
                        "      {:<10} +{} -{} ~{}",
                        section.name(),
                        c.added,
                        c.removed,
                        c.changed
                    );
                }
            }
        }
    }
    s
}
