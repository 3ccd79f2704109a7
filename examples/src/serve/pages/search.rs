//! The search page (`/search?q=`) and the home page (`/`): results grouped by machine with
//! their best hits marked, "N more on this machine", the facet sidebar whose entries add or
//! remove their filter, paging. The query in the URL is the one truth: every link carries it.

use std::collections::HashMap;

use origami_index::query::{FieldName, Node};
use origami_index::{MachineResult, SearchOptions, SearchResults};
use time::OffsetDateTime;

use super::super::api::{self, Fail};
use super::super::html::{Html, Url};
use super::super::http::{Request, Response};
use super::super::App;
use super::{ago, clip, error_page, layout, when};

/// The query's positive words and values, lowercased, to mark in snippets.
pub(super) fn mark_terms(q: &str) -> Vec<String> {
    fn walk(n: &Node, out: &mut Vec<String>, depth: usize) {
        if depth > 64 {
            return;
        }
        let mut add = |s: &str| {
            for piece in s.split(['*', '?']) {
                let p = piece.trim().to_ascii_lowercase();
                if p.len() >= 2 && !out.contains(&p) {
                    out.push(p);
                }
            }
        };
        match n {
            Node::Word { text, .. } | Node::Phrase { text, .. } => add(text),
            Node::Field { field, value, .. } => {
                if !matches!(
                    field,
                    FieldName::Type | FieldName::Host | FieldName::System | FieldName::Os
                ) {
                    add(value)
                }
            }
            Node::Not(_) => {}
            Node::And(v) | Node::Or(v) => v.iter().for_each(|n| walk(n, out, depth + 1)),
        }
    }
    let mut out = Vec::new();
    if let Ok(p) = origami_index::parse_query(q) {
        if let Some(root) = &p.root {
            walk(root, &mut out, 0);
        }
    }
    out
}

/// The query's top-level clauses (split on spaces outside quotes and parentheses).
fn clauses(q: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0usize, false, None::<usize>);
    for (i, c) in q.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            c if c.is_whitespace() && !quoted && depth == 0 => {
                if let Some(s) = start.take() {
                    out.push(&q[s..i]);
                }
                continue;
            }
            _ => {}
        }
        if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(&q[s..]);
    }
    out
}

/// `field:value` for a facet entry, the value quoted when it holds anything but word
/// characters (quoted values are literal); `None` when it cannot be written (a quote).
fn facet_clause(field: &str, value: &str) -> Option<String> {
    if value.is_empty() || value.contains('"') {
        return None;
    }
    let plain = value
        .chars()
        .all(|c| c.is_alphanumeric() || ".-_:/@+~%".contains(c))
        && !value.starts_with('-');
    Some(if plain {
        format!("{field}:{value}")
    } else {
        format!("{field}:\"{value}\"")
    })
}

fn same_clause(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.replace('"', "").to_lowercase();
    norm(a) == norm(b)
}

/// The query with `clause` added, or removed when it is there; and whether it was there.
fn toggle(q: &str, clause: &str) -> (String, bool) {
    let parts = clauses(q);
    if parts.iter().any(|c| same_clause(c, clause)) {
        let kept: Vec<&str> = parts
            .into_iter()
            .filter(|c| !same_clause(c, clause))
            .collect();
        (kept.join(" "), true)
    } else if q.trim().is_empty() {
        (clause.to_string(), false)
    } else {
        (format!("{} {clause}", q.trim()), false)
    }
}

/// Carries the search's paging and time parameters into a link.
fn search_url(q: &str, req: &Request) -> Url {
    Url::new("/search")
        .q("q", q)
        .q_opt("as_of", req.param_nonempty("as_of"))
        .q_opt("hits", req.param_nonempty("hits"))
        .q_opt("limit", req.param_nonempty("limit"))
        .q_opt("facets", req.param_nonempty("facets"))
}

