//! Attaching to a running QEMU by its process id (issue 12 item 1): boots the fixture guest
//! (same kernel, initramfs and command line as the fixture dumps, KASLR on) under QEMU TCG
//! with plain anonymous RAM, waits until the guest has written its own /proc snapshot,
//! attaches with `MemoryDump::attach_qemu_pid` (reads through `/proc/PID/mem`, the guest
//! not stopped), crawls with no System.map and compares processes, TCP sockets, modules,
//! release and host name with the snapshot, as `memory_live.rs` does for a RAM file.
//!
//! A second guest runs on the `pc` machine with 5 GiB of RAM in a shared memfd: its RAM
//! is split around the PCI hole (3 GiB below 4 GiB, 2 GiB above), and most kernel
//! allocations land above 4 GiB, so the crawl only matches when the split is right; the
//! memfd is read through QEMU's own descriptor (`/proc/PID/fd`). As a control, the same
//! memfd read with a flat layout (no split) must not match.
//!
//! Bad input: the test process itself (not QEMU), a QEMU with no guest RAM (`-machine
//! none`), and a reader without the right to trace QEMU (the test binary re-run as user
//! `nobody`) each fail with a clear typed error.
//!
//! Skips outside CI when qemu-system-x86_64, tar or base64 is missing.

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::time::Duration;

use origami_core::memory::{DumpFormat, MemoryDump, PageCache, PhysicalMemory, RamLayout};
use origami_core::{AttachProblem, Error};
use origami_introspect::frame::Frame;
use origami_introspect::linux::{crawl, crawl_kernel, discover, LinuxOptions};
use origami_testsupport::qemu::{FixtureVm, GuestTruth, RamBacking, VmOptions};

const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

fn have_tools() -> bool {
    ["qemu-system-x86_64", "tar", "base64"]
        .into_iter()
        .all(origami_testsupport::require_program)
}

/// Crawls `mem` and lists how the frame differs from the guest's own snapshot (empty when
/// it matches).
fn differences(mem: &MemoryDump, truth: &GuestTruth) -> Vec<String> {
    let opts = LinuxOptions::default().no_cache();
    let mut frame = Frame::new("qemu-pid");
    crawl(mem, &opts).merge_into(&mut frame);
    let mut bad: Vec<String> = frame.meta.errors.iter().map(|e| format!("{e:?}")).collect();
    if frame.os.kernel.as_deref() != Some(truth.release.as_str()) {
        bad.push(format!("kernel {:?}", frame.os.kernel));
    }
    if frame.os.hostname.as_deref() != Some(truth.hostname.as_str()) {
        bad.push(format!("hostname {:?}", frame.os.hostname));
    }
    assert!(
        truth.processes.len() > 40,
        "{} processes in the snapshot",
        truth.processes.len()
    );
    let got: HashMap<u32, _> = frame.process.iter().map(|p| (p.pid, p)).collect();
    for (pid, t) in &truth.processes {
        // Workqueue workers come and go (and /proc decorates their names).
        if t.comm.starts_with("kworker/") {
            continue;
        }
        match got.get(pid) {
            Some(g)
                if g.ppid == t.ppid
                    && g.name == t.comm
                    && g.cmdline == t.cmdline
                    && g.uid == t.uid
                    && g.kernel_thread == t.kernel_thread => {}
            other => bad.push(format!("pid {pid}: want {t:?}, got {other:?}")),
        }
    }
    let conns: BTreeSet<(u16, u16, String)> = frame
        .connection
        .iter()
        .filter(|c| c.protocol == "tcp")
        .map(|c| (c.local_port, c.remote_port, c.state.clone()))
        .collect();
    if truth.tcp.is_empty() || !truth.tcp.is_subset(&conns) {
        bad.push(format!("tcp: want {:?}, got {conns:?}", truth.tcp));
    }
    let mods: BTreeSet<String> = frame.module.iter().map(|m| m.name.clone()).collect();
    if truth.modules != mods {
        bad.push(format!("modules: want {:?}, got {mods:?}", truth.modules));
    }
    bad
}

