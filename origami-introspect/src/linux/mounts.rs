//! Mounts: the file systems of the initial mount namespace, as the guest's init process
//! (PID 1) sees them in `/proc/mounts`.
//!
//! The namespace is `init_nsproxy.mnt_ns`; its mounts are walked in the namespace's own
//! order (the `list` of `struct mount` before Linux 6.8, the `mounts` rbtree after), which
//! is the order `/proc/mounts` prints. For each mount: the device (`mnt_devname`, `none`
//! when unset), the path (built the way the kernel's `prepend_path()` does, dentry names
//! up to the mount's root, then on from the mount point in the parent mount, until PID 1's
//! root; a mount outside that root is not shown, as `/proc/mounts` does not show it), the
//! type (`s_type->name`, with `.subtype` for FUSE) and the options in `show_vfsmnt()`'s
//! order: `rw`/`ro` (the mount's or the super block's read-only flag), the super block's
//! `sync`, `dirsync`, `mand`, `lazytime`, the mount's `nosuid`, `nodev`, `noexec`,
//! `noatime`, `nodiratime`, `relatime`, `nosymfollow`, `idmapped`, then the file system's
//! own options.
//!
//! File-system options are decoded for the file systems whose `show_options()` is known
//! (as of Linux 6.1): tmpfs and devtmpfs and a tmpfs rootfs (`size=`, `nr_inodes=`,
//! `mode=`, `uid=`, `gid=`, `inode64`/`inode32`, `huge=`, `noswap`), ramfs (`mode=`),
//! devpts (`uid=`, `gid=`, `mode=`, `ptmxmode=`, `max=`), proc (`gid=`, `hidepid=`,
//! `subset=pid`) and sysfs (none). For any other file system with a `show_options()`
//! (ext4, xfs, cgroup2, ...), and for a tmpfs with a NUMA memory policy (`mpol=`), only
//! the generic options are given and the mount is listed in [`Mounts::partial_options`].
//! Options that security modules add (SELinux's `seclabel`) are not given.
//!
//! Every walk is bounded (mounts, path steps and length, string lengths) and reads of
//! guest pointers fail with the address.

use std::collections::{HashMap, HashSet};

use origami_frame::{Item, Mount};

use super::kernel::Kernel;
use super::kmem::{bad, Kmem};
use super::layout::FieldInfo;
use crate::error::{Error, Result};

/// The most mounts walked (`fs.mount-max` defaults to 100,000).
pub const MAX_MOUNTS: usize = 100_000;

/// The longest path built (`PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// The most dentries and mount crossings one path walks.
const MAX_PATH_STEPS: usize = 8192;

/// The longest component name (`NAME_MAX`).
const MAX_NAME: u64 = 255;

/// The longest device name or type name read.
const MAX_STRING: usize = 4096;

/// The deepest rbtree walked (a red-black tree of 100,000 nodes is at most 34 deep).
const MAX_RB_DEPTH: usize = 128;

/// `MNT_*` flags of `struct vfsmount.mnt_flags` and what `/proc/mounts` shows for them.
const MNT_READONLY: u64 = 0x40;
const MNT_OPTS: &[(u64, &str)] = &[
    (0x01, "nosuid"),
    (0x02, "nodev"),
    (0x04, "noexec"),
    (0x08, "noatime"),
    (0x10, "nodiratime"),
    (0x20, "relatime"),
    (0x80, "nosymfollow"),
];

/// `SB_*` flags of `struct super_block.s_flags` that `/proc/mounts` shows.
const SB_RDONLY: u64 = 0x1;
const SB_OPTS: &[(u64, &str)] = &[
    (0x10, "sync"),
    (0x80, "dirsync"),
    (0x40, "mand"),
    (1 << 25, "lazytime"),
];

/// `NR_UNIX98_PTY_MAX`: devpts shows `max=` only below it.
const PTY_MAX: u64 = 1 << 20;

/// What [`mounts`] reads.
#[derive(Debug, Default)]
pub struct Mounts {
    /// The mounts, in `/proc/mounts` order.
    pub mounts: Vec<Mount>,
    /// Keys of the mounts whose file-system-specific options were not decoded (their
    /// `options` hold only the generic ones).
    pub partial_options: Vec<String>,
    /// Mounts of the namespace outside PID 1's root (not in its `/proc/mounts`).
    pub hidden: u64,
    /// Errors met on single mounts; the walk went on past them.
    pub errors: Vec<Error>,
}

