//! Cross-guest cache poisoning: a guest that keeps a genuine kernel's banner but carries
//! other kernel bytes must not plant symbols or layouts that the crawl of the genuine
//! kernel then trusts.
//!
//! A copy of a fixture dump is patched on disk: in every BTF blob of the file, the offsets
//! of `task_struct`'s `pid`, `tgid` and `tasks` members are moved, and the banner is left
//! alone. The copy is crawled first, with the discovery cache on, in a fresh cache folder
//! (its crawl is wrong, which shows the patch bites); then the unpatched dumps of that
//! kernel build (the same boot, and another boot with other KASLR shifts) are crawled with
//! the same folder, and must match their truth.json exactly as a crawl with no cache does.

use crate::memory_truth;

use std::path::Path;

use memory_truth::compare;
use origami_core::memory::MemoryDump;
use origami_introspect::frame::Frame;
use origami_introspect::linux::{discover, LinuxOptions};
use origami_introspect::{CrawlOptions, Crawler, Target};

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The NUL-terminated string at `off` of a BTF string section.
fn btf_str(strings: &[u8], off: u32) -> &[u8] {
    let rest = strings.get(off as usize..).unwrap_or_default();
    &rest[..rest.iter().position(|&c| c == 0).unwrap_or(rest.len())]
}

/// Moves `task_struct.{pid,tgid,tasks}` by `delta_bits` in the BTF blob at `blob` of
/// `file`; returns how many members were moved (0 when the blob has no full task_struct).
/// A walk of the type section written from the BTF format description, independent of
/// the crate's parser.
fn patch_task_struct(file: &mut [u8], blob: usize, delta_bits: u32) -> usize {
    let h = &file[blob..];
    if h.len() < 24 || u32_at(h, 4) != 24 {
        return 0;
    }
    let (type_off, type_len) = (u32_at(h, 8) as usize, u32_at(h, 12) as usize);
    let (str_off, str_len) = (u32_at(h, 16) as usize, u32_at(h, 20) as usize);
    let types = blob + 24 + type_off;
    let strings = blob + 24 + str_off;
    if strings + str_len > file.len() || types + type_len > file.len() {
        return 0;
    }
    let mut edits = Vec::new();
    let mut pos = types;
    while pos + 12 <= types + type_len {
        let name = u32_at(file, pos);
        let info = u32_at(file, pos + 4);
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        pos += 12;
        let extra = match kind {
            1 | 14 | 17 => 4,
            3 => 12,
            4 | 5 => vlen * 12,
            6 | 13 => vlen * 8,
            15 | 19 => vlen * 12,
            2 | 7..=12 | 16 | 18 => 0,
            _ => return 0, // not a BTF blob this walk understands
        };
        let s = &file[strings..strings + str_len];
        if kind == 4 && btf_str(s, name) == b"task_struct" && vlen > 50 {
            for m in 0..vlen {
                let at = pos + m * 12;
                if matches!(btf_str(s, u32_at(file, at)), b"pid" | b"tgid" | b"tasks") {
                    edits.push(at + 8);
                }
            }
        }
        pos += extra;
    }
    for &at in &edits {
        let v = u32_at(file, at) + delta_bits;
        file[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    edits.len()
}

/// A copy of `src` in `dir` whose BTF blobs carry moved `task_struct` members.
fn poisoned_copy(src: &Path, dir: &Path) -> std::path::PathBuf {
    let mut bytes = std::fs::read(src).unwrap();
    let needle = [0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
    let hits: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    let moved: usize = hits
        .into_iter()
        .map(|at| patch_task_struct(&mut bytes, at, 128))
        .sum();
    assert!(moved >= 3, "the kernel's BTF was found and patched");
    let out = dir.join("poisoned.elf");
    std::fs::write(&out, bytes).unwrap();
    out
}

fn crawl(crawler: &Crawler, dump: &Path) -> Frame {
    crawler.crawl(&Target::default().with_memory(dump)).unwrap()
}

#[test]
fn a_dump_with_the_same_banner_but_other_kernel_bytes_does_not_poison_the_cache() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("origami-poison-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cache = dir.join("cache");
    let cached = Crawler::new(CrawlOptions::builder().cache_dir(&cache).build().unwrap());

    // The poisoned guest first: its own crawl reads its altered layout, so it is wrong,
    // and it fills the cache for the banner it shares with the genuine kernel.
    let poisoned = poisoned_copy(&fx.path("memdump/memory.elf"), &dir);
    let frame = crawl(&cached, &poisoned);
    let truth = fx.json("memdump/truth.json");
    assert!(
        !compare(&frame, &truth).is_empty(),
        "the patched BTF changes what the crawl reads"
    );
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        1,
        "the poisoned crawl wrote a cache entry"
    );
    std::fs::remove_file(&poisoned).unwrap();

    // Then the genuine kernel, the same boot and another one: each crawl equals its truth.
    for name in ["memdump", "memdump-novmcoreinfo"] {
        let truth = fx.json(&format!("{name}/truth.json"));
        let dump = fx.path(&format!("{name}/memory.elf"));
        if name == "memdump-novmcoreinfo" {
            // The entry the genuine crawl of another boot wrote serves this boot too: the
            // bytes it is bound to do not move with KASLR.
            let k = discover(
                &MemoryDump::open(&dump).unwrap(),
                &LinuxOptions::default().with_cache_dir(&cache),
            )
            .unwrap();
            assert!(k.from_cache, "one entry serves every boot of the build");
        }
        for round in ["after the poisoned crawl", "again, from the cache"] {
            let frame = crawl(&cached, &dump);
            let bad = compare(&frame, &truth);
            assert!(
                bad.is_empty(),
                "{name} {round}: {bad:#?}\nerrors: {:#?}",
                frame.meta.errors
            );
            // The genuine crawl replaced the poisoned entry: the cache serves this build.
            let k = discover(
                &MemoryDump::open(&dump).unwrap(),
                &LinuxOptions::default().with_cache_dir(&cache),
            )
            .unwrap();
            assert!(k.from_cache, "{name} {round}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
