//! `origami serve` in a real browser: Debian's chromium, headless, driven over the DevTools
//! protocol (a small client on a websocket). It types a query, clicks a facet, opens a
//! machine, opens a diff, and checks what the page shows against the demo generator's
//! fleet.json; a hostile fleet must run no script. It skips (printing `SKIP:`) when chromium
//! is missing, unless `CI=true`, where that is a failure.

mod serve_support;

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use origami_frame::{Frame, Package};
use serde_json::{json, Value};
use serve_support::*;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const IP: &str = "10.20.30.40";

fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORIGAMI_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// A headless chromium with its own profile folder; killed when dropped.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    cdp: Cdp,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The DevTools protocol over one websocket, commands sent to one attached page.
struct Cdp {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
    session: Option<String>,
}

impl Cdp {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// [`Cdp::call`], with the browser's error answer as an `Err`.
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "{method}: no answer");
            let m = self.ws.read().unwrap_or_else(|e| panic!("{method}: {e}"));
            let Message::Text(t) = m else {
                continue;
            };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["id"].as_u64() != Some(id) {
                continue; // an event
            }
            if let Some(e) = v.get("error") {
                return Err(e.clone());
            }
            return Ok(v["result"].clone());
        }
    }

    /// Evaluates `js` in the page and returns its value.
    fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{js}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `js` until it is `true`. While a page is being replaced the browser may answer
    /// an evaluation with "Inspected target navigated or closed" (or name a destroyed
    /// execution context): that is asked again, like a `false`.
    fn wait_until(&mut self, js: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.try_call(
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
            );
            match r {
                Ok(r) => {
                    if let Some(e) = r.get("exceptionDetails") {
                        panic!("{js}: {e}");
                    }
                    if r["result"]["value"] == json!(true) {
                        return;
                    }
                }
                Err(e) => {
                    let m = e["message"].as_str().unwrap_or_default();
                    assert!(
                        m.contains("navigated") || m.contains("context"),
                        "Runtime.evaluate: {e}"
                    );
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {js}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `action` (which makes the page navigate) and waits for the new page to load.
    fn navigating(&mut self, action: impl FnOnce(&mut Cdp)) {
        self.eval("window.__old_page = true");
        action(self);
        self.wait_until("!window.__old_page && document.readyState === 'complete'");
    }

    fn goto(&mut self, url: &str) {
        self.navigating(|c| {
            c.call("Page.navigate", json!({"url": url}));
        });
    }

    fn key(&mut self, key: &str, code: &str, vk: u32, text: Option<&str>) {
        let mut down =
            json!({"type": "keyDown", "key": key, "code": code, "windowsVirtualKeyCode": vk});
        if let Some(t) = text {
            down["text"] = json!(t);
        }
        self.call("Input.dispatchKeyEvent", down);
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": vk}),
        );
    }

    fn strings(&mut self, js: &str) -> Vec<String> {
        self.eval(js)
            .as_array()
            .unwrap_or_else(|| panic!("{js}: not a list"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }
}

/// Starts chromium, or says why not: `None` means skip.
fn launch() -> Option<Browser> {
    let Some(exe) = find_chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is missing under CI=true (.ci/run installs it)"
        );
        println!("SKIP: chromium is not installed (apt-get install -y chromium)");
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new(&exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--remote-debugging-port=0")
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
    let port_file = profile.path().join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (port, path) = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            let mut l = text.lines();
            if let (Some(p), Some(path)) = (l.next(), l.next()) {
                break (p.trim().to_string(), path.trim().to_string());
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromium wrote no DevToolsActivePort"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}{path}")).unwrap();
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    }
    let mut cdp = Cdp {
        ws,
        next: 0,
        session: None,
    };
    let target = cdp.call("Target.createTarget", json!({"url": "about:blank"}));
    let session = cdp.call(
        "Target.attachToTarget",
        json!({"targetId": target["targetId"], "flatten": true}),
    );
    cdp.session = Some(session["sessionId"].as_str().unwrap().to_string());
    cdp.call("Page.enable", json!({}));
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 820, "deviceScaleFactor": 1, "mobile": false}),
    );
    Some(Browser {
        child,
        _profile: profile,
        cdp,
    })
}

