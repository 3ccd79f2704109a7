//! Search tests over frames built from the fixtures' ground truth (the Debian guest's facts,
//! manifest and /etc contents; the memory dump's truth.json) plus a synthetic fleet. Every
//! expectation is computed here from the frames' own data with plain string and set
//! arithmetic, never from the index's earlier output.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use origami_index::frame::{ConfigItem, Connection, FileType, Frame, Item, Section};
use origami_index::{Index, Search, SearchOptions, SearchResults, TantivyIndex};
use origami_testsupport::synth::Fleet;
use serde_json::Value;
use time::OffsetDateTime;

const IP: &str = "10.20.30.40";

/// The Debian guest's disk frame from its truth (origami_testsupport::truth), plus the
/// text of every small regular file under /etc as a config item (read out of the image
/// with `debugfs rdump`).
fn debian_frame(facts: &Value, manifest: &Value, etc: Option<&Path>) -> Frame {
    let mut f = origami_testsupport::truth::debian_frame("vmi-fixture-disk", facts, manifest);
    f.meta.timestamp = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
    if let Some(root) = etc {
        for file in &f.file {
            if file.file_type == FileType::File
                && file.path.starts_with("/etc/")
                && file.size <= 64 * 1024
            {
                if let Ok(content) = std::fs::read_to_string(root.join(&file.path[1..])) {
                    f.config.push(ConfigItem {
                        path: file.path.clone(),
                        content,
                        ..Default::default()
                    });
                }
            }
        }
    }
    f
}

/// The memory dump's frame, from truth.json.
fn memory_frame(truth: &Value) -> Frame {
    let mut f = origami_testsupport::truth::memory_frame("vmi-fixture-mem", truth);
    f.meta.timestamp = OffsetDateTime::from_unix_timestamp(1_795_000_100).unwrap();
    f
}

/// /etc of the Debian image, dumped once per test process with `debugfs rdump`.
fn dump_etc(rootfs: &Path) -> Option<PathBuf> {
    let dir = std::env::temp_dir().join(format!("origami-index-etc-{}", std::process::id()));
    if dir.join("etc").exists() {
        return Some(dir);
    }
    std::fs::create_dir_all(&dir).ok()?;
    let ok = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump /etc {}", dir.display()))
        .arg(rootfs)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    (ok && dir.join("etc/hosts").exists()).then_some(dir)
}

/// True when `text` holds `ip` as a whole address: not preceded by a digit or a dot, not
/// followed by a digit, nor by a dot and a digit (`10.20.30.40.5` is another thing).
fn mentions(text: &str, ip: &str) -> bool {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find(ip) {
        let s = from + i;
        let e = s + ip.len();
        let before_ok = s == 0 || !(b[s - 1].is_ascii_digit() || b[s - 1] == b'.');
        let after_ok = e >= b.len()
            || !(b[e].is_ascii_digit()
                || (b[e] == b'.' && b.get(e + 1).is_some_and(u8::is_ascii_digit)));
        if before_ok && after_ok {
            return true;
        }
        from = s + 1;
    }
    false
}

/// Every (system, kind, key) of `frames` whose item satisfies `pred` on its JSON.
fn items_where(
    frames: &[Frame],
    mut pred: impl FnMut(&Frame, Section, &str, &str) -> bool,
) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for f in frames {
        let mut check = |section: Section, key: String, json: String| {
            if pred(f, section, &key, &json) {
                out.insert((f.system().to_string(), section.name().to_string(), key));
            }
        };
        fn js<T: serde::Serialize>(x: &T) -> String {
            serde_json::to_string(x).unwrap()
        }
        if !f.os.is_empty() {
            check(Section::Os, f.os.key(), js(&f.os));
        }
        f.file
            .iter()
            .for_each(|x| check(Section::File, x.key(), js(x)));
        f.config
            .iter()
            .for_each(|x| check(Section::Config, x.key(), js(x)));
        f.package
            .iter()
            .for_each(|x| check(Section::Package, x.key(), js(x)));
        f.user
            .iter()
            .for_each(|x| check(Section::User, x.key(), js(x)));
        f.process
            .iter()
            .for_each(|x| check(Section::Process, x.key(), js(x)));
        f.connection
            .iter()
            .for_each(|x| check(Section::Connection, x.key(), js(x)));
        f.module
            .iter()
            .for_each(|x| check(Section::Module, x.key(), js(x)));
    }
    out
}