/// Reads a NUL-terminated string of at most `max` bytes without reading past the page the
/// string ends in (so a short string at the end of mapped memory still reads).
pub fn read_cstr(km: &Kmem<'_>, addr: u64, max: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < max {
        let to_page_end = 4096 - (at & 4095) as usize;
        let n = to_page_end.min(max - out.len());
        let chunk = km.bytes(at, n)?;
        if let Some(end) = memchr::memchr(0, &chunk) {
            out.extend_from_slice(chunk.get(..end).unwrap_or_default());
            return Ok(out);
        }
        out.extend_from_slice(&chunk);
        at = at.wrapping_add(n as u64);
    }
    Err(bad(
        "string",
        addr,
        format!("no NUL in the first {max} bytes"),
    ))
}

fn read_string(km: &Kmem<'_>, addr: u64) -> Result<String> {
    Ok(String::from_utf8_lossy(&read_cstr(km, addr, MAX_STRING)?).into_owned())
}

fn uint(km: &Kmem<'_>, base: u64, f: &FieldInfo) -> Result<u64> {
    let mut b = [0u8; 8];
    let n = (f.size as usize).clamp(1, 8);
    km.read(
        base.wrapping_add(f.offset),
        b.get_mut(..n).unwrap_or_default(),
    )?;
    Ok(f.value_in(&b))
}

/// In-order walk of a kernel rbtree from its root node; returns the nodes (`struct
/// rb_node` addresses) and the error that stopped the walk early, if any.
pub fn rb_inorder(
    km: &Kmem<'_>,
    root: u64,
    left_off: u64,
    right_off: u64,
    max: usize,
) -> (Vec<u64>, Option<Error>) {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<u64> = Vec::new();
    let mut cur = root;
    loop {
        while cur != 0 {
            if !seen.insert(cur) {
                return (out, Some(bad("rb_node", cur, "tree loops")));
            }
            if stack.len() >= MAX_RB_DEPTH {
                return (
                    out,
                    Some(bad(
                        "rb_node",
                        cur,
                        format!("tree deeper than {MAX_RB_DEPTH}"),
                    )),
                );
            }
            stack.push(cur);
            cur = match km.u64(cur.wrapping_add(left_off)) {
                Ok(l) => l,
                Err(e) => return (out, Some(e)),
            };
        }
        let Some(node) = stack.pop() else {
            return (out, None);
        };
        if out.len() >= max {
            return (
                out,
                Some(bad(
                    "rb_node",
                    root,
                    format!("tree of more than {max} nodes"),
                )),
            );
        }
        out.push(node);
        cur = match km.u64(node.wrapping_add(right_off)) {
            Ok(r) => r,
            Err(e) => return (out, Some(e)),
        };
    }
}

/// The layout members one mount read needs, resolved once.
struct Offsets {
    mnt: u64,
    parent: u64,
    mountpoint: u64,
    mnt_root: u64,
    mnt_sb: u64,
    mnt_flags: FieldInfo,
    devname: u64,
    mnt_id: FieldInfo,
    s_type: u64,
    s_flags: FieldInfo,
    s_op: u64,
    s_fs_info: u64,
    fs_name: u64,
    d_parent: u64,
    d_name: u64,
    d_len: FieldInfo,
}

impl Offsets {
    fn new(k: &Kernel) -> Result<Offsets> {
        let l = &k.layout;
        Ok(Offsets {
            mnt: l.off("mount.mnt")?,
            parent: l.off("mount.mnt_parent")?,
            mountpoint: l.off("mount.mnt_mountpoint")?,
            mnt_root: l.off("mount.mnt.mnt_root")?,
            mnt_sb: l.off("mount.mnt.mnt_sb")?,
            mnt_flags: l.field("mount.mnt.mnt_flags")?,
            devname: l.off("mount.mnt_devname")?,
            mnt_id: l.field("mount.mnt_id")?,
            s_type: l.off("super_block.s_type")?,
            s_flags: l.field("super_block.s_flags")?,
            s_op: l.off("super_block.s_op")?,
            s_fs_info: l.off("super_block.s_fs_info")?,
            fs_name: l.off("file_system_type.name")?,
            d_parent: l.off("dentry.d_parent")?,
            d_name: l.off("dentry.d_name.name")?,
            d_len: l.field("dentry.d_name.len")?,
        })
    }
}

