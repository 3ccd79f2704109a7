//! What each memory feature needs from the kernel, declared in one place, and the layouts
//! resolved for one kernel build.
//!
//! [`NEEDS`] lists, per frame feature, the kernel symbols and the struct members (as
//! `struct.member.path`, with `|` between the names different kernel versions use) that the
//! feature reads. [`Layout::from_btf`] looks every member up in the kernel's own BTF; nothing
//! is hard-coded per kernel. A member that cannot be found disables only the features that
//! need it, and the frame records why.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::btf::Btf;
use crate::error::{Error, Result};

/// The symbols and struct members one feature reads.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    /// The frame feature (`os`, `process`, `connection`, `module`, `memory`).
    pub feature: &'static str,
    /// Kernel symbols it reads.
    pub symbols: &'static [&'static str],
    /// Struct members it reads: `struct.path`, alternatives separated by `|`.
    pub fields: &'static [&'static str],
    /// Struct sizes it needs.
    pub sizes: &'static [&'static str],
}

/// Every feature's needs.
pub const NEEDS: &[Need] = &[
    Need {
        feature: "kernel",
        symbols: &[
            "_text",
            "linux_banner",
            "init_top_pgt",
            "page_offset_base",
            "__start_BTF",
            "__stop_BTF",
        ],
        fields: &[],
        sizes: &[],
    },
    Need {
        feature: "os",
        symbols: &["init_uts_ns"],
        fields: &[
            "uts_namespace.name.nodename",
            "uts_namespace.name.release",
            "uts_namespace.name.machine",
        ],
        sizes: &[],
    },
    Need {
        feature: "process",
        symbols: &["init_task"],
        fields: &[
            "task_struct.tasks",
            "task_struct.pid",
            "task_struct.tgid",
            "task_struct.comm",
            "task_struct.real_parent",
            "task_struct.mm",
            "task_struct.cred",
            "task_struct.__state|state",
            "task_struct.exit_state",
            "task_struct.flags",
            "task_struct.start_boottime|real_start_time",
            "cred.uid",
            "mm_struct.pgd",
            "mm_struct.arg_start",
            "mm_struct.arg_end",
            "mm_struct.rss_stat",
        ],
        sizes: &[],
    },
    Need {
        feature: "connection",
        symbols: &["socket_file_ops", "tcp_hashinfo"],
        fields: &[
            "task_struct.files",
            "files_struct.fdt",
            "fdtable.max_fds",
            "fdtable.fd",
            "file.f_op",
            "file.private_data",
            "socket.sk",
            "sock.__sk_common.skc_family",
            "sock.__sk_common.skc_state",
            "sock.__sk_common.skc_num",
            "sock.__sk_common.skc_dport",
            "sock.__sk_common.skc_rcv_saddr",
            "sock.__sk_common.skc_daddr",
            "sock.__sk_common.skc_v6_rcv_saddr",
            "sock.__sk_common.skc_v6_daddr",
            "sock.sk_protocol",
            "sock.sk_type",
        ],
        sizes: &["inet_ehash_bucket"],
    },
    Need {
        feature: "module",
        symbols: &["modules"],
        fields: &[
            "module.list",
            "module.name",
            "module.state",
            "module.core_layout.size|mem",
        ],
        sizes: &["module_memory"],
    },
    Need {
        feature: "memory",
        symbols: &["_totalram_pages", "vm_zone_stat", "tk_core"],
        fields: &[
            "timekeeper.xtime_sec",
            "timekeeper.ktime_sec",
            "timekeeper.offs_boot",
        ],
        sizes: &["seqcount_raw_spinlock"],
    },
    // Mounts, the kernel log and the panic state (mounts.rs, printk.rs, health.rs). Symbols
    // a feature can do without (the file systems whose own options it decodes, idmapped
    // mounts) are listed here too, so that the cache keeps them; their absence is no error.
    Need {
        feature: "mount",
        symbols: &[
            "init_nsproxy",
            "init_task",
            "_totalram_pages",
            "shm_mnt",
            "shmem_ops",
            "ramfs_ops",
            "devpts_sops",
            "proc_sops",
            "kernfs_sops",
            "init_user_ns",
            "nop_mnt_idmap",
        ],
        fields: &[
            "nsproxy.mnt_ns",
            "mnt_namespace.root",
            "mnt_namespace.list|mounts",
            "mount.mnt_parent",
            "mount.mnt_mountpoint",
            "mount.mnt",
            "mount.mnt.mnt_root",
            "mount.mnt.mnt_sb",
            "mount.mnt.mnt_flags",
            "mount.mnt_devname",
            "mount.mnt_id",
            "super_block.s_type",
            "super_block.s_flags",
            "super_block.s_op",
            "super_block.s_fs_info",
            "file_system_type.name",
            "dentry.d_parent",
            "dentry.d_name.name",
            "dentry.d_name.len",
        ],
        sizes: &[],
    },
    Need {
        feature: "kernel_log",
        symbols: &["prb"],
        fields: &[
            "printk_ringbuffer.desc_ring",
            "printk_ringbuffer.text_data_ring",
            "prb_desc_ring.count_bits",
            "prb_desc_ring.descs",
            "prb_desc_ring.infos",
            "prb_desc_ring.head_id",
            "prb_desc_ring.tail_id",
            "prb_data_ring.size_bits",
            "prb_data_ring.data",
            "prb_desc.state_var",
            "prb_desc.text_blk_lpos.begin",
            "prb_desc.text_blk_lpos.next",
            "printk_info.seq",
            "printk_info.ts_nsec",
            "printk_info.text_len",
            "printk_info.facility",
            "printk_info.level",
        ],
        sizes: &["prb_desc", "printk_info"],
    },
    Need {
        feature: "health",
        symbols: &["tainted_mask", "panic_cpu", "oops_in_progress"],
        fields: &[],
        sizes: &[],
    },
];