fn all_hits(r: &SearchResults) -> BTreeSet<(String, String, String)> {
    r.machines
        .iter()
        .flat_map(|m| {
            m.hits
                .iter()
                .map(|h| (m.system.clone(), h.kind.name().to_string(), h.key.clone()))
        })
        .collect()
}

fn everything() -> SearchOptions {
    SearchOptions {
        limit: 10_000,
        hits_per_machine: 100_000,
        facet_limit: 10_000,
        ..SearchOptions::default()
    }
}

/// The fixture fleet: the Debian disk frame, the memory frame, and 12 synthetic machines,
/// two of them with planted mentions and near misses of the address.
fn fleet(fx: &origami_testsupport::Fixtures) -> Vec<Frame> {
    let etc = dump_etc(&fx.path("debian/rootfs.ext4"));
    if etc.is_none() {
        eprintln!("debugfs unavailable: the Debian frame has no config contents");
    }
    let mut frames = vec![
        debian_frame(
            &fx.json("debian/rootfs.facts.json"),
            &fx.json("debian/rootfs.manifest.json"),
            etc.as_deref(),
        ),
        memory_frame(&fx.json("memdump/truth.json")),
    ];
    let synth = Fleet::new(12, 1500);
    for i in 0..12 {
        let mut f = synth.frame(i, 0);
        if i == 3 {
            // Near misses only.
            f.config.push(ConfigItem {
                path: "/etc/near-miss.conf".into(),
                content: "a 10.20.30.4 b\nc 10.20.30.400 d\ne 110.20.30.40 f\ng 10.20.30.40.5\n"
                    .into(),
                ..Default::default()
            });
        }
        if i == 5 {
            // A real mention in a config and a live connection to it.
            f.config.push(ConfigItem {
                path: "/etc/backup.conf".into(),
                content: format!("# nightly\ntarget = {IP}:873\n"),
                ..Default::default()
            });
            let pid = f.process[0].pid;
            f.connection.push(Connection {
                protocol: "tcp".into(),
                family: "ipv4".into(),
                local_address: synth.address(5),
                local_port: 40000,
                remote_address: IP.into(),
                remote_port: 873,
                state: "ESTABLISHED".into(),
                pid: Some(pid),
                ..Default::default()
            });
        }
        if i == 7 {
            f.config.push(ConfigItem {
                path: "/etc/motd".into(),
                content: format!("old backup host was {IP}, now retired\n"),
                ..Default::default()
            });
        }
        frames.push(f);
    }
    frames
}

fn index_of(frames: &[Frame]) -> TantivyIndex {
    let index = TantivyIndex::in_ram().unwrap();
    for f in frames {
        let st = index.add_frame(f).unwrap();
        assert_eq!(st.items as usize, f.item_count());
    }
    index.commit().unwrap();
    index
}

#[test]
fn ip_query_returns_exactly_the_items_that_mention_it_ranked_live_state_first() {
    let fx = origami_testsupport::require_fixtures!();
    let frames = fleet(fx);
    let index = index_of(&frames);
    let expected = items_where(&frames, |_, _, _, json| mentions(json, IP));
    let r = index.search(IP, &everything()).unwrap();
    assert_eq!(all_hits(&r), expected);
    assert_eq!(r.total_hits as usize, expected.len());
    let machines: BTreeSet<String> = expected.iter().map(|e| e.0.clone()).collect();
    assert_eq!(
        r.machines
            .iter()
            .map(|m| m.system.clone())
            .collect::<BTreeSet<_>>(),
        machines
    );
    assert!(machines.contains("vmi-fixture-mem") && machines.contains("vm-00005"));
    assert!(!machines.contains("vm-00003"), "near misses must not match");

    // The facts' own list of files that mention the address is found (when /etc was read).
    let facts = fx.json("debian/rootfs.facts.json");
    let disk = &frames[0];
    if !disk.config.is_empty() {
        let in_etc = facts["files_mentioning_10.20.30.40"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p.as_str().unwrap().starts_with("/etc/"));
        for p in in_etc {
            let key = (
                "vmi-fixture-disk".to_string(),
                "config".to_string(),
                p.as_str().unwrap().to_string(),
            );
            assert!(
                expected.contains(&key) && all_hits(&r).contains(&key),
                "{key:?}"
            );
        }
        // A config hit's snippet is the matching line.
        let m = r
            .machines
            .iter()
            .find(|m| m.system == "vmi-fixture-disk")
            .unwrap();
        let hosts = m.hits.iter().find(|h| h.key == "/etc/hosts").unwrap();
        assert!(
            hosts.snippet.starts_with("L2: 10.20.30.40"),
            "{}",
            hosts.snippet
        );
    }

    // Ranking: on vm-00005 the live connection comes before the config that mentions the
    // address; machines with live state come before machines with only a mention in a file.
    let m5 = r.machines.iter().find(|m| m.system == "vm-00005").unwrap();
    assert_eq!(m5.hits[0].kind, Section::Connection, "{:?}", m5.hits);
    let live = |m: &origami_index::MachineResult| {
        m.hits
            .iter()
            .any(|h| matches!(h.kind, Section::Connection | Section::Process))
    };
    let last_live = r.machines.iter().rposition(live).unwrap();
    let first_mention_only = r.machines.iter().position(|m| !live(m)).unwrap();
    assert!(
        last_live < first_mention_only,
        "{:?}",
        r.machines.iter().map(|m| &m.system).collect::<Vec<_>>()
    );

    // Facets count the matching items.
    let by_kind: BTreeMap<String, u64> = r.facets.kind.iter().cloned().collect();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for e in &expected {
        *want.entry(e.1.clone()).or_default() += 1;
    }
    assert_eq!(by_kind, want);
}

