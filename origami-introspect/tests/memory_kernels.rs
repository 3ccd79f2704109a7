//! More kernels than the fixture's 6.1: Debian 11's 5.10 (bullseye) and Debian 12's
//! PREEMPT_RT and cloud flavours of 6.1, each booted by `scripts/fixtures/make-kernel-dump.py`
//! with the shared fixture guest (its `guest-init.sh`, its `truth_from_guest.py`) and
//! dumped; each crawl is judged against the
//! guest's own /proc (truth.json), by the tests' own comparison and by the shared
//! `frame-vs-truth.py memory` at 100%.
//!
//! The 5.10 dump is crawled three ways: with its in-memory BTF; with the BTF blob zeroed in
//! a copy and the DWARF `vmlinux` of its `-dbg` package; and with a Volatility 3 ISF that
//! Volatility's `dwarf2json` made from that DWARF (kept trimmed in `tests/data/isf/`).
//!
//! On a cold run the dumps are made first (a QEMU TCG boot each) and kept under
//! `target/kernel-dumps/`; see `kernel_dumps` for what that costs. Warm, the six tests take
//! under a minute together (47-52 s on the loaded 2-core machine, most of it the DWARF
//! test's two crawls and its member-by-member comparison with the BTF).

mod kernel_dumps;
mod memory_truth;

use kernel_dumps::{Dump, BULLSEYE, CLOUD, RT};
use memory_truth::compare;
use origami_core::memory::MemoryDump;
use origami_introspect::frame::Frame;
use origami_introspect::linux::btf::Btf;
use origami_introspect::linux::dwarf::KernelDwarf;
use origami_introspect::linux::isf::Isf;
use origami_introspect::linux::layout::Layout;
use origami_introspect::linux::{crawl, discover, LayoutSource, LinuxOptions};

fn frame_of(dump: &MemoryDump, opts: &LinuxOptions) -> Frame {
    let mut f = Frame::new("test");
    crawl(dump, opts).merge_into(&mut f);
    f
}

/// Crawls `file` (a dump of `d`'s guest) with `opts` and judges it against the truth, both
/// ways; returns the frame.
fn crawl_and_judge(d: &Dump, file: &std::path::Path, opts: &LinuxOptions, tag: &str) -> Frame {
    let truth = d.truth();
    let dump = MemoryDump::open(file).unwrap();
    let frame = frame_of(&dump, opts);
    let bad = compare(&frame, &truth);
    assert!(
        bad.is_empty(),
        "{tag}: {bad:#?}\nerrors: {:#?}",
        frame.meta.errors
    );
    kernel_dumps::judge(&frame, &d.dir.join("truth.json"), tag);
    frame
}

/// The ISF made by `dwarf2json linux --elf` (v0.9.0) from the `-dbg` package's `vmlinux`
/// of `release`, trimmed by `scripts/trim-isf.py` (entries left out, none changed).
fn isf_of(release: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/isf")
        .join(format!("{release}.json.xz"))
}

#[test]
fn bullseye_5_10_with_its_btf() {
    let Some(d) = kernel_dumps::get(BULLSEYE, false) else {
        return;
    };
    let truth = d.truth();
    assert!(truth["kernel"]["release"].as_str() == Some(BULLSEYE.1));
    let dump = MemoryDump::open(d.elf()).unwrap();
    let k = discover(&dump, &LinuxOptions::default().no_cache()).unwrap();
    assert_eq!(
        Some(k.banner.as_str()),
        truth["kernel"]["version_string"].as_str()
    );
    assert!(k.layout_file.is_none(), "layouts from the kernel's own BTF");
    crawl_and_judge(
        &d,
        &d.elf(),
        &LinuxOptions::default().no_cache(),
        "5.10 btf",
    );
}

#[test]
fn bullseye_5_10_without_btf_says_so() {
    let Some(d) = kernel_dumps::get(BULLSEYE, false) else {
        return;
    };
    let dump = MemoryDump::open(d.nobtf()).unwrap();
    let err = discover(&dump, &LinuxOptions::default().no_cache())
        .unwrap_err()
        .to_string();
    for want in ["BTF is missing or damaged", "--kernel-debuginfo", "--isf"] {
        assert!(err.contains(want), "{err}");
    }
    assert!(!err.contains("decoy"), "{err}");
}

