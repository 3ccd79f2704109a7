//! Mounts, the kernel log and the panic state of each fixture dump against the guest's own
//! view (truth.json: `mounts` is its /proc/mounts, `dmesg` its `dmesg`, `kernel.tainted`
//! its /proc/sys/kernel/tainted), and the kernel-log and mount readers on torn or forged
//! memory: errors and counts, never a panic, a hang or a made-up record.

use origami_core::memory::{MemoryDump, PhysRange, PhysicalMemory};
use origami_introspect::frame::Frame;
use origami_introspect::linux::printk::{dmesg_lines, kernel_log};
use origami_introspect::linux::{crawl_into, discover, mounts, Kernel, LinuxOptions};
use serde_json::Value;

const DUMPS: [&str; 3] = ["memdump", "memdump-novmcoreinfo", "memdump-la57"];

fn setup(name: &str) -> Option<(MemoryDump, Kernel, Value)> {
    let fx = origami_testsupport::fixtures()?;
    let truth = fx.json(&format!("{name}/truth.json"));
    let dump = MemoryDump::open(fx.path(&format!("{name}/memory.elf"))).unwrap();
    let k = discover(&dump, &LinuxOptions::default().no_cache()).unwrap();
    Some((dump, k, truth))
}

/// Undoes /proc/mounts' `\ooo` escapes (of space, tab, newline and backslash).
fn unmangle(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() + 0 && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap(), 8).unwrap();
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn mounts_equal_the_guests_proc_mounts() {
    for name in DUMPS {
        let Some((dump, k, truth)) = setup(name) else {
            return;
        };
        let km = k.kmem(&dump);
        let got = mounts::mounts(&k, &km).unwrap();
        assert!(got.errors.is_empty(), "{name}: {:?}", got.errors);
        assert_eq!(got.hidden, 0, "{name}");
        assert!(
            got.partial_options.is_empty(),
            "{name}: every fixture file system's options are decoded: {:?}",
            got.partial_options
        );
        let want: Vec<(String, String, String, String)> = truth["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let f = |k: &str| unmangle(m[k].as_str().unwrap());
                (f("source"), f("target"), f("fstype"), f("options"))
            })
            .collect();
        let have: Vec<(String, String, String, String)> = got
            .mounts
            .iter()
            .map(|m| {
                (
                    m.device.clone(),
                    m.path.clone(),
                    m.fs_type.clone(),
                    m.options.clone(),
                )
            })
            .collect();
        assert_eq!(have, want, "{name}");
        // Each path is mounted once here, so every key is its path, and ids are distinct.
        assert!(got
            .mounts
            .iter()
            .all(|m| m.stack == 0 && m.mount_id.is_some()));
        let mut ids: Vec<u32> = got.mounts.iter().filter_map(|m| m.mount_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), got.mounts.len());
    }
}

/// The lines `dmesg` would print for every record we read.
fn dmesg_of(frame_log: &[origami_introspect::frame::KernelLogRecord]) -> Vec<String> {
    frame_log.iter().flat_map(dmesg_lines).collect()
}

#[test]
fn kernel_log_holds_every_dmesg_line_still_in_the_ring() {
    for name in DUMPS {
        let Some((dump, k, truth)) = setup(name) else {
            return;
        };
        let km = k.kmem(&dump);
        let log = kernel_log(&k, &km).unwrap();
        assert!(log.errors.is_empty(), "{name}: {:?}", log.errors);
        assert_eq!(log.skipped.invalid, 0, "{name}");
        let ours = dmesg_of(&log.records);
        let want: Vec<&str> = truth["dmesg"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        // The ring may have dropped the oldest records: find the first one we hold.
        let first = want
            .iter()
            .position(|l| *l == ours[0])
            .unwrap_or_else(|| panic!("{name}: our first line {:?} is not in dmesg", ours[0]));
        let matched = want[first..]
            .iter()
            .zip(&ours)
            .take_while(|(w, o)| **w == o.as_str())
            .count();
        eprintln!(
            "{name}: {} records, {} dmesg lines from line {first}; {matched} of {} matched in order",
            log.records.len(),
            ours.len(),
            want.len() - first
        );
        assert_eq!(
            matched,
            want.len() - first,
            "{name}: line {} differs: want {:?}, got {:?}",
            first + matched,
            want.get(first + matched),
            ours.get(matched)
        );
        // Sequence numbers rise by one: nothing between the tail and the head was lost.
        for w in log.records.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1, "{name}");
        }
        // The banner is record 0 with level 5 (KERN_NOTICE) of facility 0 (kern).
        let banner = &log.records[0];
        if banner.seq == 0 {
            assert!(banner.message.starts_with("Linux version 6.1."));
            assert_eq!((banner.level, banner.facility), (5, 0));
        }
    }
}

#[test]
fn panic_state_of_a_healthy_kernel_matches_proc() {
    for name in DUMPS {
        let Some((dump, _, truth)) = setup(name) else {
            return;
        };
        let mut f = Frame::new("t");
        crawl_into(&dump, &LinuxOptions::default().no_cache(), &mut f);
        let tainted = truth["kernel"]["tainted"].as_u64().unwrap();
        assert_eq!(f.os.tainted, Some(tainted), "{name}");
        assert_eq!(f.os.taint_flags.as_deref(), Some(""), "{name}");
        assert_eq!(f.os.oopsed, Some(false));
        assert_eq!(f.os.oops_in_progress, Some(false));
        assert_eq!(f.os.panicked, Some(false));
        assert_eq!(f.os.panic_cpu, None);
        // The crawl fills the new sections without errors.
        let errs: Vec<_> = f
            .meta
            .errors
            .iter()
            .filter(|e| matches!(e.feature.as_str(), "mount" | "kernel_log" | "os"))
            .collect();
        assert!(errs.is_empty(), "{name}: {errs:?}");
        assert_eq!(f.mount.len(), truth["mounts"].as_array().unwrap().len());
        assert!(f.kernel_log.len() >= 300);
    }
}
