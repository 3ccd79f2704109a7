//! Kernels whose BTF cannot be used: each fixture dump copied with the kernel's BTF blob
//! zeroed, crawled with no layout source (the error must say the BTF is missing and name
//! the ways out), with the fixture kernel's DWARF `vmlinux` (from Debian's `-dbg`
//! package), and with a Volatility 3 ISF made from that DWARF by another program; each
//! crawl against the guest's own /proc (truth.json).

mod kernel_debug;
mod memory_truth;

use memory_truth::compare;
use origami_core::memory::MemoryDump;
use origami_introspect::frame::Frame;
use origami_introspect::linux::btf::Btf;
use origami_introspect::linux::dwarf::KernelDwarf;
use origami_introspect::linux::layout::Layout;
use origami_introspect::linux::{crawl, discover, LayoutSource, LinuxOptions};

const DUMPS: [&str; 3] = ["memdump", "memdump-novmcoreinfo", "memdump-la57"];

fn frame_of(dump: &MemoryDump, opts: &LinuxOptions) -> Frame {
    let mut f = Frame::new("test");
    crawl(dump, opts).merge_into(&mut f);
    f
}

#[test]
fn without_btf_or_layouts_the_error_names_the_missing_btf_and_the_ways_out() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    for name in DUMPS {
        let dump = MemoryDump::open(kernel_debug::nobtf_dump(fx, name)).unwrap();
        let err = discover(&dump, &LinuxOptions::default().no_cache())
            .unwrap_err()
            .to_string();
        for want in ["BTF is missing or damaged", "--kernel-debuginfo", "--isf"] {
            assert!(err.contains(want), "{name}: {err}");
        }
        // The crawl reports it as the kernel's error, with no sections.
        let frame = frame_of(&dump, &LinuxOptions::default().no_cache());
        assert!(frame.process.is_empty(), "{name}");
        let kernel_errors: Vec<_> = frame
            .meta
            .errors
            .iter()
            .filter(|e| e.feature == "kernel" && e.message.contains("BTF is missing"))
            .collect();
        assert_eq!(kernel_errors.len(), 1, "{name}: {:#?}", frame.meta.errors);
    }
}

#[test]
fn dwarf_layouts_equal_the_kernels_own_btf() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let Some(vmlinux) = kernel_debug::vmlinux() else {
        return;
    };
    let blob = std::fs::read(fx.path("memdump/kernel/vmlinux.btf")).unwrap();
    let want = Layout::from_btf(&Btf::parse(&blob).unwrap());
    let d = KernelDwarf::open(&vmlinux).unwrap();
    let truth = fx.json("memdump/truth.json");
    assert_eq!(
        d.banner(),
        truth["kernel"]["version_string"].as_str(),
        "the banner in the DWARF file"
    );
    let got = d.layout().unwrap();
    assert_eq!(got.fields, want.fields);
    assert_eq!(got.sizes, want.sizes);
    assert_eq!(
        got.missing.keys().collect::<Vec<_>>(),
        want.missing.keys().collect::<Vec<_>>(),
        "{:#?}",
        got.missing
    );
    assert!(got.fields.len() > 100, "{}", got.fields.len());
}

/// Crawls each BTF-less dump with `source`, cold and then warm from the cache (where the
/// source is no longer needed), against the truth.
fn crawl_each_without_btf(source: LayoutSource, tag: &str) {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("origami-layouts-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for name in DUMPS {
        let truth = fx.json(&format!("{name}/truth.json"));
        let dump = MemoryDump::open(kernel_debug::nobtf_dump(fx, name)).unwrap();
        let opts = LinuxOptions::default()
            .no_cache()
            .with_layouts(source.clone());
        let k = discover(&dump, &opts).unwrap();
        assert_eq!(k.layout_file.as_deref().map(|p| p.is_file()), Some(true));
        let frame = frame_of(&dump, &opts);
        let bad = compare(&frame, &truth);
        assert!(
            bad.is_empty(),
            "{name} ({tag}): {bad:#?}\nerrors: {:#?}",
            frame.meta.errors
        );
        // Through the cache: the first crawl stores, the second needs no source at all.
        let cached = LinuxOptions::default().with_cache_dir(&dir);
        let cold = discover(&dump, &cached.clone().with_layouts(source.clone())).unwrap();
        assert!(!cold.from_cache || name != DUMPS[0]);
        let warm = discover(&dump, &cached).unwrap();
        assert!(warm.from_cache, "{name} ({tag})");
        assert_eq!(warm.layout, k.layout);
        let frame = frame_of(&dump, &cached);
        assert!(compare(&frame, &truth).is_empty(), "{name} ({tag}) warm");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_dump_without_btf_matches_its_truth_with_dwarf() {
    let Some(vmlinux) = kernel_debug::vmlinux() else {
        return;
    };
    crawl_each_without_btf(LayoutSource::KernelDebuginfo(vmlinux.clone()), "dwarf");
    // A folder: the file whose banner is the dump's is picked.
    crawl_each_without_btf(
        LayoutSource::KernelDebuginfo(vmlinux.parent().unwrap().to_path_buf()),
        "dwarf-folder",
    );
}
