//! The engine's behaviour with stand-in crawls: failures, panics, hangs, the thread bound,
//! and what the sink can do.

use std::sync::{Condvar, Mutex};

use super::*;

fn machines(n: usize) -> Vec<Machine> {
    (0..n)
        .map(|i| Machine::new(format!("m{i}"), Target::disk(format!("/m{i}.img"))))
        .collect()
}

/// A sink that records what it is handed.
#[derive(Default)]
struct Record {
    frames: Vec<String>,
    failed: Vec<String>,
    progress: Vec<Progress>,
    stop_after: Option<usize>,
    refuse: Option<&'static str>,
}

#[derive(Debug, thiserror::Error)]
#[error("index full")]
struct Full;

impl Sink for Record {
    type Error = Full;
    fn frame(&mut self, machine: &Machine, frame: Frame) -> Result<bool, Full> {
        assert_eq!(frame.system(), machine.name);
        if self.refuse == Some(machine.name.as_str()) {
            return Err(Full);
        }
        self.frames.push(machine.name.clone());
        Ok(self.stop_after.is_none_or(|n| self.frames.len() < n))
    }
    fn failed(&mut self, machine: &Machine, _: &MachineError) -> bool {
        self.failed.push(machine.name.clone());
        true
    }
    fn progress(&mut self, progress: &Progress) {
        self.progress.push(*progress);
    }
}

/// A gate hung crawls wait on until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

/// Counts crawls in progress and the most seen at once.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Concurrency {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits (bounded) until the fleet's stuck threads have ended.
fn until_unstuck(fleet: &Fleet) {
    for _ in 0..1000 {
        if fleet.stuck() == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} crawl threads still stuck", fleet.stuck());
}

#[test]
fn a_failing_or_panicking_machine_does_not_stop_the_fleet() {
    let ms = machines(20);
    let seen = Arc::new(Concurrency::default());
    let c = seen.clone();
    let mut fleet = Fleet::builder().jobs(3).build(CrawlOptions::default());
    let mut sink = Record::default();
    let report = fleet
        .run(
            &ms,
            &mut sink,
            Arc::new(move |m: &Machine| {
                c.enter();
                std::thread::sleep(Duration::from_millis(2));
                c.leave();
                match m.name.as_str() {
                    "m3" => Err(crate::Error::NotFound {
                        path: "/etc/os-release".into(),
                    }),
                    "m7" => panic!("boom in m7"),
                    _ => Ok(Frame::new("whatever")),
                }
            }),
        )
        .unwrap();
    assert_eq!(report.machines, 20);
    assert_eq!(report.crawled, 18);
    assert_eq!(sink.frames.len(), 18);
    assert_eq!(sink.failed.len(), 2);
    assert!(
        matches!(&report.failed["m7"], MachineError::Panicked { message } if message == "boom in m7")
    );
    assert!(matches!(
        &report.failed["m3"],
        MachineError::Crawl(crate::Error::NotFound { .. })
    ));
    assert!(!report.stopped);
    assert!(seen.most.load(Ordering::SeqCst) <= 3);
    // Progress after every machine, ending at the total.
    assert_eq!(sink.progress.len(), 20);
    assert_eq!(sink.progress.last().unwrap().done, 20);
    assert_eq!(sink.progress.last().unwrap().running, 0);
}

#[test]
fn a_hung_crawl_times_out_and_the_others_go_on() {
    let ms = machines(6);
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    let mut fleet = Fleet::builder()
        .jobs(2)
        .timeout(Duration::from_secs(2))
        .build(CrawlOptions::default());
    let mut sink = Record::default();
    let report = fleet
        .run(
            &ms,
            &mut sink,
            Arc::new(move |m: &Machine| {
                if m.name == "m1" {
                    g.wait();
                }
                Ok(Frame::new(""))
            }),
        )
        .unwrap();
    assert_eq!(report.crawled, 5);
    assert!(matches!(
        report.failed["m1"],
        MachineError::TimedOut { after } if after == Duration::from_secs(2)
    ));
    assert_eq!(sink.failed, ["m1"]);
    // Its thread still runs; the fleet counts it until it ends.
    assert_eq!(fleet.stuck(), 1);
    gate.open();
    until_unstuck(&fleet);
}

