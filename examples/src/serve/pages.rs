//! The pages: search (`/`, `/search?q=`), the fleet (`/machines`), a machine
//! (`/machines/NAME`, with `as_of`, `from`/`to`, `section`, `key`), the login form. Every
//! page is built with [`Html`], so whatever a guest put in its frame is shown as text; every
//! state is in the URL; nothing needs JavaScript.

use std::collections::{BTreeSet, HashMap};

use origami_frame::Section;
use origami_index::query::{FieldName, Node};
use origami_index::{MachineResult, SearchOptions, SearchResults};
use serde_json::Value;
use time::OffsetDateTime;

use super::api::{self, DiffRows, Fail, MachineSummary, MachineView, Row};
use super::html::{Html, Url};
use super::http::{Request, Response};
use super::App;

/// How long ago `t` was, for people: `40 s ago`, `3 min ago`, `2 h ago`, `5 d ago`.
pub fn ago(now: OffsetDateTime, t: OffsetDateTime) -> String {
    let s = (now - t).whole_seconds();
    let (future, s) = (s < 0, s.unsigned_abs());
    let text = match s {
        0..=1 => return "just now".to_string(),
        2..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A crawl's duration: `16 ms`, `2.4 s`.
fn took(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// A short, readable UTC time: `2026-11-20 10:00:05 UTC`.
pub fn when(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The value of a `datetime-local` input for `t` (UTC, seconds).
fn local_input(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The page around `main`: header with the search box and the syntax, the JSON twin in the
/// footer.
fn layout(title: &str, q: &str, as_of: Option<&str>, twin: Option<&Url>, main: Html) -> String {
    let mut h = Html::new();
    h.lit("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
        .lit("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        .lit("<meta name=\"referrer\" content=\"no-referrer\"><title>")
        .text(title)
        .lit(" · origami</title><link rel=\"stylesheet\" href=\"/static/style.css\">")
        .lit("<script src=\"/static/app.js\" defer></script></head><body>")
        .lit("<header class=\"top\"><a class=\"brand\" href=\"/\">origami</a>")
        .lit("<form class=\"box\" action=\"/search\" method=\"get\" role=\"search\">");
    h.tag("input")
        .attr("type", "search")
        .attr("name", "q")
        .attr("id", "q")
        .attr("value", q)
        .attr("placeholder", "an IP, a package, a user, a port, a path…")
        .attr("aria-label", "query")
        .attr("autocomplete", "off")
        .attr("spellcheck", "false")
        .void();
    if let Some(t) = as_of {
        h.tag("input")
            .attr("type", "hidden")
            .attr("name", "as_of")
            .attr("value", t)
            .void();
    }
    h.lit("<button type=\"submit\">Search</button></form>")
        .lit("<nav><a href=\"/machines\">fleet</a>");
    syntax_help(&mut h);
    h.lit("</nav></header><main>");
    h.push(main);
    h.lit("</main><footer>");
    if let Some(t) = twin {
        h.lit("JSON: ")
            .tag("a")
            .class("twin")
            .href(t)
            .open()
            .text(t.as_str())
            .close("a")
            .lit(" · ");
    }
    h.lit("origami ")
        .text(crate::VERSION)
        .lit(" · keys: <kbd>/</kbd> search, <kbd>j</kbd>/<kbd>k</kbd> move, <kbd>Enter</kbd> open</footer></body></html>\n");
    h.finish()
}

/// The query syntax, one click away (a `<details>`: no script needed); examples run when
/// clicked.
fn syntax_help(h: &mut Html) {
    h.lit("<details class=\"syntax\"><summary>? syntax</summary><div class=\"pop\">")
        .lit("<p>Words and <code>\"phrases\"</code> search everything; an IP address, a path or a version is one word. ")
        .lit("<code>-word</code> excludes, <code>OR</code> between two terms, <code>*</code> and <code>?</code> are wildcards.</p><table>");
    let rows: [(&str, &str); 12] = [
        ("host:web-*", "host name or system id"),
        (
            "type:process",
            "item kind: os file config package user process connection module",
        ),
        (
            "name:nginx",
            "a process, package, user, module or file name",
        ),
        ("path:/etc/ssh/*", "a file or config path"),
        ("port:22", "a connection's local or remote port"),
        ("pkg:openssl", "an installed package"),
        ("user:alice", "an account, a process or file owner"),
        ("os:debian", "the operating system"),
        ("key:/etc/hosts", "an item's key, exactly"),
        ("system:web-01", "the stable system id"),
        ("as_of:2026-11-20T10:00Z", "the fleet as it was then"),
        ("changed:24h", "items that changed in the last 24 h"),
    ];
    for (ex, what) in rows {
        h.lit("<tr><td>")
            .tag("a")
            .href(&Url::new("/search").q("q", ex))
            .open()
            .tag("code")
            .open()
            .text(ex)
            .close("code")
            .close("a")
            .lit("</td><td>")
            .text(what)
            .lit("</td></tr>");
    }
    h.lit("</table><p>Examples: ");
    for (i, ex) in crate::demo::QUERIES.iter().enumerate() {
        if i > 0 {
            h.lit(" · ");
        }
        h.tag("a")
            .href(&Url::new("/search").q("q", ex))
            .open()
            .tag("code")
            .open()
            .text(ex)
            .close("code")
            .close("a");
    }
    h.lit("</p></div></details>");
}

/// A page that says what went wrong (never a blank page).
pub fn error_page(f: &Fail, q: &str) -> Response {
    let mut m = Html::new();
    m.lit("<div class=\"error\" role=\"alert\"><pre>")
        .text(&f.message())
        .lit("</pre></div>");
    Response::html(f.status(), layout("error", q, None, None, m))
}

/// The query's positive words and values, lowercased, to mark in snippets.
fn mark_terms(q: &str) -> Vec<String> {
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
    let groups: [FacetGroup<'_>; 4] = [
        ("kind", "type", &r.facets.kind),
        ("host", "host", &r.facets.host),
        ("os", "os", &r.facets.os),
        ("package", "pkg", &r.facets.package),
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

/// `/machines`: every machine, stale and failing ones first unless sorted otherwise.
pub fn fleet_page(app: &App, req: &Request) -> Response {
    let mut list = match api::fleet(app) {
        Ok(l) => l,
        Err(f) => return error_page(&f, ""),
    };
    let sort = req.param("sort").unwrap_or("attention");
    let key_attention = |m: &MachineSummary| (m.latest.errors.is_empty(), -m.age_seconds);
    match sort {
        "name" => list.sort_by(|a, b| a.system.cmp(&b.system)),
        "age" => list.sort_by_key(|m| -m.age_seconds),
        "items" => list.sort_by_key(|m| std::cmp::Reverse(m.latest.items)),
        "duration" => list.sort_by_key(|m| std::cmp::Reverse(m.latest.duration_ms)),
        _ => list.sort_by(|a, b| {
            key_attention(a)
                .cmp(&key_attention(b))
                .then_with(|| a.system.cmp(&b.system))
        }),
    }
    let now = OffsetDateTime::now_utc();
    let mut m = Html::new();
    let failing = list.iter().filter(|m| !m.latest.errors.is_empty()).count();
    m.lit("<h1>Fleet</h1><p class=\"summary\"><b>")
        .show(list.len())
        .lit("</b> machines");
    if failing > 0 {
        m.lit(" · <span class=\"bad\">")
            .show(failing)
            .lit(" with crawl errors</span>");
    }
    m.lit("</p><table class=\"fleet\"><thead><tr>");
    let cols: [(&str, &str); 9] = [
        ("machine", "name"),
        ("os", ""),
        ("last crawl", "age"),
        ("age", "age"),
        ("duration", "duration"),
        ("items", "items"),
        ("frames", ""),
        ("errors", "attention"),
        ("sources", ""),
    ];
    for (title, key) in cols {
        m.lit("<th>");
        if key.is_empty() {
            m.text(title);
        } else {
            m.link(&Url::new("/machines").q("sort", key), title);
        }
        m.lit("</th>");
    }
    m.lit("</tr></thead><tbody>");
    for s in &list {
        let stale = s.age_seconds > 86_400;
        let mut tr = m.tag("tr");
        tr = match (!s.latest.errors.is_empty(), stale) {
            (true, _) => tr.class("err"),
            (false, true) => tr.class("stale"),
            _ => tr,
        };
        tr.open();
        m.lit("<td>")
            .link(&Url::new("/machines").name_seg(&s.system), &s.system);
        if !s.hostname.is_empty() && !s.hostname.eq_ignore_ascii_case(&s.system) {
            m.elem_c("span", "host", &s.hostname);
        }
        m.lit("</td><td>").text(&s.os).lit("</td><td>");
        m.tag("span")
            .attr("title", &api::rfc3339(s.last_frame))
            .open()
            .text(&when(s.last_frame))
            .close("span");
        m.lit("</td><td>").text(&ago(now, s.last_frame));
        if stale {
            m.lit(" <span class=\"bad\">stale</span>");
        }
        m.lit("</td><td class=\"num\">")
            .text(&took(s.latest.duration_ms))
            .lit("</td><td class=\"num\">")
            .show(s.latest.items)
            .lit("</td><td class=\"num\">")
            .show(s.frames)
            .lit("</td><td>");
        for e in s.latest.errors.iter().take(3) {
            m.tag("div")
                .class("bad")
                .attr("title", &e.message)
                .open()
                .text(&e.feature)
                .text(": ")
                .text(&clip(&e.message, 120))
                .close("div");
        }
        if s.latest.errors.len() > 3 {
            m.text(&format!("+ {} more", s.latest.errors.len() - 3));
        }
        m.lit("</td><td class=\"src\">");
        for src in s.latest.source.iter().take(4) {
            m.tag("div")
                .attr("title", src)
                .open()
                .text(&clip(src, 60))
                .close("div");
        }
        m.lit("</td></tr>");
    }
    m.lit("</tbody></table>");
    if list.is_empty() {
        m.lit("<p class=\"none\">The index holds no frames yet.</p>");
    }
    if let Some(board) = &app.status {
        m.push(super::schedule::status_html(&board.snapshot()));
    }
    Response::html(
        200,
        layout("fleet", "", None, Some(&Url::new("/api/machines")), m),
    )
}

/// Cuts `s` to `max` characters with an ellipsis.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A cell's text: strings as they are, numbers, lists joined by spaces.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(" "),
        Value::Object(_) => v.to_string(),
    }
}

/// The columns a section's table shows (every field shows on the item's own view).
fn columns(section: Section) -> &'static [&'static str] {
    match section {
        Section::File => &["path", "type", "mode", "uid", "gid", "size", "link_target"],
        Section::Config => &["path", "truncated"],
        Section::Package => &["name", "version", "arch", "manager"],
        Section::User => &["name", "uid", "gid", "home", "shell"],
        Section::Process => &["pid", "ppid", "name", "cmdline", "uid", "state"],
        Section::Connection => &[
            "protocol",
            "local_address",
            "local_port",
            "remote_address",
            "remote_port",
            "state",
            "pid",
        ],
        Section::Module => &["name", "size", "state"],
        _ => &[],
    }
}

fn field_text(section: Section, col: &str, v: &Value) -> String {
    match (section, col, v) {
        (Section::File, "mode", Value::Number(n)) => n
            .as_u64()
            .map_or_else(|| n.to_string(), |m| format!("{m:o}")),
        _ => cell(v),
    }
}

/// One line that sums an item up (its table columns).
fn summary(section: Section, v: &Value) -> String {
    let cols = columns(section);
    let parts: Vec<String> = if cols.is_empty() {
        v.as_object()
            .map(|o| o.values().take(6).map(cell).collect())
            .unwrap_or_default()
    } else {
        cols.iter()
            .map(|c| field_text(section, c, &v[*c]))
            .filter(|s| !s.is_empty())
            .collect()
    };
    clip(&parts.join("  "), 300)
}

/// Rows to show per page of one section.
const PAGE_ROWS: usize = 200;
/// Rows of each section on the machine's overview.
const OVERVIEW_ROWS: usize = 10;
/// Most diff entries shown per section.
const DIFF_ROWS: usize = 500;
/// Most frames on the timeline and in the frame table.
const MAX_FRAMES_SHOWN: usize = 200;

/// Processes in tree order (parents before children) with their depth. Guest data: pid
/// cycles and missing parents are handled, the walk visits each row once.
fn process_tree(rows: &[Row]) -> Vec<(usize, usize)> {
    let pid = |v: &Value, k: &str| v[k].as_u64();
    let by_pid: HashMap<u64, usize> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, (_, v))| pid(v, "pid").map(|p| (p, i)))
        .collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, (_, v)) in rows.iter().enumerate() {
        match (pid(v, "ppid"), pid(v, "pid")) {
            (Some(pp), Some(p)) if pp != p && by_pid.contains_key(&pp) => {
                children.entry(by_pid[&pp]).or_default().push(i)
            }
            _ => roots.push(i),
        }
    }
    let mut seen = vec![false; rows.len()];
    let mut out = Vec::with_capacity(rows.len());
    let visit = |start: usize, out: &mut Vec<(usize, usize)>, seen: &mut [bool]| {
        let mut stack = vec![(start, 0usize)];
        while let Some((i, d)) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            out.push((i, d));
            if let Some(c) = children.get(&i) {
                for &ch in c.iter().rev() {
                    stack.push((ch, d + 1));
                }
            }
        }
    };
    for r in roots {
        visit(r, &mut out, &mut seen);
    }
    // Rows in a ppid cycle have no root: show them too.
    for i in 0..rows.len() {
        if !seen[i] {
            visit(i, &mut out, &mut seen);
        }
    }
    out
}

/// The depth classes of the process tree (indentation without inline style).
const DEPTH_CLASSES: [&str; 9] = ["d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8"];

fn table(
    m: &mut Html,
    section: Section,
    rows: &[Row],
    order: &[(usize, usize)],
    murl: &dyn Fn() -> Url,
    terms: &[String],
) {
    let cols = columns(section);
    m.lit("<div class=\"scroll\"><table class=\"items\"><thead><tr>");
    if cols.is_empty() {
        m.lit("<th>key</th><th>item</th>");
    }
    for c in cols {
        m.lit("<th>").text(c).lit("</th>");
    }
    m.lit("</tr></thead><tbody>");
    for &(i, depth) in order {
        let Some((key, v)) = rows.get(i) else {
            continue;
        };
        m.lit("<tr>");
        let link = murl().q("section", section.name()).q("key", key);
        if cols.is_empty() {
            m.lit("<td>").link(&link, key).lit("</td><td>");
            m.text(&summary(section, v)).lit("</td>");
        }
        for (ci, c) in cols.iter().enumerate() {
            let text = field_text(section, c, &v[*c]);
            let mut td = m.tag("td");
            if section == Section::Process && ci == 2 {
                td = td.class(DEPTH_CLASSES[depth.min(DEPTH_CLASSES.len() - 1)]);
            }
            if text.chars().count() > 60 {
                td = td.attr("title", &clip(&text, 4000));
            }
            td.open();
            if ci == 0 {
                m.tag("a")
                    .href(&link)
                    .open()
                    .marked(&clip(&text, 300), terms)
                    .close("a");
            } else {
                m.marked(&clip(&text, 300), terms);
            }
            m.lit("</td>");
        }
        m.lit("</tr>");
    }
    m.lit("</tbody></table></div>");
}

/// `/machines/NAME`: the machine's state by section, its frames, a diff, `as_of`.
pub fn machine_page(app: &App, req: &Request, system: &str) -> Response {
    let as_of_raw = req.param_nonempty("as_of");
    let as_of = match as_of_raw.map(|s| (s, api::parse_time(s))) {
        None => None,
        Some((_, Some(t))) => Some(t),
        Some((s, None)) => {
            return error_page(
                &Fail::BadRequest(format!(
                    "as_of={s:?} is not a time: use RFC 3339, e.g. 2026-11-20T10:00Z"
                )),
                "",
            )
        }
    };
    let view = match api::machine(app, system, as_of) {
        Ok(v) => v,
        Err(f) => return error_page(&f, ""),
    };
    let section = req.param_nonempty("section").and_then(Section::from_name);
    let key = req.param("key");
    let hl = req.param("hl").map(mark_terms).unwrap_or_default();
    let diffing = req.param_nonempty("from").is_some() || req.param_nonempty("to").is_some();
    let base = || {
        Url::new("/machines")
            .name_seg(system)
            .q_opt("as_of", as_of_raw)
    };

    let mut twin = Url::new("/api/machines").name_seg(system);
    let mut m = Html::new();
    machine_header(&mut m, &view, system);
    timeline(&mut m, &view, system);
    if diffing {
        match api::diff_range(req, &view.versions) {
            Ok((from, to)) => {
                twin = Url::new("/api/machines")
                    .name_seg(system)
                    .seg("diff")
                    .q("from", &api::rfc3339(from))
                    .q("to", &api::rfc3339(to));
                match app.index.changes(system, from, to) {
                    Ok(d) => diff_view(&mut m, system, from, to, &d),
                    Err(e) => return error_page(&Fail::from(e), ""),
                }
            }
            Err(f) => return error_page(&f, ""),
        }
    } else {
        twin = twin.q_opt("as_of", as_of_raw);
    }
    state_view(&mut m, &view, section, key, &hl, req, &base);
    Response::html(200, layout(system, "", None, Some(&twin), m))
}

fn machine_header(m: &mut Html, view: &MachineView, system: &str) {
    let now = OffsetDateTime::now_utc();
    let f = &view.frame;
    let v = &view.versions[view.current];
    m.lit("<h1 class=\"mtitle\">").text(system);
    if !v.hostname.is_empty() && !v.hostname.eq_ignore_ascii_case(system) {
        m.elem_c("span", "host", &v.hostname);
    }
    m.lit("</h1><p class=\"summary\">");
    let os = &f.os;
    let os_text: Vec<&str> = [
        os.pretty_name.as_deref().or(os.name.as_deref()),
        os.kernel.as_deref(),
        os.arch.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !os_text.is_empty() {
        m.elem_c("span", "os", &os_text.join(" · ")).lit(" · ");
    }
    let latest = view.current + 1 == view.versions.len();
    m.text(if latest { "last crawl " } else { "frame of " })
        .tag("span")
        .attr("title", &api::rfc3339(v.timestamp))
        .open()
        .text(&when(v.timestamp))
        .close("span")
        .lit(" (")
        .text(&ago(now, v.timestamp))
        .lit(") · crawl took ")
        .text(&took(v.duration_ms))
        .lit(" · ")
        .show(v.items)
        .lit(" items · ")
        .show(view.versions.len())
        .lit(if view.versions.len() == 1 {
            " frame"
        } else {
            " frames"
        })
        .lit("</p>");
    if !v.source.is_empty() {
        m.lit("<p class=\"src\">read from ");
        for (i, s) in v.source.iter().take(8).enumerate() {
            if i > 0 {
                m.lit(", ");
            }
            m.elem("code", s);
        }
        m.lit("</p>");
    }
    if !v.errors.is_empty() {
        m.lit("<div class=\"errors\" role=\"alert\"><h3>Crawl errors</h3><ul>");
        for e in v.errors.iter().take(50) {
            m.lit("<li><b>")
                .text(&e.feature)
                .lit("</b> ")
                .text(&clip(&e.message, 2000))
                .lit("</li>");
        }
        m.lit("</ul></div>");
    }
    if let Some(t) = view.as_of {
        m.lit("<p class=\"asof\">Viewing the machine as of ")
            .text(&when(t))
            .lit(" · ")
            .link(&Url::new("/machines").name_seg(system), "see the latest")
            .lit("</p>");
    }
    // The as_of picker: a GET form, so it works without script.
    m.tag("form")
        .class("asof-form")
        .attr("method", "get")
        .url_attr("action", &Url::new("/machines").name_seg(system))
        .open()
        .lit("<label>as of (UTC) ");
    m.tag("input")
        .attr("type", "datetime-local")
        .attr("name", "as_of")
        .attr("step", "1")
        .attr("value", &local_input(view.as_of.unwrap_or(v.timestamp)))
        .void();
    m.lit("</label> <button type=\"submit\">view</button></form>");
}

/// The frames on a time axis (SVG, one dot each, its size by the changes it brought), then
/// the frames as a table with a form to diff any two.
fn timeline(m: &mut Html, view: &MachineView, system: &str) {
    let vs = &view.versions;
    let first_shown = vs.len().saturating_sub(MAX_FRAMES_SHOWN);
    let shown = &vs[first_shown..];
    let (Some(t0), Some(t1)) = (shown.first(), shown.last()) else {
        return;
    };
    let span = (t1.timestamp - t0.timestamp).as_seconds_f64();
    let (w, pad) = (800.0, 16.0);
    m.lit("<section class=\"frames\"><h2>History</h2>")
        .lit("<svg class=\"timeline\" viewBox=\"0 0 800 44\" role=\"img\" aria-label=\"frames over time\">")
        .lit("<line class=\"axis\" x1=\"16\" y1=\"18\" x2=\"784\" y2=\"18\"></line>");
    for (i, v) in shown.iter().enumerate() {
        let x = if span > 0.0 {
            pad + (v.timestamp - t0.timestamp).as_seconds_f64() / span * (w - 2.0 * pad)
        } else {
            w / 2.0
        };
        let changes = v.added + v.removed + v.changed;
        let r = 3.0 + ((changes as f64) + 1.0).log2().min(6.0);
        let current = first_shown + i == view.current;
        m.tag("a")
            .href(
                &Url::new("/machines")
                    .name_seg(system)
                    .q("as_of", &api::rfc3339(v.timestamp)),
            )
            .open();
        let c = m.tag("circle").num("cx", x).num("cy", 18.0).num("r", r);
        let c = if current {
            c.class("dot cur")
        } else if !v.errors.is_empty() {
            c.class("dot bad")
        } else {
            c.class("dot")
        };
        c.open()
            .lit("<title>")
            .text(&format!(
                "{} · {} items · +{} −{} ~{}",
                when(v.timestamp),
                v.items,
                v.added,
                v.removed,
                v.changed
            ))
            .lit("</title></circle></a>");
    }
    m.tag("text")
        .num("x", pad)
        .num("y", 40.0)
        .class("tl")
        .open()
        .text(&when(t0.timestamp))
        .close("text");
    if shown.len() > 1 {
        m.tag("text")
            .num("x", w - pad)
            .num("y", 40.0)
            .class("tl end")
            .open()
            .text(&when(t1.timestamp))
            .close("text");
    }
    m.lit("</svg>");

    // Diff any two: radio buttons in a GET form.
    let n = vs.len();
    let (def_from, def_to) = (n.saturating_sub(2), n - 1);
    m.tag("form")
        .class("difform")
        .attr("method", "get")
        .url_attr("action", &Url::new("/machines").name_seg(system))
        .open()
        .lit("<table class=\"ftable\"><thead><tr><th>from</th><th>to</th><th>frame</th><th>items</th><th>changes</th><th>crawl</th><th>errors</th></tr></thead><tbody>");
    for (i, v) in vs.iter().enumerate().skip(first_shown).rev() {
        let ts = api::rfc3339(v.timestamp);
        let row = m.tag("tr");
        let row = if i == view.current {
            row.class("cur")
        } else {
            row
        };
        row.open().lit("<td>");
        m.tag("input")
            .attr("type", "radio")
            .attr("name", "from")
            .attr("value", &ts)
            .attr("aria-label", "diff from this frame")
            .flag("checked", i == def_from)
            .void()
            .lit("</td><td>");
        m.tag("input")
            .attr("type", "radio")
            .attr("name", "to")
            .attr("value", &ts)
            .attr("aria-label", "diff to this frame")
            .flag("checked", i == def_to)
            .void()
            .lit("</td><td>")
            .tag("a")
            .class("asof-link")
            .href(&Url::new("/machines").name_seg(system).q("as_of", &ts))
            .open()
            .text(&when(v.timestamp))
            .close("a")
            .lit("</td><td class=\"num\">")
            .show(v.items)
            .lit("</td><td class=\"num\"><span class=\"add\">+")
            .show(v.added)
            .lit("</span> <span class=\"rem\">−")
            .show(v.removed)
            .lit("</span> <span class=\"chg\">~")
            .show(v.changed)
            .lit("</span>");
        if i > 0 {
            m.lit(" ").link(
                &Url::new("/machines")
                    .name_seg(system)
                    .q("from", &api::rfc3339(vs[i - 1].timestamp))
                    .q("to", &ts),
                "diff",
            );
        }
        m.lit("</td><td class=\"num\">")
            .text(&took(v.duration_ms))
            .lit("</td><td>");
        if !v.errors.is_empty() {
            m.tag("span")
                .class("bad")
                .open()
                .show(v.errors.len())
                .close("span");
        }
        m.lit("</td></tr>");
    }
    m.lit("</tbody></table>");
    if n > 1 {
        m.lit("<button type=\"submit\">diff the two frames</button>");
    }
    m.lit("</form>");
    if first_shown > 0 {
        m.lit("<p class=\"note\">")
            .show(first_shown)
            .lit(" older frames are not shown; the JSON twin lists them all.</p>");
    }
    m.lit("</section>");
}

/// The changed fields of an item: each field whose value differs, old struck.
fn changed_fields(m: &mut Html, old: &Value, new: &Value) {
    let empty = serde_json::Map::new();
    let (o, n) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    for k in keys.into_iter().take(32) {
        let (a, b) = (
            o.get(k).unwrap_or(&Value::Null),
            n.get(k).unwrap_or(&Value::Null),
        );
        if a == b {
            continue;
        }
        m.lit("<div class=\"field\"><span class=\"fname\">")
            .text(k)
            .lit("</span> ");
        let (sa, sb) = (cell(a), cell(b));
        if sa.contains('\n') || sb.contains('\n') {
            // Text content: the lines only in the old, then the lines only in the new.
            let la: BTreeSet<&str> = sa.lines().collect();
            let lb: BTreeSet<&str> = sb.lines().collect();
            m.lit("<pre class=\"ldiff\">");
            for l in sa.lines().filter(|l| !lb.contains(l)).take(100) {
                m.lit("<del>− ").text(l).lit("</del>\n");
            }
            for l in sb.lines().filter(|l| !la.contains(l)).take(100) {
                m.lit("<ins>+ ").text(l).lit("</ins>\n");
            }
            m.lit("</pre>");
        } else {
            m.elem("del", &clip(&sa, 500))
                .lit(" → ")
                .elem("ins", &clip(&sb, 500));
        }
        m.lit("</div>");
    }
}

fn diff_view(
    m: &mut Html,
    system: &str,
    from: OffsetDateTime,
    to: OffsetDateTime,
    d: &origami_frame::FrameDiff,
) {
    m.lit("<section class=\"diff\"><h2>What changed from ")
        .text(&when(from))
        .lit(" to ")
        .text(&when(to))
        .lit("</h2>");
    let all = api::diff_sections(d);
    if all
        .iter()
        .all(|s| s.added.is_empty() && s.removed.is_empty() && s.changed.is_empty())
    {
        m.lit("<p class=\"none\">Nothing changed.</p>");
    }
    for DiffRows {
        section,
        added,
        removed,
        changed,
    } in &all
    {
        if added.is_empty() && removed.is_empty() && changed.is_empty() {
            continue;
        }
        let s = *section;
        m.tag("h3")
            .attr("data-section", s.name())
            .open()
            .text(s.name())
            .lit(" <span class=\"add\">+")
            .show(added.len())
            .lit("</span> <span class=\"rem\">−")
            .show(removed.len())
            .lit("</span> <span class=\"chg\">~")
            .show(changed.len())
            .lit("</span></h3><ul class=\"dlist\">");
        let mut budget = DIFF_ROWS;
        for (k, v) in added.iter().take(budget) {
            m.lit("<li class=\"add\"><span class=\"sign\">+</span> ")
                .elem_c("span", "dkey", k)
                .lit(" ")
                .elem_c("span", "dsum", &summary(s, v))
                .lit("</li>");
        }
        budget = budget.saturating_sub(added.len());
        for (k, v) in removed.iter().take(budget) {
            m.lit("<li class=\"rem\"><span class=\"sign\">−</span> ")
                .elem_c("span", "dkey", k)
                .lit(" ")
                .elem_c("span", "dsum", &summary(s, v))
                .lit("</li>");
        }
        budget = budget.saturating_sub(removed.len());
        for (k, old, new) in changed.iter().take(budget) {
            m.lit("<li class=\"chg\"><span class=\"sign\">~</span> ")
                .elem_c("span", "dkey", k);
            changed_fields(m, old, new);
            m.lit("</li>");
        }
        m.lit("</ul>");
        let total = added.len() + removed.len() + changed.len();
        if total > DIFF_ROWS {
            m.lit("<p class=\"note\">")
                .show(total - DIFF_ROWS)
                .lit(" more changes in ")
                .text(s.name())
                .lit(": see ")
                .link(
                    &Url::new("/api/machines")
                        .name_seg(system)
                        .seg("diff")
                        .q("from", &api::rfc3339(from))
                        .q("to", &api::rfc3339(to)),
                    "the JSON",
                )
                .lit("</p>");
        }
    }
    m.lit("</section>");
}

#[allow(clippy::too_many_arguments)]
fn state_view(
    m: &mut Html,
    view: &MachineView,
    section: Option<Section>,
    key: Option<&str>,
    hl: &[String],
    req: &Request,
    base: &dyn Fn() -> Url,
) {
    let sections = api::sections(&view.frame);
    m.lit("<section class=\"state\"><h2>State</h2><nav class=\"tabs\">");
    let tab = m.tag("a").href(&base());
    let tab = if section.is_none() {
        tab.class("on")
    } else {
        tab
    };
    tab.open().text("overview").close("a");
    for (s, rows) in &sections {
        let t = m.tag("a").href(&base().q("section", s.name()));
        let t = if section == Some(*s) {
            t.class("on")
        } else {
            t
        };
        t.open()
            .text(s.name())
            .lit(" <span class=\"n\">")
            .show(rows.len())
            .lit("</span>")
            .close("a");
    }
    m.lit("</nav>");

    // One item in full.
    if let (Some(s), Some(k)) = (section, key) {
        let found = sections
            .iter()
            .find(|(x, _)| *x == s)
            .and_then(|(_, rows)| rows.iter().find(|(rk, _)| rk == k));
        match found {
            Some((k, v)) => item_view(m, s, k, v, hl),
            None => {
                m.lit("<p class=\"none\">No ")
                    .text(s.name())
                    .lit(" item ")
                    .elem("code", k)
                    .lit(" in this frame.</p>");
            }
        }
        m.lit("</section>");
        return;
    }

    match section {
        None => {
            let os = serde_json::to_value(&view.frame.os).unwrap_or(Value::Null);
            if let Some(o) = os.as_object().filter(|o| !o.is_empty()) {
                m.lit("<h3>os</h3><dl class=\"kv\">");
                for (k, v) in o {
                    m.elem("dt", k).elem("dd", &cell(v));
                }
                m.lit("</dl>");
            }
            for (s, rows) in &sections {
                if rows.is_empty() {
                    continue;
                }
                m.tag("h3")
                    .attr("id", s.name())
                    .open()
                    .text(s.name())
                    .lit(" <span class=\"n\">")
                    .show(rows.len())
                    .lit("</span></h3>");
                let order: Vec<(usize, usize)> =
                    (0..rows.len().min(OVERVIEW_ROWS)).map(|i| (i, 0)).collect();
                table(m, *s, rows, &order, base, hl);
                if rows.len() > OVERVIEW_ROWS {
                    m.tag("a")
                        .class("more")
                        .href(&base().q("section", s.name()))
                        .open()
                        .text(&format!("all {} {} items →", rows.len(), s.name()))
                        .close("a");
                }
            }
        }
        Some(s) => {
            let rows = sections
                .iter()
                .find(|(x, _)| *x == s)
                .map(|(_, r)| r.as_slice())
                .unwrap_or(&[]);
            let offset = req
                .param("offset")
                .and_then(|o| o.parse::<usize>().ok())
                .unwrap_or(0)
                .min(rows.len());
            let order: Vec<(usize, usize)> = if s == Section::Process {
                process_tree(rows)
            } else {
                (0..rows.len()).map(|i| (i, 0)).collect()
            };
            let page: Vec<(usize, usize)> =
                order.into_iter().skip(offset).take(PAGE_ROWS).collect();
            table(m, s, rows, &page, base, hl);
            if rows.len() > PAGE_ROWS {
                m.lit("<nav class=\"pager\">");
                if offset > 0 {
                    m.link(
                        &base()
                            .q("section", s.name())
                            .q("offset", &offset.saturating_sub(PAGE_ROWS).to_string()),
                        "← previous",
                    );
                }
                m.tag("span")
                    .open()
                    .text(&format!(
                        "{}–{} of {}",
                        offset + 1,
                        (offset + PAGE_ROWS).min(rows.len()),
                        rows.len()
                    ))
                    .close("span");
                if offset + PAGE_ROWS < rows.len() {
                    m.link(
                        &base()
                            .q("section", s.name())
                            .q("offset", &(offset + PAGE_ROWS).to_string()),
                        "next →",
                    );
                }
                m.lit("</nav>");
            }
        }
    }
    m.lit("</section>");
}

/// One item with every field; a config file's text with line numbers and the query marked.
fn item_view(m: &mut Html, s: Section, key: &str, v: &Value, hl: &[String]) {
    m.tag("h3")
        .class("item")
        .open()
        .text(s.name())
        .lit(" ")
        .elem("code", key)
        .close("h3")
        .lit("<dl class=\"kv\">");
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            if k == "content" {
                continue;
            }
            m.elem("dt", k).lit("<dd>");
            m.marked(&clip(&field_text(s, k, val), 20_000), hl);
            m.lit("</dd>");
        }
    }
    m.lit("</dl>");
    if let Some(text) = v.get("content").and_then(Value::as_str) {
        m.lit("<pre class=\"content\">");
        for (n, line) in text.lines().enumerate().take(20_000) {
            m.tag("span")
                .class("ln")
                .open()
                .show(n + 1)
                .close("span")
                .marked(line, hl)
                .lit("\n");
        }
        m.lit("</pre>");
    }
}

