//! Mounts, the kernel log and the panic state of each fixture dump against the guest's own
//! view (truth.json: `mounts` is its /proc/mounts, `dmesg` its `dmesg`, `kernel.tainted`
//! its /proc/sys/kernel/tainted), and the kernel-log and mount readers on torn or forged
//! memory: errors and counts, never a panic, a hang or a made-up record.

use origami_core::memory::{MemoryDump, PhysRange, PhysicalMemory};
use origami_introspect::frame::Frame;
use origami_introspect::linux::kmem::Kmem;
use origami_introspect::linux::printk::{dmesg_lines, kernel_log};
use origami_introspect::linux::{crawl, crawl_kernel, discover, mounts, Kernel, LinuxOptions};
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
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
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
        // The ring may have dropped the oldest records since dmesg ran (then our first
        // line is further down dmesg's), or dmesg may have left out old ones its buffer
        // had no room for (then its first line is further down ours). Align on the first
        // line either side holds.
        let (first, skip) = match want.iter().position(|l| *l == ours[0]) {
            Some(i) => (i, 0),
            None => (
                0,
                ours.iter()
                    .position(|l| l == want[0])
                    .unwrap_or_else(|| panic!("{name}: no line in common with dmesg")),
            ),
        };
        let matched = want[first..]
            .iter()
            .zip(&ours[skip..])
            .take_while(|(w, o)| **w == o.as_str())
            .count();
        eprintln!(
            "{name}: {} records, {} dmesg lines; dmesg from its line {first}, ours from {skip}: \
             {matched} of {} matched in order",
            log.records.len(),
            ours.len(),
            want.len() - first
        );
        // Every dmesg line from there on is ours, in order (the dump, taken after dmesg
        // ran, may hold more at the end).
        assert_eq!(
            matched,
            want.len() - first,
            "{name}: dmesg line {} differs: want {:?}, got {:?}",
            first + matched,
            want.get(first + matched),
            ours.get(skip + matched)
        );
        // Sequence numbers rise by one from record to record, lines count up within one:
        // nothing between the tail and the head was lost.
        for w in log.records.windows(2) {
            let next_line = w[1].seq == w[0].seq && w[1].line == w[0].line + 1;
            let next_record = w[1].seq == w[0].seq + 1 && w[1].line == 0;
            assert!(next_line || next_record, "{name}: {:?}", w);
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
        crawl(&dump, &LinuxOptions::default().no_cache()).merge_into(&mut f);
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

/// A dump with some bytes overwritten (at physical addresses).
struct Patched<'a> {
    inner: &'a MemoryDump,
    patches: Vec<(u64, Vec<u8>)>,
}

impl Patched<'_> {
    /// Overwrites the bytes at kernel virtual address `v`.
    fn set(&mut self, km: &Kmem<'_>, v: u64, bytes: &[u8]) {
        self.patches
            .push((km.translate(v).unwrap(), bytes.to_vec()));
    }
}

impl PhysicalMemory for Patched<'_> {
    fn read_phys(&self, addr: u64, buf: &mut [u8]) -> origami_core::Result<()> {
        self.inner.read_phys(addr, buf)?;
        for (at, bytes) in &self.patches {
            for (i, b) in bytes.iter().enumerate() {
                let a = at + i as u64;
                if a >= addr && a < addr + buf.len() as u64 {
                    buf[(a - addr) as usize] = *b;
                }
            }
        }
        Ok(())
    }
    fn ranges(&self) -> Vec<PhysRange> {
        self.inner.ranges()
    }
    fn name(&self) -> String {
        format!("patched {}", self.inner.name())
    }
}

/// The printk ring's addresses, read here from the layout independently of the reader.
struct RingAt {
    desc_ring: u64,
    text_ring: u64,
    descs: u64,
    infos: u64,
    count: u64,
    desc_size: u64,
    info_size: u64,
    head: u64,
    tail: u64,
}

