//! The rule for files an image names (issue 18): a qcow2 backing file or a VMDK extent
//! must lie, symlinks followed, in the folder of the image that names it, unless the caller
//! allows another folder; `json:` and protocol names are never opened.
//!
//! Each test lays out `images/` (the image folder) beside `outside/`, which holds a marker
//! file of unique content. The hostile images, made at test time with `qemu-img` or written
//! by hand, name the marker by an absolute path, a `../` climb, a symlink inside `images/`
//! pointing out, a `json:` name and protocol names. Each must fail with
//! [`Error::RefusedFile`] whose message states the rule and how to allow it, without the
//! marker's content anywhere, and an inotify watch on `outside/` must see no file there
//! opened. With `outside/` allowed, the same images open and read exactly as
//! `qemu-img convert -O raw` reads them (and the watch then does see the opens, so it
//! works). Skips when `qemu-img` / `qemu-io` are missing (outside CI).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use origami_core::{Error, Image, ImageOptions, ReadAt};

const MIB: usize = 1 << 20;

fn have_qemu() -> bool {
    let ok = Command::new("qemu-img").arg("--version").output().is_ok()
        && Command::new("qemu-io").arg("--version").output().is_ok();
    ok || origami_testsupport::skip("qemu-img / qemu-io not installed")
}

fn run(cmd: &str, args: &[&str]) {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Counts the files opened or read in a folder while it is alive (inotify).
struct OpenWatch {
    fd: i32,
}

impl OpenWatch {
    fn new(dir: &Path) -> OpenWatch {
        let path = CString::new(dir.as_os_str().as_bytes()).unwrap();
        // SAFETY: plain system calls on a C string that outlives them.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1");
        let wd =
            unsafe { libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_OPEN | libc::IN_ACCESS) };
        assert!(wd >= 0, "inotify_add_watch {}", dir.display());
        OpenWatch { fd }
    }

    /// The events since the last call (0 when none).
    fn events(&self) -> usize {
        let mut n = 0;
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: `buf` is writable for its length.
            let r = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                return n;
            }
            let mut at = 0usize;
            while at + 16 <= r as usize {
                let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().unwrap());
                at += 16 + len as usize;
                n += 1;
            }
        }
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.fd) };
    }
}

struct Layout {
    _tmp: tempfile::TempDir,
    images: PathBuf,
    outside: PathBuf,
    marker: Vec<u8>,
}

impl Layout {
    fn new() -> Layout {
        let tmp = tempfile::tempdir().unwrap();
        let images = tmp.path().join("images");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let tag = format!("ORIGAMI-HOST-SECRET-{}-{nonce}|", std::process::id());
        let marker: Vec<u8> = tag.bytes().cycle().take(MIB).collect();
        std::fs::write(outside.join("secret.raw"), &marker).unwrap();
        Layout {
            _tmp: tmp,
            images,
            outside,
            marker,
        }
    }

    fn img(&self, name: &str) -> String {
        self.images.join(name).to_str().unwrap().to_string()
    }

    fn secret(&self) -> String {
        self.outside
            .join("secret.raw")
            .to_str()
            .unwrap()
            .to_string()
    }

    /// A qcow2 in `images/` over `backing` (not opened by qemu-img: `-u`); with `own_data`,
    /// one cluster written (through qemu-io, which opens the backing file).
    fn overlay(&self, name: &str, backing: &str, format: &str, own_data: bool) -> PathBuf {
        run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-u",
                "-b",
                backing,
                "-F",
                format,
                &self.img(name),
                "1M",
            ],
        );
        if own_data {
            run(
                "qemu-io",
                &["-f", "qcow2", "-c", "write -P 0x77 64k 4k", &self.img(name)],
            );
        }
        self.images.join(name)
    }

    fn marker_tag(&self) -> String {
        let end = self.marker.iter().position(|&b| b == b'|').unwrap();
        String::from_utf8(self.marker[..end].to_vec()).unwrap()
    }
}