/// Crawls `mem` and checks the frame against the guest's own snapshot.
fn crawl_matches_the_guest(mem: &MemoryDump, truth: &GuestTruth) {
    let bad = differences(mem, truth);
    assert!(bad.is_empty(), "{bad:#?}");
}

/// The warm crawl (kernel discovered once) through a [`PageCache`], twice, cleared
/// between, checked against the snapshot.
fn crawl_matches_the_guest_through_a_page_cache(mem: &MemoryDump, truth: &GuestTruth) {
    let kernel = discover(mem, &LinuxOptions::default().no_cache()).unwrap();
    let cached = PageCache::new(mem);
    for _ in 0..2 {
        let mut frame = Frame::new("cached");
        crawl_kernel(&kernel, &cached, &LinuxOptions::default()).merge_into(&mut frame);
        cached.clear();
        assert!(frame.meta.errors.is_empty(), "{:#?}", frame.meta.errors);
        let got: BTreeSet<(u32, String)> = frame
            .process
            .iter()
            .map(|p| (p.pid, p.name.clone()))
            .collect();
        let want: BTreeSet<(u32, String)> = truth
            .processes
            .iter()
            .filter(|(_, t)| !t.comm.starts_with("kworker/"))
            .map(|(pid, t)| (*pid, t.comm.clone()))
            .collect();
        assert!(want.is_subset(&got), "want {want:?}, got {got:?}");
        let mods: BTreeSet<String> = frame.module.iter().map(|m| m.name.clone()).collect();
        assert_eq!(truth.modules, mods);
    }
}

#[test]
fn attaches_to_a_guest_with_anonymous_ram_by_pid() {
    let fx = origami_testsupport::require_fixtures!();
    if !have_tools() {
        return;
    }
    let options = VmOptions {
        backing: RamBacking::Anonymous,
        ..VmOptions::default()
    };
    let mut vm = FixtureVm::boot_with(fx, "origami-qemu-pid", "", BOOT_TIMEOUT, &options);
    vm.wait_for_console("@@FIXTURE-READY@@", BOOT_TIMEOUT);
    let truth = GuestTruth::read(&vm);

    let mem = MemoryDump::attach_qemu_pid(vm.pid()).unwrap();
    assert_eq!(mem.format(), DumpFormat::QemuProcess);
    assert!(mem.is_live());
    assert!(mem.name().contains("anonymous"), "{}", mem.name());
    let ram: u64 = mem.ranges().iter().map(|r| r.len()).sum();
    assert_eq!(ram, options.ram);
    crawl_matches_the_guest(&mem, &truth);
    // The same through a page cache (each page read once per crawl).
    crawl_matches_the_guest_through_a_page_cache(&mem, &truth);

    // Attaching did not stop QEMU: the guest is still running (its state is not `T`).
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", vm.pid())).unwrap();
    let state = stat.rsplit(')').next().unwrap().split_whitespace().next();
    assert_ne!(state, Some("T"), "{stat}");

    refused_without_the_right_to_trace(vm.pid());
    drop(vm);
}

#[test]
fn attaches_to_a_5_gib_pc_guest_split_around_the_pci_hole() {
    let fx = origami_testsupport::require_fixtures!();
    if !have_tools() {
        return;
    }
    let options = VmOptions {
        machine: "pc".into(),
        ram: 5 << 30,
        backing: RamBacking::SharedMemfd,
        console_shell: false,
        ..VmOptions::default()
    };
    let mut vm = FixtureVm::boot_with(fx, "origami-qemu-pid-5g", "", BOOT_TIMEOUT, &options);
    vm.wait_for_console("@@FIXTURE-READY@@", BOOT_TIMEOUT);
    let truth = GuestTruth::read(&vm);

    let mem = MemoryDump::attach_qemu_pid(vm.pid()).unwrap();
    assert!(mem.name().contains("memfd"), "{}", mem.name());
    let ranges = mem.ranges();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!((ranges[0].start, ranges[0].end), (0, 3 << 30));
    assert_eq!((ranges[1].start, ranges[1].end), (4 << 30, 6 << 30));
    crawl_matches_the_guest(&mem, &truth);

    // The control: the same RAM file read with no split (flat), as if the PCI hole did not
    // exist, does not give the guest's processes: the split is what makes the crawl right.
    let memfd = std::fs::read_dir(format!("/proc/{}/fd", vm.pid()))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let memfd =
                std::fs::read_link(p).is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:"));
            memfd && std::fs::metadata(p).is_ok_and(|m| m.len() == options.ram)
        })
        .expect("QEMU's memfd");
    let flat = MemoryDump::open_live(&memfd, RamLayout::flat(options.ram)).unwrap();
    assert!(
        !differences(&flat, &truth).is_empty(),
        "a flat layout crawled as well as the split one"
    );
    drop(vm);
}