impl RingAt {
    fn new(k: &Kernel, km: &Kmem<'_>) -> RingAt {
        let l = &k.layout;
        let rb = km.u64(k.symbol("prb").unwrap()).unwrap();
        let dr = rb + l.off("printk_ringbuffer.desc_ring").unwrap();
        let off = |s: &str| l.off(s).unwrap();
        RingAt {
            desc_ring: dr,
            text_ring: rb + off("printk_ringbuffer.text_data_ring"),
            descs: km.u64(dr + off("prb_desc_ring.descs")).unwrap(),
            infos: km.u64(dr + off("prb_desc_ring.infos")).unwrap(),
            count: 1 << km.u32(dr + off("prb_desc_ring.count_bits")).unwrap(),
            desc_size: l.sizes["prb_desc"],
            info_size: l.sizes["printk_info"],
            head: km.u64(dr + off("prb_desc_ring.head_id")).unwrap(),
            tail: km.u64(dr + off("prb_desc_ring.tail_id")).unwrap(),
        }
    }
    fn desc(&self, id: u64) -> u64 {
        self.descs + (id & (self.count - 1)) * self.desc_size
    }
    fn info(&self, id: u64) -> u64 {
        self.infos + (id & (self.count - 1)) * self.info_size
    }
}

#[test]
fn a_forged_ring_header_is_an_error_not_a_panic() {
    let Some((dump, k, _)) = setup("memdump") else {
        return;
    };
    let km = k.kmem(&dump);
    let r = RingAt::new(&k, &km);
    let l = &k.layout;
    let cases: Vec<(&str, u64, Vec<u8>)> = vec![
        (
            "head past the tail by more than the ring",
            r.desc_ring + l.off("prb_desc_ring.head_id").unwrap(),
            (r.tail + 2 * r.count).to_le_bytes().to_vec(),
        ),
        (
            "2^60 descriptors",
            r.desc_ring + l.off("prb_desc_ring.count_bits").unwrap(),
            60u32.to_le_bytes().to_vec(),
        ),
        (
            "a text ring of 2^0 bytes",
            r.text_ring + l.off("prb_data_ring.size_bits").unwrap(),
            0u32.to_le_bytes().to_vec(),
        ),
    ];
    for (what, at, bytes) in cases {
        let mut p = Patched {
            inner: &dump,
            patches: vec![],
        };
        p.set(&km, at, &bytes);
        let pkm = k.kmem(&p);
        let e = kernel_log(&k, &pkm).expect_err(what);
        assert!(e.to_string().contains("printk ring buffer"), "{what}: {e}");
        // Through the crawl: an error in the frame, the other sections still there.
        let mut f = Frame::new("t");
        crawl_kernel(&k, &p, &LinuxOptions::default()).merge_into(&mut f);
        assert!(f.kernel_log.is_empty());
        assert!(f.meta.errors.iter().any(|e| e.feature == "kernel_log"));
        assert!(!f.process.is_empty() && !f.mount.is_empty());
    }
    // Descriptors or text out of RAM: every record fails on its own, none is made up.
    for (what, spec, ring) in [
        ("descriptors", "prb_desc_ring.descs", r.desc_ring),
        ("text", "prb_data_ring.data", r.text_ring),
    ] {
        let mut p = Patched {
            inner: &dump,
            patches: vec![],
        };
        p.set(
            &km,
            ring + l.off(spec).unwrap(),
            &0xffff_dead_beef_0000u64.to_le_bytes(),
        );
        let log = kernel_log(&k, &k.kmem(&p)).unwrap();
        assert!(log.records.is_empty(), "{what}");
        assert!(log.skipped.invalid > 300, "{what}: {:?}", log.skipped);
        assert_eq!(
            log.errors.len(),
            16,
            "{what}: only the first errors are kept"
        );
        let e = log.errors[0].to_string();
        assert!(e.contains("0xffffdeadbe"), "{what}: {e}");
    }
}

