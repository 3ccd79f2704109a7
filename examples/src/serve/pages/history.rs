//! A machine's frames: dots on a time axis (SVG, each a link to the machine as of that
//! frame, its size by the changes the frame brought), then a table of the frames with a GET
//! form to diff any two (no script needed).

use super::super::api::{self, MachineView};
use super::super::html::{Html, Url};
use super::{took, when};

/// Most frames on the timeline and in the frame table.
const MAX_FRAMES_SHOWN: usize = 200;

/// The frames on a time axis (SVG, one dot each, its size by the changes it brought), then
/// the frames as a table with a form to diff any two.
pub(super) fn timeline(m: &mut Html, view: &MachineView, system: &str) {
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