#[test]
fn a_process_that_is_not_qemu_is_refused() {
    match MemoryDump::attach_qemu_pid(std::process::id()) {
        Err(Error::QemuAttach {
            problem: AttachProblem::NotQemu { exe },
            ..
        }) => assert!(!exe.is_empty()),
        other => panic!("{other:?}"),
    }
    // No such process: pid_max is at most 2^22.
    let err = MemoryDump::attach_qemu_pid(u32::MAX - 1).unwrap_err();
    assert!(
        matches!(
            err,
            Error::QemuAttach {
                problem: AttachProblem::NoProcess,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("no such process"), "{err}");
}

#[test]
fn a_qemu_without_guest_ram_is_refused() {
    if !origami_testsupport::require_program("qemu-system-x86_64") {
        return;
    }
    // `-machine none` has no RAM at all; the 128 MiB QEMU assumes without -m is nowhere.
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-machine", "none", "-display", "none", "-monitor", "none"])
        .args(["-serial", "none", "-S"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until QEMU has set up (its maps hold more than the loader's).
    let mut result = None;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        let r = MemoryDump::attach_qemu_pid(pid);
        if let Err(Error::QemuAttach {
            problem: AttachProblem::NoGuestRam { .. },
            ..
        }) = &r
        {
            result = Some(r);
            break;
        }
        result = Some(r);
    }
    let _ = child.kill();
    let _ = child.wait();
    match result {
        Some(Err(
            e @ Error::QemuAttach {
                problem: AttachProblem::NoGuestRam { .. },
                ..
            },
        )) => {
            let text = e.to_string();
            assert!(text.contains("no guest RAM found"), "{text}");
            assert!(text.contains("0x8000000"), "{text}");
            assert!(text.contains("128 MiB"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

/// Re-runs this test binary as `nobody` to attach to `pid` (root's QEMU): refused with the
/// file it could not read and what to do.
fn refused_without_the_right_to_trace(pid: u32) {
    use std::os::unix::process::CommandExt;
    // Only root can switch users; elsewhere this part is skipped.
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
        eprintln!("SKIP: not root, cannot run the attach as another user");
        return;
    }
    // The binary must be reachable by `nobody`: copy it to a world-readable place.
    let dir = tempfile_dir();
    let exe = dir.join("probe");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    set_mode(&dir, 0o755);
    set_mode(&exe, 0o755);
    let out = Command::new(&exe)
        .args([
            "--exact",
            "attach_probe_as_another_user",
            "--include-ignored",
        ])
        .args(["--nocapture", "--test-threads", "1"])
        .env("ORIGAMI_ATTACH_PROBE_PID", pid.to_string())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("PROBE-REFUSED"), "{text}");
    assert!(text.contains("cannot read /proc/"), "{text}");
    assert!(text.contains("ptrace"), "{text}");
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("origami-attach-probe-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn set_mode(p: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Run only by `refused_without_the_right_to_trace`, as another user.
#[test]
#[ignore = "run by attaches_to_a_guest_with_anonymous_ram_by_pid as user nobody"]
fn attach_probe_as_another_user() {
    let Some(pid) = std::env::var("ORIGAMI_ATTACH_PROBE_PID")
        .ok()
        .and_then(|p| p.parse().ok())
    else {
        return;
    };
    match MemoryDump::attach_qemu_pid(pid) {
        Err(
            e @ Error::QemuAttach {
                problem: AttachProblem::Access { .. },
                ..
            },
        ) => println!("PROBE-REFUSED: {e}"),
        other => panic!("attach as another user: {other:?}"),
    }
}