#[test]
fn torn_records_are_skipped_and_counted_never_made_up() {
    let Some((dump, k, _)) = setup("memdump") else {
        return;
    };
    let km = k.kmem(&dump);
    let clean = kernel_log(&k, &km).unwrap();
    let r = RingAt::new(&k, &km);
    let l = &k.layout;
    let sv_off = l.off("prb_desc.state_var").unwrap();
    let begin_off = l.off("prb_desc.text_blk_lpos.begin").unwrap();
    let next_off = l.off("prb_desc.text_blk_lpos.next").unwrap();
    let id = |i: u64| (r.tail + i) & ((1 << 62) - 1);
    let begin_of = |i: u64| km.u64(r.desc(id(i)) + begin_off).unwrap();
    let size = 1u64
        << km
            .u32(r.text_ring + l.off("prb_data_ring.size_bits").unwrap())
            .unwrap();
    let data = km
        .u64(r.text_ring + l.off("prb_data_ring.data").unwrap())
        .unwrap();
    let mut p = Patched {
        inner: &dump,
        patches: vec![],
    };
    // 10: another id in the state word (a descriptor reused under us).
    p.set(
        &km,
        r.desc(id(10)) + sv_off,
        &((2 << 62) | (id(10) ^ 1)).to_le_bytes(),
    );
    // 20: reserved, a writer still at it.
    p.set(&km, r.desc(id(20)) + sv_off, &id(20).to_le_bytes());
    // 30: a misaligned block; 40: a block two wraps long.
    p.set(
        &km,
        r.desc(id(30)) + begin_off,
        &(begin_of(30) + 4).to_le_bytes(),
    );
    p.set(
        &km,
        r.desc(id(40)) + next_off,
        &(begin_of(40) + 3 * size).to_le_bytes(),
    );
    // 50: text longer than its block.
    p.set(
        &km,
        r.info(id(50)) + l.off("printk_info.text_len").unwrap(),
        &0xffffu16.to_le_bytes(),
    );
    // 60: the block is headed by another id (its text was overwritten).
    let blk = data + (begin_of(60) & (size - 1));
    p.set(&km, blk, &(id(60) + 7).to_le_bytes());
    // 70: text lost (data-less block).
    p.set(&km, r.desc(id(70)) + begin_off, &1u64.to_le_bytes());
    p.set(&km, r.desc(id(70)) + next_off, &1u64.to_le_bytes());
    // 80: a sequence number that goes backwards.
    p.set(
        &km,
        r.info(id(80)) + l.off("printk_info.seq").unwrap(),
        &3u64.to_le_bytes(),
    );
    let log = kernel_log(&k, &k.kmem(&p)).unwrap();
    assert_eq!(log.skipped.missing, 1);
    assert_eq!(log.skipped.reserved, 1);
    assert_eq!(log.skipped.lost_text, 1);
    assert_eq!(log.skipped.invalid, 5, "{:#?}", log.errors);
    assert_eq!(log.errors.len(), 5);
    for e in &log.errors {
        assert!(e.to_string().contains("0xffff"), "names an address: {e}");
    }
    let seqs = |l: &[origami_introspect::frame::KernelLogRecord]| {
        l.iter()
            .map(|r| r.seq)
            .collect::<std::collections::BTreeSet<u64>>()
    };
    assert_eq!(seqs(&log.records).len(), seqs(&clean.records).len() - 8);
    // Every item left is one of the clean ring's, unchanged.
    let by_key: std::collections::HashMap<(u64, u32), _> =
        clean.records.iter().map(|r| ((r.seq, r.line), r)).collect();
    for rec in &log.records {
        assert_eq!(Some(&rec), by_key.get(&(rec.seq, rec.line)));
    }
}