/// A second frame of web-01: its disk crawled again, with one package the generator
/// installed taken away and one added. Returns (removed, added).
fn second_web01_frame(index: &Path) -> (String, String) {
    let disk = demo_dir().join("web-01.img");
    let mut args = vec![
        "crawl".to_string(),
        "--disk".into(),
        disk.display().to_string(),
        "--name".into(),
        "web-01".into(),
        "--compact".into(),
    ];
    for g in origami_examples::demo::CONFIG_GLOBS {
        args.push("--config".into());
        args.push(g.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = origami(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut f = Frame::from_json(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let removed = "php8.2-fpm".to_string();
    let before = f.package.len();
    f.package.retain(|p| p.name != removed);
    assert_eq!(
        f.package.len() + 1,
        before,
        "web-01 has {removed} (fleet.json)"
    );
    let added = "backdoor-tools".to_string();
    f.package.push(Package {
        name: added.clone(),
        version: "6.6.6".into(),
        arch: "amd64".into(),
        manager: "dpkg".into(),
        ..Default::default()
    });
    index_frames(index, &[f]);
    (removed, added)
}

const RESULTS_JS: &str = "[...document.querySelectorAll('article.machine')].map(a => \
     a.querySelector('.mname').textContent + '|' + \
     [...a.querySelectorAll('.hit .key')].map(k => k.textContent).sort().join(','))";

fn expected_results(only: Option<&str>) -> Vec<String> {
    let truth = fleet_truth();
    let mut v: Vec<String> = truth["machines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m["mentions_ip"].as_array().unwrap().is_empty())
        .filter(|m| only.is_none_or(|o| m["name"] == o))
        .map(|m| {
            let mut files: Vec<&str> = m["mentions_ip"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            files.sort();
            format!("{}|{}", m["name"].as_str().unwrap(), files.join(","))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn search_facet_machine_and_diff_in_a_browser() {
    let Some(mut browser) = launch() else {
        return;
    };
    let index = demo_index("serve-browser");
    let (removed, added) = second_web01_frame(&index);
    let s = serve(&index, &[]);
    let base = format!("http://{}", s.addr);
    let c = &mut browser.cdp;

    // Type a query: `/` focuses the box (the page's script), then the text and Enter.
    c.goto(&format!("{base}/"));
    c.key("/", "Slash", 191, Some("/"));
    assert_eq!(c.eval("document.activeElement.id"), json!("q"));
    c.call("Input.insertText", json!({"text": IP}));
    c.navigating(|c| c.key("Enter", "Enter", 13, Some("\r")));
    assert_eq!(
        c.eval("location.pathname + location.search"),
        json!(format!("/search?q={IP}"))
    );
    let mut got = c.strings(RESULTS_JS);
    got.sort();
    assert_eq!(
        got,
        expected_results(None),
        "machines and files that mention {IP}"
    );
    assert!(c
        .eval("document.querySelector('mark') && document.querySelector('mark').textContent")
        .as_str()
        .is_some_and(|m| m == IP));

    // Click a facet: the filter goes into the query box and the URL; a second click takes it out.
    c.navigating(|c| {
        c.eval("document.querySelector('a.facet[data-clause=\"host:web-01\"]').click()");
    });
    assert_eq!(
        c.eval("document.getElementById('q').value"),
        json!(format!("{IP} host:web-01"))
    );
    assert_eq!(c.strings(RESULTS_JS), expected_results(Some("web-01")));
    assert_eq!(
        c.eval("document.querySelector('a.facet.on').textContent"),
        json!("web-01")
    );
    c.navigating(|c| {
        c.eval("document.querySelector('a.facet.on').click()");
    });
    assert_eq!(c.eval("document.getElementById('q').value"), json!(IP));
    // The back button brings the filtered page back (every state is in the URL).
    c.call("Runtime.evaluate", json!({"expression": "history.back()"}));
    c.wait_until(&format!(
        "location.search === '?q={IP}%20host%3Aweb-01' && document.readyState === 'complete' && document.getElementById('q').value === '{IP} host:web-01'"
    ));

    // Open the machine from the keyboard: j selects the first hit, Enter opens its machine.
    c.key("j", "KeyJ", 74, Some("j"));
    assert_eq!(
        c.eval("document.querySelectorAll('li.hit.cur').length"),
        json!(1)
    );
    c.navigating(|c| c.key("Enter", "Enter", 13, Some("\r")));
    assert_eq!(c.eval("location.pathname"), json!("/machines/web-01"));
    let truth = fleet_truth();
    let web01 = truth["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "web-01")
        .unwrap()
        .clone();
    let mut want_pkgs: BTreeSet<String> = web01["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert!(want_pkgs.remove(&removed));
    want_pkgs.insert(added.clone());
    let pkgs_js = "[...document.querySelectorAll('table.items tbody tr td:first-child')].map(t => t.textContent)";
    c.navigating(|c| {
        c.eval("[...document.querySelectorAll('nav.tabs a')].find(a => a.textContent.startsWith('package ')).click()");
    });
    let shown: BTreeSet<String> = c.strings(pkgs_js).into_iter().collect();
    assert_eq!(shown, want_pkgs, "web-01's packages in its latest frame");
    assert_eq!(
        c.eval("document.querySelectorAll('svg.timeline circle').length"),
        json!(2)
    );

    // Open the diff of the two frames (the form's default: the last two).
    c.navigating(|c| {
        c.eval("document.querySelector('form.difform button').click()");
    });
    let add =
        c.strings("[...document.querySelectorAll('.diff li.add .dkey')].map(k => k.textContent)");
    let rem =
        c.strings("[...document.querySelectorAll('.diff li.rem .dkey')].map(k => k.textContent)");
    let chg = c.eval("document.querySelectorAll('.diff li.chg').length");
    assert_eq!(add, vec![format!("{added}:amd64")]);
    assert_eq!(rem.len(), 1);
    assert!(rem[0].starts_with(&format!("{removed}:")), "{rem:?}");
    assert_eq!(chg, json!(0), "nothing else changed between the two crawls");

    // As of the first frame: the package is back, the new one not there yet.
    c.navigating(|c| {
        c.eval("[...document.querySelectorAll('a.asof-link')].pop().click()");
    });
    c.navigating(|c| {
        c.eval("[...document.querySelectorAll('nav.tabs a')].find(a => a.textContent.startsWith('package ')).click()");
    });
    assert!(c
        .eval("location.search")
        .as_str()
        .unwrap()
        .contains("as_of="));
    let then: BTreeSet<String> = c.strings(pkgs_js).into_iter().collect();
    assert!(
        then.contains(&removed) && !then.contains(&added),
        "{then:?}"
    );

    // A user facet: clicking it narrows `type:user` to the machines that have the account
    // (fleet.json), and its count is theirs.
    c.goto(&format!("{base}/search?q=type%3Auser"));
    let with_postgres: Vec<String> = truth["machines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["users"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u == "postgres")
        })
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!with_postgres.is_empty());
    let sel = "a.facet[data-clause=\"user:postgres\"]";
    assert_eq!(
        c.eval(&format!(
            "document.querySelector('{sel}').nextElementSibling.textContent"
        )),
        json!(with_postgres.len().to_string())
    );
    c.navigating(|c| {
        c.eval(&format!("document.querySelector('{sel}').click()"));
    });
    assert_eq!(
        c.eval("document.getElementById('q').value"),
        json!("type:user user:postgres")
    );
    let mut shown = c.strings(
        "[...document.querySelectorAll('article.machine .mname')].map(n => n.textContent)",
    );
    shown.sort();
    let mut want = with_postgres.clone();
    want.sort();
    assert_eq!(shown, want, "machines with the postgres account");

    // The screenshot of the search page for the README.
    c.goto(&format!("{base}/search?q={IP}"));
    let shot = c.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("search.png");
    std::fs::write(&out, &png).unwrap();
    if let Some(p) = std::env::var_os("ORIGAMI_SCREENSHOT") {
        std::fs::write(p, &png).unwrap();
    }
}

#[test]
fn a_hostile_fleet_runs_no_script_in_a_browser() {
    let Some(mut browser) = launch() else {
        return;
    };
    let dir = scratch("serve-browser-hostile");
    let index = dir.join("index");
    index_frames(&index, &[hostile_frame()]);
    let s = serve(&index, &[]);
    let base = format!("http://{}", s.addr);
    let c = &mut browser.cdp;
    let pages = [
        format!("/search?q={}&hits=100", enc("host:evil*")),
        "/machines".to_string(),
        format!("/machines/{PWN_SYSTEM}"),
        format!("/machines/{PWN_SYSTEM}?section=file"),
        format!("/machines/{PWN_SYSTEM}?section=process"),
        format!("/machines/{PWN_SYSTEM}?section=package"),
        format!("/machines/{PWN_SYSTEM}?section=config&key=%2Fetc%2Fmotd&hl=script"),
    ];
    let mut seen = BTreeSet::new();
    for p in &pages {
        c.goto(&format!("{base}{p}"));
        // Give an injected handler (an image error, an SVG load) time to fire.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(c.eval("typeof window.__pwned"), json!("undefined"), "{p}");
        assert_eq!(
            c.eval("document.querySelectorAll('[onload],[onerror],img,script:not([src])').length"),
            json!(0),
            "{p}: an element from guest data"
        );
        let text = c.eval("document.body.innerText + document.title");
        let text = text.as_str().unwrap();
        for s in [PWN_FILE, PWN_CMD, PWN_PKG] {
            if text.contains(s) {
                seen.insert(s);
            }
        }
    }
    assert_eq!(seen.len(), 3, "each hostile string shows as text: {seen:?}");
}