/// Optional extras a feature uses when the kernel has them (no error when absent).
pub const OPTIONAL_FIELDS: &[&str] = &[
    // TCP's established hash (sockets no process holds, e.g. TIME_WAIT).
    "inet_hashinfo.ehash",
    "inet_hashinfo.ehash_mask",
    "inet_ehash_bucket.chain",
    "sock_common.skc_nulls_node",
    "sock_common.skc_family",
    "sock_common.skc_state",
    "sock_common.skc_num",
    "sock_common.skc_dport",
    "sock_common.skc_rcv_saddr",
    "sock_common.skc_daddr",
    "sock_common.skc_v6_rcv_saddr",
    "sock_common.skc_v6_daddr",
    "module.init_layout.size",
    "module_memory.size",
    // Kernel threads' full names (6.1+), which /proc shows instead of the 15-byte comm.
    "task_struct.worker_private|set_child_tid",
    "kthread.full_name",
    // A task in the middle of `execve` (its name and command line about to change): the
    // watcher waits for it to finish before it reports the process.
    "task_struct.in_execve",
    // Mounts: the list (before 6.8) or rbtree (6.8+) node of a mount, PID 1's root (what
    // /proc/1/mounts is relative to), sub-types, idmapped mounts, and the file systems whose
    // own options are decoded (tmpfs/devtmpfs, ramfs, devpts, proc; sysfs through kernfs).
    "mount.mnt_list",
    "mount.mnt_node",
    "rb_node.rb_left",
    "rb_node.rb_right",
    "task_struct.fs",
    "fs_struct.root.mnt",
    "fs_struct.root.dentry",
    "super_block.s_subtype",
    "super_operations.show_options",
    "vfsmount.mnt_userns|mnt_idmap",
    "shmem_sb_info.max_blocks",
    "shmem_sb_info.max_inodes",
    "shmem_sb_info.mode",
    "shmem_sb_info.uid",
    "shmem_sb_info.gid",
    "shmem_sb_info.full_inums",
    "shmem_sb_info.huge",
    "shmem_sb_info.mpol",
    "shmem_sb_info.noswap",
    "ramfs_fs_info.mount_opts.mode",
    "pts_fs_info.mount_opts.setuid",
    "pts_fs_info.mount_opts.setgid",
    "pts_fs_info.mount_opts.uid",
    "pts_fs_info.mount_opts.gid",
    "pts_fs_info.mount_opts.mode",
    "pts_fs_info.mount_opts.ptmxmode",
    "pts_fs_info.mount_opts.max",
    "proc_fs_info.pid_gid",
    "proc_fs_info.hide_pid",
    "proc_fs_info.pidonly",
    "kernfs_super_info.root",
    "kernfs_root.syscall_ops",
    "kernfs_syscall_ops.show_options",
    "mempolicy.mode",
    "printk_info.flags",
];

