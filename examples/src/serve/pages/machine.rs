//! A machine's page (`/machines/NAME`): its header (OS, last crawl, duration, errors, the
//! `as_of` picker), its [history](super::history), a [diff](super::diff) when `from`/`to`
//! are given, and its state by section (an overview, one section paged, one item in full).

use std::collections::HashMap;

use origami_frame::Section;
use serde_json::Value;
use time::OffsetDateTime;

use super::super::api::{self, Fail, MachineView, Row};
use super::super::html::{Html, Url};
use super::super::http::{Request, Response};
use super::super::App;
use super::search::mark_terms;
use super::{ago, cell, clip, error_page, layout, local_input, took, when};

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
        Section::Mount => &["path", "device", "fs_type", "options", "stack"],
        Section::KernelLog => &["seq", "time", "level", "message"],
        Section::Service => &[
            "name",
            "display_name",
            "start_type",
            "service_type",
            "state",
            "account",
            "path",
        ],
        _ => &[],
    }
}

fn field_text(section: Section, col: &str, v: &Value) -> String {
    match (section, col, v) {
        (Section::File, "mode", Value::Number(n)) => n
            .as_u64()
            .map_or_else(|| n.to_string(), |m| format!("{m:o}")),
        // As dmesg shows it: seconds since boot, to the microsecond.
        (Section::KernelLog, "time", Value::Number(n)) => n.as_u64().map_or_else(
            || n.to_string(),
            |ns| {
                format!(
                    "[{:5}.{:06}]",
                    ns / 1_000_000_000,
                    ns % 1_000_000_000 / 1000
                )
            },
        ),
        _ => cell(v),
    }
}

/// One line that sums an item up (its table columns).
pub(super) fn summary(section: Section, v: &Value) -> String {
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
    super::history::timeline(&mut m, &view, system);
    if diffing {
        match api::diff_range(req, &view.versions) {
            Ok((from, to)) => {
                twin = Url::new("/api/machines")
                    .name_seg(system)
                    .seg("diff")
                    .q("from", &api::rfc3339(from))
                    .q("to", &api::rfc3339(to));
                match app.index.changes(system, from, to) {
                    Ok(d) => super::diff::diff_view(&mut m, system, from, to, &d),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

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
}