/// Opening `image` is refused, names it and the stored name, states the rule (and how to
/// allow it when `allowable`), shows no marker content, and opens nothing in `outside/`.
fn assert_refused(l: &Layout, image: &Path, stored: &str, allowable: bool) {
    let watch = OpenWatch::new(&l.outside);
    let err = match Image::open(image) {
        Err(e) => e,
        Ok(img) => panic!(
            "{}: opened, backing {:?}",
            image.display(),
            img.backing_file()
        ),
    };
    assert_eq!(
        watch.events(),
        0,
        "{}: a file in outside/ was opened",
        image.display()
    );
    match &err {
        Error::RefusedFile { image: i, name, .. } => {
            assert_eq!(i, image);
            assert_eq!(name, stored);
        }
        other => panic!("{}: {other:?}", image.display()),
    }
    let text = err.to_string();
    assert!(text.contains("refused"), "{text}");
    assert!(text.contains(&format!("{stored:?}")), "{text}");
    if allowable {
        assert!(text.contains("ImageOptions::allow_dir"), "{text}");
        assert!(text.contains("--allow-backing"), "{text}");
    } else {
        assert!(text.contains("never opened"), "{text}");
    }
    assert!(!text.contains(&l.marker_tag()), "{text}");
    assert!(!text.contains("ORIGAMI-HOST-SECRET"), "{text}");
}