/// `/` and `/search?q=`.
pub fn search_page(app: &App, req: &Request) -> Response {
    let as_of = req.param_nonempty("as_of");
    let (q, options) = match api::search_request(req) {
        Ok(v) => v,
        Err(f) => return error_page(&f, req.param("q").unwrap_or("")),
    };
    if q.is_empty() {
        return home(app, as_of);
    }
    let twin = Url::new("/api/search")
        .q("q", &q)
        .q_opt("limit", req.param_nonempty("limit"))
        .q_opt("hits", req.param_nonempty("hits"))
        .q_opt("offset", req.param_nonempty("offset"))
        .q_opt("facets", req.param_nonempty("facets"))
        .q_opt("as_of", as_of);
    let mut m = Html::new();
    let r = match api::search(app, &q, &options) {
        Ok(r) => r,
        Err(Fail::Query(q, e)) => {
            // The caret under the column, as the terminal shows it.
            let pad = " ".repeat(e.column.saturating_sub(1));
            m.lit("<div class=\"qerr\" role=\"alert\"><p>The query has a mistake at column ")
                .show(e.column)
                .lit(":</p><pre>")
                .text(&q)
                .lit("\n")
                .text(&pad)
                .lit("<span class=\"caret\">^</span> ")
                .text(&e.message)
                .lit("</pre></div>");
            return Response::html(400, layout(&q, &q, as_of, Some(&twin), m));
        }
        Err(f) => return error_page(&f, &q),
    };
    let now = OffsetDateTime::now_utc();
    let fresh: HashMap<String, OffsetDateTime> = app
        .index
        .systems()
        .unwrap_or_default()
        .into_iter()
        .collect();
    m.lit("<p class=\"summary\"><b>")
        .show(r.total_hits)
        .lit("</b> matches on <b>")
        .show(r.total_machines)
        .lit("</b> machines · ")
        .text(&format!("{:.1} ms", r.took.as_secs_f64() * 1000.0));
    if let Some(newest) = fresh.values().max() {
        m.lit(" · newest frame ")
            .tag("span")
            .attr("title", &api::rfc3339(*newest))
            .open()
            .text(&ago(now, *newest))
            .close("span");
    }
    m.lit("</p>");
    if let Some(t) = options.as_of {
        m.lit("<p class=\"asof\">The fleet as it was at ")
            .text(&when(t))
            .lit(" · ")
            .link(&Url::new("/search").q("q", &q), "see now")
            .lit("</p>");
    }
    m.lit("<div class=\"layout\">");
    facets(&mut m, &q, &r, req);
    m.lit("<section class=\"results\">");
    if r.machines.is_empty() {
        m.lit("<p class=\"none\">No machine matches ")
            .tag("code")
            .open()
            .text(&q)
            .close("code")
            .lit(". Try fewer words, a wildcard (<code>web-*</code>), or ")
            .link(&Url::new("/machines"), "the fleet")
            .lit(".</p>");
    }
    let terms = mark_terms(&q);
    for mr in &r.machines {
        machine_result(&mut m, app, mr, &q, &terms, &fresh, now, &options, req);
    }
    pager(&mut m, &q, &r, &options, req);
    m.lit("</section></div>");
    Response::html(200, layout(&q, &q, as_of, Some(&twin), m))
}

