//! The Crawler over a whole target (disk and memory of one machine), judged by the shared
//! independent checker `../shared/tools/frame-vs-truth.py` against the fixtures' truth.

use std::process::Command;

use origami_introspect::{CrawlOptions, Crawler, Target};

fn checker(fx: &origami_testsupport::Fixtures) -> std::path::PathBuf {
    fx.source().join("../tools/frame-vs-truth.py")
}

fn judge(
    fx: &origami_testsupport::Fixtures,
    args: &[&str],
    frame: &origami_frame::Frame,
) -> String {
    let dir = std::env::temp_dir().join(format!("origami-judge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.json", frame.system()));
    std::fs::write(&path, frame.to_json()).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(checker(fx)).arg(args[0]).arg(&path);
    for a in &args[1..] {
        cmd.arg(if a.contains('/') {
            fx.path(a).into_os_string()
        } else {
            (*a).into()
        });
    }
    let out = cmd.output().expect("python3 runs the checker");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "checker says {line} ({})",
        String::from_utf8_lossy(&out.stderr)
    );
    line
}

#[test]
fn memory_only_target_matches_each_dump_truth() {
    let fx = origami_testsupport::require_fixtures!();
    let crawler = Crawler::new(CrawlOptions::builder().use_cache(false).build().unwrap());
    for dump in ["memdump", "memdump-novmcoreinfo", "memdump-la57"] {
        let frame = crawler
            .crawl(&Target::default().with_memory(fx.path(&format!("{dump}/memory.elf"))))
            .unwrap();
        let line = judge(fx, &["memory", &format!("{dump}/truth.json")], &frame);
        eprintln!("{dump}: {line}");
    }
}

#[test]
fn disk_and_memory_of_one_machine_make_one_frame() {
    let fx = origami_testsupport::require_fixtures!();
    let target = Target::disk(fx.path("debian/disk-gpt.qcow2"))
        .with_memory(fx.path("memdump/memory.elf"))
        .with_system_map(fx.path("memdump/kernel/System.map-6.1.0-56-amd64"));
    let frame = Crawler::new(CrawlOptions::builder().system("both").build().unwrap())
        .crawl(&target)
        .unwrap();
    assert_eq!(frame.system(), "both");
    // Disk sections and memory sections side by side, each judged by the checker.
    let disk = judge(
        fx,
        &[
            "disk",
            "debian/rootfs.facts.json",
            "debian/rootfs.manifest.json",
            "10.20.30.40",
        ],
        &{
            // The disk check compares os.hostname with the disk's; memory's hostname wins in
            // the frame, so judge a copy carrying the disk's view of it.
            let mut f = frame.clone();
            f.os.hostname = Some(
                fx.json("debian/rootfs.facts.json")["hostname"]
                    .as_str()
                    .unwrap()
                    .into(),
            );
            f
        },
    );
    let _ = disk;
    let truth = fx.json("memdump/truth.json");
    assert_eq!(
        frame.os.kernel.as_deref(),
        truth["kernel"]["release"].as_str()
    );
    assert_eq!(frame.os.version.as_deref(), Some("12"));
    assert!(frame.meta.source.len() == 2);
    judge(fx, &["memory", "memdump/truth.json"], &frame);
}