/// Where paths are made relative to: a mount and a dentry in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Root {
    mount: u64,
    dentry: u64,
}

/// The path of mount `m`'s root as seen from `root` (`prepend_path()`), or `None` when the
/// mount is not below `root`.
fn mount_path(km: &Kmem<'_>, o: &Offsets, m: u64, root: Root) -> Result<Option<String>> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut len = 0usize;
    let mut mnt = m;
    let mut dentry = km.u64(m.wrapping_add(o.mnt_root))?;
    for _ in 0..MAX_PATH_STEPS {
        if dentry == root.dentry && mnt == root.mount {
            let mut path = String::with_capacity(len + 1);
            for n in names.iter().rev() {
                path.push('/');
                path.push_str(&String::from_utf8_lossy(n));
            }
            if path.is_empty() {
                path.push('/');
            }
            return Ok(Some(path));
        }
        if dentry == km.u64(mnt.wrapping_add(o.mnt_root))? {
            let parent = km.u64(mnt.wrapping_add(o.parent))?;
            if parent == mnt {
                // The namespace's root, and `root` was not met on the way: not visible.
                return Ok(None);
            }
            dentry = km.u64(mnt.wrapping_add(o.mountpoint))?;
            mnt = parent;
            continue;
        }
        let parent = km.u64(dentry.wrapping_add(o.d_parent))?;
        if parent == dentry {
            // A file system's root that is not its mount's root: escaped, not visible.
            return Ok(None);
        }
        let n = uint(km, dentry, &o.d_len)?;
        if n == 0 || n > MAX_NAME {
            return Err(bad("dentry", dentry, format!("name of {n} bytes")));
        }
        let name_ptr = km.u64(dentry.wrapping_add(o.d_name))?;
        let name = km.bytes(name_ptr, n as usize)?;
        len += name.len() + 1;
        if len > MAX_PATH {
            return Err(Error::LimitExceeded {
                what: format!("path of the mount at {m:#x}"),
                limit: MAX_PATH as u64,
            });
        }
        names.push(name);
        dentry = parent;
    }
    Err(Error::LimitExceeded {
        what: format!("steps building the path of the mount at {m:#x}"),
        limit: MAX_PATH_STEPS as u64,
    })
}

/// The `struct mount` addresses of a namespace, in `/proc/mounts` order.
fn namespace_mounts(k: &Kernel, km: &Kmem<'_>, ns: u64) -> Result<(Vec<u64>, Option<Error>)> {
    let l = &k.layout;
    let f = l.field("mnt_namespace.list|mounts")?;
    if f.alt == 0 {
        let link = l.off("mount.mnt_list")?;
        let (nodes, err) = km.list("mnt_namespace.list", ns.wrapping_add(f.offset), MAX_MOUNTS);
        return Ok((
            nodes.into_iter().map(|n| n.wrapping_sub(link)).collect(),
            err,
        ));
    }
    // 6.8+: an rbtree of mounts (`struct rb_root` holds the root node first), by mount id.
    let link = l.off("mount.mnt_node")?;
    let left = l.off("rb_node.rb_left")?;
    let right = l.off("rb_node.rb_right")?;
    let root = km.u64(ns.wrapping_add(f.offset))?;
    let (nodes, err) = rb_inorder(km, root, left, right, MAX_MOUNTS);
    Ok((
        nodes.into_iter().map(|n| n.wrapping_sub(link)).collect(),
        err,
    ))
}

/// PID 1's root (`task->fs->root`), found as the first task after `init_task`.
fn init_root(k: &Kernel, km: &Kmem<'_>, mount_off: u64) -> Result<Root> {
    let l = &k.layout;
    let tasks = l.off("task_struct.tasks")?;
    let first = km.u64(k.symbol("init_task")?.wrapping_add(tasks))?;
    let task = first.wrapping_sub(tasks);
    let pid = km.u32(task.wrapping_add(l.off("task_struct.pid")?))?;
    if pid != 1 {
        return Err(bad(
            "task_struct",
            task,
            format!("first task after init_task is pid {pid}, not 1"),
        ));
    }
    let fs = km.u64(task.wrapping_add(l.off("task_struct.fs")?))?;
    let vfsmount = km.u64(fs.wrapping_add(l.off("fs_struct.root.mnt")?))?;
    let dentry = km.u64(fs.wrapping_add(l.off("fs_struct.root.dentry")?))?;
    Ok(Root {
        mount: vfsmount.wrapping_sub(mount_off),
        dentry,
    })
}

