//! Frame model tests: JSON round trips, unknown fields, JSON Lines errors, and diffs of
//! frames built from the fixtures' ground truth (checked against set arithmetic done here on
//! the truth itself, not against the library's own output).

use std::collections::BTreeSet;

use origami_frame::{Frame, FrameReader, FrameWriter, Item, JsonlError, Package, User};
use serde_json::{json, Value};

/// A frame of the Debian fixture guest, built from its ground truth (facts + manifest).
fn debian_frame(facts: &Value, manifest: &Value) -> Frame {
    origami_testsupport::truth::debian_frame("vmi-fixture", facts, manifest)
}

/// A frame of a memory fixture, built from its truth.json.
fn memory_frame(truth: &Value) -> Frame {
    let system = truth["kernel"]["hostname"].as_str().unwrap();
    origami_testsupport::truth::memory_frame(system, truth)
}

#[test]
fn round_trip_keeps_everything_including_unknown_fields() {
    let fx = origami_testsupport::require_fixtures!();
    let frame = debian_frame(
        &fx.json("debian/rootfs.facts.json"),
        &fx.json("debian/rootfs.manifest.json"),
    );
    assert!(frame.package.len() > 50 && frame.file.len() > 1000);
    let text = frame.to_json();
    let back = Frame::from_json(&text).unwrap();
    assert_eq!(back, frame);

    // Add unknown fields at every level a newer crawler might: top-level section,
    // _frame, os, and inside items.
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["gpu"] = json!([{"model": "H100", "count": 8}]);
    v["_frame"]["region"] = json!("eu-west");
    v["os"]["selinux"] = json!("enforcing");
    v["package"][0]["license"] = json!("GPL-2+");
    v["file"][3]["xattrs"] = json!({"user.tag": "x"});
    let with_unknown = Frame::from_json(&v.to_string()).unwrap();
    let again: Value = serde_json::from_str(&with_unknown.to_json()).unwrap();
    assert_eq!(again, v, "unknown fields must survive a round trip");
}

