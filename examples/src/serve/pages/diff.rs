//! What changed between two frames of a machine: by section, added items green, removed
//! red, changed items with each changed field's old value struck (a text's lines only in
//! the old, then only in the new).

use std::collections::BTreeSet;

use serde_json::Value;
use time::OffsetDateTime;

use super::super::api::{self, DiffRows};
use super::super::html::{Html, Url};
use super::machine::summary;
use super::{cell, clip, when};

/// Most diff entries shown per section.
const DIFF_ROWS: usize = 500;

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

pub(super) fn diff_view(
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