/// Which file system's own options a super block shows, by its `s_op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FsKind {
    Shmem,
    Ramfs,
    Devpts,
    Proc,
    Kernfs,
    Other,
}

/// What the options of every mount share: known `s_op` tables and figures.
struct Context {
    kinds: HashMap<u64, FsKind>,
    /// `_totalram_pages`, for tmpfs's default size and inode count.
    totalram: Option<u64>,
    /// Whether tmpfs defaults to 64-bit inode numbers (`CONFIG_TMPFS_INODE64`), read from
    /// the kernel's own internal tmpfs mount, which takes the default.
    inode64_default: Option<bool>,
    /// What a mount's `mnt_userns` / `mnt_idmap` is when it is not idmapped.
    no_idmap: Option<(FieldInfo, u64)>,
}

impl Context {
    fn new(k: &Kernel, km: &Kmem<'_>, o: &Offsets) -> Context {
        let mut kinds = HashMap::new();
        for (sym, kind) in [
            ("shmem_ops", FsKind::Shmem),
            ("ramfs_ops", FsKind::Ramfs),
            ("devpts_sops", FsKind::Devpts),
            ("proc_sops", FsKind::Proc),
            ("kernfs_sops", FsKind::Kernfs),
        ] {
            if let Some(a) = k.symbols.get(sym) {
                kinds.insert(a, kind);
            }
        }
        let totalram = k
            .symbols
            .get("_totalram_pages")
            .and_then(|a| km.u64(a).ok());
        let inode64_default = (|| {
            let full = k.layout.field("shmem_sb_info.full_inums").ok()?;
            let vfsmount = km.u64(k.symbols.get("shm_mnt")?).ok()?;
            // `shm_mnt` is a `struct vfsmount *`; its super block pointer is in it.
            let sb = km
                .u64(vfsmount.wrapping_add(o.mnt_sb.wrapping_sub(o.mnt)))
                .ok()?;
            let info = km.u64(sb.wrapping_add(o.s_fs_info)).ok()?;
            Some(uint(km, info, &full).ok()? != 0)
        })();
        let no_idmap = k
            .layout
            .field("vfsmount.mnt_userns|mnt_idmap")
            .ok()
            .and_then(|f| {
                let sym = if f.alt == 0 {
                    "init_user_ns"
                } else {
                    "nop_mnt_idmap"
                };
                k.symbols.get(sym).map(|a| (f, a))
            });
        Context {
            kinds,
            totalram,
            inode64_default,
            no_idmap,
        }
    }
}

/// Reads the optional member `spec` of the struct at `base`.
fn opt(k: &Kernel, km: &Kmem<'_>, base: u64, spec: &str) -> Result<u64> {
    uint(km, base, &k.layout.field(spec)?)
}