/// Every symbol any feature needs (what a cache entry keeps).
pub fn needed_symbols() -> impl Iterator<Item = &'static str> {
    NEEDS.iter().flat_map(|n| n.symbols.iter().copied())
}

/// One resolved member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldInfo {
    /// Byte offset in its struct.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Which alternative matched (0 for the first name).
    pub alt: u8,
    /// For a bitfield, its first bit within the byte at `offset` (least significant first).
    #[serde(default)]
    pub bit: u8,
    /// For a bitfield, its width in bits; 0 for an ordinary member.
    #[serde(default)]
    pub bits: u8,
}

impl FieldInfo {
    /// The member's value taken out of the bytes read at its `offset` (little-endian; a
    /// bitfield is shifted and masked to its width).
    pub fn value_in(&self, bytes: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        let v = u64::from_le_bytes(b);
        if self.bits == 0 {
            return v;
        }
        let v = v >> self.bit.min(63);
        if self.bits >= 64 {
            v
        } else {
            v & ((1u64 << self.bits) - 1)
        }
    }
}

/// The resolved layouts of one kernel build.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    /// Members by their declared spec (`task_struct.__state|state`).
    pub fields: BTreeMap<String, FieldInfo>,
    /// Struct sizes by name.
    pub sizes: BTreeMap<String, u64>,
    /// Members that could not be found, with why.
    pub missing: BTreeMap<String, String>,
}

/// A member as a source of layouts (BTF, DWARF, an ISF) finds it: where it lies in the
/// struct named in the lookup and how large its type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Byte offset from the start of the struct.
    pub offset: u64,
    /// Size in bytes of the member's type (0 when unknown, e.g. a flexible array).
    pub size: u64,
    /// For a bitfield, its first bit within the byte at `offset`; 0 otherwise.
    pub bit: u32,
    /// For a bitfield, its width in bits; 0 for an ordinary member.
    pub bits: u32,
}

/// Every struct some feature reads, with the member paths it reads in it (each alternative
/// of a `|` spec separately) and whether its size is needed: what a source of layouts must
/// look up, and all it needs to index.
pub fn wanted_structs() -> BTreeMap<&'static str, (BTreeSet<&'static str>, bool)> {
    let mut out: BTreeMap<&'static str, (BTreeSet<&'static str>, bool)> = BTreeMap::new();
    let specs = NEEDS
        .iter()
        .flat_map(|n| n.fields.iter().copied())
        .chain(OPTIONAL_FIELDS.iter().copied());
    for spec in specs {
        if let Some((ty, paths)) = spec.split_once('.') {
            out.entry(ty).or_default().0.extend(paths.split('|'));
        }
    }
    for s in NEEDS.iter().flat_map(|n| n.sizes.iter().copied()) {
        out.entry(s).or_default().1 = true;
    }
    out
}

impl Layout {
    /// Looks every declared member up in `btf`.
    pub fn from_btf(btf: &Btf) -> Layout {
        Layout::from_lookup(
            &|ty, path| {
                btf.member(ty, path).map(|f| Member {
                    offset: f.offset,
                    size: f.size,
                    bit: f.bit,
                    bits: f.bitfield_bits,
                })
            },
            &|name| btf.struct_id(name).and_then(|id| btf.size_of(id).ok()),
        )
    }

