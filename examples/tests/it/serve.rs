//! `origami serve` over HTTP on loopback: the demo fleet's answers checked against the demo
//! generator's fleet.json, the API's JSON against `origami search --json`, a hostile frame
//! rendered inert, the safety rules (read-only, bounded, loopback or token).

use crate::serve_support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use serve_support::*;

const IP: &str = "10.20.30.40";

/// machine -> {(kind, key)} of a search result's JSON.
fn hit_sets(v: &Value) -> BTreeMap<String, BTreeSet<(String, String)>> {
    v["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let hits = m["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h["kind"].as_str().unwrap().to_string(),
                        h["key"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (m["system"].as_str().unwrap().to_string(), hits)
        })
        .collect()
}

/// Machines sorted by name, hits by key: machines whose scores tie to within the clock's
/// effect may swap places between two runs.
fn by_name(mut v: Value) -> Value {
    let ms = v["machines"].as_array_mut().unwrap();
    for m in ms.iter_mut() {
        m["hits"]
            .as_array_mut()
            .unwrap()
            .sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
    }
    ms.sort_by(|a, b| a["system"].as_str().cmp(&b["system"].as_str()));
    v
}

/// The same JSON, but for `took` (the search's own time) and ranking scores, which
/// weigh recency against the clock and so move a little between two runs.
fn assert_same_results(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let kx: BTreeSet<&String> = x.keys().collect();
            let ky: BTreeSet<&String> = y.keys().collect();
            assert_eq!(kx, ky, "{at}");
            for (k, va) in x {
                let vb = &y[k];
                match k.as_str() {
                    "took" => assert!(va.is_number() && vb.is_number(), "{at}.took"),
                    "score" => {
                        let (fa, fb) = (va.as_f64().unwrap(), vb.as_f64().unwrap());
                        assert!(
                            (fa - fb).abs() <= 1e-3 * fa.abs().max(fb.abs()).max(1.0),
                            "{at}.score {fa} {fb}"
                        );
                    }
                    _ => assert_same_results(va, vb, &format!("{at}.{k}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                assert_same_results(va, vb, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

fn html_escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[test]
fn api_search_is_the_cli_json_and_answers_match_the_demo_fleet() {
    let index = demo_index("serve-api");
    let idx = index.to_str().unwrap();
    let mut queries: Vec<String> = origami_examples::demo::QUERIES
        .iter()
        .map(|q| q.to_string())
        .collect();
    queries.push("type:user name:alice".into());
    // The CLI first: the server holds the index's writer lock while it runs.
    let cli: Vec<Value> = queries
        .iter()
        .map(|q| {
            let out = origami(&["search", "--index", idx, q, "--json"]);
            assert!(matches!(out.status.code(), Some(0 | 4)), "{q}: {out:?}");
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let s = serve(&index, &[]);
    for (q, want) in queries.iter().zip(cli) {
        let r = get(s.addr, &format!("/api/search?q={}", enc(q)));
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_same_results(&by_name(r.json()), &by_name(want), q);
    }

    // The IP: exactly the machines and files the generator put it in.
    let truth = fleet_truth();
    let machines = truth["machines"].as_array().unwrap();
    let want: BTreeMap<String, BTreeSet<(String, String)>> = machines
        .iter()
        .filter(|m| !m["mentions_ip"].as_array().unwrap().is_empty())
        .map(|m| {
            let files = m["mentions_ip"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| ("config".to_string(), p.as_str().unwrap().to_string()))
                .collect();
            (m["name"].as_str().unwrap().to_string(), files)
        })
        .collect();
    let r = get(s.addr, &format!("/api/search?q={IP}&limit=100&hits=100"));
    assert_eq!(hit_sets(&r.json()), want);

    // The page shows the same: each machine, each file, and a host facet per machine with
    // its file count; no other machine.
    let page = get(s.addr, &format!("/search?q={IP}"));
    assert_eq!(page.status, 200);
    for (m, files) in &want {
        assert!(
            page.body.contains(&format!("href=\"/machines/{m}\"")),
            "{m}"
        );
        for (_, path) in files {
            assert!(page.body.contains(&html_escaped(path)), "{m}: {path}");
        }
        let facet = format!(
            "data-clause=\"host:{m}\">{m}</a><span class=\"n\">{}</span>",
            files.len()
        );
        assert!(page.body.contains(&facet), "facet {facet} in {}", page.body);
    }
    for m in machines {
        let name = m["name"].as_str().unwrap();
        if !want.contains_key(name) {
            assert!(
                !page.body.contains(&format!("href=\"/machines/{name}\"")),
                "{name}"
            );
        }
    }
    // The facet entry adds its filter, and on the filtered page removes it again.
    let href = format!("href=\"/search?q={IP}%20host%3Aweb-01\"");
    assert!(page.body.contains(&href), "{href}");
    let filtered = get(s.addr, &format!("/search?q={IP}%20host%3Aweb-01"));
    assert!(
        filtered
            .body
            .contains(&format!("class=\"facet on\" href=\"/search?q={IP}\"")),
        "{}",
        filtered.body
    );
    assert!(!filtered.body.contains("href=\"/machines/lb-01\""));

    // The user facet: each account the generator added counts once per machine it was
    // added to (fleet.json); the three base accounts every machine has (root, daemon,
    // nobody: make-demo-fleet.py) are left out of the query. The host facet of one user is
    // the machines that have it.
    let r = get(
        s.addr,
        &format!(
            "/api/search?q={}&limit=0&facets=1000",
            enc("type:user -user:root -user:daemon -user:nobody")
        ),
    )
    .json();
    let facet = |v: &Value| -> BTreeMap<String, u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_u64().unwrap()))
            .collect()
    };
    let mut want_users: BTreeMap<String, u64> = BTreeMap::new();
    for m in machines {
        for u in m["users"].as_array().unwrap() {
            *want_users
                .entry(u.as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert!(want_users.len() >= 8, "{want_users:?}");
    assert_eq!(facet(&r["facets"]["user"]), want_users);
    assert!(
        facet(&r["facets"]["port"]).is_empty(),
        "disk frames hold no sockets"
    );
    let r = get(
        s.addr,
        &format!("/api/search?q={}", enc("user:bob type:user")),
    )
    .json();
    let with_bob: BTreeMap<String, u64> = machines
        .iter()
        .filter(|m| m["users"].as_array().unwrap().iter().any(|u| u == "bob"))
        .map(|m| (m["name"].as_str().unwrap().to_string(), 1))
        .collect();
    assert_eq!(facet(&r["facets"]["host"]), with_bob);
    assert_eq!(
        facet(&r["facets"]["user"]),
        BTreeMap::from([("bob".to_string(), with_bob.len() as u64)])
    );
    // The page lists the same, each entry a link adding its filter.
    let page = get(s.addr, &format!("/search?q={}", enc("type:user"))).body;
    assert!(page.contains("<h3>user</h3>"), "{page}");
    assert!(
        page.contains(&format!(
            "href=\"/search?q=type%3Auser%20user%3Abob\" title=\"add user:bob\" \
             data-clause=\"user:bob\">bob</a><span class=\"n\">{}</span>",
            with_bob.len()
        )),
        "{page}"
    );

    // Every machine's packages, and its users, as the generator installed them.
    let api_machines = get(s.addr, "/api/machines").json();
    let served: BTreeSet<String> = api_machines["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["system"].as_str().unwrap().to_string())
        .collect();
    let all: BTreeSet<String> = machines
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(served, all, "the fleet lists every machine crawled");
    // The broken machine, and only it, shows its crawl error.
    for m in api_machines["machines"].as_array().unwrap() {
        let name = m["system"].as_str().unwrap();
        let broken = machines
            .iter()
            .any(|t| t["name"] == name && t["broken"].as_bool() == Some(true));
        let errors = m["latest"]["errors"].as_array().unwrap();
        assert_eq!(!errors.is_empty(), broken, "{name}: {errors:?}");
    }
    let fleet_page = get(s.addr, "/machines");
    let first_row = fleet_page.body.split("<tbody>").nth(1).unwrap();
    let broken_name = machines
        .iter()
        .find(|m| m["broken"].as_bool() == Some(true))
        .unwrap()["name"]
        .as_str()
        .unwrap();
    assert!(
        first_row.starts_with(&format!(
            "<tr class=\"err\"><td><a href=\"/machines/{broken_name}\">"
        )),
        "failing machines first: {first_row}"
    );
    for m in machines
        .iter()
        .filter(|m| m["broken"].as_bool() != Some(true))
    {
        let name = m["name"].as_str().unwrap();
        let v = get(s.addr, &format!("/api/machines/{name}")).json();
        let names = |section: &str| -> BTreeSet<String> {
            v["frame"][section]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect()
        };
        let want_pkgs: BTreeSet<String> = m["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        assert_eq!(names("package"), want_pkgs, "{name}");
        let users = names("user");
        for u in m["users"].as_array().unwrap() {
            assert!(users.contains(u.as_str().unwrap()), "{name}: user {u}");
        }
        // The machine page's package tab lists the same names.
        let page = get(s.addr, &format!("/machines/{name}?section=package"));
        assert_eq!(page.status, 200);
        for p in &want_pkgs {
            assert!(
                page.body
                    .contains(&format!(">{}</a></td>", html_escaped(p))),
                "{name}: {p}"
            );
        }
        assert!(page.body.contains(&format!(
            "package <span class=\"n\">{}</span>",
            want_pkgs.len()
        )));
    }
}

#[test]
fn a_bad_query_shows_its_caret_under_the_column() {
    let index = demo_index("serve-badquery");
    let q = "pkg:openssl host:(web";
    let out = origami(&["search", "--index", index.to_str().unwrap(), q]);
    assert_eq!(out.status.code(), Some(2));
    let rendered = String::from_utf8_lossy(&out.stderr).into_owned();
    let caret_col = rendered.lines().nth(1).unwrap().find('^').unwrap() + 1;
    let s = serve(&index, &[]);
    let r = get(s.addr, &format!("/api/search?q={}", enc(q)));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["column"].as_u64(), Some(caret_col as u64));
    let page = get(s.addr, &format!("/search?q={}", enc(q)));
    assert_eq!(page.status, 400);
    let pre = page
        .body
        .split("<pre>")
        .nth(1)
        .unwrap()
        .split("</pre>")
        .next()
        .unwrap();
    let mut lines = pre.lines();
    assert_eq!(lines.next().unwrap(), q);
    let caret_line = lines.next().unwrap();
    assert_eq!(
        caret_line.find("<span class=\"caret\">^</span>"),
        Some(caret_col - 1),
        "{pre}"
    );
    // The query stays in the box to be fixed.
    assert!(page
        .body
        .contains(&format!("value=\"{}\"", html_escaped(q))));
}

#[test]
fn machine_history_diff_and_as_of_follow_the_frames() {
    let dir = scratch("serve-diff");
    let index = dir.join("index");
    let (a, b) = two_frames("diff-01");
    index_frames(&index, &[a.clone(), b.clone()]);
    let history = origami(&[
        "history",
        "--index",
        index.to_str().unwrap(),
        "diff-01",
        "--json",
    ]);
    assert!(history.status.success());
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();

    let s = serve(&index, &[]);
    let from = "2026-11-20T10:00:00Z";
    let to = "2026-11-21T10:00:00Z";
    let d = get(
        s.addr,
        &format!("/api/machines/diff-01/diff?from={from}&to={to}"),
    )
    .json();
    // The same JSON as `origami history --json` gives for that change.
    assert_eq!(d["diff"], history["changes"][0]);
    let keys = |what: &str| -> BTreeSet<String> {
        d["diff"]["package"][what]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                p.get("new")
                    .unwrap_or(p)
                    .get("name")
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(keys("added"), BTreeSet::from(["delta".to_string()]));
    assert_eq!(keys("removed"), BTreeSet::from(["alpha".to_string()]));
    assert_eq!(keys("changed"), BTreeSet::from(["bravo".to_string()]));

    // The machine JSON lists the frames as `history --json` does.
    let m = get(s.addr, "/api/machines/diff-01").json();
    assert_eq!(m["frames"], history["frames"]);
    let latest: BTreeSet<&str> = m["frame"]["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(latest, BTreeSet::from(["bravo", "charlie", "delta"]));
    let old = get(s.addr, &format!("/api/machines/diff-01?as_of={from}")).json();
    let then: BTreeSet<&str> = old["frame"]["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(then, BTreeSet::from(["alpha", "bravo", "charlie"]));

    // The page: the diff (added green, removed red, changed with the old value struck).
    let page = get(s.addr, &format!("/machines/diff-01?from={from}&to={to}"));
    assert_eq!(page.status, 200);
    let b = &page.body;
    assert!(b.contains("<li class=\"add\"><span class=\"sign\">+</span> <span class=\"dkey\">delta:amd64</span>"), "{b}");
    assert!(b.contains(
        "<li class=\"rem\"><span class=\"sign\">−</span> <span class=\"dkey\">alpha:amd64</span>"
    ));
    assert!(b.contains("<span class=\"dkey\">bravo:amd64</span><div class=\"field\"><span class=\"fname\">version</span> <del>2.0</del> → <ins>2.1</ins>"));
    // The timeline has one dot per frame; the table a row per frame.
    assert_eq!(b.matches("<circle").count(), 2);
    assert_eq!(b.matches("name=\"from\"").count(), 2);
    // as_of by a form's datetime-local value (no offset: UTC).
    let page = get(
        s.addr,
        "/machines/diff-01?as_of=2026-11-20T12:00:00&section=package",
    );
    assert!(
        page.body.contains(">alpha</a>") && !page.body.contains(">delta</a>"),
        "{}",
        page.body
    );
    let page = get(s.addr, "/machines/diff-01?as_of=2020-01-01");
    assert_eq!(page.status, 404);
    assert!(page.body.contains("no frame at or before"));
}

#[test]
fn a_hostile_guest_is_shown_as_text() {
    let dir = scratch("serve-hostile");
    let index = dir.join("index");
    // A machine named `..` too: a browser would take that as a path step.
    index_frames(&index, &[hostile_frame(), origami_frame::Frame::new("..")]);
    let s = serve(&index, &[]);
    let fleet = get(s.addr, "/machines").body;
    let link = fleet
        .split("<a href=\"")
        .map(|h| h.split('"').next().unwrap())
        .find(|h| h.starts_with("/machines/") && h.ends_with(".."))
        .expect("a link to the machine named ..");
    assert!(!link.ends_with("/.."), "{link}");
    assert!(get(s.addr, link)
        .body
        .contains("<h1 class=\"mtitle\">..</h1>"));
    let pages = [
        format!("/search?q={}&hits=100", enc("host:evil*")),
        format!("/search?q={}", enc("mallory")),
        "/machines".to_string(),
        format!("/machines/{PWN_SYSTEM}"),
        format!("/machines/{PWN_SYSTEM}?section=file"),
        format!("/machines/{PWN_SYSTEM}?section=process"),
        format!("/machines/{PWN_SYSTEM}?section=package"),
        format!("/machines/{PWN_SYSTEM}?section=user"),
        format!("/machines/{PWN_SYSTEM}?section=config&key=%2Fetc%2Fmotd&hl=script"),
        format!(
            "/machines/{PWN_SYSTEM}?section=package&key={}",
            enc(&format!("{PWN_PKG}:amd64"))
        ),
    ];
    let mut shown = BTreeSet::new();
    for p in &pages {
        let r = get(s.addr, p);
        assert_eq!(r.status, 200, "{p}: {}", r.body);
        let csp = r.header("content-security-policy").unwrap_or("");
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{p}"
        );
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        for raw in ["<script>window", "<img src=x", "<svg onload", "\"><svg"] {
            assert!(!r.body.contains(raw), "{p} holds {raw:?} unescaped");
        }
        for s in [PWN_FILE, PWN_CMD, PWN_PKG] {
            if r.body.contains(&html_escaped(s)) {
                shown.insert(s);
            }
        }
        // The only script is the site's own file.
        assert_eq!(r.body.matches("<script").count(), 1, "{p}");
        assert!(r
            .body
            .contains("<script src=\"/static/app.js\" defer></script>"));
    }
    assert_eq!(
        shown.len(),
        3,
        "each hostile string is shown, escaped, somewhere"
    );
    // The machine's crawl error shows, in red, on its search results.
    let r = get(s.addr, &pages[0]);
    // The user facet names the hostile account, as text, with the items it owns (counted
    // from the frame: the account, and the files and processes of its uid).
    let f = hostile_frame();
    let uid = f.user.iter().find(|u| u.name == PWN_FILE).unwrap().uid;
    let owned = 1
        + f.file.iter().filter(|x| x.uid == uid).count()
        + f.process.iter().filter(|x| x.uid == uid).count();
    let facet = format!(
        "data-clause=\"user:&quot;{0}&quot;\">{0}</a><span class=\"n\">{owned}</span>",
        html_escaped(PWN_FILE)
    );
    assert!(r.body.contains(&facet), "{facet} in {}", r.body);
    let err = format!(
        "<span class=\"bad\" title=\"package: dpkg status: {}\">crawl error</span>",
        html_escaped(PWN_CMD)
    );
    assert!(r.body.contains(&err), "{}", r.body);
    // The API gives the strings back as data.
    let v = get(s.addr, &format!("/api/machines/{PWN_SYSTEM}")).json();
    assert_eq!(v["frame"]["package"][0]["name"], PWN_PKG);
    assert_eq!(
        v["frame"]["_frame"]["errors"][0]["message"],
        format!("dpkg status: {PWN_CMD}")
    );
}

#[test]
fn read_only_bounded_and_loopback_by_default() {
    let index = demo_index("serve-safety");
    let s = serve(&index, &[]);
    for m in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = request(s.addr, m, "/api/search?q=x", &[], "");
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    let r = request(s.addr, "HEAD", "/machines", &[], "");
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    // A page asked for under another host name (DNS rebinding) is refused.
    let r = request(
        s.addr,
        "GET",
        "/api/machines",
        &[("Host", "evil.example")],
        "",
    );
    assert_eq!(r.status, 421);
    // A huge request head is cut off.
    let big = "x".repeat(64 << 10);
    let r = request(s.addr, "GET", "/", &[("X-Big", &big)], "");
    assert_eq!(r.status, 431);
    // Unknown paths answer 404, in HTML or JSON.
    assert_eq!(get(s.addr, "/nope").status, 404);
    assert_eq!(get(s.addr, "/api/nope").status, 404);
    assert_eq!(get(s.addr, "/machines/no-such-machine").status, 404);
    // Searches run side by side.
    let addr = s.addr;
    let threads: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let q = if i % 2 == 0 { "pkg:openssl" } else { IP };
                get(addr, &format!("/api/search?q={}", enc(q))).status
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }

    // Another address without a token or the explicit opt-out: refused before binding.
    let idx = index.to_str().unwrap();
    for extra in [&[][..], &["--token", "short"][..]] {
        let mut args = vec!["serve", "--index", idx, "--listen", "0.0.0.0:0"];
        args.extend_from_slice(extra);
        let out = origami(&args);
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--token") || err.contains("token must be"),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
    // No index: a message that says how to make one.
    let out = origami(&["serve", "--index", "/nonexistent/idx"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("crawl-fleet"));
}

#[test]
fn with_a_token_nothing_is_served_without_it() {
    let index = demo_index("serve-token");
    let token = "0123456789abcdef-test-token";
    let s = serve(&index, &["--token", token]);
    let r = get(s.addr, "/api/search?q=openssl");
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    for p in ["/", "/search?q=openssl", "/machines", "/machines/web-01"] {
        let r = get(s.addr, p);
        assert_eq!(r.status, 401, "{p}");
        assert!(r.body.contains("action=\"/login\""), "{p}: the login form");
        assert!(!r.body.contains("href=\"/machines/web-01"), "{p}");
    }
    let bearer = format!("Bearer {token}");
    let r = request(
        s.addr,
        "GET",
        "/api/search?q=openssl",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(r.status, 200);
    let r = request(
        s.addr,
        "GET",
        "/api/search?q=openssl",
        &[("Authorization", "Bearer nope")],
        "",
    );
    assert_eq!(r.status, 401);
    // The login form: a wrong token is refused, the right one sets the cookie.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = request(s.addr, "POST", "/login", &form, "token=wrong");
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    let r = request(
        s.addr,
        "POST",
        "/login",
        &form,
        &format!("token={}", enc(token)),
    );
    assert_eq!(r.status, 303);
    let cookie = r.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    assert!(!pair.contains(token), "the cookie is not the token itself");
    let r = request(s.addr, "GET", "/machines", &[("Cookie", pair)], "");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("web-01"));
    // The stylesheet is served to the login page without a token; nothing else is.
    assert_eq!(get(s.addr, "/static/style.css").status, 200);
    // POST stays refused everywhere but /login, even with the token.
    let r = request(
        s.addr,
        "POST",
        "/api/search?q=x",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(r.status, 405);
}

/// The sections a memory crawl (`mount`, `kernel_log`) and a Windows disk (`service`) give
/// show on the machine page as the others do: a tab each with its count, a table with the
/// section's columns (a kernel log time as dmesg shows it), their changes in the diff, and
/// the JSON twin holds the frame's items as they were indexed.
#[test]
fn mount_kernel_log_and_service_sections_show_on_the_machine_page() {
    use origami_frame::{Frame, KernelLogRecord, Mount, Service};
    let dir = scratch("serve-sections");
    let index = dir.join("index");
    let mount = |path: &str, device: &str, fs: &str| Mount {
        device: device.into(),
        path: path.into(),
        fs_type: fs.into(),
        options: "rw,relatime".into(),
        ..Default::default()
    };
    let mut a = Frame::new("sect-01");
    a.meta.timestamp = time::macros::datetime!(2026-11-20 10:00:00 UTC);
    a.mount = vec![
        mount("/", "/dev/vda1", "ext4"),
        mount("/proc", "proc", "proc"),
    ];
    a.kernel_log = vec![KernelLogRecord {
        seq: 41,
        time: 12_345_678_901,
        level: 6,
        message: "e1000: eth0 NIC Link is Up 1000 Mbps Full Duplex".into(),
        ..Default::default()
    }];
    a.service = vec![Service {
        name: "Spooler".into(),
        display_name: Some("Print Spooler".into()),
        path: "C:\\Windows\\System32\\spoolsv.exe".into(),
        start_type: "auto".into(),
        service_type: "own_process".into(),
        state: Some("running".into()),
        ..Default::default()
    }];
    let mut b = a.clone();
    b.meta.timestamp = time::macros::datetime!(2026-11-21 10:00:00 UTC);
    b.mount.push(mount("/srv/data", "/dev/vdb", "xfs"));
    b.service[0].start_type = "disabled".into();
    index_frames(&index, &[a.clone(), b.clone()]);
    let s = serve(&index, &[]);

    // The JSON twin: the latest frame's items, as built.
    let m = get(s.addr, "/api/machines/sect-01").json();
    let f = &m["frame"];
    let paths: BTreeSet<&str> = f["mount"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, BTreeSet::from(["/", "/proc", "/srv/data"]));
    assert_eq!(
        f["kernel_log"][0]["message"],
        "e1000: eth0 NIC Link is Up 1000 Mbps Full Duplex"
    );
    assert_eq!(f["service"][0]["start_type"], "disabled");

    // The page: a tab per section with its count, each section's table.
    let page = get(s.addr, "/machines/sect-01");
    assert_eq!(page.status, 200);
    for (tab, n) in [("mount", 3), ("kernel_log", 1), ("service", 1)] {
        assert!(
            page.body.contains(&format!(
                "section={tab}\">{tab} <span class=\"n\">{n}</span></a>"
            )),
            "{tab}: {}",
            page.body
        );
    }
    let page = get(s.addr, "/machines/sect-01?section=kernel_log");
    assert!(page.body.contains("<th>message</th>"), "{}", page.body);
    assert!(page.body.contains("[   12.345678]"), "{}", page.body);
    assert!(page.body.contains("NIC Link is Up"));
    let page = get(s.addr, "/machines/sect-01?section=mount");
    assert!(page.body.contains("<th>fs_type</th>") && page.body.contains(">/srv/data</a>"));
    let page = get(s.addr, "/machines/sect-01?section=service");
    assert!(page.body.contains("Print Spooler") && page.body.contains("spoolsv.exe"));

    // The diff between the two frames: the mount added, the service's start type changed.
    let page = get(
        s.addr,
        "/machines/sect-01?from=2026-11-20T10:00:00Z&to=2026-11-21T10:00:00Z",
    );
    let body = &page.body;
    assert!(body.contains("data-section=\"mount\""), "{body}");
    assert!(
        body.contains("<span class=\"dkey\">/srv/data</span>"),
        "{body}"
    );
    assert!(body.contains(
        "<span class=\"dkey\">Spooler</span><div class=\"field\"><span class=\"fname\">start_type</span> <del>auto</del> → <ins>disabled</ins>"
    ), "{body}");
    assert!(
        !body.contains("data-section=\"kernel_log\""),
        "unchanged: {body}"
    );
}