#[test]
fn random_damage_to_descriptors_never_panics_or_invents_text() {
    let Some((dump, k, _)) = setup("memdump-la57") else {
        return;
    };
    let km = k.kmem(&dump);
    let clean = kernel_log(&k, &km).unwrap();
    let r = RingAt::new(&k, &km);
    let span = (r.head - r.tail) & ((1 << 62) - 1);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..100 {
        let mut p = Patched {
            inner: &dump,
            patches: vec![],
        };
        for _ in 0..6 {
            let id = r.tail + next() % (span + 1);
            let (base, size) = if next() % 2 == 0 {
                (r.desc(id), r.desc_size)
            } else {
                (r.info(id), r.info_size)
            };
            let at = base + next() % (size - 7);
            p.set(&km, at, &next().to_le_bytes());
        }
        let log = kernel_log(&k, &k.kmem(&p)).unwrap();
        assert!(log.records.len() <= clean.records.len());
        // A damaged text length may cut a text short; no text is ever invented.
        for rec in &log.records {
            assert!(
                clean
                    .records
                    .iter()
                    .any(|c| c.message.starts_with(&rec.message)),
                "{rec:?}"
            );
        }
    }
}

/// The namespace's mounts by path, read here from the layout.
fn mounts_by_path(k: &Kernel, km: &Kmem<'_>) -> std::collections::HashMap<String, u64> {
    let got = mounts::mounts(k, km).unwrap();
    let l = &k.layout;
    let ns = km
        .u64(k.symbol("init_nsproxy").unwrap() + l.off("nsproxy.mnt_ns").unwrap())
        .unwrap();
    let (nodes, err) = km.list(
        "mounts",
        ns + l.off("mnt_namespace.list|mounts").unwrap(),
        100,
    );
    assert!(err.is_none());
    let link = l.off("mount.mnt_list").unwrap();
    got.mounts
        .iter()
        .zip(nodes)
        .map(|(m, n)| (m.path.clone(), n - link))
        .collect()
}