#[allow(clippy::too_many_arguments)]
fn machine_result(
    m: &mut Html,
    app: &App,
    mr: &MachineResult,
    q: &str,
    terms: &[String],
    fresh: &HashMap<String, OffsetDateTime>,
    now: OffsetDateTime,
    options: &SearchOptions,
    req: &Request,
) {
    let as_of = req.param_nonempty("as_of");
    let murl = Url::new("/machines")
        .name_seg(&mr.system)
        .q_opt("as_of", as_of);
    m.lit("<article class=\"machine\"><header class=\"mhead\">")
        .tag("a")
        .class("mname")
        .href(&murl)
        .open()
        .text(&mr.system)
        .close("a");
    if !mr.hostname.is_empty() && !mr.hostname.eq_ignore_ascii_case(&mr.system) {
        m.elem_c("span", "host", &mr.hostname);
    }
    if !mr.os.is_empty() {
        m.elem_c("span", "os", &mr.os);
    }
    if let Some(t) = fresh.get(&mr.system) {
        m.tag("span")
            .class("age")
            .attr("title", &api::rfc3339(*t))
            .open()
            .text("crawled ")
            .text(&ago(now, *t))
            .close("span");
        // A machine whose last crawl failed in part says so, in red, with the reason.
        if let Ok(Some((_, v))) = api::latest_record(app, &mr.system, *t) {
            if let Some(e) = v.errors.first() {
                let what = if v.errors.len() == 1 {
                    "crawl error".to_string()
                } else {
                    format!("{} crawl errors", v.errors.len())
                };
                m.tag("span")
                    .class("bad")
                    .attr(
                        "title",
                        &format!("{}: {}", e.feature, clip(&e.message, 2000)),
                    )
                    .open()
                    .text(&what)
                    .close("span");
            }
        }
    }
    m.tag("span")
        .class("count")
        .open()
        .show(mr.matched)
        .text(if mr.matched == 1 {
            " match"
        } else {
            " matches"
        })
        .close("span");
    m.lit("</header><ol class=\"hits\">");
    for hit in &mr.hits {
        let kind = hit.kind.name();
        let item = Url::new("/machines")
            .name_seg(&mr.system)
            .q("section", kind)
            .q("key", &hit.key)
            .q("hl", q)
            .q_opt("as_of", as_of);
        m.tag("li")
            .class("hit")
            .attr("data-machine", murl.as_str())
            .open()
            .tag("span")
            .class("kind")
            .attr("data-kind", kind)
            .open()
            .text(kind)
            .close("span")
            .tag("a")
            .class("key")
            .href(&item)
            .attr("title", &hit.key)
            .open()
            .marked(&hit.key, terms)
            .close("a");
        let snip = hit.snippet.trim();
        if !snip.is_empty() && snip != hit.key {
            m.tag("span").class("snip").attr("title", snip).open();
            // A config snippet starts with its line number: `L5: text`.
            match snip.split_once(": ") {
                Some((ln, rest))
                    if ln.len() > 1
                        && ln.starts_with('L')
                        && ln[1..].bytes().all(|b| b.is_ascii_digit()) =>
                {
                    m.elem_c("span", "ln", ln).marked(rest, terms);
                }
                _ => {
                    m.marked(snip, terms);
                }
            }
            m.lit("</span>");
        }
        m.lit("</li>");
    }
    m.lit("</ol>");
    let more = mr.matched.saturating_sub(mr.hits.len() as u64);
    if more > 0 {
        let clause = facet_clause("system", &mr.system);
        if let Some(c) = clause {
            let nq = if clauses(q).iter().any(|x| same_clause(x, &c)) {
                q.to_string()
            } else {
                format!("{} {c}", q.trim())
            };
            let u = Url::new("/search")
                .q("q", &nq)
                .q(
                    "hits",
                    &api::MAX_HITS
                        .min(options.hits_per_machine.max(5) * 10)
                        .to_string(),
                )
                .q_opt("as_of", as_of);
            m.tag("a")
                .class("more")
                .href(&u)
                .open()
                .text(&format!("+ {more} more on {}", mr.system))
                .close("a");
        } else {
            m.tag("span")
                .class("more")
                .open()
                .text(&format!("+ {more} more"))
                .close("span");
        }
    }
    m.lit("</article>");
}

fn pager(m: &mut Html, q: &str, r: &SearchResults, o: &SearchOptions, req: &Request) {
    let shown_to = (o.offset + r.machines.len()) as u64;
    if o.offset == 0 && shown_to >= r.total_machines {
        return;
    }
    m.lit("<nav class=\"pager\">");
    if o.offset > 0 {
        let prev = o.offset.saturating_sub(o.limit.max(1));
        m.link(
            &search_url(q, req).q("offset", &prev.to_string()),
            "← previous",
        );
    }
    m.tag("span")
        .open()
        .text(&format!(
            "machines {}–{} of {}",
            (o.offset + 1).min(shown_to as usize),
            shown_to,
            r.total_machines
        ))
        .close("span");
    if shown_to < r.total_machines {
        m.link(
            &search_url(q, req).q("offset", &(o.offset + o.limit.max(1)).to_string()),
            "next →",
        );
    }
    m.lit("</nav>");
}

/// A facet: its title, the query field its entries filter on, and the counts.
type FacetGroup<'a> = (&'static str, &'static str, &'a [(String, u64)]);

