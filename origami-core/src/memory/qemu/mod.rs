//! Attaching to a running QEMU's guest RAM by the QEMU process id, read-only, without
//! stopping the guest or QEMU (no ptrace stop, no QMP command).
//!
//! The steps: `/proc/PID/exe` must be an x86 QEMU system emulator; `/proc/PID/cmdline`
//! gives the RAM size and the machine type ([`cmdline`]); `/proc/PID/maps` gives the host
//! mapping that holds the RAM ([`maps`], the heuristic and its limits are documented
//! there); the machine type and size give the guest-physical layout, split around the PCI
//! hole ([`RamLayout::for_qemu_machine`]). The bytes are then read
//!
//! - from the RAM file itself when the mapping is shared (`memory-backend-memfd,share=on`,
//!   `memory-backend-file,share=on`): QEMU's own descriptor, opened through
//!   `/proc/PID/fd/N` and mapped read-only; or
//! - with `pread` on `/proc/PID/mem` at the mapping's host addresses otherwise (anonymous
//!   RAM, libvirt's default; private file mappings, whose written pages live only in QEMU).
//!
//! Either way the guest keeps running, so reads can be torn ([`PhysicalMemory::is_live`]).
//!
//! Permissions: opening `/proc/PID/mem` or `/proc/PID/fd/N` takes the same right as
//! attaching a debugger (the QEMU's user or root, and `kernel.yama.ptrace_scope` allowing
//! it), but never stops the process.
//!
//! [`PhysicalMemory::is_live`]: super::PhysicalMemory::is_live

pub(crate) mod cmdline;
pub(crate) mod maps;

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::layout::RamLayout;
use crate::error::{AttachProblem, Error, Result};
use maps::Mapping;

/// Where the RAM of one QEMU process is, before anything is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RamPlan {
    /// The host mapping holding the RAM block.
    pub(crate) mapping: Mapping,
    /// The guest-physical layout, offsets relative to the start of the RAM block.
    pub(crate) layout: RamLayout,
    /// The machine type, for the source's name.
    pub(crate) machine: String,
}

