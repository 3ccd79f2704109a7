//! Finding a guest's RAM among a QEMU process's mappings (`/proc/PID/maps`).
//!
//! The heuristic: QEMU maps the guest's base RAM as one block of exactly the RAM size
//! (`-m`, or the size of the memory backend the machine uses), readable and never
//! executable: an anonymous mapping (the default, `memory-backend-ram`), a `/memfd:NAME`
//! mapping (`memory-backend-memfd`) or a file mapping (`memory-backend-file`, hugetlbfs).
//! QEMU follows the block with a `PROT_NONE` guard page and marks it `MADV_DONTFORK`, so
//! the kernel does not merge it with its neighbours. When several mappings have that size,
//! the one whose `VmFlags` (from `/proc/PID/smaps`) carry `dc` (do not copy on fork, QEMU's
//! mark on every RAM block) is taken; when that still leaves more than one, the attach
//! fails rather than guess.
//!
//! Limits: a RAM block split over several mappings (NUMA nodes with their own backends,
//! hot-plugged DIMMs) is not found; a guest whose RAM size equals another RAM block's (a
//! 16 MiB guest and a 16 MiB VGA buffer) is refused as ambiguous.

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mapping {
    /// First host virtual address.
    pub(crate) start: u64,
    /// One past the last.
    pub(crate) end: u64,
    /// `rwxp` / `rw-s` ...
    pub(crate) perms: String,
    /// Offset of `start` in the mapped file.
    pub(crate) offset: u64,
    /// The file's device, `major:minor` in hex.
    pub(crate) dev: String,
    /// The file's inode (0 when anonymous).
    pub(crate) inode: u64,
    /// The path, `/memfd:NAME (deleted)`, `[heap]`, or empty when anonymous.
    pub(crate) path: String,
}

impl Mapping {
    /// The length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// A shared mapping (`s`): writes go to the file, so the file holds the guest's bytes.
    pub(crate) fn shared(&self) -> bool {
        self.perms.as_bytes().get(3) == Some(&b's')
    }

    /// What backs it, for messages.
    pub(crate) fn kind(&self) -> String {
        if self.path.is_empty() {
            "anonymous".into()
        } else {
            self.path.clone()
        }
    }
}

/// The most mapping lines read (a QEMU process has a few thousand).
const MAX_LINES: usize = 1 << 20;

/// Parses `/proc/PID/maps`; malformed lines are skipped.
pub(crate) fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .take(MAX_LINES)
        .filter_map(|line| {
            let mut rest = line;
            let mut field = || {
                let t = rest.trim_start();
                let end = t.find(char::is_whitespace).unwrap_or(t.len());
                let (f, r) = t.split_at(end);
                rest = r;
                f
            };
            let range = field();
            let perms = field().to_string();
            let offset = u64::from_str_radix(field(), 16).ok()?;
            let dev = field().to_string();
            let inode = field().parse().ok()?;
            let path = rest.trim().to_string();
            let (s, e) = range.split_once('-')?;
            let start = u64::from_str_radix(s, 16).ok()?;
            let end = u64::from_str_radix(e, 16).ok()?;
            (end > start && perms.len() == 4).then_some(Mapping {
                start,
                end,
                perms,
                offset,
                dev,
                inode,
                path,
            })
        })
        .collect()
}

/// The mappings that could be a RAM block of `size` bytes: exactly that long, readable,
/// not executable, and anonymous, a memfd or a file (not `[heap]`, `[stack]`, ...).
pub(crate) fn ram_candidates(maps: &[Mapping], size: u64) -> Vec<&Mapping> {
    maps.iter()
        .filter(|m| {
            let p = m.perms.as_bytes();
            m.len() == size
                && p.first() == Some(&b'r')
                && p.get(2) != Some(&b'x')
                && !m.path.starts_with('[')
        })
        .collect()
}

/// The start addresses of the mappings whose `VmFlags` in `/proc/PID/smaps` hold `flag`.
pub(crate) fn starts_with_flag(smaps: &str, flag: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut current: Option<u64> = None;
    for line in smaps.lines().take(MAX_LINES * 32) {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(start) = current.take() {
                if flags.split_whitespace().any(|f| f == flag) {
                    out.push(start);
                }
            }
        } else if let Some(m) = parse_maps(line).first() {
            current = Some(m.start);
        }
    }
    out
}

/// What was looked for, for the "no guest RAM found" error.
pub(crate) fn looked_for(size: u64, from: &str) -> String {
    format!(
        "a readable, non-executable mapping of exactly {size:#x} bytes ({} MiB, from {from}) \
         in /proc/PID/maps: anonymous, /memfd: or a file",
        size >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A QEMU 10 (TCG, q35, -m 256M) process's maps, shortened; the RAM is the anonymous
    /// 256 MiB mapping followed by its guard page. The TCG code buffer is executable.
    pub(crate) const MAPS: &str = "\
5581d1a00000-5581d2345000 r--p 00000000 08:01 1234567  /usr/bin/qemu-system-x86_64
5581d3a5e000-5581d3f9e000 rw-p 00000000 00:00 0        [heap]
7f0a40000000-7f0a50000000 rw-p 00000000 00:00 0 
7f0a50000000-7f0a50001000 ---p 00000000 00:00 0 
7f0a50200000-7f0a51200000 rw-p 00000000 00:00 0 
7f0a51200000-7f0a51201000 ---p 00000000 00:00 0 
7f0a60000000-7f0a70000000 rwxp 00000000 00:00 0 
7f0a80000000-7f0a80400000 rw-s 00000000 00:01 4321     /memfd:vram (deleted)
7ffc4b2b5000-7ffc4b2d6000 rw-p 00000000 00:00 0        [stack]
";

    #[test]
    fn parses_maps_lines_with_and_without_paths() {
        let m = parse_maps(MAPS);
        assert_eq!(m.len(), 9);
        assert_eq!(m[0].path, "/usr/bin/qemu-system-x86_64");
        assert_eq!(m[2].start, 0x7f0a_4000_0000);
        assert_eq!(m[2].len(), 256 << 20);
        assert_eq!(m[2].path, "");
        assert_eq!(m[7].path, "/memfd:vram (deleted)");
        assert_eq!(m[7].inode, 4321);
        assert!(m[7].shared() && !m[2].shared());
        assert!(parse_maps("garbage\nzz-yy rw-p 0 0 0\n").is_empty());
    }

    #[test]
    fn the_ram_is_the_non_executable_mapping_of_the_ram_size() {
        let m = parse_maps(MAPS);
        let c = ram_candidates(&m, 256 << 20);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].start, 0x7f0a_4000_0000);
        // The stack and heap never count; nor does the executable TCG buffer.
        assert!(ram_candidates(&m, 0x21000).is_empty());
        assert!(ram_candidates(&m, 0x540000).is_empty());
        assert_eq!(ram_candidates(&m, 4 << 20).len(), 1);
        assert!(ram_candidates(&m, 512 << 20).is_empty());
    }

    #[test]
    fn smaps_flags_are_found_per_mapping() {
        let smaps = "\
7f0a40000000-7f0a50000000 rw-p 00000000 00:00 0 
Size:             262144 kB
VmFlags: rd wr mr mw me dc ac sd hg 
7f0a50200000-7f0a51200000 rw-p 00000000 00:00 0 
Size:              16384 kB
VmFlags: rd wr mr mw me ac sd 
";
        assert_eq!(starts_with_flag(smaps, "dc"), vec![0x7f0a_4000_0000]);
        assert_eq!(starts_with_flag(smaps, "ac").len(), 2);
    }
}
