//! Connections: TCP and UDP sockets over IPv4 and IPv6, found through each process's open
//! files.
//!
//! For every process, `files->fdt->fd[0..max_fds]` gives its open `struct file`s; a file
//! whose `f_op` is `socket_file_ops` is a socket, `file->private_data` its `struct socket`,
//! and `socket->sk` the `struct sock` whose `__sk_common` holds family, state, ports and
//! addresses. A socket shared by several processes is listed once, with the first owner
//! (lowest pid). TCP sockets no process holds (TIME_WAIT, orphaned) are added from TCP's
//! established hash, without a pid. Limits: the hash is the initial network namespace's
//! global one; listening and UDP sockets are found only through open files; the fd table is
//! read up to [`Limits::fds_per_task`] entries, and at most [`Limits::sockets`] sockets
//! are read in all.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use origami_core::bytes::{le64, try_le64};
use origami_frame::Connection;

use super::kernel::Kernel;
use super::kmem::{bad, Kmem};
use super::tasks::Task;
use crate::error::{Error, Result};
use crate::limits::{Bounds, Limits};

/// The most fd slots read per process by default ([`Limits::fds_per_task`]).
pub const MAX_FDS: u64 = Limits::DEFAULT.fds_per_task;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;

/// The name of a TCP state number (`include/net/tcp_states.h`).
pub fn tcp_state(s: u8) -> &'static str {
    match s {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// Reads one `struct sock` into a connection, or `None` when it is not TCP/UDP over IP.
pub fn read_sock(k: &Kernel, km: &Kmem<'_>, sk: u64) -> Result<Option<Connection>> {
    let l = &k.layout;
    let family = km.uint(sk.wrapping_add(l.off("sock.__sk_common.skc_family")?), 2)? as u16;
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let proto_f = l.field("sock.sk_protocol")?;
    let proto = km.uint(sk.wrapping_add(proto_f.offset), proto_f.size.min(2))? as u16;
    let protocol = match proto {
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        _ => return Ok(None),
    };
    read_common(k, km, sk, "sock.__sk_common.", protocol)
}

/// Reads the `sock_common` at `sk` (fields named `{prefix}skc_*` in the layout) as a
/// connection of `protocol`.
fn read_common(
    k: &Kernel,
    km: &Kmem<'_>,
    sk: u64,
    prefix: &str,
    protocol: &str,
) -> Result<Option<Connection>> {
    let l = &k.layout;
    let off = |f: &str| l.off(&format!("{prefix}{f}"));
    let family = km.uint(sk.wrapping_add(off("skc_family")?), 2)? as u16;
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let state = km.uint(sk.wrapping_add(off("skc_state")?), 1)? as u8;
    let lport = km.uint(sk.wrapping_add(off("skc_num")?), 2)? as u16;
    let rport = (km.uint(sk.wrapping_add(off("skc_dport")?), 2)? as u16).swap_bytes();
    let (fam, local, remote) = if family == AF_INET {
        let mut a = [0u8; 4];
        km.read(sk.wrapping_add(off("skc_rcv_saddr")?), &mut a)?;
        let mut b = [0u8; 4];
        km.read(sk.wrapping_add(off("skc_daddr")?), &mut b)?;
        (
            "ipv4",
            Ipv4Addr::from(a).to_string(),
            Ipv4Addr::from(b).to_string(),
        )
    } else {
        let mut a = [0u8; 16];
        km.read(sk.wrapping_add(off("skc_v6_rcv_saddr")?), &mut a)?;
        let mut b = [0u8; 16];
        km.read(sk.wrapping_add(off("skc_v6_daddr")?), &mut b)?;
        (
            "ipv6",
            Ipv6Addr::from(a).to_string(),
            Ipv6Addr::from(b).to_string(),
        )
    };
    let state = if protocol == "udp" {
        match state {
            1 => "ESTABLISHED",
            7 => "UNCONN",
            s => tcp_state(s),
        }
    } else {
        tcp_state(state)
    };
    Ok(Some(Connection {
        protocol: protocol.into(),
        family: fam.into(),
        local_address: local,
        local_port: lport,
        remote_address: remote,
        remote_port: rport,
        state: state.into(),
        pid: None,
        ..Connection::default()
    }))
}

/// The most hash buckets read from TCP's established hash.
pub const MAX_EHASH_BUCKETS: u64 = 1 << 22;

/// The most sockets taken from TCP's established hash by default ([`Limits::sockets`]).
pub const MAX_EHASH_SOCKETS: usize = Limits::DEFAULT.sockets;

/// The sockets in TCP's established hash (`tcp_hashinfo.ehash`): established, closing,
/// TIME_WAIT and request sockets of the initial network namespace, as (address,
/// connection). `None` when the kernel lacks the table or its layout.
pub fn tcp_ehash(k: &Kernel, km: &Kmem<'_>) -> Result<Option<Vec<(u64, Connection)>>> {
    tcp_ehash_with(k, km, MAX_EHASH_SOCKETS, &Bounds::none())
}

/// As [`tcp_ehash`], taking at most `max` sockets ([`Error::LimitExceeded`] past them),
/// the bucket array reserved on the budget while it is read, stopping at the deadline.
pub fn tcp_ehash_with(
    k: &Kernel,
    km: &Kmem<'_>,
    max: usize,
    bounds: &Bounds,
) -> Result<Option<Vec<(u64, Connection)>>> {
    let l = &k.layout;
    let (Some(hi), Ok(ehash), Ok(mask), Ok(chain), Ok(node), Some(&bucket)) = (
        k.symbols.get("tcp_hashinfo"),
        l.off("inet_hashinfo.ehash"),
        l.off("inet_hashinfo.ehash_mask"),
        l.off("inet_ehash_bucket.chain"),
        l.off("sock_common.skc_nulls_node"),
        l.sizes.get("inet_ehash_bucket"),
    ) else {
        return Ok(None);
    };
    let table = km.u64(hi.wrapping_add(ehash))?;
    let buckets = u64::from(km.u32(hi.wrapping_add(mask))?) + 1;
    if buckets > MAX_EHASH_BUCKETS || bucket == 0 || bucket > 64 {
        return Err(bad(
            "tcp_hashinfo",
            hi,
            format!("{buckets} buckets of {bucket} bytes, over the bound"),
        ));
    }
    let _held = bounds.budget.reserve(
        format!("tcp_hashinfo.ehash at {table:#x}"),
        buckets * bucket,
    )?;
    let raw = km.bytes(table, (buckets * bucket) as usize)?;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for b in 0..buckets as usize {
        if b % 4096 == 0 {
            bounds.deadline.check()?;
        }
        let at = b * bucket as usize + chain as usize;
        let Some(mut ptr) = try_le64(&raw, at) else {
            break;
        };
        // hlist_nulls: a pointer with its low bit set marks the end of the chain.
        while ptr & 1 == 0 && ptr != 0 {
            if !seen.insert(ptr) {
                return Err(bad("tcp ehash chain", ptr, "chain loops"));
            }
            if out.len() >= max {
                return Err(Error::LimitExceeded {
                    what: format!("sockets (TCP's established hash at {table:#x})"),
                    limit: max as u64,
                });
            }
            let sk = ptr.wrapping_sub(node);
            if let Some(c) = read_common(k, km, sk, "sock_common.", "tcp")? {
                out.push((sk, c));
            }
            ptr = km.u64(ptr)?;
        }
    }
    Ok(Some(out))
}

/// The sockets (`struct sock` addresses) among the open files of process `pid`: at most
/// [`Limits::fds_per_task`] fd slots ([`Error::LimitExceeded`] past them), the fd array
/// reserved on the budget while it is read.
fn socket_socks(
    k: &Kernel,
    km: &Kmem<'_>,
    pid: u32,
    files: u64,
    sfops: u64,
    bounds: &Bounds,
) -> Result<Vec<u64>> {
    let l = &k.layout;
    let fdt = km.u64(files.wrapping_add(l.off("files_struct.fdt")?))?;
    let max = u64::from(km.u32(fdt.wrapping_add(l.off("fdtable.max_fds")?))?);
    let bound = bounds.limits.fds_per_task;
    if max > bound {
        return Err(Error::LimitExceeded {
            what: format!("process {pid} fd table (fdtable at {fdt:#x}): {max} fd slots"),
            limit: bound,
        });
    }
    let arr = km.u64(fdt.wrapping_add(l.off("fdtable.fd")?))?;
    let _held = bounds
        .budget
        .reserve(format!("process {pid} fd array at {arr:#x}"), max * 8)?;
    let raw = km.bytes(arr, (max * 8) as usize)?;
    let mut out = Vec::new();
    let (f_op, private, sk_off) = (
        l.off("file.f_op")?,
        l.off("file.private_data")?,
        l.off("socket.sk")?,
    );
    for ch in raw.chunks_exact(8) {
        let file = le64(ch, 0);
        if file == 0 {
            continue;
        }
        if km.u64(file.wrapping_add(f_op))? != sfops {
            continue;
        }
        let sock = km.u64(file.wrapping_add(private))?;
        let sk = km.u64(sock.wrapping_add(sk_off))?;
        if sk != 0 {
            out.push(sk);
        }
    }
    Ok(out)
}

/// The frame's connections, owned by `tasks` (sorted by pid), with the errors met.
pub fn connections(
    k: &Kernel,
    km: &Kmem<'_>,
    tasks: &[Task],
) -> Result<(Vec<Connection>, Vec<Error>)> {
    connections_with(k, km, tasks, &Bounds::none())
}

/// As [`connections`], within `bounds`: at most [`Limits::fds_per_task`] fd slots a
/// process and [`Limits::sockets`] sockets in all (an [`Error::LimitExceeded`] past them,
/// the sockets before the bound kept), stopping at the deadline.
pub fn connections_with(
    k: &Kernel,
    km: &Kmem<'_>,
    tasks: &[Task],
    bounds: &Bounds,
) -> Result<(Vec<Connection>, Vec<Error>)> {
    let sfops = k.symbol("socket_file_ops")?;
    let max = bounds.limits.sockets;
    let over = || Error::LimitExceeded {
        what: "sockets (read through the processes' open files and TCP's hash)".into(),
        limit: max as u64,
    };
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut order: Vec<&Task> = tasks.iter().filter(|t| t.files != 0).collect();
    order.sort_by_key(|t| t.tgid);
    let mut seen_files = HashSet::new();
    for t in order {
        if let Err(e) = bounds.deadline.check() {
            errors.push(e);
            return Ok((out, errors));
        }
        // Threads and forked children can share one files_struct: read it once.
        if !seen_files.insert(t.files) {
            continue;
        }
        let socks = match socket_socks(k, km, t.tgid, t.files, sfops, bounds) {
            Ok(s) => s,
            Err(e @ (Error::LimitExceeded { .. } | Error::OverBudget { .. })) => {
                errors.push(e);
                continue;
            }
            Err(e) => {
                errors.push(bad(
                    format!("process {} files", t.tgid),
                    t.files,
                    e.to_string(),
                ));
                continue;
            }
        };
        for sk in socks {
            if !seen.insert(sk) {
                continue;
            }
            if seen.len() > max {
                errors.push(over());
                return Ok((out, errors));
            }
            match read_sock(k, km, sk) {
                Ok(Some(mut c)) => {
                    c.pid = Some(t.tgid);
                    out.push(c);
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
    }
    // TCP sockets no process holds (TIME_WAIT, orphans) are only in the hash table.
    match tcp_ehash_with(k, km, max, bounds) {
        Ok(Some(hashed)) => {
            for (sk, c) in hashed {
                if seen.insert(sk) {
                    if seen.len() > max {
                        errors.push(over());
                        break;
                    }
                    out.push(c);
                }
            }
        }
        Ok(None) => {}
        Err(e) => errors.push(e),
    }
    Ok((out, errors))
}
