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
use origami_introspect::linux::isf::Isf;
use origami_introspect::linux::layout::Layout;
use origami_introspect::linux::layout_source;
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

#[test]
fn isf_layouts_equal_the_kernels_own_btf() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let Some(json) = kernel_debug::isf(false) else {
        return;
    };
    let blob = std::fs::read(fx.path("memdump/kernel/vmlinux.btf")).unwrap();
    let want = Layout::from_btf(&Btf::parse(&blob).unwrap());
    let truth = fx.json("memdump/truth.json");
    for path in [json, kernel_debug::isf(true).unwrap()] {
        let i = Isf::open(&path).unwrap();
        assert_eq!(
            i.banner().as_deref(),
            truth["kernel"]["version_string"].as_str()
        );
        let got = i.layout();
        assert_eq!(got.fields, want.fields, "{}", path.display());
        assert_eq!(got.sizes, want.sizes);
        assert_eq!(
            got.missing.keys().collect::<Vec<_>>(),
            want.missing.keys().collect::<Vec<_>>()
        );
    }
}

#[test]
fn each_dump_without_btf_matches_its_truth_with_isf() {
    let Some(xz) = kernel_debug::isf(true) else {
        return;
    };
    crawl_each_without_btf(LayoutSource::Isf(xz), "isf-xz");
}

#[test]
fn sources_of_another_kernel_are_refused() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let Some(vmlinux) = kernel_debug::vmlinux() else {
        return;
    };
    let truth = fx.json("memdump/truth.json");
    let banner = truth["kernel"]["version_string"].as_str().unwrap();
    let release = truth["kernel"]["release"].as_str().unwrap();
    // Another build: same release, another banner (a rebuild's date or number differs).
    let other = banner.replace("#1 SMP", "#2 SMP");
    let src = LayoutSource::KernelDebuginfo(vmlinux.clone());
    let e = layout_source::load(&src, &other, release)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not the running kernel's"), "{e}");
    // The same build's file passes the banner, and its symbols match the dump's...
    let loaded = layout_source::load(&src, banner, release).unwrap();
    let dump = MemoryDump::open(fx.path("memdump/memory.elf")).unwrap();
    let k = discover(&dump, &LinuxOptions::default().no_cache()).unwrap();
    loaded.check_symbols(&k.symbols).unwrap();
    // ...but not symbols of a kernel laid out otherwise.
    let mut moved = loaded.clone();
    *moved.symbols.get_mut("init_task").unwrap() += 0x40;
    let e = moved.check_symbols(&k.symbols).unwrap_err().to_string();
    assert!(e.contains("another build"), "{e}");
    // A folder with no file of this kernel says so, naming what it tried.
    let dir = std::env::temp_dir().join(format!("origami-other-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("vmlinux-{release}")), b"not an ELF file").unwrap();
    let e = layout_source::load(&LayoutSource::KernelDebuginfo(dir.clone()), banner, release)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no DWARF file there"), "{e}");
    // Through discovery, a refused source is the kernel's error (no layouts from BTF either).
    let nobtf = MemoryDump::open(kernel_debug::nobtf_dump(fx, "memdump")).unwrap();
    let e = discover(
        &nobtf,
        &LinuxOptions::default()
            .no_cache()
            .with_layouts(LayoutSource::KernelDebuginfo(dir.clone())),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("kernel layouts"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A copy of the first `len` bytes of `src` with `patch` applied.
fn patched_copy(
    src: &std::path::Path,
    name: &str,
    len: Option<u64>,
    patch: &[(u64, &[u8])],
) -> std::path::PathBuf {
    use std::io::{Seek, SeekFrom, Write};
    let out = std::env::temp_dir().join(format!("origami-{name}-{}", std::process::id()));
    std::fs::copy(src, &out).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&out).unwrap();
    if let Some(len) = len {
        f.set_len(len).unwrap();
    }
    for (at, bytes) in patch {
        f.seek(SeekFrom::Start(*at)).unwrap();
        f.write_all(bytes).unwrap();
    }
    out
}

#[test]
fn truncated_or_huge_dwarf_is_a_typed_error() {
    use object::{Object, ObjectSection};
    let Some(vmlinux) = kernel_debug::vmlinux() else {
        return;
    };
    let data = std::fs::read(&vmlinux).unwrap();
    let elf = object::File::parse(&*data).unwrap();
    let (info_off, _) = elf
        .section_by_name(".debug_info")
        .unwrap()
        .file_range()
        .unwrap();
    let shoff = u64::from_le_bytes(data[0x28..0x30].try_into().unwrap());
    let shentsize = u64::from(u16::from_le_bytes(data[0x3a..0x3c].try_into().unwrap()));
    let idx = elf.section_by_name(".debug_info").unwrap().index().0 as u64;
    drop(elf);
    drop(data);
    // Cut in the middle of .debug_info (the section headers, at the file's end, are lost).
    let cut = patched_copy(&vmlinux, "cut", Some(info_off + 4096), &[]);
    match KernelDwarf::open(&cut) {
        Err(origami_introspect::Error::Malformed { file, .. }) => {
            assert_eq!(file, cut.display().to_string())
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_file(&cut);
    // A section header claiming 2 GiB.
    let size_at = shoff + idx * shentsize + 0x20;
    let huge = patched_copy(
        &vmlinux,
        "huge-section",
        None,
        &[(size_at, &(2u64 << 30).to_le_bytes())],
    );
    let e = KernelDwarf::open(&huge).unwrap_err().to_string();
    assert!(e.contains("past the end"), "{e}");
    let _ = std::fs::remove_file(&huge);
    // The first unit claiming 2 GiB: over the unit bound, refused before any allocation.
    let unit = patched_copy(
        &vmlinux,
        "huge-unit",
        None,
        &[(info_off, &0x8000_0000u32.to_le_bytes())],
    );
    let d = KernelDwarf::open(&unit).unwrap();
    match d.layout() {
        Err(origami_introspect::Error::TooLarge { size, limit, .. }) => {
            assert!(size > limit && size >= 0x8000_0000)
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_file(&unit);
}