#[test]
fn absent_sections_read_as_empty_and_write_as_arrays() {
    let f = Frame::from_json(r#"{"_frame":{"system":"x","timestamp":"2026-11-26T10:00:00Z"}}"#)
        .unwrap();
    assert_eq!(f.system(), "x");
    assert_eq!(f.item_count(), 0);
    let v: Value = serde_json::from_str(&f.to_json()).unwrap();
    for s in [
        "file",
        "config",
        "package",
        "user",
        "process",
        "connection",
        "module",
    ] {
        assert_eq!(v[s], json!([]), "section {s}");
    }
    assert!(v["os"].is_object());
    assert_eq!(v["_frame"]["timestamp"], "2026-11-26T10:00:00Z");
}

#[test]
fn diff_of_two_memory_fixtures_matches_truth_set_arithmetic() {
    let fx = origami_testsupport::require_fixtures!();
    let a = fx.json("memdump/truth.json");
    let b = fx.json("memdump-novmcoreinfo/truth.json");
    let (fa, fb) = (memory_frame(&a), memory_frame(&b));
    let d = fb.diff(&fa);

    // Independent expectation from the truth files: pid sets, and for pids in both, whether
    // the fields we carry differ.
    let procs = |t: &Value| -> std::collections::BTreeMap<u64, Value> {
        t["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let mut p = p.clone();
                let keep: Value = json!({"ppid": p["ppid"].take(), "comm": p["comm"].take(),
                    "cmdline": p["cmdline"].take(), "uid": p["uid"][0].take(),
                    "state": p["state"].take(), "kt": p["kernel_thread"].take()});
                (p["pid"].as_u64().unwrap(), keep)
            })
            .collect()
    };
    let (pa, pb) = (procs(&a), procs(&b));
    let added: BTreeSet<String> = pb
        .keys()
        .filter(|k| !pa.contains_key(k))
        .map(|k| k.to_string())
        .collect();
    let removed: BTreeSet<String> = pa
        .keys()
        .filter(|k| !pb.contains_key(k))
        .map(|k| k.to_string())
        .collect();
    let changed: BTreeSet<String> = pa
        .iter()
        .filter(|(k, v)| pb.get(k).is_some_and(|w| w != *v))
        .map(|(k, _)| k.to_string())
        .collect();
    let (got_a, got_r, got_c) = d.process.keys();
    assert_eq!(got_a.into_iter().collect::<BTreeSet<_>>(), added);
    assert_eq!(got_r.into_iter().collect::<BTreeSet<_>>(), removed);
    assert_eq!(got_c.into_iter().collect::<BTreeSet<_>>(), changed);
    assert!(
        !changed.is_empty() || !added.is_empty(),
        "two boots should differ somewhere"
    );

    // The same kernel build in both: modules present in both by name.
    let ma: BTreeSet<&str> = a["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let mb: BTreeSet<&str> = b["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let (m_added, m_removed, _) = d.module.keys();
    assert_eq!(m_added.len(), mb.difference(&ma).count());
    assert_eq!(m_removed.len(), ma.difference(&mb).count());

    // A frame diffs empty against itself, whatever its timestamp.
    let mut later = fa.clone();
    later.meta.timestamp += time::Duration::hours(1);
    assert!(later.diff(&fa).is_empty());
}

#[test]
fn diff_of_debian_frame_after_an_upgrade() {
    let fx = origami_testsupport::require_fixtures!();
    let facts = fx.json("debian/rootfs.facts.json");
    let old = debian_frame(&facts, &fx.json("debian/rootfs.manifest.json"));
    let mut new = old.clone();
    // An upgrade of one package, a removal, an install, a user added and a file changed.
    new.package[0].version.push_str("+deb12u1");
    let gone = new.package.remove(1);
    new.package.push(Package {
        name: "curl".into(),
        version: "7.88.1-10".into(),
        arch: "amd64".into(),
        manager: "dpkg".into(),
        ..Default::default()
    });
    new.user.push(User {
        name: "carol".into(),
        uid: 1003,
        gid: 1003,
        home: "/home/carol".into(),
        shell: "/bin/bash".into(),
        ..Default::default()
    });
    let hosts = new
        .file
        .iter_mut()
        .find(|f| f.path == "/etc/hosts")
        .unwrap();
    hosts.size += 20;
    let d = new.diff(&old);
    assert_eq!(
        d.package.keys(),
        (
            vec!["curl:amd64".to_string()],
            vec![gone.key()],
            vec![old.package[0].key()]
        )
    );
    assert_eq!(d.user.keys().0, vec!["carol".to_string()]);
    assert_eq!(
        d.file.keys(),
        (vec![], vec![], vec!["/etc/hosts".to_string()])
    );
    assert!(d.os.is_none() && d.process.is_empty());
}

#[test]
fn malformed_lines_name_their_line_and_the_reader_goes_on() {
    let a = Frame::new("a");
    let b = Frame::new("b");
    let mut w = FrameWriter::new(Vec::new());
    w.write(&a).unwrap();
    let mut bytes = w.into_inner().unwrap();
    let good_b = b.to_json();
    bytes.extend_from_slice(b"\n"); // blank line 2
    bytes.extend_from_slice(&good_b.as_bytes()[..good_b.len() / 2]); // truncated line 3
    bytes.extend_from_slice(b"\n{\"_frame\": 42}\n"); // wrong type, line 4
    bytes.extend_from_slice(good_b.as_bytes()); // line 5
    bytes.push(b'\n');

    let items: Vec<_> = FrameReader::new(&bytes[..]).collect();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0].as_ref().unwrap().system(), "a");
    match &items[1] {
        Err(e @ JsonlError::Parse { line: 3, .. }) => assert!(e.to_string().starts_with("line 3:")),
        other => panic!("want a parse error on line 3, got {other:?}"),
    }
    assert!(matches!(&items[2], Err(JsonlError::Parse { line: 4, .. })));
    assert_eq!(items[3].as_ref().unwrap().system(), "b");
}

#[test]
fn reading_is_streaming() {
    // A reader over an endless source of frames yields the first ones without reading to
    // the end: it cannot be holding the whole input.
    let line = format!("{}\n", Frame::new("s").to_json());
    let endless = std::io::BufReader::new(
        std::io::repeat(0)
            .take(0)
            .chain(Cycle(line.into_bytes(), 0)),
    );
    let first: Vec<_> = FrameReader::new(endless).take(1000).collect();
    assert_eq!(first.len(), 1000);
    assert!(first.iter().all(|f| f.as_ref().unwrap().system() == "s"));
}

use std::io::Read;

/// An endless reader repeating one buffer.
struct Cycle(Vec<u8>, usize);
impl Read for Cycle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len() - self.1);
        buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
        self.1 = (self.1 + n) % self.0.len();
        Ok(n)
    }
}
