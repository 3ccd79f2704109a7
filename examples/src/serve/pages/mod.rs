//! The pages: search (`/`, `/search?q=`), the fleet (`/machines`), a machine
//! (`/machines/NAME`, with `as_of`, `from`/`to`, `section`, `key`), the login form. Every
//! page is built with [`Html`], so whatever a guest put in its frame is shown as text; every
//! state is in the URL; nothing needs JavaScript.
//!
//! - [`search`]: the search page and the home page (results by machine, facets, paging).
//! - [`fleet`]: every machine, its freshness and its crawl schedule.
//! - [`machine`]: one machine's state by section, at its latest frame or `as_of`.
//! - [`history`]: a machine's frames on a time axis and the form to diff any two.
//! - [`diff`]: what changed between two frames.
//!
//! This module holds what they share: the page layout, the query syntax help, the error
//! and login pages, and the ways times, durations and values are written.

pub mod diff;
pub mod fleet;
pub mod history;
pub mod machine;
pub mod search;

use serde_json::Value;
use time::OffsetDateTime;

use super::api::Fail;
use super::html::{Html, Url};
use super::http::Response;

pub use fleet::fleet_page;
pub use machine::machine_page;
pub use search::search_page;

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