#[test]
fn field_filters_exclusion_or_phrases_wildcards() {
    let fx = origami_testsupport::require_fixtures!();
    let frames = fleet(fx);
    let index = index_of(&frames);
    let check = |q: &str, expected: BTreeSet<(String, String, String)>| {
        let r = index.search(q, &everything()).unwrap();
        assert_eq!(all_hits(&r), expected, "query {q}");
        assert!(!expected.is_empty(), "query {q} should match something");
        r
    };
    let with_json = |pred: &dyn Fn(Section, &Value) -> bool| {
        items_where(&frames, |_, s, _, json| {
            pred(s, &serde_json::from_str(json).unwrap())
        })
    };

    check(
        "type:package pkg:openssh-server",
        with_json(&|s, v| s == Section::Package && v["name"] == "openssh-server"),
    );
    let r = check(
        "name:nc type:process",
        with_json(&|s, v| s == Section::Process && v["name"] == "nc"),
    );
    let truth = fx.json("memdump/truth.json");
    let nc_pids: BTreeSet<String> = truth["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["comm"] == "nc")
        .map(|p| p["pid"].to_string())
        .collect();
    assert_eq!(
        r.machines[0]
            .hits
            .iter()
            .map(|h| h.key.clone())
            .collect::<BTreeSet<_>>(),
        nc_pids
    );
    check(
        "port:6666",
        with_json(&|s, v| {
            s == Section::Connection && (v["local_port"] == 6666 || v["remote_port"] == 6666)
        }),
    );
    check(
        "path:/etc/ssh/*",
        with_json(&|s, v| {
            matches!(s, Section::File | Section::Config)
                && v["path"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .starts_with("/etc/ssh/")
        }),
    );
    // Exclusion.
    let ip_items = items_where(&frames, |_, _, _, json| mentions(json, IP));
    check(
        &format!("{IP} -type:config"),
        ip_items
            .iter()
            .filter(|e| e.1 != "config")
            .cloned()
            .collect(),
    );
    // OR.
    check(
        "pkg:nginx-light OR pkg:redis-server",
        with_json(&|s, v| {
            s == Section::Package && (v["name"] == "nginx-light" || v["name"] == "redis-server")
        }),
    );
    // A phrase: the words in order, in any item's text.
    check(
        "\"ListenAddress 10.20.30.40\"",
        items_where(&frames, |_, s, _, json| {
            let v: Value = serde_json::from_str(json).unwrap();
            s == Section::Config
                && v["content"]
                    .as_str()
                    .unwrap()
                    .lines()
                    .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["ListenAddress", IP])
        }),
    );
    // Host wildcards, over the host names the frames carry.
    check(
        "host:web-* type:os",
        items_where(&frames, |f, s, _, _| {
            s == Section::Os && f.meta.hostname.as_deref().unwrap_or("").starts_with("web-")
        }),
    );
    // OS filter.
    check(
        "os:ubuntu type:module name:ext4",
        items_where(&frames, |f, s, k, _| {
            s == Section::Module && k == "ext4" && f.os.id.as_deref() == Some("ubuntu")
        }),
    );
    // Users: the account and the processes and files it owns.
    check(
        "user:alice",
        items_where(&frames, |f, s, _, json| {
            let v: Value = serde_json::from_str(json).unwrap();
            let alice = f.user.iter().find(|u| u.name == "alice").map(|u| u.uid);
            match s {
                Section::User => v["name"] == "alice",
                Section::File | Section::Process => alice.is_some_and(|uid| v["uid"] == uid),
                _ => false,
            }
        }),
    );
    // Only exclusions: everything else in the latest state.
    let r = index
        .search(
            "-type:file -type:config -type:package",
            &SearchOptions {
                limit: 0,
                ..everything()
            },
        )
        .unwrap();
    let n: usize = frames
        .iter()
        .map(|f| f.item_count() - f.file.len() - f.config.len() - f.package.len())
        .sum();
    assert_eq!(r.total_hits as usize, n);
    // Facets by package name count machines that have it.
    let r = index.search("pkg:openssl", &everything()).unwrap();
    let have = frames
        .iter()
        .filter(|f| f.package.iter().any(|p| p.name == "openssl"))
        .count();
    assert_eq!(r.facets.package, vec![("openssl".to_string(), have as u64)]);
    assert_eq!(r.facets.host.iter().map(|h| h.1).sum::<u64>(), have as u64);
}

/// What the port and user facets count for one item, worked out here from its frame: its
/// distinct ports (a connection's local port, and its remote port unless 0) and its users
/// (a user entry's name; the owner of a process or a file; the user of a connection's
/// process), lowercased.
struct FacetItem {
    system: String,
    section: Section,
    ports: BTreeSet<String>,
    users: BTreeSet<String>,
}

fn facet_items(frames: &[Frame]) -> Vec<FacetItem> {
    let mut out = Vec::new();
    for f in frames {
        let name_of: BTreeMap<u32, String> = f
            .user
            .iter()
            .map(|u| (u.uid, u.name.to_lowercase()))
            .collect();
        let uid_of: BTreeMap<u32, u32> = f.process.iter().map(|p| (p.pid, p.uid)).collect();
        let mut push = |section, ports: BTreeSet<String>, user: Option<&String>| {
            out.push(FacetItem {
                system: f.system().to_string(),
                section,
                ports,
                users: user.into_iter().cloned().collect(),
            })
        };
        for u in &f.user {
            push(Section::User, BTreeSet::new(), Some(&u.name.to_lowercase()));
        }
        for p in &f.process {
            push(Section::Process, BTreeSet::new(), name_of.get(&p.uid));
        }
        for x in &f.file {
            push(Section::File, BTreeSet::new(), name_of.get(&x.uid));
        }
        for c in &f.connection {
            let mut ports = BTreeSet::from([c.local_port.to_string()]);
            if c.remote_port != 0 {
                ports.insert(c.remote_port.to_string());
            }
            let user = c
                .pid
                .and_then(|pid| uid_of.get(&pid))
                .and_then(|uid| name_of.get(uid));
            push(Section::Connection, ports, user);
        }
    }
    out
}

/// Counts of each port and each user over `items`.
fn count_facets<'a>(
    items: impl Iterator<Item = &'a FacetItem>,
) -> (BTreeMap<String, u64>, BTreeMap<String, u64>, u64) {
    let (mut ports, mut users, mut n) = (BTreeMap::new(), BTreeMap::new(), 0);
    for it in items {
        n += 1;
        for p in &it.ports {
            *ports.entry(p.clone()).or_default() += 1;
        }
        for u in &it.users {
            *users.entry(u.clone()).or_default() += 1;
        }
    }
    (ports, users, n)
}