#[test]
fn damaged_mounts_fail_alone_and_loops_end() {
    let Some((dump, k, _)) = setup("memdump") else {
        return;
    };
    let km = k.kmem(&dump);
    let at = mounts_by_path(&k, &km);
    assert_eq!(at.len(), 6);
    let l = &k.layout;
    let off = |s: &str| l.off(s).unwrap();
    let root_of = |m: u64| km.u64(m + off("mount.mnt.mnt_root")).unwrap();
    let mountpoint = |m: u64| km.u64(m + off("mount.mnt_mountpoint")).unwrap();

    // A device name out of RAM: that mount fails, naming the address; the rest are read.
    let mut p = Patched {
        inner: &dump,
        patches: vec![],
    };
    p.set(
        &km,
        at["/tmp"] + off("mount.mnt_devname"),
        &0xffff_dead_beef_0000u64.to_le_bytes(),
    );
    let got = mounts::mounts(&k, &k.kmem(&p)).unwrap();
    assert_eq!(got.mounts.len(), 5);
    assert_eq!(got.errors.len(), 1);
    assert!(got.errors[0].to_string().contains("0xffffdeadbeef0000"));

    // Two mounts each mounted on the other's root: the walk up never ends by itself.
    let (proc_m, sys_m) = (at["/proc"], at["/sys"]);
    let mut p = Patched {
        inner: &dump,
        patches: vec![],
    };
    p.set(&km, proc_m + off("mount.mnt_parent"), &sys_m.to_le_bytes());
    p.set(
        &km,
        proc_m + off("mount.mnt_mountpoint"),
        &root_of(sys_m).to_le_bytes(),
    );
    p.set(&km, sys_m + off("mount.mnt_parent"), &proc_m.to_le_bytes());
    p.set(
        &km,
        sys_m + off("mount.mnt_mountpoint"),
        &root_of(proc_m).to_le_bytes(),
    );
    let got = mounts::mounts(&k, &k.kmem(&p)).unwrap();
    let paths: Vec<&str> = got.mounts.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(paths, ["/", "/dev", "/dev/pts", "/tmp"]);
    assert_eq!(got.errors.len(), 2, "{:?}", got.errors);

    // Two dentries that are each other's parent: the path grows until its bound.
    let (tmp_d, dev_d) = (mountpoint(at["/tmp"]), mountpoint(at["/dev"]));
    let mut p = Patched {
        inner: &dump,
        patches: vec![],
    };
    p.set(&km, tmp_d + off("dentry.d_parent"), &dev_d.to_le_bytes());
    p.set(&km, dev_d + off("dentry.d_parent"), &tmp_d.to_le_bytes());
    let got = mounts::mounts(&k, &k.kmem(&p)).unwrap();
    let paths: Vec<&str> = got.mounts.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(paths, ["/", "/proc", "/sys"]);
    assert_eq!(got.errors.len(), 3, "{:?}", got.errors);
    assert!(got.errors.iter().all(|e| e.to_string().contains("bound")));

    // A mount point that is its own parent (a dentry outside every root): hidden, as the
    // kernel hides it.
    let mut p = Patched {
        inner: &dump,
        patches: vec![],
    };
    p.set(&km, tmp_d + off("dentry.d_parent"), &tmp_d.to_le_bytes());
    let got = mounts::mounts(&k, &k.kmem(&p)).unwrap();
    assert_eq!((got.mounts.len(), got.hidden), (5, 1));

    // The namespace's list looping back into itself: the mounts before the loop, an error.
    let link = off("mount.mnt_list");
    let mut p = Patched {
        inner: &dump,
        patches: vec![],
    };
    p.set(&km, at["/dev"] + link, &(at["/proc"] + link).to_le_bytes());
    let got = mounts::mounts(&k, &k.kmem(&p)).unwrap();
    assert!(got.mounts.len() < 6);
    assert!(!got.errors.is_empty());

    // No namespace at all: an error for the feature, the rest of the crawl goes on.
    let mut p = Patched {
        inner: &dump,
        patches: vec![],
    };
    p.set(
        &km,
        k.symbol("init_nsproxy").unwrap() + off("nsproxy.mnt_ns"),
        &0xffff_dead_beef_0000u64.to_le_bytes(),
    );
    assert!(mounts::mounts(&k, &k.kmem(&p)).is_err());
    let mut f = Frame::new("t");
    crawl_kernel(&k, &p, &LinuxOptions::default()).merge_into(&mut f);
    assert!(f.mount.is_empty() && !f.kernel_log.is_empty() && !f.process.is_empty());
    assert!(f.meta.errors.iter().any(|e| e.feature == "mount"));
}

#[test]
fn a_panicked_kernels_state_is_read_from_its_own_variables() {
    // The fixture kernels are healthy; write what panic() and an oops leave behind into
    // the variables they set, and read it back through the crawl.
    let Some((dump, k, _)) = setup("memdump-novmcoreinfo") else {
        return;
    };
    let km = k.kmem(&dump);
    let mut p = Patched {
        inner: &dump,
        patches: vec![],
    };
    // TAINT_DIE (D) and TAINT_WARN (W), as an oops leaves them; CPU 1 in panic().
    p.set(
        &km,
        k.symbol("tainted_mask").unwrap(),
        &((1u64 << 7) | (1 << 9)).to_le_bytes(),
    );
    p.set(&km, k.symbol("panic_cpu").unwrap(), &1i32.to_le_bytes());
    p.set(
        &km,
        k.symbol("oops_in_progress").unwrap(),
        &1i32.to_le_bytes(),
    );
    let mut f = Frame::new("t");
    crawl_kernel(&k, &p, &LinuxOptions::default()).merge_into(&mut f);
    assert_eq!(f.os.tainted, Some(0x280));
    assert_eq!(f.os.taint_flags.as_deref(), Some("DW"));
    assert_eq!(f.os.oopsed, Some(true));
    assert_eq!(f.os.oops_in_progress, Some(true));
    assert_eq!(f.os.panicked, Some(true));
    assert_eq!(f.os.panic_cpu, Some(1));
}
