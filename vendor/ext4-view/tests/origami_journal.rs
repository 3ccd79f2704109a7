//! Origami tests of journal replay against e2fsprogs, for every journal
//! format: 32- and 64-bit block numbers, no checksum, checksum v1, v2
//! and v3, 1 KiB and 4 KiB blocks.
//!
//! Each image is built at test time by `mkfs.ext4 -d` from known files;
//! then `debugfs -w` writes transactions into its journal without
//! replaying them (`journal_open`, `journal_write`): new data for some
//! of the files' blocks, a data block starting with the journal magic
//! number (escaped in the journal), a revoke record cancelling a block
//! of an earlier transaction, and an uncommitted transaction at the end.
//! The truth is what `e2fsck -fy` makes of a copy (it replays the
//! journal, with the same recovery code as the kernel), read back with
//! `debugfs -R dump`: ext4-view, reading the image with its journal
//! still to replay, must give those bytes for every file. The same on
//! the journal rotated so that the log wraps around its end, with a
//! corrupt commit block (the replay stops before that transaction), and
//! with a corrupt data block (the replay stops before its transaction:
//! the truth is then e2fsck's replay of the copy with the corrupt
//! commit block, which holds the transactions before it).
//!
//! Skipped when e2fsprogs is missing, unless `CI` is set.

#![cfg(feature = "std")]
#![allow(clippy::arithmetic_side_effects, clippy::as_conversions)]

mod origami_common;

use ext4_view::Ext4;
use origami_common::{TempDir, pseudo_random, tool};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The journal magic number, big-endian, as the first bytes of a block.
const MAGIC: [u8; 4] = [0xc0, 0x3b, 0x39, 0x98];

/// The e2fsprogs programs the tests run.
struct Tools {
    mkfs: PathBuf,
    debugfs: PathBuf,
    e2fsck: PathBuf,
}

impl Tools {
    fn find() -> Option<Self> {
        Some(Self {
            mkfs: tool("mkfs.ext4")?,
            debugfs: tool("debugfs")?,
            e2fsck: tool("e2fsck")?,
        })
    }

