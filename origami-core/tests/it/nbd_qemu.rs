//! The NBD client against `qemu-nbd` (issue 13 item 1): the bytes of the whole export are
//! the image's guest view (the fixture's raw disk, which `disk-gpt.qcow2` was converted
//! from), over a Unix socket and over loopback TCP; `base:allocation` is what
//! `qemu-img map --output=json` says of the same image; a persistent dirty bitmap
//! (`qemu-img bitmap --add --enable`) read over `qemu:dirty-bitmap:NAME` holds exactly the
//! clusters `qemu-io` wrote; a disk name that is an NBD URI opens through `Image`.
//!
//! Skips outside CI when the fixtures, qemu-nbd, qemu-img or qemu-io are missing.

use std::process::Command;

use origami_core::nbd::{NbdAddress, NbdClient, NbdOptions, STATE_HOLE, STATE_ZERO};
use origami_core::{Error, Image, ImageFormat, ImageOptions, ReadAt};
use origami_testsupport::nbd::{Listen, QemuNbd};
use serde_json::Value;

fn have_tools() -> bool {
    ["qemu-nbd", "qemu-img", "qemu-io"]
        .iter()
        .all(|p| origami_testsupport::require_program(p))
}

fn run(cmd: &str, args: &[&str]) -> Vec<u8> {
    let o = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Reads the whole export in pieces of `piece` bytes and compares it with `want`.
fn assert_export_is(client: &dyn ReadAt, want: &[u8], piece: usize) {
    assert_eq!(client.len(), want.len() as u64);
    let mut buf = vec![0u8; piece];
    let mut off = 0usize;
    while off < want.len() {
        let n = piece.min(want.len() - off);
        client.read_at(off as u64, &mut buf[..n]).unwrap();
        assert!(
            buf[..n] == want[off..off + n],
            "bytes differ in {off:#x}+{n:#x}"
        );
        off += n;
    }
    // Odd, unaligned pieces too, and the very end.
    let mut odd = vec![0u8; 3001];
    let mut at = 17u64;
    while at + 3001 <= want.len() as u64 {
        client.read_at(at, &mut odd).unwrap();
        assert!(
            odd[..] == want[at as usize..at as usize + 3001],
            "at {at:#x}"
        );
        at += 9_999_991;
    }
    let end = want.len() as u64;
    client.read_at(end - 1, &mut odd[..1]).unwrap();
    assert_eq!(odd[0], want[want.len() - 1]);
    assert!(matches!(
        client.read_at(end - 1, &mut odd[..2]),
        Err(Error::OutOfBounds { .. })
    ));
}

#[test]
fn whole_export_over_a_unix_socket_is_the_guest_view() {
    if !have_tools() {
        return;
    }
    let fx = origami_testsupport::require_fixtures!();
    let want = std::fs::read(fx.path("debian/disk-gpt.raw")).unwrap();
    let server = QemuNbd::serve(
        &fx.path("debian/disk-gpt.qcow2"),
        "qcow2",
        "disk",
        Listen::Unix,
        &[],
    );
    let client = NbdClient::open(&server.uri, &NbdOptions::default()).unwrap();
    assert_eq!(client.block_sizes().0, 1, "qemu-nbd's minimum block size");
    // Pieces larger than one request (several in flight) and smaller ones.
    assert_export_is(&client, &want, 80 << 20);
    assert_export_is(&client, &want, 1 << 20);

    // Shared by threads: the client is Send + Sync.
    let client = std::sync::Arc::new(client);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (client, want) = (client.clone(), &want);
            s.spawn(move || {
                let mut b = vec![0u8; 65536 + 7];
                for i in 0..200u64 {
                    let at = (i * 1_234_567 + t * 77_777) % (want.len() as u64 - b.len() as u64);
                    client.read_at(at, &mut b).unwrap();
                    assert!(b[..] == want[at as usize..at as usize + b.len()]);
                }
            });
        }
    });

    // The same export by its name, through Image (what --disk and Target::disk use).
    let img = Image::open(&server.uri).unwrap();
    assert_eq!(img.format(), ImageFormat::Nbd);
    assert!(img.nbd().is_some());
    assert_export_is(&img, &want, 16 << 20);
}