#[test]
fn port_and_user_facets_count_the_matching_items_under_each_value() {
    let fx = origami_testsupport::require_fixtures!();
    let frames = fleet(fx);
    let index = index_of(&frames);
    let items = facet_items(&frames);
    let facets = |q: &str| {
        let r = index.search(q, &everything()).unwrap();
        let m = |v: &[(String, u64)]| v.iter().cloned().collect::<BTreeMap<_, _>>();
        // Largest first, ties by value.
        for v in [&r.facets.port, &r.facets.user] {
            assert!(
                v.windows(2)
                    .all(|w| w[0].1 > w[1].1 || (w[0].1 == w[1].1 && w[0].0 < w[1].0)),
                "{q}: {v:?}"
            );
        }
        (m(&r.facets.port), m(&r.facets.user), r.total_hits)
    };
    let kinds = |k: &[Section]| {
        let k = k.to_vec();
        move |i: &FacetItem| k.contains(&i.section)
    };

    let want = count_facets(items.iter().filter(|i| kinds(&[Section::Connection])(i)));
    assert!(
        want.0.len() > 5 && want.1.len() > 1,
        "the fleet has ports and users: {want:?}"
    );
    assert_eq!(facets("type:connection"), want);
    let want = count_facets(items.iter().filter(|i| kinds(&[Section::User])(i)));
    assert_eq!(facets("type:user"), want);
    let want = count_facets(
        items
            .iter()
            .filter(|i| kinds(&[Section::Process, Section::File, Section::Connection])(i)),
    );
    assert_eq!(facets("type:process OR type:file OR type:connection"), want);

    // A filter on a facet value: exactly the items holding it, and the other facets
    // counted over them. A connection with two ports counts under both.
    let (busiest, _) = count_facets(items.iter())
        .0
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .unwrap();
    let want = count_facets(items.iter().filter(|i| i.ports.contains(&busiest)));
    let got = facets(&format!("port:{busiest}"));
    assert_eq!(got, want);
    assert_eq!(got.0.get(&busiest), Some(&want.2));
    for user in ["root", "alice"] {
        let want = count_facets(items.iter().filter(|i| i.users.contains(user)));
        assert!(want.2 > 0, "{user} owns something");
        assert_eq!(facets(&format!("user:{user}")), want, "user:{user}");
        assert_eq!(
            facets(&format!("user:{user} type:connection")),
            count_facets(
                items
                    .iter()
                    .filter(|i| i.users.contains(user) && i.section == Section::Connection)
            ),
            "user:{user} type:connection"
        );
    }
    // One machine's connections.
    let sys = &items.iter().find(|i| !i.ports.is_empty()).unwrap().system;
    assert_eq!(
        facets(&format!("system:{sys} type:connection")),
        count_facets(
            items
                .iter()
                .filter(|i| &i.system == sys && i.section == Section::Connection)
        )
    );
    // The facet limit keeps the largest.
    let r = index
        .search(
            "type:connection",
            &SearchOptions {
                facet_limit: 2,
                ..everything()
            },
        )
        .unwrap();
    assert_eq!(r.facets.port.len(), 2);
    let all = facets("type:connection").0;
    let mut top: Vec<(String, u64)> = all.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(2);
    assert_eq!(r.facets.port, top);
}