    /// `debugfs -R request image` (read-only); its standard output.
    fn debugfs(&self, image: &Path, request: &str) -> String {
        let out = Command::new(&self.debugfs)
            .arg("-R")
            .arg(request)
            .arg(image)
            .output()
            .unwrap();
        assert!(out.status.success(), "debugfs -R {request}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// The blocks of `file` (a path or `<inode>`), in logical order.
    fn blocks(&self, image: &Path, file: &str) -> Vec<u64> {
        self.debugfs(image, &format!("blocks {file}"))
            .split_whitespace()
            .map(|b| b.parse().unwrap())
            .collect()
    }

    /// Runs the debugfs commands `script` read-write on `image`.
    fn debugfs_write(&self, image: &Path, script: &str) {
        use std::io::Write;
        let mut child = Command::new(&self.debugfs)
            .args(["-w", "-f", "-"])
            .arg(image)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success()
                && !text.contains("rror")
                && !text.contains("Journal not open"),
            "debugfs -w: {text}"
        );
    }

    /// The files' content once e2fsck has replayed the journal of a copy
    /// of `image` (the independent truth).
    fn replayed(
        &self,
        dir: &TempDir,
        image: &Path,
        names: &[&str],
    ) -> Vec<Vec<u8>> {
        let copy = dir.0.join("replayed.img");
        std::fs::copy(image, &copy).unwrap();
        let out = Command::new(&self.e2fsck)
            .arg("-fy")
            .arg(&copy)
            .output()
            .unwrap();
        // 0: clean, 1: errors corrected (the replay), 2: reboot
        // advised, 4: errors left. Anything else is a failure.
        assert!(
            out.status.code().is_some_and(|c| c <= 4),
            "e2fsck -fy: {out:?}"
        );
        let contents = names
            .iter()
            .map(|name| {
                let dumped = dir.0.join("dumped");
                let _ = std::fs::remove_file(&dumped);
                self.debugfs(
                    &copy,
                    &format!("dump /{name} {}", dumped.display()),
                );
                std::fs::read(&dumped).unwrap()
            })
            .collect();
        // ext4-view reads the replayed copy (no journal left) the same.
        let fs = Ext4::load_from_path(&copy).unwrap();
        for (name, content) in names.iter().zip(&contents) {
            assert!(
                &fs.read(&format!("/{name}")).unwrap() == content,
                "{name}"
            );
        }
        contents
    }
}

/// Where the transactions lie in the journal, from `debugfs logdump`:
/// (sequence, journal block) of each descriptor and commit block.
#[derive(Debug)]
struct LogLayout {
    descriptors: Vec<(u32, u64)>,
    commits: Vec<(u32, u64)>,
}

fn log_layout(tools: &Tools, image: &Path) -> LogLayout {
    let dump = tools.debugfs(image, "logdump");
    let mut layout = LogLayout {
        descriptors: Vec::new(),
        commits: Vec::new(),
    };
    for line in dump.lines() {
        // "Found expected sequence 3, type 2 (commit block) at block 12"
        let Some(rest) = line.strip_prefix("Found expected sequence ") else {
            continue;
        };
        let (seq, rest) = rest.split_once(", type ").unwrap();
        let block = rest.rsplit(' ').next().unwrap().parse().unwrap();
        let seq = seq.parse().unwrap();
        if rest.starts_with("1 ") {
            layout.descriptors.push((seq, block));
        } else if rest.starts_with("2 ") {
            layout.commits.push((seq, block));
        }
    }
    layout
}

/// One journal format.
struct Case {
    block_size: u32,
    /// `mkfs.ext4 -O` features.
    features: &'static str,
    /// The debugfs command opening the journal (`-c`: checksums, v1
    /// without `metadata_csum`, v3 or `-v 2` with it).
    open: &'static str,
    /// Whether data blocks carry checksums (v2 or v3).
    data_checksums: bool,
    /// Whether commit blocks carry a checksum v1. debugfs 1.47.0 counts
    /// a revoke block in it, the kernel (which writes such journals)
    /// and e2fsck's recovery do not: the revoke transaction's commit
    /// does not match, and the replay ends before it.
    checksum_v1: bool,
}

const CASES: &[Case] = &[
    Case {
        block_size: 1024,
        features: "64bit,metadata_csum",
        open: "jo -c",
        data_checksums: true,
        checksum_v1: false,
    },
    Case {
        block_size: 4096,
        features: "^64bit,metadata_csum",
        open: "jo -c",
        data_checksums: true,
        checksum_v1: false,
    },
    Case {
        block_size: 1024,
        features: "64bit,metadata_csum",
        open: "jo -c -v 2",
        data_checksums: true,
        checksum_v1: false,
    },
    Case {
        block_size: 4096,
        features: "^64bit,metadata_csum",
        open: "jo -c -v 2",
        data_checksums: true,
        checksum_v1: false,
    },
    Case {
        block_size: 1024,
        features: "64bit,^metadata_csum",
        open: "jo -c",
        data_checksums: false,
        checksum_v1: true,
    },
    Case {
        block_size: 4096,
        features: "^64bit,^metadata_csum",
        open: "jo",
        data_checksums: false,
        checksum_v1: false,
    },
    Case {
        block_size: 1024,
        features: "64bit,metadata_csum",
        open: "jo",
        data_checksums: false,
        checksum_v1: false,
    },
];

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// A built image with transactions in its journal.
struct Scenario {
    dir: TempDir,
    image: PathBuf,
    originals: Vec<Vec<u8>>,
}

fn build(tools: &Tools, case: &Case) -> Scenario {
    let bs = case.block_size as usize;
    let dir = TempDir::new("journal");
    let root = dir.0.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let originals: Vec<Vec<u8>> = [12, 3, 2, 1]
        .iter()
        .zip(1..)
        .map(|(blocks, seed)| pseudo_random(seed, blocks * bs))
        .collect();
    for (name, content) in NAMES.iter().zip(&originals) {
        std::fs::write(root.join(name), content).unwrap();
    }
    let image = dir.0.join("fs.img");
    let out = Command::new(&tools.mkfs)
        .args(["-q", "-F", "-t", "ext4", "-O", case.features, "-b"])
        .arg(case.block_size.to_string())
        .arg("-d")
        .arg(&root)
        .arg(&image)
        .arg(format!("{}k", 4096 * case.block_size / 1024))
        .output()
        .unwrap();
    assert!(out.status.success(), "mkfs.ext4: {out:?}");

    let [a, b, c, d] = NAMES.map(|n| tools.blocks(&image, &format!("/{n}")));
    let list = |blocks: &[u64]| {
        blocks
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    // The data of each transaction.
    let write = |name: &str, content: Vec<u8>| {
        let path = dir.0.join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    };
    let t1 = write("t1", pseudo_random(10, 4 * bs));
    let mut escaped = pseudo_random(11, 2 * bs);
    escaped[..4].copy_from_slice(&MAGIC);
    let t2 = write("t2", escaped);
    let t3 = write("t3", pseudo_random(12, bs));
    let t4 = write("t4", pseudo_random(13, bs));
    tools.debugfs_write(
        &image,
        &format!(
            "{open}\n\
             jw -b {t1_blocks} {t1}\n\
             jw -b {t2_blocks} {t2}\n\
             jw -r {revoked}\n\
             jw -b {t3_blocks} {t3}\n\
             jw -b {t4_blocks} -c {t4}\n\
             jc\n",
            open = case.open,
            // T1: four blocks of `a`.
            t1_blocks = list(&a[..4]),
            // T2: `b`'s first block (escaped in the journal), and `a`'s
            // second block again.
            t2_blocks = list(&[b[0], a[1]]),
            // A transaction revoking `a`'s third block (written by T1).
            // (A revoke record in a transaction with data blocks would
            // be better, but debugfs 1.47.0 then writes the next
            // transaction over that one's commit block.)
            revoked = a[2],
            // T3: `c`'s first block.
            t3_blocks = list(&c[..1]),
            // T4, uncommitted: `d`.
            t4_blocks = list(&d),
        ),
    );
    Scenario {
        dir,
        image,
        originals,
    }
}

/// Asserts that `got` and `want` (the four files' contents) are equal,
/// naming the first file and byte that differ (not printing them).
#[track_caller]
fn assert_files(got: &[Vec<u8>], want: &[Vec<u8>], what: &str) {
    for ((name, got), want) in NAMES.iter().zip(got).zip(want) {
        if got != want {
            let at = got.iter().zip(want).position(|(g, w)| g != w);
            panic!(
                "{what}: /{name} differs: {} bytes read, {} expected, first \
                 difference at {at:?}",
                got.len(),
                want.len()
            );
        }
    }
}

/// The files as ext4-view reads them from `image`, journal replayed.
fn read_files(image: &Path) -> Vec<Vec<u8>> {
    let fs = Ext4::load_from_path(image).unwrap();
    NAMES
        .iter()
        .map(|n| fs.read(&format!("/{n}")).unwrap())
        .collect()
}

/// Overwrites `len` bytes at `offset` of journal block `block` of
/// `image` with `f` of the old bytes.
fn patch_journal_block(
    tools: &Tools,
    image: &Path,
    bs: usize,
    block: u64,
    offset: usize,
    f: impl Fn(u8) -> u8,
) {
    let journal = tools.blocks(image, "<8>");
    let mut bytes = std::fs::read(image).unwrap();
    let at = journal[block as usize] as usize * bs + offset;
    bytes[at] = f(bytes[at]);
    std::fs::write(image, bytes).unwrap();
}

#[test]
fn replay_matches_e2fsck_for_every_journal_format() {
    let Some(tools) = Tools::find() else { return };
    for case in CASES {
        let what =
            format!("{} {} {}", case.block_size, case.features, case.open);
        let s = build(&tools, case);
        let bs = case.block_size as usize;
        let truth = s.dir.0.join("truth");
        std::fs::copy(&s.image, &truth).unwrap();
        let want = tools.replayed(&s.dir, &truth, &NAMES);

        // The scenario does what it says, by e2fsck's replay: `a`'s
        // blocks 0, 1 and 3 are new, block 2 (revoked) is not; `b` and
        // `c` changed; `d` (uncommitted) did not. With checksum v1 the
        // replay ends before the revoke (see `Case::checksum_v1`).
        let block = |v: &[u8], i: usize| v[i * bs..(i + 1) * bs].to_vec();
        for i in [0, 1, 3] {
            assert!(block(&want[0], i) != block(&s.originals[0], i), "{what}");
        }
        let revoked = block(&want[0], 2) == block(&s.originals[0], 2);
        assert!(revoked != case.checksum_v1, "{what}");
        assert_eq!(want[1][..4], MAGIC, "{what}");
        assert!((want[2] != s.originals[2]) != case.checksum_v1, "{what}");
        assert!(want[3] == s.originals[3], "{what}");

        // ext4-view, replaying the journal itself, reads the same.
        assert_files(&read_files(&s.image), &want, &what);
    }
}

/// The log rotated by `k` blocks within the journal (`s_first` to
/// `s_maxlen`), so that it wraps around the journal's end, with
/// `s_start` moved along (and the superblock checksum redone).
fn rotate_log(tools: &Tools, image: &Path, bs: usize, k: usize) {
    let journal = tools.blocks(image, "<8>");
    let mut bytes = std::fs::read(image).unwrap();
    let block = |i: usize| journal[i] as usize * bs;
    let sb = block(0);
    let be32 = |b: &[u8], at: usize| {
        u32::from_be_bytes(b[sb + at..sb + at + 4].try_into().unwrap()) as usize
    };
    let max_len = be32(&bytes, 0x10);
    let first = be32(&bytes, 0x14);
    let start = be32(&bytes, 0x1c);
    assert_eq!((max_len, first, start), (journal.len(), 1, 1));
    let len = max_len - first;
    let old: Vec<Vec<u8>> = (first..max_len)
        .map(|i| bytes[block(i)..block(i) + bs].to_vec())
        .collect();
    for (i, content) in old.iter().enumerate() {
        let to = first + (i + k) % len;
        bytes[block(to)..block(to) + bs].copy_from_slice(content);
    }
    let new_start = (first + k) as u32;
    bytes[sb + 0x1c..sb + 0x20].copy_from_slice(&new_start.to_be_bytes());
    // The superblock checksum (checksums v2/v3 only): crc32c of the
    // 1024 bytes with the field zeroed, seeded with !0, not inverted.
    let incompat = be32(&bytes, 0x28);
    if incompat & 0x18 != 0 {
        bytes[sb + 0xfc..sb + 0x100].fill(0);
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI)
            .checksum(&bytes[sb..sb + 1024])
            ^ !0;
        bytes[sb + 0xfc..sb + 0x100].copy_from_slice(&crc.to_be_bytes());
    }
    std::fs::write(image, bytes).unwrap();
}

#[test]
fn replay_of_a_log_that_wraps_matches_e2fsck() {
    let Some(tools) = Tools::find() else { return };
    for case in CASES {
        let what =
            format!("{} {} {}", case.block_size, case.features, case.open);
        let s = build(&tools, case);
        let bs = case.block_size as usize;
        let layout = log_layout(&tools, &s.image);
        // The last committed transaction's commit block; the log is
        // rotated so that it wraps in the middle of the second
        // transaction (between its descriptor and its commit block).
        let split = layout.descriptors[1].1 as usize + 1;
        let journal_len = tools.blocks(&s.image, "<8>").len();
        rotate_log(&tools, &s.image, bs, journal_len - 1 - split);
        let truth = s.dir.0.join("truth");
        std::fs::copy(&s.image, &truth).unwrap();
        let want = tools.replayed(&s.dir, &truth, &NAMES);
        // e2fsck replayed the three transactions as without rotation.
        assert_eq!(want[1][..4], MAGIC, "{what}");
        assert!((want[2] != s.originals[2]) != case.checksum_v1, "{what}");
        assert_files(&read_files(&s.image), &want, &what);
    }
}

#[test]
fn a_corrupt_transaction_ends_the_replay_as_in_e2fsck() {
    let Some(tools) = Tools::find() else { return };
    for case in CASES.iter().filter(|c| c.open != "jo") {
        let what =
            format!("{} {} {}", case.block_size, case.features, case.open);
        let bs = case.block_size as usize;

        // The second transaction's commit block corrupt (a byte past
        // its fields, covered by the checksums v1, v2 and v3: v1 covers
        // only the descriptor and data blocks, so there the descriptor
        // is corrupted instead).
        let s = build(&tools, case);
        let layout = log_layout(&tools, &s.image);
        let (target, offset) = if case.data_checksums {
            (layout.commits[1].1, 100)
        } else {
            (layout.descriptors[1].1, bs - 1)
        };
        patch_journal_block(&tools, &s.image, bs, target, offset, |b| b ^ 1);
        let truth = s.dir.0.join("truth");
        std::fs::copy(&s.image, &truth).unwrap();
        let after_t1 = tools.replayed(&s.dir, &truth, &NAMES);
        // e2fsck kept the first transaction only.
        assert!(after_t1[0] != s.originals[0], "{what}");
        assert!(after_t1[1..] == s.originals[1..], "{what}");
        assert_files(&read_files(&s.image), &after_t1, &what);

        // A data block of the second transaction corrupt: ext4-view
        // ends the replay before it, as with the corrupt commit block.
        if case.data_checksums {
            let s = build(&tools, case);
            let layout = log_layout(&tools, &s.image);
            patch_journal_block(
                &tools,
                &s.image,
                bs,
                layout.descriptors[1].1 + 1,
                bs / 2,
                |b| b ^ 1,
            );
            assert_files(&read_files(&s.image), &after_t1, &what);
        }
    }
}