#[test]
fn bullseye_5_10_without_btf_with_dwarf() {
    let Some(d) = kernel_dumps::get(BULLSEYE, true) else {
        return;
    };
    let vmlinux = d.vmlinux();
    // The DWARF file's layouts are the kernel's own BTF's, member for member.
    let want = Layout::from_btf(&Btf::parse(&d.btf()).unwrap());
    let dw = KernelDwarf::open(&vmlinux).unwrap();
    assert_eq!(dw.banner(), d.truth()["kernel"]["version_string"].as_str());
    let got = dw.layout().unwrap();
    assert_eq!(got.fields, want.fields);
    assert_eq!(got.sizes, want.sizes);
    assert_eq!(
        got.missing.keys().collect::<Vec<_>>(),
        want.missing.keys().collect::<Vec<_>>()
    );
    drop(dw);
    let nobtf = d.nobtf();
    let opts = LinuxOptions::default()
        .no_cache()
        .with_layouts(LayoutSource::KernelDebuginfo(vmlinux.clone()));
    let k = discover(&MemoryDump::open(&nobtf).unwrap(), &opts).unwrap();
    assert_eq!(k.layout_file.as_deref(), Some(vmlinux.as_path()));
    crawl_and_judge(&d, &nobtf, &opts, "5.10 dwarf");
    // A folder holding it: the file of the dump's banner is picked.
    let folder = LinuxOptions::default()
        .no_cache()
        .with_layouts(LayoutSource::KernelDebuginfo(
            vmlinux.parent().unwrap().to_path_buf(),
        ));
    crawl_and_judge(&d, &nobtf, &folder, "5.10 dwarf folder");
}

#[test]
fn bullseye_5_10_without_btf_with_isf() {
    let Some(d) = kernel_dumps::get(BULLSEYE, false) else {
        return;
    };
    let xz = isf_of(BULLSEYE.1);
    let want = Layout::from_btf(&Btf::parse(&d.btf()).unwrap());
    let isf = Isf::open(&xz).unwrap();
    assert_eq!(
        isf.banner().as_deref(),
        d.truth()["kernel"]["version_string"].as_str()
    );
    let got = isf.layout();
    assert_eq!(got.fields, want.fields);
    assert_eq!(got.sizes, want.sizes);
    let opts = LinuxOptions::default()
        .no_cache()
        .with_layouts(LayoutSource::Isf(xz.clone()));
    crawl_and_judge(&d, &d.nobtf(), &opts, "5.10 isf");
    // Through the discovery cache: stored from the ISF, then warm with no source at all.
    let cache = std::env::temp_dir().join(format!("origami-kernels-isf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let dump = MemoryDump::open(d.nobtf()).unwrap();
    let cached = LinuxOptions::default().with_cache_dir(&cache);
    let cold = discover(&dump, &cached.clone().with_layouts(LayoutSource::Isf(xz))).unwrap();
    assert!(!cold.from_cache);
    let warm = discover(&dump, &cached).unwrap();
    assert!(warm.from_cache);
    assert_eq!(warm.layout, cold.layout);
    crawl_and_judge(&d, &d.nobtf(), &cached, "5.10 isf warm");
    let _ = std::fs::remove_dir_all(&cache);
    // Another kernel's file, each way round: the fixture's 6.1 ISF for this 5.10 dump and
    // this ISF for the 6.1 fixture dump are refused, and no process is made up from them.
    let other = isf_of("6.1.0-56-amd64");
    let e = discover(
        &dump,
        &LinuxOptions::default()
            .no_cache()
            .with_layouts(LayoutSource::Isf(other.clone())),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("is not the running kernel's"), "{e}");
    if let Some(fx) = origami_testsupport::fixtures() {
        let six = MemoryDump::open(fx.path("memdump/memory.elf")).unwrap();
        let opts = LinuxOptions::default()
            .no_cache()
            .with_layouts(LayoutSource::Isf(isf_of(BULLSEYE.1)));
        let e = discover(&six, &opts).unwrap_err().to_string();
        assert!(e.contains("is not the running kernel's"), "{e}");
        assert!(frame_of(&six, &opts).process.is_empty());
    }
}

#[test]
fn bookworm_rt_with_its_btf() {
    let Some(d) = kernel_dumps::get(RT, false) else {
        return;
    };
    let truth = d.truth();
    assert!(truth["kernel"]["version_string"]
        .as_str()
        .unwrap()
        .contains("PREEMPT_RT"));
    crawl_and_judge(
        &d,
        &d.elf(),
        &LinuxOptions::default().no_cache(),
        "6.1 rt btf",
    );
}

#[test]
fn bookworm_cloud_with_its_btf() {
    let Some(d) = kernel_dumps::get(CLOUD, false) else {
        return;
    };
    assert_eq!(d.truth()["kernel"]["release"].as_str(), Some(CLOUD.1));
    crawl_and_judge(
        &d,
        &d.elf(),
        &LinuxOptions::default().no_cache(),
        "6.1 cloud btf",
    );
}