/// tmpfs's `shmem_show_options()`; returns false when an option could not be decoded.
fn shmem_options(
    k: &Kernel,
    km: &Kmem<'_>,
    cx: &Context,
    info: u64,
    out: &mut Vec<String>,
) -> Result<bool> {
    let mut complete = true;
    // x86-64 has no highmem: both defaults are half the RAM pages.
    let default = cx.totalram.map(|t| t / 2);
    let blocks = opt(k, km, info, "shmem_sb_info.max_blocks")?;
    let inodes = opt(k, km, info, "shmem_sb_info.max_inodes")?;
    match default {
        Some(d) => {
            if blocks != d {
                out.push(format!("size={}k", blocks.saturating_mul(4)));
            }
            if inodes != d {
                out.push(format!("nr_inodes={inodes}"));
            }
        }
        None => complete = false,
    }
    let mode = opt(k, km, info, "shmem_sb_info.mode")?;
    if mode != 0o1777 {
        out.push(format!("mode={mode:03o}"));
    }
    let uid = opt(k, km, info, "shmem_sb_info.uid")?;
    if uid != 0 {
        out.push(format!("uid={uid}"));
    }
    let gid = opt(k, km, info, "shmem_sb_info.gid")?;
    if gid != 0 {
        out.push(format!("gid={gid}"));
    }
    let full = opt(k, km, info, "shmem_sb_info.full_inums")? != 0;
    match (full, cx.inode64_default) {
        (true, _) => out.push("inode64".into()),
        (false, Some(true)) => out.push("inode32".into()),
        (false, Some(false)) => {}
        (false, None) => complete = false,
    }
    let huge = opt(k, km, info, "shmem_sb_info.huge").unwrap_or(0) as u8 as i8;
    if huge != 0 {
        let name = match huge {
            1 => "always",
            2 => "within_size",
            3 => "advise",
            -1 => "deny",
            -2 => "force",
            _ => "bad_val",
        };
        out.push(format!("huge={name}"));
    }
    if let Ok(mpol) = opt(k, km, info, "shmem_sb_info.mpol") {
        // MPOL_DEFAULT (0) shows nothing; any other policy is not decoded.
        if mpol != 0 && opt(k, km, mpol, "mempolicy.mode").map_or(true, |m| m != 0) {
            complete = false;
        }
    }
    if opt(k, km, info, "shmem_sb_info.noswap").is_ok_and(|n| n != 0) {
        out.push("noswap".into());
    }
    Ok(complete)
}

/// The file system's own options (`s_op->show_options`); returns false when they were
/// not (all) decoded.
fn fs_options(
    k: &Kernel,
    km: &Kmem<'_>,
    cx: &Context,
    s_op: u64,
    info: u64,
    out: &mut Vec<String>,
) -> Result<bool> {
    let kind = cx.kinds.get(&s_op).copied().unwrap_or(FsKind::Other);
    match kind {
        FsKind::Shmem => shmem_options(k, km, cx, info, out),
        FsKind::Ramfs => {
            let mode = opt(k, km, info, "ramfs_fs_info.mount_opts.mode")?;
            if mode != 0o755 {
                out.push(format!("mode={mode:o}"));
            }
            Ok(true)
        }
        FsKind::Devpts => {
            let o = |m: &str| opt(k, km, info, &format!("pts_fs_info.mount_opts.{m}"));
            if o("setuid")? != 0 {
                out.push(format!("uid={}", o("uid")?));
            }
            if o("setgid")? != 0 {
                out.push(format!("gid={}", o("gid")?));
            }
            out.push(format!("mode={:03o}", o("mode")?));
            out.push(format!("ptmxmode={:03o}", o("ptmxmode")?));
            let max = o("max")? as i32;
            if (max as i64) < PTY_MAX as i64 {
                out.push(format!("max={max}"));
            }
            Ok(true)
        }
        FsKind::Proc => {
            let gid = opt(k, km, info, "proc_fs_info.pid_gid")?;
            if gid != 0 {
                out.push(format!("gid={gid}"));
            }
            let hide = opt(k, km, info, "proc_fs_info.hide_pid")? as u32;
            if hide != 0 {
                let name = match hide {
                    1 => "noaccess",
                    2 => "invisible",
                    4 => "ptraceable",
                    _ => "unknown",
                };
                out.push(format!("hidepid={name}"));
            }
            if opt(k, km, info, "proc_fs_info.pidonly")? as u32 != 0 {
                out.push("subset=pid".into());
            }
            Ok(true)
        }
        FsKind::Kernfs => {
            // sysfs shows nothing; cgroup and others show their root's syscall_ops'.
            let root = opt(k, km, info, "kernfs_super_info.root")?;
            let ops = opt(k, km, root, "kernfs_root.syscall_ops")?;
            Ok(ops == 0 || opt(k, km, ops, "kernfs_syscall_ops.show_options")? == 0)
        }
        FsKind::Other => {
            let show = opt(k, km, s_op, "super_operations.show_options")?;
            Ok(show == 0)
        }
    }
}