/// Opens `image` with `outside/` allowed and compares every byte with qemu's conversion.
fn assert_allowed_reads_as_qemu(l: &Layout, image: &Path) {
    let watch = OpenWatch::new(&l.outside);
    let options = ImageOptions::default().allow_dir(&l.outside);
    let img =
        Image::open_with(image, &options).unwrap_or_else(|e| panic!("{}: {e}", image.display()));
    let mut got = vec![0u8; img.len() as usize];
    img.read_at(0, &mut got).unwrap();
    assert!(
        watch.events() > 0,
        "the watch saw no open of the allowed file"
    );
    let raw = l.images.join("qemu.raw");
    run(
        "qemu-img",
        &[
            "convert",
            "-U",
            "-O",
            "raw",
            image.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    let want = std::fs::read(&raw).unwrap();
    std::fs::remove_file(&raw).unwrap();
    assert_eq!(got.len(), want.len(), "{}", image.display());
    assert!(
        got == want,
        "{} differs from qemu-img convert",
        image.display()
    );
    // The marker shows through where the image has no data of its own: the backing file
    // really was read.
    assert_eq!(&got[..64], &l.marker[..64], "{}", image.display());
}

#[test]
fn qcow2_backing_files_outside_the_image_folder_are_refused() {
    if !have_qemu() {
        return;
    }
    let l = Layout::new();
    // (a) an absolute host path
    let secret = l.secret();
    let abs = l.overlay("abs.qcow2", &secret, "raw", true);
    // (b) a climb out of the folder
    let climb = l.overlay("climb.qcow2", "../outside/secret.raw", "raw", true);
    // (c) a symlink inside the folder pointing out of it
    std::os::unix::fs::symlink("../outside/secret.raw", l.images.join("link.raw")).unwrap();
    let link = l.overlay("link.qcow2", "link.raw", "raw", true);
    // ... also as an absolute path to the symlink, and a climb that comes back in and out.
    let link_abs_name = l.img("link.raw");
    let link_abs = l.overlay("link-abs.qcow2", &link_abs_name, "raw", true);
    let back_out = l.overlay(
        "back-out.qcow2",
        "../images/../outside/./secret.raw",
        "raw",
        true,
    );
    for (image, stored) in [
        (&abs, secret.as_str()),
        (&climb, "../outside/secret.raw"),
        (&link, "link.raw"),
        (&link_abs, link_abs_name.as_str()),
        (&back_out, "../images/../outside/./secret.raw"),
    ] {
        assert_refused(&l, image, stored, true);
        assert_allowed_reads_as_qemu(&l, image);
    }

    // (d) json: and protocol names: refused even when the folder is allowed.
    let json =
        format!(r#"json:{{"driver":"raw","file":{{"driver":"file","filename":"{secret}"}}}}"#);
    let nbd = "nbd:localhost:10809";
    let file_proto = format!("file:{secret}");
    let http = "http://127.0.0.1:9/secret.raw";
    for (n, name) in [json.as_str(), nbd, file_proto.as_str(), http]
        .into_iter()
        .enumerate()
    {
        let image = l.overlay(&format!("proto{n}.qcow2"), name, "raw", false);
        assert_refused(&l, &image, name, false);
        let allowed = ImageOptions::default().allow_dir(&l.outside).allow_dir("/");
        let watch = OpenWatch::new(&l.outside);
        assert!(matches!(
            Image::open_with(&image, &allowed),
            Err(Error::RefusedFile { .. })
        ));
        assert_eq!(watch.events(), 0);
    }
}

#[test]
fn a_deeper_link_of_the_chain_is_held_to_its_own_folder() {
    if !have_qemu() {
        return;
    }
    let l = Layout::new();
    // images/top.qcow2 -> base/base.qcow2 (allowed folder) -> ../outside/secret.raw
    let base_dir = l.images.parent().unwrap().join("base");
    std::fs::create_dir_all(&base_dir).unwrap();
    let base = base_dir.join("base.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-b",
            "../outside/secret.raw",
            "-F",
            "raw",
            base.to_str().unwrap(),
            "1M",
        ],
    );
    let top = l.overlay("top.qcow2", base.to_str().unwrap(), "qcow2", false);
    let watch = OpenWatch::new(&l.outside);
    let options = ImageOptions::default().allow_dir(&base_dir);
    match Image::open_with(&top, &options) {
        Err(Error::RefusedFile { image, .. }) => assert_eq!(image, base),
        other => panic!("{other:?}"),
    }
    assert_eq!(watch.events(), 0);
    // Allowing both folders opens the whole chain.
    let both = options.allow_dir(&l.outside);
    let img = Image::open_with(&top, &both).unwrap();
    let mut b = [0u8; 64];
    img.read_at(0, &mut b).unwrap();
    assert_eq!(&b[..], &l.marker[..64]);
    // An allowed folder that does not exist is an error naming it.
    let missing = l.images.join("no-such-folder");
    match Image::open_with(&top, &ImageOptions::default().allow_dir(&missing)) {
        Err(Error::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }
}

/// A VMDK descriptor naming `extents`: `RW <sectors> <kind> "<name>" [0]`.
fn descriptor(extents: &[(u64, &str, &str)]) -> String {
    let mut s = String::from(
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n\
         createType=\"monolithicFlat\"\n\n# Extent description\n",
    );
    for (sectors, kind, name) in extents {
        match *kind {
            "FLAT" => s.push_str(&format!("RW {sectors} {kind} \"{name}\" 0\n")),
            _ => s.push_str(&format!("RW {sectors} {kind} \"{name}\"\n")),
        }
    }
    s.push_str("\n# The Disk Data Base\n#DDB\n\nddb.adapterType = \"ide\"\n");
    s
}

#[test]
fn vmdk_extents_outside_the_image_folder_are_refused() {
    if !have_qemu() {
        return;
    }
    let l = Layout::new();
    let sectors = (MIB / 512) as u64;
    // A sparse extent outside holding the marker's first MiB.
    let sparse = l.outside.join("secret-sparse.vmdk");
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            &l.secret(),
            sparse.to_str().unwrap(),
        ],
    );
    std::os::unix::fs::symlink("../outside/secret.raw", l.images.join("link.raw")).unwrap();
    // A harmless extent inside the folder, so the hostile one is not the only one.
    std::fs::write(l.images.join("ok.raw"), vec![0x5au8; 4096]).unwrap();
    let secret = l.secret();
    let cases: Vec<(&str, String, &str)> = vec![
        ("abs.vmdk", secret.clone(), "FLAT"),
        ("climb.vmdk", "../outside/secret.raw".into(), "FLAT"),
        ("link.vmdk", "link.raw".into(), "FLAT"),
        (
            "sparse.vmdk",
            "../outside/secret-sparse.vmdk".into(),
            "SPARSE",
        ),
    ];
    for (file, name, kind) in &cases {
        let path = l.images.join(file);
        // A good extent first, then the hostile one: the rule holds for every extent.
        let text = descriptor(&[(8, "FLAT", "ok.raw"), (sectors, kind, name)]);
        std::fs::write(&path, text).unwrap();
        assert_refused(&l, &path, name, true);
    }
    // (A VMDK extent name is quoted and cannot hold a quote, so no JSON object fits.)
    for name in [
        "json:{}".to_string(),
        format!("file:{secret}"),
        "nbd:localhost:10809".to_string(),
    ] {
        let path = l.images.join("proto.vmdk");
        std::fs::write(&path, descriptor(&[(sectors, "FLAT", &name)])).unwrap();
        assert_refused(&l, &path, &name, false);
    }
    // Allowed: the hostile extents first (so the marker starts the disk), then the good one.
    for (file, name, kind) in &cases {
        let path = l.images.join(file);
        let text = descriptor(&[(sectors, kind, name), (8, "FLAT", "ok.raw")]);
        std::fs::write(&path, text).unwrap();
        assert_allowed_reads_as_qemu(&l, &path);
    }
}

#[test]
fn vmdk_descriptors_with_their_extents_in_the_folder_read_as_qemu() {
    if !have_qemu() {
        return;
    }
    let l = Layout::new();
    // qemu's own split images: flat and sparse 2 GiB extents (a 5 GiB disk: three extents).
    for sub in [
        "monolithicFlat",
        "twoGbMaxExtentSparse",
        "twoGbMaxExtentFlat",
    ] {
        let path = l.img(&format!("{sub}.vmdk"));
        run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "vmdk",
                "-o",
                &format!("subformat={sub}"),
                &path,
                "5G",
            ],
        );
        for (at, pattern) in [("0", "0x11"), ("2047M", "0x22"), ("4095M", "0x33")] {
            run(
                "qemu-io",
                &[
                    "-f",
                    "vmdk",
                    "-c",
                    &format!("write -P {pattern} {at} 2M"),
                    &path,
                ],
            );
        }
        let img = Image::open(&path).unwrap_or_else(|e| panic!("{sub}: {e}"));
        assert_eq!(img.len(), 5 << 30, "{sub}");
        // qemu's own conversion (a sparse 5 GiB file), compared around the written regions
        // and across the extent boundaries.
        let raw = l.images.join("qemu.raw");
        run(
            "qemu-img",
            &["convert", "-O", "raw", &path, raw.to_str().unwrap()],
        );
        let want_file = std::fs::File::open(&raw).unwrap();
        for at in [0u64, 2047 << 20, 4095 << 20, (5 << 30) - 3 * MIB as u64] {
            let mut got = vec![0u8; 3 * MIB];
            img.read_at(at, &mut got).unwrap();
            let mut want = vec![0u8; 3 * MIB];
            std::os::unix::fs::FileExt::read_exact_at(&want_file, &mut want, at).unwrap();
            assert!(got == want, "{sub} at {at:#x}");
        }
        let mut probe = vec![0u8; 2 * MIB];
        img.read_at(2047 << 20, &mut probe).unwrap();
        assert!(
            probe.iter().all(|&b| b == 0x22),
            "{sub}: the write is not there"
        );
        std::fs::remove_file(&raw).unwrap();
    }
}