#[test]
fn stuck_threads_are_bounded_and_the_rest_is_reported() {
    let ms = machines(5);
    let gate = Arc::new(Gate::default());
    let alive = Arc::new(Concurrency::default());
    let (g, a) = (gate.clone(), alive.clone());
    let mut fleet = Fleet::builder()
        .jobs(1)
        .max_stuck(1)
        .timeout(Duration::from_millis(50))
        .build(CrawlOptions::default());
    let mut sink = Record::default();
    let report = fleet
        .run(
            &ms,
            &mut sink,
            Arc::new(move |_: &Machine| {
                a.enter();
                g.wait();
                a.leave();
                Ok(Frame::new(""))
            }),
        )
        .unwrap();
    // jobs + max_stuck = 2 threads at most: two crawls time out, three are never started.
    assert_eq!(report.crawled, 0);
    let timed_out = report
        .failed
        .values()
        .filter(|e| matches!(e, MachineError::TimedOut { .. }))
        .count();
    let not_started = report
        .failed
        .values()
        .filter(|e| matches!(e, MachineError::TooManyStuck { stuck: 2 }))
        .count();
    assert_eq!((timed_out, not_started), (2, 3), "{:?}", report.failed);
    assert_eq!(sink.failed.len(), 5);
    assert_eq!(fleet.stuck(), 2);
    // Both stuck threads reach their crawl (on a loaded machine, maybe after the fleet
    // returned); never more than two at once.
    for _ in 0..1000 {
        if alive.now.load(Ordering::SeqCst) == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(alive.most.load(Ordering::SeqCst), 2);

    // The bound holds across calls: while they are stuck, nothing more starts.
    let again = fleet
        .run(
            &ms[..1],
            Record::default(),
            Arc::new(|_: &Machine| unreachable!()),
        )
        .unwrap();
    assert!(matches!(
        again.failed["m0"],
        MachineError::TooManyStuck { .. }
    ));
    gate.open();
    until_unstuck(&fleet);
    assert_eq!(alive.now.load(Ordering::SeqCst), 0);
}

#[test]
fn the_sink_can_stop_the_fleet_or_refuse_a_frame() {
    let ms = machines(10);
    let mut fleet = Fleet::builder().jobs(1).build(CrawlOptions::default());
    let crawl: CrawlFn = Arc::new(|_: &Machine| Ok(Frame::new("")));

    let mut stop = Record {
        stop_after: Some(3),
        ..Record::default()
    };
    let report = fleet.run(&ms, &mut stop, crawl.clone()).unwrap();
    assert!(report.stopped);
    assert_eq!(stop.frames, ["m0", "m1", "m2"]);
    assert_eq!(report.crawled, 3);
    assert!(report.failed.is_empty());
    until_unstuck(&fleet);

    let mut refuse = Record {
        refuse: Some("m4"),
        ..Record::default()
    };
    let report = fleet.run(&ms, &mut refuse, crawl).unwrap();
    assert!(!report.stopped);
    assert_eq!(report.crawled, 9);
    assert!(matches!(report.failed["m4"], MachineError::Sink(_)));
    assert_eq!(report.failed["m4"].to_string(), "index full");
}

#[test]
fn names_must_be_unique_and_not_empty() {
    let mut fleet = Fleet::builder().build(CrawlOptions::default());
    let mut ms = machines(3);
    ms[2].name = "m0".into();
    assert!(matches!(
        fleet.crawl(&ms, Record::default()),
        Err(FleetError::DuplicateName { name }) if name == "m0"
    ));
    ms[2].name = String::new();
    assert!(matches!(
        fleet.crawl(&ms, Record::default()),
        Err(FleetError::EmptyName { index: 2 })
    ));
}

#[test]
fn real_crawls_of_missing_disks_read_nothing_and_say_why() {
    let mut fleet = Fleet::builder().jobs(2).build(CrawlOptions::default());
    let mut sink = Record::default();
    let report = fleet.crawl(&machines(3), &mut sink).unwrap();
    assert_eq!(report.crawled, 3);
    assert_eq!(report.read_nothing.len(), 3);
    assert!(report.feature_errors["m0"][0].contains("/m0.img"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["crawled"], 3);
}

#[test]
fn a_machine_with_its_own_options_is_crawled_with_them() {
    let zst = include_bytes!("../../../examples/demo-fleet/web-02.img.zst");
    let disk = std::env::temp_dir().join(format!("origami-fleet-own-{}.img", std::process::id()));
    std::fs::write(&disk, zstd::stream::decode_all(&zst[..]).unwrap()).unwrap();
    let only_os = CrawlOptions::builder()
        .sections([origami_frame::Section::Os])
        .build()
        .unwrap();
    let ms = [
        Machine::new("fleet-options", Target::disk(&disk)),
        Machine::new("own-options", Target::disk(&disk)).with_options(only_os),
    ];
    #[derive(Default)]
    struct Keep(Vec<Frame>);
    impl Sink for Keep {
        type Error = std::convert::Infallible;
        fn frame(&mut self, _: &Machine, f: Frame) -> Result<bool, Self::Error> {
            self.0.push(f);
            Ok(true)
        }
    }
    let mut keep = Keep::default();
    let report = Fleet::builder()
        .jobs(2)
        .build(CrawlOptions::default())
        .crawl(&ms, &mut keep)
        .unwrap();
    std::fs::remove_file(&disk).unwrap();
    assert_eq!(report.crawled, 2);
    let by = |n: &str| keep.0.iter().find(|f| f.system() == n).unwrap();
    assert!(!by("fleet-options").package.is_empty());
    assert!(!by("fleet-options").file.is_empty());
    let own = by("own-options");
    assert_eq!(own.os.id.as_deref(), Some("debian"));
    assert!(own.package.is_empty() && own.file.is_empty());
}