/// The facet sidebar: each entry adds its filter to the query, or removes it when it is
/// there.
fn facets(m: &mut Html, q: &str, r: &SearchResults, req: &Request) {
    m.lit("<aside class=\"facets\">");
    let groups: [FacetGroup<'_>; 6] = [
        ("kind", "type", &r.facets.kind),
        ("host", "host", &r.facets.host),
        ("os", "os", &r.facets.os),
        ("package", "pkg", &r.facets.package),
        ("port", "port", &r.facets.port),
        ("user", "user", &r.facets.user),
    ];
    for (title, field, values) in groups {
        if values.is_empty() {
            continue;
        }
        m.lit("<h3>").text(title).lit("</h3><ul>");
        for (value, n) in values {
            m.lit("<li>");
            match facet_clause(field, value) {
                Some(c) => {
                    let (nq, on) = toggle(q, &c);
                    let mut t = m.tag("a");
                    t = if on {
                        t.class("facet on")
                    } else {
                        t.class("facet")
                    };
                    t.href(&search_url(&nq, req))
                        .attr(
                            "title",
                            &if on {
                                format!("remove {c}")
                            } else {
                                format!("add {c}")
                            },
                        )
                        .attr("data-clause", &c)
                        .open()
                        .text(value)
                        .close("a");
                }
                None => {
                    m.elem_c("span", "facet", value);
                }
            }
            m.tag("span").class("n").open().show(*n).close("span");
            m.lit("</li>");
        }
        m.lit("</ul>");
    }
    m.lit("</aside>");
}

/// `/` with no query: the box, what the index holds, examples.
fn home(app: &App, as_of: Option<&str>) -> Response {
    let mut m = Html::new();
    let systems = app.index.systems().unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    m.lit("<section class=\"home\"><h1>Search the fleet</h1><p>")
        .show(systems.len())
        .lit(if systems.len() == 1 {
            " machine indexed"
        } else {
            " machines indexed"
        });
    if let Some(newest) = systems.iter().map(|(_, t)| *t).max() {
        m.lit(", newest frame ").text(&ago(now, newest));
    }
    m.lit(" · ")
        .link(&Url::new("/machines"), "the fleet")
        .lit("</p><p>Type what you know: an IP address, a package, a user, a port, a path. Try:</p><ul class=\"examples\">");
    for ex in crate::demo::QUERIES {
        m.lit("<li>")
            .tag("a")
            .href(&Url::new("/search").q("q", ex))
            .open()
            .tag("code")
            .open()
            .text(ex)
            .close("code")
            .close("a")
            .lit("</li>");
    }
    m.lit("</ul></section>");
    Response::html(
        200,
        layout(
            "search",
            "",
            as_of,
            Some(&Url::new("/api/search").q("q", "")),
            m,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facets_add_and_remove_their_clause() {
        assert_eq!(
            toggle("10.20.30.40", "host:web-01"),
            ("10.20.30.40 host:web-01".to_string(), false)
        );
        assert_eq!(
            toggle("10.20.30.40 host:web-01", "host:web-01"),
            ("10.20.30.40".to_string(), true)
        );
        assert_eq!(
            toggle("a os:\"debian 12\" (b OR c)", "os:\"debian 12\""),
            ("a (b OR c)".to_string(), true)
        );
        assert_eq!(facet_clause("os", "debian 12").unwrap(), "os:\"debian 12\"");
        assert_eq!(facet_clause("pkg", "libssl3").unwrap(), "pkg:libssl3");
        assert_eq!(
            facet_clause("host", "a)b").unwrap(),
            "host:\"a)b\"",
            "a parenthesis would end the value"
        );
        assert_eq!(facet_clause("host", "\"><svg onload=x>"), None);
        assert_eq!(
            clauses("  a  \"b c\" (d e) f:\"g h\" "),
            vec!["a", "\"b c\"", "(d e)", "f:\"g h\""]
        );
    }

    #[test]
    fn marked_terms_are_the_positive_words_and_values() {
        assert_eq!(
            mark_terms("10.20.30.40 type:config -host:x name:ngin* \"proxy_pass\""),
            vec!["10.20.30.40", "ngin", "proxy_pass"]
        );
        assert!(mark_terms("host:(").is_empty());
    }
}