/// The login form (when the server was started with `--token`).
pub fn login_page(status: u16, message: Option<&str>) -> Response {
    let mut m = Html::new();
    m.lit("<section class=\"login\"><h1>Sign in</h1>");
    if let Some(msg) = message {
        m.elem_c("p", "bad", msg);
    }
    m.lit("<form method=\"post\" action=\"/login\"><label>Access token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus></label> <button type=\"submit\">Sign in</button></form>")
        .lit("<p class=\"note\">The token is the one <code>origami serve --token</code> was started with. Scripts send it as <code>Authorization: Bearer TOKEN</code>.</p></section>");
    Response::html(status, layout("sign in", "", None, None, m))
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

    #[test]
    fn process_tree_survives_cycles_and_orphans() {
        let row = |pid: u64, ppid: u64| {
            (
                pid.to_string(),
                serde_json::json!({"pid": pid, "ppid": ppid}),
            )
        };
        let rows = vec![
            row(1, 0),
            row(5, 1),
            row(6, 5),
            row(7, 8),
            row(8, 7),
            row(9, 42),
        ];
        let t = process_tree(&rows);
        assert_eq!(t.len(), rows.len());
        assert_eq!(&t[..3], &[(0, 0), (1, 1), (2, 2)]);
        let seen: BTreeSet<usize> = t.iter().map(|(i, _)| *i).collect();
        assert_eq!(seen.len(), rows.len());
    }

    #[test]
    fn ages_read_like_people_say_them() {
        let t = OffsetDateTime::UNIX_EPOCH;
        let s = |n: i64| ago(t + time::Duration::seconds(n), t);
        assert_eq!(s(0), "just now");
        assert_eq!(s(40), "40 s ago");
        assert_eq!(s(150), "2 min ago");
        assert_eq!(s(3 * 3600), "3 h ago");
        assert_eq!(s(5 * 86_400), "5 d ago");
        assert_eq!(s(-30), "in 30 s");
    }
}