/// One mount, without its path; the bool is false when file-system options were not
/// decoded.
fn read_mount(
    k: &Kernel,
    km: &Kmem<'_>,
    o: &Offsets,
    cx: &Context,
    m: u64,
) -> Result<(Mount, bool)> {
    let devname = km.u64(m.wrapping_add(o.devname))?;
    let device = if devname == 0 {
        "none".to_string()
    } else {
        read_string(km, devname)?
    };
    let sb = km.u64(m.wrapping_add(o.mnt_sb))?;
    let fs_type = km.u64(sb.wrapping_add(o.s_type))?;
    let mut type_name = read_string(km, km.u64(fs_type.wrapping_add(o.fs_name))?)?;
    if let Ok(sub) = opt(k, km, sb, "super_block.s_subtype") {
        if sub != 0 {
            let sub = read_string(km, sub)?;
            if !sub.is_empty() {
                type_name = format!("{type_name}.{sub}");
            }
        }
    }
    let mnt_flags = uint(km, m, &o.mnt_flags)?;
    let s_flags = uint(km, sb, &o.s_flags)?;
    let mut opts = Vec::new();
    let ro = mnt_flags & MNT_READONLY != 0 || s_flags & SB_RDONLY != 0;
    opts.push(if ro { "ro" } else { "rw" }.to_string());
    opts.extend(
        SB_OPTS
            .iter()
            .filter(|(f, _)| s_flags & f != 0)
            .map(|(_, n)| n.to_string()),
    );
    opts.extend(
        MNT_OPTS
            .iter()
            .filter(|(f, _)| mnt_flags & f != 0)
            .map(|(_, n)| n.to_string()),
    );
    if let Some((f, none)) = cx.no_idmap {
        let v = uint(km, m.wrapping_add(o.mnt), &f)?;
        if v != none {
            opts.push("idmapped".into());
        }
    }
    let s_op = km.u64(sb.wrapping_add(o.s_op))?;
    let info = km.u64(sb.wrapping_add(o.s_fs_info))?;
    let complete = match fs_options(k, km, cx, s_op, info, &mut opts) {
        Ok(c) => c,
        // Without the layout for this file system's options, give the generic ones.
        Err(Error::Malformed { file, .. }) if file == "kernel BTF" => false,
        Err(e) => return Err(e),
    };
    let mount_id = uint(km, m, &o.mnt_id)?;
    Ok((
        Mount {
            device,
            path: String::new(),
            fs_type: type_name,
            options: opts.join(","),
            mount_id: u32::try_from(mount_id).ok(),
            ..Mount::default()
        },
        complete,
    ))
}

