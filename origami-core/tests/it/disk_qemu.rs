//! Images that qemu's own tools write, read back and compared with qemu's own raw
//! conversion: extended L2 subclusters over a raw backing file, and version 2 (compat=0.10)
//! images, plain and compressed. Skips when `qemu-img`/`qemu-io` are missing (outside CI).

use std::path::Path;
use std::process::Command;

use origami_core::{Image, ImageFormat, ReadAt};

fn run(cmd: &str, args: &[&str]) -> bool {
    match Command::new(cmd).args(args).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => panic!("{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => false,
    }
}

fn have_qemu() -> bool {
    let ok = Command::new("qemu-img").arg("--version").output().is_ok()
        && Command::new("qemu-io").arg("--version").output().is_ok();
    ok || origami_testsupport::skip("qemu-img / qemu-io not installed")
}

fn assert_same(img: &Path, raw: &Path) {
    let img = Image::open(img).unwrap();
    assert_eq!(img.format(), ImageFormat::Qcow2);
    let want = std::fs::read(raw).unwrap();
    let mut got = vec![0u8; img.len() as usize];
    img.read_at(0, &mut got).unwrap();
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "{} differs from qemu-img's raw conversion",
        img.path().display()
    );
    // And in odd small pieces.
    let mut b = vec![0u8; 3001];
    let mut off = 0u64;
    while off + 3001 <= img.len() {
        img.read_at(off, &mut b).unwrap();
        assert!(
            b[..] == want[off as usize..off as usize + 3001],
            "offset {off}"
        );
        off += 7919;
    }
}

#[test]
fn extended_l2_over_a_raw_backing_file_equals_qemu() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    assert!(run(
        "qemu-img",
        &["create", "-q", "-f", "raw", &d("base.raw"), "1M"]
    ));
    assert!(run(
        "qemu-io",
        &["-f", "raw", "-c", "write -P 0x11 0 1M", &d("base.raw")]
    ));
    assert!(run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "extended_l2=on,cluster_size=64k",
            "-b",
            "base.raw",
            "-F",
            "raw",
            &d("top.qcow2"),
            "1M"
        ]
    ));
    assert!(run(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            "write -P 0x22 4k 4k",
            "-c",
            "write -z 64k 8k",
            "-c",
            "write -P 0x33 130k 3k",
            "-c",
            "write -z 256k 64k",
            "-c",
            "write -P 0x44 700k 100k",
            &d("top.qcow2"),
        ]
    ));
    assert!(run(
        "qemu-img",
        &["convert", "-O", "raw", &d("top.qcow2"), &d("top.raw")]
    ));
    let img = Image::open(d("top.qcow2")).unwrap();
    assert!(img.qcow2().unwrap().header().extended_l2);
    assert_same(Path::new(&d("top.qcow2")), Path::new(&d("top.raw")));
}

#[test]
fn version_2_images_equal_qemu() {
    if !have_qemu() {
        return;
    }
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = fx.path("synth/gpt.img");
    let src = src.to_str().unwrap();
    for (name, extra) in [("v2.qcow2", None), ("v2c.qcow2", Some("-c"))] {
        let out = dir.path().join(name);
        let mut args = vec!["convert", "-O", "qcow2", "-o", "compat=0.10"];
        args.extend(extra);
        args.extend([src, out.to_str().unwrap()]);
        assert!(run("qemu-img", &args));
        let img = Image::open(&out).unwrap();
        assert_eq!(img.qcow2().unwrap().header().version, 2);
        assert_same(&out, Path::new(src));
    }
}

#[test]
fn vmdk_subformats_equal_qemu() {
    if !have_qemu() {
        return;
    }
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = fx.path("synth/gpt.img");
    let src = src.to_str().unwrap();
    for sub in ["monolithicSparse", "streamOptimized"] {
        let out = dir.path().join(format!("{sub}.vmdk"));
        let opt = format!("subformat={sub}");
        assert!(run(
            "qemu-img",
            &[
                "convert",
                "-O",
                "vmdk",
                "-o",
                &opt,
                src,
                out.to_str().unwrap()
            ]
        ));
        let img = Image::open(&out).unwrap();
        assert_eq!(img.format(), ImageFormat::Vmdk, "{sub}");
        let want = std::fs::read(src).unwrap();
        let mut got = vec![0u8; img.len() as usize];
        img.read_at(0, &mut got).unwrap();
        assert!(got == want, "{sub}");
        let mut b = vec![0u8; 3001];
        let mut off = 0u64;
        while off + 3001 <= img.len() {
            img.read_at(off, &mut b).unwrap();
            assert!(
                b[..] == want[off as usize..off as usize + 3001],
                "{sub} offset {off}"
            );
            off += 104_729;
        }
    }
    // A differencing VMDK (with a parent) is refused, not read as if it had none.
    let base = dir.path().join("monolithicSparse.vmdk");
    let child = dir.path().join("child.vmdk");
    assert!(run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-b",
            base.to_str().unwrap(),
            "-F",
            "vmdk",
            child.to_str().unwrap()
        ]
    ));
    assert!(matches!(
        Image::open(&child),
        Err(origami_core::Error::Unsupported { .. })
    ));
}

#[test]
fn vhdx_subformats_equal_qemu() {
    if !have_qemu() {
        return;
    }
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = fx.path("synth/mbr.img");
    let src = src.to_str().unwrap();
    let want = std::fs::read(src).unwrap();
    for (sub, opts) in [
        ("dynamic", "subformat=dynamic"),
        ("fixed", "subformat=fixed"),
        (
            "dynamic-4k-8m",
            "subformat=dynamic,log_size=1M,block_size=8M",
        ),
    ] {
        let out = dir.path().join(format!("{sub}.vhdx"));
        assert!(run(
            "qemu-img",
            &[
                "convert",
                "-O",
                "vhdx",
                "-o",
                opts,
                src,
                out.to_str().unwrap()
            ]
        ));
        let img = Image::open(&out).unwrap();
        assert_eq!(img.format(), ImageFormat::Vhdx, "{sub}");
        assert_eq!(img.len(), want.len() as u64, "{sub}");
        let mut got = vec![0u8; img.len() as usize];
        img.read_at(0, &mut got).unwrap();
        assert!(got == want, "{sub}");
    }
}
