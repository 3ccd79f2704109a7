//! The memory crawl judged against a fixture dump's truth.json (the guest's own /proc),
//! shared by the memory tests.

use std::collections::{BTreeSet, HashMap};

use origami_introspect::frame::Frame;
use serde_json::Value;

/// (protocol, local address, local port, remote address, remote port, state, pid).
type SocketKey = (String, String, u16, String, u16, String, Option<u32>);

/// Compares a frame with truth.json; returns the mismatches.
pub fn compare(frame: &Frame, truth: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let k = &truth["kernel"];
    if frame.os.kernel.as_deref() != k["release"].as_str() {
        bad.push(format!("kernel {:?}", frame.os.kernel));
    }
    if frame.os.hostname.as_deref() != k["hostname"].as_str() {
        bad.push(format!("hostname {:?}", frame.os.hostname));
    }
    let procs: HashMap<u32, _> = frame.process.iter().map(|p| (p.pid, p)).collect();
    // Kernel threads whose scheduler state flipped between running and sleeping in the
    // seconds between the guest's snapshot of /proc and the dump (seen on PREEMPT_RT's
    // per-CPU `rcuc/N` and `ksoftirqd/N`): a real change, not a misread, so a few are
    // allowed; a misdecoded state field would flip far more than that.
    let mut flipped = Vec::new();
    for p in truth["processes"].as_array().unwrap() {
        let pid = p["pid"].as_u64().unwrap() as u32;
        let Some(g) = procs.get(&pid) else {
            bad.push(format!("process {pid} missing"));
            continue;
        };
        let kthread = p["kernel_thread"].as_bool().unwrap();
        let comm = p["comm"].as_str().unwrap();
        // /proc appends a workqueue description to kworker names; comm itself stops before.
        let name_ok = if kthread {
            comm == g.name || comm.starts_with(&format!("{}-", g.name))
        } else {
            comm == g.name
        };
        let cmd: Vec<String> = p["cmdline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let ok = name_ok
            && g.ppid == p["ppid"].as_u64().unwrap() as u32
            && g.uid == p["uid"][0].as_u64().unwrap() as u32
            && g.kernel_thread == kthread
            && g.cmdline == cmd
            && (g.state.as_deref() == p["state"].as_str()
                || (kthread && state_flip(g.state.as_deref(), p["state"].as_str()) && {
                    flipped.push(pid);
                    true
                }))
            && g.start_time == p["start_time_ticks"].as_u64()
            // PID 1 was itself collecting the snapshot, so its RSS moved before the dump.
            && (pid == 1 || g.rss == p["rss_pages"].as_u64().map(|n| n * 4096));
        if !ok {
            bad.push(format!("process {pid}: got {g:?}, want {p}"));
        }
    }
    let threads = truth["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kernel_thread"].as_bool() == Some(true))
        .count();
    if flipped.len() > (threads / 20).max(2) {
        bad.push(format!(
            "{} of {threads} kernel threads changed state (R/S/I) since the snapshot: {flipped:?}",
            flipped.len()
        ));
    }
    let got: BTreeSet<SocketKey> = frame
        .connection
        .iter()
        .map(|c| {
            (
                c.protocol.clone(),
                c.local_address.clone(),
                c.local_port,
                c.remote_address.clone(),
                c.remote_port,
                c.state.clone(),
                c.pid,
            )
        })
        .collect();
    for fam in ["tcp", "tcp6", "udp", "udp6"] {
        for s in truth["sockets"][fam].as_array().unwrap() {
            let want = (
                fam.trim_end_matches('6').to_string(),
                s["local_ip"].as_str().unwrap().to_string(),
                s["local_port"].as_u64().unwrap() as u16,
                s["remote_ip"].as_str().unwrap().to_string(),
                s["remote_port"].as_u64().unwrap() as u16,
                s["state"].as_str().unwrap().to_string(),
                s["pids"][0].as_u64().map(|p| p as u32),
            );
            if !got.contains(&want) {
                bad.push(format!("socket {want:?} missing"));
            }
        }
    }
    let mods: HashMap<&str, _> = frame.module.iter().map(|m| (m.name.as_str(), m)).collect();
    for m in truth["modules"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        match mods.get(name) {
            Some(g) if g.size == m["size"].as_u64().unwrap() && g.state == m["state"] => {}
            other => bad.push(format!("module {name}: {other:?}")),
        }
    }
    if frame.module.len() != truth["modules"].as_array().unwrap().len() {
        bad.push(format!("{} modules", frame.module.len()));
    }
    let total = truth["memory"]["meminfo_kB"]["MemTotal"].as_u64().unwrap();
    if frame.os.extra.get("mem_total_kb").and_then(Value::as_u64) != Some(total) {
        bad.push(format!(
            "mem_total_kb {:?}",
            frame.os.extra.get("mem_total_kb")
        ));
    }
    // The dump is taken a few seconds after the guest's snapshot of /proc.
    let up = truth["collected_uptime_s"].as_f64().unwrap();
    match frame.os.extra.get("uptime_s").and_then(Value::as_f64) {
        Some(u) if u >= up - 1.0 && u <= up + 120.0 => {}
        other => bad.push(format!("uptime {other:?}, truth {up}")),
    }
    // Boot time: the guest's wall clock minus its uptime, both read in whole seconds.
    let want_boot = truth["collected_unix_time"].as_f64().unwrap() - up;
    let boot = frame.os.boot_time.as_deref().and_then(|b| {
        time::OffsetDateTime::parse(b, &time::format_description::well_known::Rfc3339).ok()
    });
    match boot {
        Some(b) if (b.unix_timestamp() as f64 - want_boot).abs() <= 3.0 => {}
        other => bad.push(format!("boot_time {other:?}, truth {want_boot}")),
    }
    bad
}

/// Whether two scheduler states are running and sleeping (interruptibly or idle), one each:
/// the only change a kernel thread is allowed between the snapshot and the dump.
fn state_flip(got: Option<&str>, want: Option<&str>) -> bool {
    let moving = |s: &str| matches!(s, "R" | "S" | "I");
    match (got, want) {
        (Some(g), Some(w)) => g != w && moving(g) && moving(w) && (g == "R" || w == "R"),
        _ => false,
    }
}