/// The mounts of the initial mount namespace, as PID 1's `/proc/mounts` lists them.
pub fn mounts(k: &Kernel, km: &Kmem<'_>) -> Result<Mounts> {
    let l = &k.layout;
    let o = Offsets::new(k)?;
    let ns = km.u64(
        k.symbol("init_nsproxy")?
            .wrapping_add(l.off("nsproxy.mnt_ns")?),
    )?;
    let ns_root = km.u64(ns.wrapping_add(l.off("mnt_namespace.root")?))?;
    let (list, err) = namespace_mounts(k, km, ns)?;
    let mut out = Mounts {
        errors: err.into_iter().collect(),
        ..Mounts::default()
    };
    let in_ns: HashSet<u64> = list.iter().copied().collect();
    // Paths are relative to PID 1's root when it is a mount of this namespace, else to the
    // namespace's root.
    let root = match init_root(k, km, o.mnt) {
        Ok(r) if in_ns.contains(&r.mount) => r,
        _ => Root {
            mount: ns_root,
            dentry: km.u64(ns_root.wrapping_add(o.mnt_root))?,
        },
    };
    let cx = Context::new(k, km, &o);
    let mut at_path: HashMap<String, u32> = HashMap::new();
    for m in list {
        let read = || -> Result<Option<(Mount, bool)>> {
            let Some(path) = mount_path(km, &o, m, root)? else {
                return Ok(None);
            };
            let (mut mount, complete) = read_mount(k, km, &o, &cx, m)?;
            mount.path = path;
            Ok(Some((mount, complete)))
        };
        match read() {
            Ok(Some((mut mount, complete))) => {
                let n = at_path.entry(mount.path.clone()).or_insert(0);
                mount.stack = *n;
                *n += 1;
                if !complete {
                    out.partial_options.push(mount.key());
                }
                out.mounts.push(mount);
            }
            Ok(None) => out.hidden += 1,
            Err(e) => out.errors.push(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use origami_core::memory::{PhysRange, PhysicalMemory};
    use origami_core::paging::PagingMode;

    /// A few pages of guest RAM, read through the direct map.
    struct Ram(Vec<u8>);

    impl PhysicalMemory for Ram {
        fn read_phys(&self, addr: u64, buf: &mut [u8]) -> origami_core::Result<()> {
            let a = addr as usize;
            match self.0.get(a..a + buf.len()) {
                Some(s) => {
                    buf.copy_from_slice(s);
                    Ok(())
                }
                None => Err(origami_core::Error::PhysicalHole {
                    source_name: "ram".into(),
                    addr,
                    start: addr,
                    len: buf.len(),
                }),
            }
        }
        fn ranges(&self) -> Vec<PhysRange> {
            vec![PhysRange {
                start: 0,
                end: self.0.len() as u64,
            }]
        }
        fn name(&self) -> String {
            "ram".into()
        }
    }

    const BASE: u64 = 0xffff_8880_0000_0000;

    /// Nodes at 0x100 * i: `rb_right` at +8, `rb_left` at +16, as `struct rb_node`.
    fn tree(links: &[(u64, u64, u64)]) -> Ram {
        let mut ram = vec![0u8; 0x2000];
        for &(node, left, right) in links {
            let at = (node * 0x100) as usize;
            let ptr = |n: u64| if n == 0 { 0 } else { BASE + n * 0x100 };
            ram[at + 8..at + 16].copy_from_slice(&ptr(right).to_le_bytes());
            ram[at + 16..at + 24].copy_from_slice(&ptr(left).to_le_bytes());
        }
        Ram(ram)
    }

    fn walk(ram: &Ram, root: u64, max: usize) -> (Vec<u64>, Option<Error>) {
        let km = Kmem::new(ram, 0, PagingMode::Level4, 0, BASE);
        let (nodes, err) = rb_inorder(&km, BASE + root * 0x100, 16, 8, max);
        (nodes.into_iter().map(|n| (n - BASE) / 0x100).collect(), err)
    }

    #[test]
    fn rbtree_walks_in_order_and_stops_on_loops_and_bounds() {
        //        4
        //      2   6
        //     1 3 5 7
        let ram = tree(&[
            (4, 2, 6),
            (2, 1, 3),
            (6, 5, 7),
            (1, 0, 0),
            (3, 0, 0),
            (5, 0, 0),
            (7, 0, 0),
        ]);
        let (nodes, err) = walk(&ram, 4, 100);
        assert!(err.is_none());
        assert_eq!(nodes, vec![1, 2, 3, 4, 5, 6, 7]);
        let (nodes, err) = walk(&ram, 4, 3);
        assert_eq!(nodes, vec![1, 2, 3]);
        assert!(err.is_some());
        // 7's right child points back at the root.
        let ram = tree(&[(4, 2, 6), (2, 0, 0), (6, 0, 7), (7, 0, 4)]);
        let (nodes, err) = walk(&ram, 4, 100);
        assert_eq!(nodes, vec![2, 4, 6, 7]);
        assert!(err.unwrap().to_string().contains("loops"));
        // A child pointer out of RAM.
        let mut ram = tree(&[(4, 2, 0), (2, 0, 0)]);
        ram.0[0x200 + 16..0x200 + 24].copy_from_slice(&(BASE + 0x10_0000).to_le_bytes());
        let (nodes, err) = walk(&ram, 4, 100);
        assert!(nodes.is_empty() && err.is_some());
    }

    #[test]
    fn strings_stop_at_their_nul_and_at_the_bound() {
        let mut ram = vec![0u8; 0x3000];
        // A string that ends just before the last page's end, with no page after it.
        ram[0x2ffa..0x2fff].copy_from_slice(b"tmpfs");
        ram[0x1000..0x2000].fill(b'a');
        let ram = Ram(ram);
        let km = Kmem::new(&ram, 0, PagingMode::Level4, 0, BASE);
        assert_eq!(read_cstr(&km, BASE + 0x2ffa, 4096).unwrap(), b"tmpfs");
        assert_eq!(read_cstr(&km, BASE + 0xffe, 4096).unwrap(), b"");
        assert!(read_cstr(&km, BASE + 0x1000, 100).is_err());
        assert_eq!(read_cstr(&km, BASE + 0x1ff0, 4096).unwrap().len(), 16);
    }
}