#[test]
fn malformed_queries_are_errors_with_columns() {
    let index = TantivyIndex::in_ram().unwrap();
    for (q, col) in [
        ("a \"b", 3),
        ("port:ssh", 6),
        ("nope:x", 1),
        ("(a", 1),
        ("a OR", 3),
    ] {
        match index.search(q, &SearchOptions::default()) {
            Err(origami_index::Error::Query(e)) => assert_eq!(e.column, col, "{q}: {e}"),
            other => panic!("{q}: {other:?}"),
        }
    }
}

#[test]
fn history_as_of_changes_and_cheap_reindexing() {
    let fleet = Fleet::new(8, 2000);
    let frames: Vec<Frame> = (0..3).map(|e| fleet.frame(5, e)).collect();
    let sys = frames[0].system().to_string();
    let index = TantivyIndex::in_ram().unwrap();
    for i in 0..8 {
        index.add_frame(&fleet.frame(i, 0)).unwrap();
    }
    index.commit().unwrap();
    for f in &frames[1..] {
        let st = index.add_frame(f).unwrap();
        assert!(!st.stale);
        index.commit().unwrap();
    }

    // History: one record a frame, with the diff counts of origami-frame's own diff.
    let h = index.history(&sys).unwrap();
    assert_eq!(h.len(), 3);
    for (k, v) in h.iter().enumerate() {
        assert_eq!(v.timestamp, frames[k].meta.timestamp);
        assert_eq!(v.items as usize, frames[k].item_count());
        if k > 0 {
            let d = frames[k].diff(&frames[k - 1]);
            let sum = |g: fn(origami_index::frame::DiffCounts) -> usize| {
                Section::ALL.iter().map(|s| g(d.counts(*s))).sum::<usize>() as u64
            };
            assert_eq!(
                (v.added, v.changed, v.removed),
                (sum(|c| c.added), sum(|c| c.changed), sum(|c| c.removed))
            );
        }
    }

    // as_of: the packages as they were at each frame.
    let pkgs_at = |t: Option<OffsetDateTime>| {
        let opts = SearchOptions {
            as_of: t,
            ..everything()
        };
        let r = index
            .search(&format!("system:{sys} type:package"), &opts)
            .unwrap();
        r.machines[0]
            .hits
            .iter()
            .map(|h| h.snippet.clone())
            .collect::<BTreeSet<_>>()
    };
    let expect = |f: &Frame| {
        f.package
            .iter()
            .map(|p| format!("{} {} {} ({})", p.name, p.version, p.arch, p.manager))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(pkgs_at(Some(frames[0].meta.timestamp)), expect(&frames[0]));
    assert_eq!(
        pkgs_at(Some(frames[1].meta.timestamp + time::Duration::minutes(5))),
        expect(&frames[1])
    );
    assert_eq!(pkgs_at(None), expect(&frames[2]));
    assert_ne!(expect(&frames[0]), expect(&frames[2]));
    // The query's own as_of: wins.
    let q = format!(
        "system:{sys} type:package as_of:{}",
        frames[0]
            .meta
            .timestamp
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    let r = index.search(&q, &everything()).unwrap();
    assert_eq!(r.machines[0].hits.len(), frames[0].package.len());

    // changes(T0, T2) is exactly origami-frame's diff of the two frames.
    let got = index
        .changes(&sys, frames[0].meta.timestamp, frames[2].meta.timestamp)
        .unwrap();
    let want = frames[2].diff(&frames[0]);
    assert_eq!(got.process.keys(), want.process.keys());
    assert_eq!(got.connection.keys(), want.connection.keys());
    assert_eq!(got.package, want.package);
    assert_eq!(got.config, want.config);
    assert_eq!(got.file.keys(), want.file.keys());
    assert!(!want.is_empty());
    // Between two instants within one frame's life: nothing.
    assert!(index
        .changes(
            &sys,
            frames[2].meta.timestamp,
            frames[2].meta.timestamp + time::Duration::hours(1)
        )
        .unwrap()
        .is_empty());

    // changed:60m at T2+30m: the versions that began at T2 and those that ended at T2.
    let opts = SearchOptions {
        now: Some(frames[2].meta.timestamp + time::Duration::minutes(30)),
        ..everything()
    };
    let r = index
        .search(&format!("system:{sys} changed:60m"), &opts)
        .unwrap();
    let d = frames[2].diff(&frames[1]);
    let mut want_keys = BTreeSet::new();
    let (a, rm, ch) = d.process.keys();
    want_keys.extend(
        a.iter()
            .chain(rm.iter())
            .chain(ch.iter())
            .map(|k| ("process", k.clone())),
    );
    let (a, rm, ch) = d.connection.keys();
    want_keys.extend(
        a.iter()
            .chain(rm.iter())
            .chain(ch.iter())
            .map(|k| ("connection", k.clone())),
    );
    let (a, rm, ch) = d.package.keys();
    want_keys.extend(
        a.iter()
            .chain(rm.iter())
            .chain(ch.iter())
            .map(|k| ("package", k.clone())),
    );
    let (a, rm, ch) = d.config.keys();
    want_keys.extend(
        a.iter()
            .chain(rm.iter())
            .chain(ch.iter())
            .map(|k| ("config", k.clone())),
    );
    let (a, rm, ch) = d.file.keys();
    want_keys.extend(
        a.iter()
            .chain(rm.iter())
            .chain(ch.iter())
            .map(|k| ("file", k.clone())),
    );
    let got_keys: BTreeSet<(&str, String)> = r.machines[0]
        .hits
        .iter()
        .map(|h| (h.kind.name(), h.key.clone()))
        .collect();
    assert_eq!(got_keys, want_keys);
    // A changed item shows both versions: the closed one and the current one.
    let changed_count: usize = Section::ALL.iter().map(|s| d.counts(*s).changed).sum();
    assert_eq!(r.machines[0].hits.len(), want_keys.len() + changed_count);

    // Re-indexing an unchanged frame writes only the frame record.
    let mut again = frames[2].clone();
    again.meta.timestamp += time::Duration::hours(5);
    let st = index.add_frame(&again).unwrap();
    assert_eq!(st.unchanged as usize, again.item_count());
    assert_eq!(st.docs_written, 1);
    // An older frame is stale and skipped.
    let st = index.add_frame(&frames[0]).unwrap();
    assert!(st.stale && st.docs_written == 0);
}

#[test]
fn commits_are_durable_and_state_is_recovered_on_open() {
    let dir = std::env::temp_dir().join(format!("origami-index-durable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let fleet = Fleet::new(4, 800);
    {
        let index = TantivyIndex::open_or_create(&dir).unwrap();
        for i in 0..4 {
            index.add_frame(&fleet.frame(i, 0)).unwrap();
        }
        index.commit().unwrap();
        // Not committed: lost when the index is dropped without a commit.
        index.add_frame(&fleet.frame(0, 1)).unwrap();
    }
    let index = TantivyIndex::open_or_create(&dir).unwrap();
    let r = index.search("type:os", &everything()).unwrap();
    assert_eq!(r.total_machines, 4);
    // Machines are named even when no hit is asked for.
    let r = index
        .search(
            "type:os",
            &SearchOptions {
                hits_per_machine: 0,
                ..everything()
            },
        )
        .unwrap();
    let mut hosts: Vec<String> = r.machines.iter().map(|m| m.hostname.clone()).collect();
    hosts.sort();
    let mut want: Vec<String> = (0..4).map(|i| fleet.hostname(i)).collect();
    want.sort();
    assert_eq!(hosts, want);
    assert!(r
        .machines
        .iter()
        .all(|m| m.hits.is_empty() && m.matched == 1));
    assert_eq!(index.history(&fleet.system(0)).unwrap().len(), 1);
    // The recovered state knows every current item: an unchanged frame writes only its record.
    let mut f = fleet.frame(1, 0);
    f.meta.timestamp += time::Duration::hours(1);
    let st = index.add_frame(&f).unwrap();
    assert_eq!(
        (st.unchanged as usize, st.docs_written),
        (f.item_count(), 1)
    );
    // And a changed one closes the right versions.
    let st = index.add_frame(&fleet.frame(0, 1)).unwrap();
    index.commit().unwrap();
    let d = fleet.frame(0, 1).diff(&fleet.frame(0, 0));
    let changed: usize = Section::ALL.iter().map(|s| d.counts(*s).changed).sum();
    assert_eq!(st.changed as usize, changed);
    let r = index
        .search(
            &format!("system:{} type:process", fleet.system(0)),
            &everything(),
        )
        .unwrap();
    assert_eq!(r.machines[0].hits.len(), fleet.frame(0, 1).process.len());
    drop(index);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The added / changed / removed counts of origami-frame's own diff of two frames.
fn diff_counts(new: &Frame, old: &Frame) -> (u64, u64, u64) {
    let d = new.diff(old);
    let sum = |g: fn(origami_index::frame::DiffCounts) -> usize| {
        Section::ALL.iter().map(|s| g(d.counts(*s))).sum::<usize>() as u64
    };
    (sum(|c| c.added), sum(|c| c.changed), sum(|c| c.removed))
}

#[test]
fn unchanged_sections_are_skipped_yet_every_change_is_found() {
    let fleet = Fleet::new(6, 1500);
    let index = TantivyIndex::in_ram().unwrap();
    let later = |f: &Frame, minutes: i64| {
        let mut f = f.clone();
        f.meta.timestamp += time::Duration::minutes(minutes);
        f
    };
    let e0 = fleet.frame(2, 0);
    let sys = e0.system().to_string();
    // The same frame again, then one file edited (the other sections unchanged), then one
    // file of a section that was unchanged as a whole removed, one package added, then the
    // next epoch, then the first frame's content again: every step against Frame::diff.
    let mut edited = later(&e0, 20);
    edited.file[7].size += 1;
    let mut removed = later(&edited, 20);
    let gone = removed.file.remove(100);
    removed.package.push(origami_index::frame::Package {
        name: "zz-new".into(),
        version: "1".into(),
        ..Default::default()
    });
    let e1 = later(&fleet.frame(2, 1), 60);
    let back = later(&e0, 300);
    let steps = [
        e0.clone(),
        later(&e0, 10),
        edited,
        removed.clone(),
        later(&removed, 5),
        e1,
        back,
    ];
    let mut prev: Option<&Frame> = None;
    for (k, f) in steps.iter().enumerate() {
        let st = index.add_frame(f).unwrap();
        index.commit().unwrap();
        let (added, changed, gone_n) = match prev {
            Some(p) => diff_counts(f, p),
            None => (f.item_count() as u64, 0, 0),
        };
        assert_eq!(
            (st.added, st.changed, st.removed),
            (added, changed, gone_n),
            "step {k}"
        );
        assert_eq!(
            st.unchanged + added + changed,
            f.item_count() as u64,
            "step {k}"
        );
        assert_eq!(st.duplicates, 0);
        // The index's current state is the frame: every section's item count.
        let r = index
            .search(&format!("system:{sys}"), &everything())
            .unwrap();
        assert_eq!(r.total_hits, f.item_count() as u64, "step {k}");
        let r = index
            .search(&format!("system:{sys} key:{}", gone.path), &everything())
            .unwrap();
        let present = !(k == 3 || k == 4);
        assert_eq!(r.total_hits, u64::from(present), "step {k}: {}", gone.path);
        prev = Some(f);
    }
    // changes() across the steps is origami-frame's diff too.
    let got = index
        .changes(&sys, steps[1].meta.timestamp, steps[4].meta.timestamp)
        .unwrap();
    let want = steps[4].diff(&steps[1]);
    assert_eq!(got.file.keys(), want.file.keys());
    assert_eq!(got.package.keys(), want.package.keys());

    // A section with a repeated key: the first item is kept, the repeat counted, also when
    // the section is unchanged as a whole.
    let mut dup = later(&steps[6], 10);
    let first = dup.package[0].clone();
    let mut repeat = first.clone();
    repeat.version.push_str("-other");
    dup.package.push(repeat);
    for (k, f) in [dup.clone(), later(&dup, 10)].iter().enumerate() {
        let st = index.add_frame(f).unwrap();
        assert_eq!(st.duplicates, 1, "round {k}");
        assert_eq!(
            st.unchanged as usize,
            f.item_count() - 1,
            "round {k}: nothing changed"
        );
        assert_eq!((st.added, st.changed, st.removed), (0, 0, 0), "round {k}");
    }
}

#[test]
fn an_index_written_with_the_former_schema_still_opens_and_works() {
    use tantivy::schema::{
        IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STORED, STRING,
    };
    // The schema before stored keys, stored key hashes and an indexed valid_from were dropped.
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(origami_index::tokenizer::TOKENIZER_NAME)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    for name in ["system", "host", "os", "kind"] {
        b.add_text_field(name, STRING | FAST | STORED);
    }
    b.add_text_field("key", STORED);
    b.add_u64_field("key_hash", INDEXED | FAST | STORED);
    b.add_u64_field("content_hash", FAST);
    b.add_u64_field("valid_from", INDEXED | FAST | STORED);
    b.add_u64_field("valid_to", INDEXED | FAST | STORED);
    b.add_u64_field("first", INDEXED | STORED);
    b.add_text_field("name", STRING | STORED);
    b.add_text_field("path", STRING);
    b.add_text_field("port", STRING);
    b.add_text_field("pkg", STRING | FAST);
    b.add_text_field("user", STRING | STORED);
    b.add_text_field("exact", STRING);
    b.add_text_field("text", text);
    b.add_text_field("item", STORED);
    let dir = std::env::temp_dir().join(format!("origami-index-former-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    tantivy::Index::create_in_dir(&dir, b.build()).unwrap();

    let fleet = Fleet::new(3, 600);
    let (e0, e1) = (fleet.frame(1, 0), fleet.frame(1, 1));
    let sys = e0.system().to_string();
    {
        let index = TantivyIndex::open_or_create(&dir).unwrap();
        index.add_frame(&e0).unwrap();
        index.commit().unwrap();
    }
    // Reopened: the state is recovered, a changed frame closes the right versions.
    let index = TantivyIndex::open_or_create(&dir).unwrap();
    let st = index.add_frame(&e1).unwrap();
    index.commit().unwrap();
    assert_eq!((st.added, st.changed, st.removed), diff_counts(&e1, &e0));
    let got = index
        .changes(&sys, e0.meta.timestamp, e1.meta.timestamp)
        .unwrap();
    let want = e1.diff(&e0);
    assert_eq!(got.process.keys(), want.process.keys());
    assert_eq!(got.connection.keys(), want.connection.keys());
    let r = index
        .search(&format!("system:{sys} type:process"), &everything())
        .unwrap();
    let keys: BTreeSet<String> = r.machines[0].hits.iter().map(|h| h.key.clone()).collect();
    let want: BTreeSet<String> = e1.process.iter().map(|p| p.key()).collect();
    assert_eq!(keys, want);
    // `port` and `user` are no fast columns there: their filters work, their facets are
    // empty (until the index is rebuilt).
    let c = &e1.connection[0];
    let r = index
        .search(
            &format!("system:{sys} port:{} type:connection", c.local_port),
            &everything(),
        )
        .unwrap();
    assert!(r.machines[0].hits.iter().any(|h| h.key == c.key()));
    assert!(r.facets.port.is_empty() && r.facets.user.is_empty());
    assert!(!index
        .search("user:root", &everything())
        .unwrap()
        .machines
        .is_empty());
    drop(index);
    let _ = std::fs::remove_dir_all(&dir);
}
