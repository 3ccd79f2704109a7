//! Replays every committed fuzz input through its target: the seeds (`fuzz/seeds/TARGET/`),
//! the minimised campaign corpus (`fuzz/corpus/TARGET/`) and every input that ever crashed
//! a target (`fuzz/regressions/TARGET/`). One test per target, named after it; a target
//! with no committed input still has its test (it then replays nothing).
//!
//! An input fails when the target panics, when a single allocation exceeds 256 MiB (the
//! campaigns' `-malloc_limit_mb=256`) or when the heap grows by more than 1 GiB while it
//! runs (the campaigns' `-rss_limit_mb=1024`, measured here on live heap bytes). Time is
//! not judged (no timed asserts); a hang shows as a test that does not end. Unlike a
//! campaign's build, `cargo test --release` has no debug assertions or overflow checks, so
//! an input that only overflowed arithmetic fails under `cargo fuzz run`, not here.
use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The campaigns' `-malloc_limit_mb`.
const MALLOC_LIMIT: usize = 256 << 20;
/// The campaigns' `-rss_limit_mb`.
const RSS_LIMIT: usize = 1024 << 20;

/// The system allocator, counting live bytes, their peak and the largest single request.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn grew(&self, size: usize) {
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(live, Ordering::Relaxed);
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the counters are plain atomics, touched only after `System` returned, and
// never allocate or unwind.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout, as `GlobalAlloc::alloc` requires.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with `layout`; the caller upholds
        // `realloc`'s contract for `new_size`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            self.grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One replay at a time, so that the counters belong to the input being replayed.
static SERIAL: Mutex<()> = Mutex::new(());

/// Fails the test with `msg`, printed first: the fs targets' quiet panic hook (process-wide
/// once installed) hides panic messages, the tests' own included, but libtest shows what a
/// failing test printed.
fn fail(msg: String) -> ! {
    eprintln!("{msg}");
    panic!("{msg}");
}

/// The `fuzz/` folder of the repository.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `fuzz/KIND/TARGET/`, sorted (none when the folder does not exist: git
/// keeps no empty folder).
fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| {
            e.unwrap_or_else(|e| fail(format!("{}: {e}", dir.display())))
                .path()
        })
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The message a panic carried.
fn message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
}

/// Runs every committed input of `target` through `run` and fails, naming each failing
/// file, when any of them failed.
fn replay(target: &str, run: fn(&[u8])) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for kind in ["seeds", "corpus", "regressions"] {
        let files = files(kind, target);
        counts.push(format!("{} {kind}", files.len()));
        for path in files {
            let data =
                std::fs::read(&path).unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
            let base = LIVE.load(Ordering::Relaxed);
            PEAK.store(base, Ordering::Relaxed);
            LARGEST.store(0, Ordering::Relaxed);
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| run(&data)));
            let largest = LARGEST.load(Ordering::Relaxed);
            let grown = PEAK.load(Ordering::Relaxed).saturating_sub(base);
            let name = path.display();
            if let Err(payload) = outcome {
                failures.push(format!("{name}: panicked: {}", message(payload.as_ref())));
            }
            if largest > MALLOC_LIMIT {
                failures.push(format!("{name}: one allocation of {largest} bytes"));
            }
            if grown > RSS_LIMIT {
                failures.push(format!("{name}: the heap grew by {grown} bytes"));
            }
        }
    }
    eprintln!("{target}: replayed {}", counts.join(", "));
    if !failures.is_empty() {
        fail(format!(
            "{target}: {} inputs failed:\n{}",
            failures.len(),
            failures.join("\n")
        ));
    }
}

macro_rules! replay_tests {
    ($($feature:literal: $($target:ident),+;)+) => {
        $($(
            #[cfg(feature = $feature)]
            #[test]
            fn $target() {
                replay(stringify!($target), origami_fuzz_harness::$target);
            }
        )+)+

        /// The targets that have a replay test above.
        const REPLAYED: &[&str] = &[$($(#[cfg(feature = $feature)] stringify!($target),)+)+];
    };
}

replay_tests! {
    "guest": qcow2, vmdk, vhdx, mbr, gpt;
    "guest": memory_elf, memory_kdump, memory_lime, page_walk, vmcoreinfo;
    "guest": fs_ext4, fs_fat, fs_xfs, fs_btrfs, fs_ntfs, ntfs_lznt1, registry_hive;
    "guest": linux_btf, linux_isf, linux_kallsyms;
    "guest": dpkg_status, passwd_group, os_release, frame_jsonl;
    "guest": lvm_metadata, rpm_header, rpm_db, apk_installed;
    "index": index_query;
}

/// The `[[bin]]` names of a cargo-fuzz manifest.
fn fuzz_binaries(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest)
        .unwrap_or_else(|e| fail(format!("{}: {e}", manifest.display())));
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if let Some(value) = line.strip_prefix("name").map(str::trim) {
            if in_bin {
                if let Some(v) = value.strip_prefix('=') {
                    names.push(v.trim().trim_matches('"').to_string());
                }
            }
        }
    }
    names
}

/// Every cargo-fuzz binary (fuzz/ and fuzz/index/) is one line calling the harness
/// function of its own name, which has a replay test above; every folder of inputs names a
/// target. So what the campaigns fuzz is what the replay checks, and no committed input is
/// left out by a misspelt folder.
#[cfg(all(feature = "guest", feature = "index"))]
#[test]
fn every_fuzz_binary_is_a_harness_target_and_every_input_folder_a_target() {
    let mut known: Vec<&str> = origami_fuzz_harness::TARGETS.iter().map(|t| t.0).collect();
    known.sort();
    let mut binaries = Vec::new();
    for crate_dir in [fuzz_dir(), fuzz_dir().join("index")] {
        for name in fuzz_binaries(&crate_dir.join("Cargo.toml")) {
            let source = crate_dir.join("fuzz_targets").join(format!("{name}.rs"));
            let text = std::fs::read_to_string(&source)
                .unwrap_or_else(|e| fail(format!("{}: {e}", source.display())));
            let call = format!("origami_fuzz_harness::{name}(");
            if !text.contains(&call) {
                fail(format!("{} does not call {call}", source.display()));
            }
            binaries.push(name);
        }
    }
    binaries.sort();
    if binaries != known {
        fail(format!(
            "fuzz binaries {binaries:?} != harness targets {known:?}"
        ));
    }
    let mut replayed = REPLAYED.to_vec();
    replayed.sort();
    if replayed != known {
        fail(format!(
            "replay tests {replayed:?} != harness targets {known:?}"
        ));
    }
    for kind in ["seeds", "corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && !known.contains(&name.as_str()) {
                fail(format!("fuzz/{kind}/{name}: no such target"));
            }
        }
    }
}