#[test]
fn whole_export_over_loopback_tcp_is_the_guest_view() {
    if !have_tools() {
        return;
    }
    let fx = origami_testsupport::require_fixtures!();
    let raw = fx.path("debian/disk-gpt.raw");
    let want = std::fs::read(&raw).unwrap();
    let server = QemuNbd::serve(&raw, "raw", "raw disk", Listen::Tcp, &[]);
    assert!(server.uri.contains("raw disk"));
    let uri = server.uri.replace(' ', "%20");
    let client = NbdClient::open(&uri, &NbdOptions::default()).unwrap();
    assert_export_is(&client, &want, 32 << 20);
    let img = Image::open(&uri).unwrap();
    assert_export_is(&img, &want, 4 << 20);

    // A name that is not loopback is refused before anything is sent.
    let port = server.port.unwrap();
    let remote = format!("nbd://192.0.2.7:{port}/x");
    match Image::open(&remote) {
        Err(Error::Nbd {
            problem: origami_core::nbd::NbdProblem::RemoteRefused { .. },
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // Opting in lets it try (and fail to connect, as 192.0.2.0/24 is TEST-NET-1).
    let opts = ImageOptions::default().allow_remote_nbd(true).nbd_options(
        NbdOptions::default()
            .allow_remote(true)
            .timeout(std::time::Duration::from_millis(300)),
    );
    assert!(matches!(
        Image::open_with(&remote, &opts),
        Err(Error::Nbd {
            problem: origami_core::nbd::NbdProblem::Io { .. }
                | origami_core::nbd::NbdProblem::TimedOut { .. },
            ..
        })
    ));
}

/// `qemu-img map --output=json` of `image` as (start, end, flags) in NBD's terms,
/// adjacent entries with the same flags merged.
fn qemu_img_map(image: &str, format: &str) -> Vec<(u64, u64, u32)> {
    let out = run("qemu-img", &["map", "--output=json", "-f", format, image]);
    let map: Value = serde_json::from_slice(&out).unwrap();
    let mut merged: Vec<(u64, u64, u32)> = Vec::new();
    for e in map.as_array().unwrap() {
        let start = e["start"].as_u64().unwrap();
        let len = e["length"].as_u64().unwrap();
        let mut flags = 0;
        if !e["data"].as_bool().unwrap() {
            flags |= STATE_HOLE;
        }
        if e["zero"].as_bool().unwrap() {
            flags |= STATE_ZERO;
        }
        match merged.last_mut() {
            Some(last) if last.1 == start && last.2 == flags => last.1 = start + len,
            _ => merged.push((start, start + len, flags)),
        }
    }
    merged
}

#[test]
fn allocation_is_what_qemu_img_map_says() {
    if !have_tools() {
        return;
    }
    let fx = origami_testsupport::require_fixtures!();
    for (file, format) in [
        ("debian/disk-gpt.qcow2", "qcow2"),
        ("debian/disk-overlay.qcow2", "qcow2"),
    ] {
        let image = fx.path(file);
        let want = qemu_img_map(image.to_str().unwrap(), format);
        let server = QemuNbd::serve(&image, format, "", Listen::Unix, &[]);
        let client = NbdClient::open(&server.uri, &NbdOptions::default()).unwrap();
        assert_eq!(client.meta_contexts(), vec!["base:allocation".to_string()]);
        let got: Vec<(u64, u64, u32)> = client
            .block_status("base:allocation", 0..client.len())
            .unwrap()
            .into_iter()
            .map(|e| (e.offset, e.offset + e.len, e.flags))
            .collect();
        assert!(got.len() > 3, "{file}: {got:?}");
        assert_eq!(got, want, "{file}: block status against qemu-img map");

        // A range inside: clipped to it.
        let (a, b) = (want[1].0 + 12345, want[2].1 - 1);
        let part = client.block_status("base:allocation", a..b).unwrap();
        assert_eq!(part.first().unwrap().offset, a);
        assert_eq!(part.last().map(|e| e.offset + e.len), Some(b));
        assert_eq!(part.len(), 2);
    }
}

#[test]
fn a_dirty_bitmap_holds_the_clusters_written() {
    if !have_tools() {
        return;
    }
    let fx = origami_testsupport::require_fixtures!();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.qcow2");
    std::fs::copy(fx.path("debian/disk-gpt.qcow2"), &img).unwrap();
    let p = img.to_str().unwrap();
    run(
        "qemu-img",
        &["bitmap", "--add", "--enable", "-g", "65536", p, "b0"],
    );
    // Writes through qemu's qcow2 driver mark the persistent bitmap.
    let writes: [(u64, u64); 4] = [
        (0x10_0000, 0x1_0000),
        (0x10_8000, 0x100),
        (0x300_0000, 0x2_0001),
        (0x1500_0000 - 1, 2),
    ];
    for (off, len) in writes {
        run(
            "qemu-io",
            &[
                "-f",
                "qcow2",
                "-c",
                &format!("write -P 0xab {off} {len}"),
                p,
            ],
        );
    }
    let mut want: Vec<std::ops::Range<u64>> = Vec::new();
    for (off, len) in writes {
        let (a, b) = (off / 65536 * 65536, (off + len).div_ceil(65536) * 65536);
        want.push(a..b);
    }
    want.sort_by_key(|r| r.start);
    let mut merged: Vec<std::ops::Range<u64>> = Vec::new();
    for r in want {
        match merged.last_mut() {
            Some(l) if l.end >= r.start => l.end = l.end.max(r.end),
            _ => merged.push(r),
        }
    }

    let server = QemuNbd::serve(&img, "qcow2", "disk", Listen::Unix, &["-B", "b0"]);
    // Asked for at connect time.
    let opts = NbdOptions::default().meta_context("qemu:dirty-bitmap:b0");
    let client = NbdClient::open(&server.uri, &opts).unwrap();
    assert_eq!(client.dirty_ranges("b0").unwrap(), merged);
    // Asked for later: the client reconnects to negotiate it.
    let later = NbdClient::open(&server.uri, &NbdOptions::default()).unwrap();
    assert_eq!(later.dirty_ranges("b0").unwrap(), merged);
    // A bitmap the server does not export.
    match later.dirty_ranges("nope") {
        Err(Error::Nbd {
            problem: origami_core::nbd::NbdProblem::NoMetaContext { context, .. },
            ..
        }) => assert_eq!(context, "qemu:dirty-bitmap:nope"),
        other => panic!("{other:?}"),
    }
    // The written bytes read back.
    let mut b = vec![0u8; 0x100];
    later.read_at(0x10_8000, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0xab));
}

#[test]
fn an_unknown_export_is_a_typed_error_naming_the_server() {
    if !have_tools() {
        return;
    }
    let fx = origami_testsupport::require_fixtures!();
    let server = QemuNbd::serve(
        &fx.path("debian/disk-gpt.raw"),
        "raw",
        "disk",
        Listen::Unix,
        &[],
    );
    let uri = server.uri.replace("///disk", "///other");
    let address = NbdAddress::parse(&uri).unwrap();
    match NbdClient::connect(&address, &NbdOptions::default()) {
        Err(
            e @ Error::Nbd {
                problem: origami_core::nbd::NbdProblem::OptionRefused { .. },
                ..
            },
        ) => {
            let text = e.to_string();
            assert!(
                text.contains("nbd.sock") && text.contains("NBD_REP_ERR_UNKNOWN"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
}