    /// Looks every declared member up through `member` (struct name, member path) and
    /// every needed struct size through `size`: the one way every source of layouts
    /// fills a [`Layout`].
    pub fn from_lookup(
        member: &dyn Fn(&str, &str) -> Result<Member>,
        size: &dyn Fn(&str) -> Option<u64>,
    ) -> Layout {
        let mut l = Layout::default();
        let specs = NEEDS
            .iter()
            .flat_map(|n| n.fields.iter().copied())
            .chain(OPTIONAL_FIELDS.iter().copied());
        for spec in specs {
            if l.fields.contains_key(spec) {
                continue;
            }
            match resolve(member, spec) {
                Ok(f) => {
                    l.fields.insert(spec.to_string(), f);
                }
                Err(e) => {
                    l.missing.insert(spec.to_string(), e.to_string());
                }
            }
        }
        for s in NEEDS.iter().flat_map(|n| n.sizes.iter().copied()) {
            if let Some(n) = size(s) {
                l.sizes.insert(s.to_string(), n);
            }
        }
        l
    }

    /// True when not one member the features need was found (the source describes
    /// another program, or none of the kernel's structs).
    pub fn is_useless(&self) -> bool {
        NEEDS
            .iter()
            .flat_map(|n| n.fields.iter())
            .all(|f| !self.fields.contains_key(*f))
    }

    /// The member declared as `spec` (exactly as written in [`NEEDS`]).
    pub fn field(&self, spec: &str) -> Result<FieldInfo> {
        self.fields
            .get(spec)
            .copied()
            .ok_or_else(|| Error::Malformed {
                file: "kernel BTF".into(),
                location: spec.to_string(),
                what: self
                    .missing
                    .get(spec)
                    .cloned()
                    .unwrap_or_else(|| "member not declared in NEEDS".into()),
            })
    }

    /// The offset of the member declared as `spec`.
    pub fn off(&self, spec: &str) -> Result<u64> {
        Ok(self.field(spec)?.offset)
    }

    /// The members `feature` needs that this kernel lacks.
    pub fn missing_for(&self, feature: &str) -> Vec<String> {
        NEEDS
            .iter()
            .filter(|n| n.feature == feature)
            .flat_map(|n| n.fields.iter())
            .filter_map(|f| self.missing.get(*f).map(|e| format!("{f}: {e}")))
            .collect()
    }
}

fn resolve(member: &dyn Fn(&str, &str) -> Result<Member>, spec: &str) -> Result<FieldInfo> {
    let (ty, paths) = spec.split_once('.').ok_or_else(|| Error::Malformed {
        file: "layout table".into(),
        location: spec.into(),
        what: "no struct name".into(),
    })?;
    let mut last = None;
    for (alt, path) in paths.split('|').enumerate() {
        match member(ty, path) {
            Ok(f) => {
                return Ok(FieldInfo {
                    offset: f.offset,
                    size: f.size,
                    alt: alt as u8,
                    bit: f.bit.min(7) as u8,
                    bits: f.bits.min(64) as u8,
                })
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Malformed {
        file: "layout table".into(),
        location: spec.into(),
        what: "empty".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::FieldInfo;

    #[test]
    fn bitfields_are_shifted_and_masked() {
        // `u8 flags:5; u8 level:3;` in one byte: level is its top three bits.
        let level = FieldInfo {
            offset: 19,
            size: 1,
            alt: 0,
            bit: 5,
            bits: 3,
        };
        assert_eq!(level.value_in(&[0b1010_0110]), 0b101);
        let flags = FieldInfo {
            bit: 0,
            bits: 5,
            ..level
        };
        assert_eq!(flags.value_in(&[0b1010_0110]), 0b0_0110);
        // An ordinary member is its little-endian value, whatever the buffer's length.
        let plain = FieldInfo {
            bit: 0,
            bits: 0,
            size: 2,
            ..level
        };
        assert_eq!(plain.value_in(&[0x34, 0x12]), 0x1234);
        assert_eq!(plain.value_in(&[]), 0);
        assert_eq!(plain.value_in(&[1; 12]), 0x0101_0101_0101_0101);
    }
}
