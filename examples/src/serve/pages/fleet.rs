//! The fleet page (`/machines`): every machine with its OS, last crawl, age, duration,
//! items and errors, stale and failing machines first; with a manifest, the crawl schedule.

use time::OffsetDateTime;

use super::super::api::{self, MachineSummary};
use super::super::html::{Html, Url};
use super::super::http::{Request, Response};
use super::super::App;
use super::{ago, clip, error_page, layout, took, when};

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
        m.push(super::super::schedule::status_html(&board.snapshot()));
    }
    Response::html(
        200,
        layout("fleet", "", None, Some(&Url::new("/api/machines")), m),
    )
}
