//! Commits are durable across a crash: a child process (this test binary run again)
//! indexes one machine's frame at a time into a folder, commits, and reports each commit
//! on stdout; the parent kills it with SIGKILL at some point (no destructor, no flush,
//! possibly in the middle of a commit or of a segment merge), reopens the folder and
//! checks that every frame reported committed is there, whole, and that the index still
//! takes new frames. Expectations come from the synthetic fleet's frames themselves.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use origami_index::{Index, Search, SearchOptions, TantivyIndex};
use origami_testsupport::synth::Fleet;

const CHILD_ENV: &str = "ORIGAMI_CRASH_CHILD_DIR";
const MACHINES: usize = 40;
const ITEMS: usize = 600;

/// The child: index and commit machines one by one, reporting each, forever (until
/// killed); after the last machine, start again with newer frames.
fn child(dir: &str) -> ! {
    let fleet = Fleet::new(MACHINES, ITEMS);
    let index = TantivyIndex::open_or_create(dir).unwrap();
    let mut out = std::io::stdout().lock();
    for round in 0.. {
        for m in 0..MACHINES {
            index.add_frame(&fleet.frame(m, round)).unwrap();
            index.commit().unwrap();
            writeln!(out, "committed {m} {round}").unwrap();
            out.flush().unwrap();
        }
    }
    unreachable!()
}

#[test]
fn committed_frames_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
    }
    let dir = std::env::temp_dir().join(format!("origami-index-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let fleet = Fleet::new(MACHINES, ITEMS);
    // This test's name as the test binary lists it (`crash::committed_...`: the file is a
    // module of the `it` binary), for the child to run it alone.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let this_test = format!("{module}::committed_frames_survive_sigkill");

    // Kill points: after a few commits, mid-way, and after a full round (merges running).
    for kill_after in [3usize, 17, MACHINES + 5] {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &this_test, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut committed: Vec<(usize, u32)> = Vec::new();
        let started = Instant::now();
        {
            let lines = BufReader::new(child.stdout.as_mut().unwrap()).lines();
            for line in lines {
                let line = line.unwrap();
                let Some(rest) = line.strip_prefix("committed ") else {
                    continue;
                };
                let mut parts = rest.split(' ');
                let m: usize = parts.next().unwrap().parse().unwrap();
                let round: u32 = parts.next().unwrap().parse().unwrap();
                committed.push((m, round));
                if committed.len() >= kill_after {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(300),
                    "child too slow"
                );
            }
        }
        // SIGKILL: nothing of the child's runs after this.
        child.kill().unwrap();
        let _ = child.wait();
        assert!(
            committed.len() >= kill_after,
            "child ended early: {committed:?}"
        );

        let index = TantivyIndex::open_or_create(&dir).unwrap();
        // Every machine reported committed is there with its newest committed frame.
        let mut newest: std::collections::BTreeMap<usize, u32> = Default::default();
        for (m, r) in &committed {
            let e = newest.entry(*m).or_default();
            *e = (*e).max(*r);
        }
        let systems = index.systems().unwrap();
        for (m, round) in &newest {
            let frame = fleet.frame(*m, *round);
            let (_, ts) = systems
                .iter()
                .find(|(s, _)| *s == frame.meta.system)
                .unwrap_or_else(|| panic!("machine {m} committed but missing"));
            // The child may have committed a newer frame after its last report.
            assert!(
                *ts >= frame.meta.timestamp,
                "machine {m}: older frame than committed"
            );
            if *ts == frame.meta.timestamp {
                // Whole: every process of the frame is found.
                let r = index
                    .search(
                        &format!("system:{} type:process", frame.meta.system),
                        &SearchOptions {
                            hits_per_machine: 100_000,
                            ..SearchOptions::default()
                        },
                    )
                    .unwrap();
                assert_eq!(r.machines.len(), 1, "machine {m}");
                assert_eq!(
                    r.machines[0].matched as usize,
                    frame.process.len(),
                    "machine {m}"
                );
            }
        }
        // And the index goes on taking frames after the crash.
        index.add_frame(&fleet.frame(0, 99)).unwrap();
        index.commit().unwrap();
        drop(index);
        let index = TantivyIndex::open_or_create(&dir).unwrap();
        assert!(index
            .systems()
            .unwrap()
            .iter()
            .any(|(s, ts)| *s == fleet.system(0) && *ts == fleet.frame(0, 99).meta.timestamp));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