/// Works out where the RAM is from the process's arguments, its maps and (only read when
/// several mappings fit) its smaps. A pure function of its inputs.
pub(crate) fn plan(
    args: &[String],
    maps_text: &str,
    smaps: &mut dyn FnMut() -> Option<String>,
) -> Result<RamPlan, AttachProblem> {
    let config = cmdline::parse(args);
    let all = maps::parse_maps(maps_text);
    let mut found = maps::ram_candidates(&all, config.ram_size);
    if found.len() > 1 {
        let marked = smaps().map(|s| maps::starts_with_flag(&s, "dc"));
        if let Some(marked) = marked {
            found.retain(|m| marked.contains(&m.start));
        }
    }
    let looked_for = maps::looked_for(config.ram_size, &config.ram_from);
    match found.as_slice() {
        [one] => {
            let layout = RamLayout::for_qemu_machine(
                &config.machine,
                config.ram_size,
                config.max_ram_below_4g,
            )
            .ok_or_else(|| AttachProblem::UnknownMachine {
                machine: config.machine.clone(),
            })?;
            Ok(RamPlan {
                mapping: (*one).clone(),
                layout,
                machine: config.machine,
            })
        }
        [] => Err(AttachProblem::NoGuestRam {
            looked_for,
            found: "none".into(),
        }),
        many => Err(AttachProblem::NoGuestRam {
            looked_for,
            found: format!(
                "{} such mappings ({}), which cannot be told apart",
                many.len(),
                many.iter()
                    .map(|m| format!("{:#x} {}", m.start, m.kind()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// True for the executables of QEMU x86 system emulators.
pub(crate) fn is_x86_qemu(exe: &str) -> bool {
    let name = exe.trim_end_matches(" (deleted)");
    let base = name.rsplit('/').next().unwrap_or(name);
    matches!(
        base,
        "qemu-system-x86_64" | "qemu-system-i386" | "qemu-kvm" | "kvm"
    ) || base.starts_with("qemu-system-x86_64")
}

fn access(pid: u32, path: &Path, source: std::io::Error) -> Error {
    let problem = if source.kind() == ErrorKind::NotFound && !Path::new(&proc(pid, "")).exists() {
        AttachProblem::NoProcess
    } else {
        AttachProblem::Access {
            path: path.to_path_buf(),
            source,
        }
    };
    Error::QemuAttach { pid, problem }
}

fn proc(pid: u32, what: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{what}"))
}

/// What `attach` found and opened.
pub(crate) enum Opened {
    /// QEMU's RAM file, through `/proc/PID/fd/N` (its path), at this file offset.
    SharedFile { path: PathBuf, offset: u64 },
    /// `/proc/PID/mem`, the RAM at this host address.
    ProcessMemory { mem: File, path: PathBuf, base: u64 },
}

/// Finds the RAM of QEMU process `pid` and opens a way to read it.
pub(crate) fn attach(pid: u32) -> Result<(RamPlan, Opened)> {
    let fail = |problem| Error::QemuAttach { pid, problem };
    let exe_path = proc(pid, "exe");
    let exe = std::fs::read_link(&exe_path).map_err(|e| access(pid, &exe_path, e))?;
    let exe = exe.display().to_string();
    if !is_x86_qemu(&exe) {
        return Err(fail(AttachProblem::NotQemu { exe }));
    }
    let read = |what: &str| {
        let path = proc(pid, what);
        std::fs::read(&path).map_err(|e| access(pid, &path, e))
    };
    let args: Vec<String> = read("cmdline")?
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let maps_text = String::from_utf8_lossy(&read("maps")?).into_owned();
    let mut smaps = || {
        std::fs::read(proc(pid, "smaps"))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let plan = plan(&args, &maps_text, &mut smaps).map_err(fail)?;
    if plan.mapping.shared() && plan.mapping.inode != 0 {
        if let Some(path) = shared_fd(pid, &plan.mapping) {
            let offset = plan.mapping.offset;
            return Ok((plan, Opened::SharedFile { path, offset }));
        }
    }
    let path = proc(pid, "mem");
    let mem = File::open(&path).map_err(|e| access(pid, &path, e))?;
    let base = plan.mapping.start;
    // Reading needs more than opening on some kernels: try the first byte now, so a refusal
    // is reported here rather than at the first guest read.
    let mut probe = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(&mem, &mut probe, base)
        .map_err(|e| access(pid, &path, e))?;
    Ok((plan, Opened::ProcessMemory { mem, path, base }))
}

/// QEMU's descriptor of the file behind a shared mapping: the `/proc/PID/fd/N` whose file
/// has the mapping's inode (and size to hold it).
fn shared_fd(pid: u32, m: &Mapping) -> Option<PathBuf> {
    let dir = proc(pid, "fd");
    // A QEMU process has a few hundred descriptors; bound the walk anyway.
    for entry in std::fs::read_dir(&dir).ok()?.take(1 << 16) {
        let path = entry.ok()?.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.ino() == m.inode && meta.is_file() && meta.len() >= m.offset.saturating_add(m.len())
        {
            return Some(path);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::layout::RamRegion;

    const GIB: u64 = 1 << 30;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// A QEMU's maps with guest RAM of `size` at 0x7f00_0000_0000 (anonymous), a 16 MiB
    /// VGA buffer, the TCG buffer (executable) and the usual neighbours.
    fn maps_with(size: u64, path: &str, perms: &str) -> String {
        let ram = 0x7f00_0000_0000u64;
        format!(
            "55d1c0000000-55d1c0800000 r-xp 00000000 08:01 99 /usr/bin/qemu-system-x86_64\n\
             55d1c2000000-55d1c2400000 rw-p 00000000 00:00 0 [heap]\n\
             {ram:x}-{:x} {perms} 00000000 00:00 {} {path}\n\
             {:x}-{:x} ---p 00000000 00:00 0 \n\
             7e00c0000000-7e00c1000000 rw-p 00000000 00:00 0 \n\
             7e0100000000-7e0140000000 rwxp 00000000 00:00 0 \n",
            ram + size,
            if path.is_empty() { 0 } else { 777 },
            ram + size,
            ram + size + 4096,
        )
    }

    fn region(guest_phys: u64, file_offset: u64, len: u64) -> RamRegion {
        RamRegion {
            guest_phys,
            file_offset,
            len,
        }
    }

    fn no_smaps() -> Option<String> {
        None
    }

    #[test]
    fn pc_and_q35_layouts_at_1_4_and_8_gib() {
        // (machine, -m, expected regions)
        let cases: [(&str, u64, Vec<RamRegion>); 6] = [
            ("pc", GIB, vec![region(0, 0, GIB)]),
            (
                "pc",
                4 * GIB,
                vec![region(0, 0, 3 * GIB), region(4 * GIB, 3 * GIB, GIB)],
            ),
            (
                "pc-i440fx-9.2",
                8 * GIB,
                vec![region(0, 0, 3 * GIB), region(4 * GIB, 3 * GIB, 5 * GIB)],
            ),
            ("q35", GIB, vec![region(0, 0, GIB)]),
            (
                "q35",
                4 * GIB,
                vec![region(0, 0, 2 * GIB), region(4 * GIB, 2 * GIB, 2 * GIB)],
            ),
            (
                "pc-q35-10.0",
                8 * GIB,
                vec![region(0, 0, 2 * GIB), region(4 * GIB, 2 * GIB, 6 * GIB)],
            ),
        ];
        for (machine, size, want) in cases {
            let a = args(&format!(
                "qemu-system-x86_64 -machine {machine},accel=kvm -m {}G -smp 2",
                size / GIB
            ));
            let p = plan(&a, &maps_with(size, "", "rw-p"), &mut no_smaps)
                .unwrap_or_else(|e| panic!("{machine} {size}: {e}"));
            assert_eq!(p.mapping.start, 0x7f00_0000_0000, "{machine} {size}");
            assert_eq!(p.mapping.len(), size);
            assert_eq!(p.layout.regions(), &want[..], "{machine} {size}");
        }
    }

    #[test]
    fn the_split_moves_with_max_ram_below_4g_and_small_guests_stay_low() {
        let a = args("qemu-system-x86_64 -M pc,max-ram-below-4g=2G -m 4G");
        let p = plan(&a, &maps_with(4 * GIB, "", "rw-p"), &mut no_smaps).unwrap();
        assert_eq!(
            p.layout.regions(),
            &[region(0, 0, 2 * GIB), region(4 * GIB, 2 * GIB, 2 * GIB)]
        );
        // 2.5 GiB on q35 fits below 2.75 GiB; 3 GiB on pc fits below 3.5 GiB.
        let a = args("qemu-system-x86_64 -machine q35 -m 2560M");
        let p = plan(&a, &maps_with(2560 << 20, "", "rw-p"), &mut no_smaps).unwrap();
        assert_eq!(p.layout.regions(), &[region(0, 0, 2560 << 20)]);
        let a = args("qemu-system-x86_64 -m 3G");
        let p = plan(&a, &maps_with(3 * GIB, "", "rw-p"), &mut no_smaps).unwrap();
        assert_eq!(p.layout.regions(), &[region(0, 0, 3 * GIB)]);
    }

    #[test]
    fn memfd_and_file_backends_are_found_and_marked_shared() {
        let a = args(
            "qemu-system-x86_64 -machine q35 -object memory-backend-memfd,id=m,size=1G,share=on \
             -machine memory-backend=m",
        );
        let p = plan(
            &a,
            &maps_with(GIB, "/memfd:m (deleted)", "rw-s"),
            &mut no_smaps,
        )
        .unwrap();
        assert!(p.mapping.shared());
        assert_eq!(p.mapping.inode, 777);
        assert_eq!(p.mapping.path, "/memfd:m (deleted)");
    }

    #[test]
    fn no_ram_and_ambiguous_ram_are_refused_with_what_was_looked_for() {
        let a = args("qemu-system-x86_64 -m 2G");
        match plan(&a, &maps_with(GIB, "", "rw-p"), &mut no_smaps) {
            Err(AttachProblem::NoGuestRam { looked_for, found }) => {
                assert!(looked_for.contains("0x80000000"), "{looked_for}");
                assert!(looked_for.contains("-m 2G"), "{looked_for}");
                assert_eq!(found, "none");
            }
            other => panic!("{other:?}"),
        }
        // The VGA buffer is 16 MiB: a 16 MiB guest is ambiguous unless smaps tells.
        let a = args("qemu-system-x86_64 -m 16M");
        let text = maps_with(16 << 20, "", "rw-p");
        match plan(&a, &text, &mut no_smaps) {
            Err(AttachProblem::NoGuestRam { found, .. }) => {
                assert!(found.starts_with("2 such mappings"), "{found}")
            }
            other => panic!("{other:?}"),
        }
        let mut smaps = || {
            Some(
                "7f0000000000-7f0001000000 rw-p 00000000 00:00 0\nVmFlags: rd wr dc hg\n\
                 7e00c0000000-7e00c1000000 rw-p 00000000 00:00 0\nVmFlags: rd wr\n"
                    .to_string(),
            )
        };
        assert_eq!(
            plan(&a, &text, &mut smaps).unwrap().mapping.start,
            0x7f00_0000_0000
        );
        // A machine whose layout is not known.
        let a = args("qemu-system-x86_64 -machine xenfv -m 1G");
        assert!(matches!(
            plan(&a, &maps_with(GIB, "", "rw-p"), &mut no_smaps),
            Err(AttachProblem::UnknownMachine { .. })
        ));
    }

    #[test]
    fn qemu_executables_are_recognised() {
        for exe in [
            "/usr/bin/qemu-system-x86_64",
            "/usr/libexec/qemu-kvm",
            "/usr/bin/qemu-system-x86_64 (deleted)",
            "/opt/q/bin/qemu-system-i386",
        ] {
            assert!(is_x86_qemu(exe), "{exe}");
        }
        for exe in [
            "/usr/bin/qemu-system-aarch64",
            "/usr/bin/sleep",
            "/usr/bin/qemu-img",
        ] {
            assert!(!is_x86_qemu(exe), "{exe}");
        }
    }
}
