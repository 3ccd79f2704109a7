//! Processes: the kernel's task list, walked from `init_task.tasks`.
//!
//! One [`Process`] per thread-group leader (what `/proc` lists), with pid, parent pid
//! (`real_parent`'s tgid), `comm`, the real uid from `cred`, the `/proc` state letter, the
//! start time in clock ticks, RSS, and the command line read from the process's own address
//! space through its page tables (`mm->pgd`). Kernel threads (`PF_KTHREAD`) are marked and
//! have no command line; zombies have no `mm`. `init_task` itself (pid 0, the idle task) is
//! not listed, as in `/proc`. A task that fails its sanity checks is retried on live memory
//! and otherwise reported, never listed with made-up values.

use origami_core::paging::VirtualMemory;
use origami_frame::Process;

use super::kernel::Kernel;
use super::kmem::{bad, Kmem};
use super::layout::FieldInfo;
use crate::error::{Error, Result};
use crate::limits::{Bounds, Budget, Limits};

/// The most tasks walked by default ([`Limits::tasks`]).
pub const MAX_TASKS: usize = Limits::DEFAULT.tasks;

/// The most command-line bytes read by default ([`Limits::cmdline`]; Linux's own /proc
/// limit is one page per read call, but whole command lines may be longer).
pub const MAX_CMDLINE: u64 = Limits::DEFAULT.cmdline;

/// `PF_KTHREAD`.
const PF_KTHREAD: u32 = 0x0020_0000;

/// `PF_WQ_WORKER`.
const PF_WQ_WORKER: u32 = 0x20;

/// `PID_MAX_LIMIT` on 64-bit.
const PID_MAX: u32 = 4 << 20;

/// Clock ticks per second of `/proc` times (USER_HZ).
const USER_HZ: u64 = 100;

/// One task as read from memory, before its user-space reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The `task_struct`'s address.
    pub addr: u64,
    /// Thread id (`pid`).
    pub pid: u32,
    /// Process id (`tgid`).
    pub tgid: u32,
    /// Parent's tgid.
    pub ppid: u32,
    /// `comm`.
    pub comm: String,
    /// `/proc` state letter.
    pub state: char,
    /// Real uid.
    pub uid: u32,
    /// `PF_*` flags.
    pub flags: u32,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
    /// `mm_struct` address (0 for kernel threads and zombies).
    pub mm: u64,
    /// `files_struct` address, when the layout has it.
    pub files: u64,
    /// True while the task is in the middle of `execve` (its name and command line may be
    /// the old program's or the new one's); `None` when the layout lacks
    /// `task_struct.in_execve`.
    pub in_execve: Option<bool>,
}

impl Task {
    /// True for kernel threads.
    pub fn kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

/// The `/proc/PID/stat` state letter (`fs/proc/array.c` `task_state_array`).
pub fn state_letter(state: u32, exit_state: u32) -> char {
    const LETTERS: &[u8] = b"RSDTtXZPI";
    const TASK_REPORT: u32 = 0x7f;
    const TASK_IDLE: u32 = 0x402;
    let mut s = (state | exit_state) & TASK_REPORT;
    if state & TASK_IDLE == TASK_IDLE {
        s = TASK_REPORT + 1;
    }
    // fls: index of the highest set bit, 1-based; 0 when none.
    let idx = (32 - s.leading_zeros()) as usize;
    char::from(*LETTERS.get(idx).unwrap_or(&b'?'))
}

/// Where the fields a task walk reads lie in `task_struct`, resolved once per walk (not
/// once per task), and the two spans that hold them, each read with one read.
#[derive(Debug, Clone, Copy)]
struct TaskFields {
    pid: u64,
    tgid: u64,
    comm: FieldInfo,
    state: FieldInfo,
    exit_state: u64,
    flags: u64,
    start: u64,
    parent: u64,
    cred: u64,
    uid: u64,
    mm: u64,
    files: Option<u64>,
    in_execve: Option<FieldInfo>,
    /// The spans `[start, end)` of the struct that hold every field above, in order:
    /// fields far apart (`__state` and `flags` at the start, the rest near the middle
    /// on 6.1) are read in two pieces, not one that spans pages no field is on.
    spans: [(u64, u64); 2],
}

/// The longest span read in one piece (a `task_struct` is about 10 KiB).
const MAX_SPAN: u64 = 4096;

impl TaskFields {
    fn new(k: &Kernel) -> Result<TaskFields> {
        let l = &k.layout;
        let mut comm = l.field("task_struct.comm")?;
        comm.size = comm.size.clamp(1, 64);
        let state = l.field("task_struct.__state|state")?;
        let mut f = TaskFields {
            pid: l.off("task_struct.pid")?,
            tgid: l.off("task_struct.tgid")?,
            comm,
            state,
            exit_state: l.off("task_struct.exit_state")?,
            flags: l.off("task_struct.flags")?,
            start: l.off("task_struct.start_boottime|real_start_time")?,
            parent: l.off("task_struct.real_parent")?,
            cred: l.off("task_struct.cred")?,
            uid: l.off("cred.uid")?,
            mm: l.off("task_struct.mm")?,
            files: l.off("task_struct.files").ok(),
            in_execve: l.field("task_struct.in_execve").ok(),
            spans: [(0, 0); 2],
        };
        let mut fields = vec![
            (f.pid, 4),
            (f.tgid, 4),
            (f.comm.offset, f.comm.size),
            (f.state.offset, f.state.size.clamp(1, 8)),
            (f.exit_state, 4),
            (f.flags, 4),
            (f.start, 8),
            (f.parent, 8),
            (f.cred, 8),
            (f.mm, 8),
        ];
        fields.extend(f.files.map(|o| (o, 8)));
        fields.extend(f.in_execve.map(|b| (b.offset, b.size.clamp(1, 8))));
        fields.sort_unstable();
        // Split at the widest gap between neighbouring fields.
        let (mut cut, mut widest) = (fields.len(), 0);
        for (i, w) in fields.windows(2).enumerate() {
            let gap = w[1].0.saturating_sub(w[0].0 + w[0].1);
            if gap > widest {
                (cut, widest) = (i + 1, gap);
            }
        }
        let span = |part: &[(u64, u64)]| {
            let start = part.first().map_or(0, |p| p.0);
            let end = part.iter().map(|p| p.0 + p.1).max().unwrap_or(start);
            (start, end)
        };
        f.spans = [span(&fields[..cut]), span(&fields[cut..])];
        if f.spans.iter().any(|(s, e)| e - s > MAX_SPAN) {
            return Err(bad(
                "task_struct layout",
                0,
                format!(
                    "fields spread over more than {MAX_SPAN} bytes: {:?}",
                    f.spans
                ),
            ));
        }
        Ok(f)
    }
}

/// The bytes of the spans of one task (one after the other), and the fields taken out of
/// them.
struct TaskBytes<'f> {
    f: &'f TaskFields,
    buf: &'f [u8],
}

impl TaskFields {
    /// The bytes both spans take.
    fn span_bytes(&self) -> usize {
        self.spans.iter().map(|(s, e)| (e - s) as usize).sum()
    }
}

impl TaskBytes<'_> {
    /// `len` bytes of the field at `off` (inside one span by construction).
    fn bytes(&self, off: u64, len: u64) -> &[u8] {
        let mut base = 0usize;
        for (s, e) in &self.f.spans {
            if off >= *s && off + len <= *e {
                let at = base + (off - s) as usize;
                return self.buf.get(at..at + len as usize).unwrap_or_default();
            }
            base += (e - s) as usize;
        }
        &[]
    }

    fn uint(&self, off: u64, len: u64) -> u64 {
        let b = self.bytes(off, len.clamp(1, 8));
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    }
}

fn read_task(
    k: &Kernel,
    km: &Kmem<'_>,
    f: &TaskFields,
    scratch: &mut [u8],
    addr: u64,
) -> Result<Task> {
    let mut base = 0usize;
    for (s, e) in &f.spans {
        let n = (e - s) as usize;
        let dst = scratch
            .get_mut(base..base + n)
            .ok_or_else(|| bad("task_struct", addr, "scratch too small"))?;
        km.read(addr.wrapping_add(*s), dst)?;
        base += n;
    }
    let t = TaskBytes { f, buf: scratch };
    let pid = t.uint(f.pid, 4) as u32;
    let tgid = t.uint(f.tgid, 4) as u32;
    let comm_raw = t.bytes(f.comm.offset, f.comm.size);
    let state = t.uint(f.state.offset, f.state.size) as u32;
    let exit_state = t.uint(f.exit_state, 4) as u32;
    let flags = t.uint(f.flags, 4) as u32;
    let start = t.uint(f.start, 8);
    let parent = t.uint(f.parent, 8);
    let ppid = if parent == 0 || parent == addr {
        0
    } else {
        km.u32(parent.wrapping_add(f.tgid))?
    };
    let cred = t.uint(f.cred, 8);
    let uid = km.u32(cred.wrapping_add(f.uid))?;
    let mm = t.uint(f.mm, 8);
    let files = f.files.map_or(0, |o| t.uint(o, 8));
    let in_execve = f
        .in_execve
        .map(|b| b.value_in(t.bytes(b.offset, b.size.clamp(1, 8))) != 0);
    // Sanity: what a torn or wrong read would break.
    let nul = memchr::memchr(0, comm_raw);
    if pid > PID_MAX || tgid > PID_MAX || ppid > PID_MAX || nul.is_none() {
        return Err(bad(
            "task_struct",
            addr,
            format!("implausible task (pid {pid}, tgid {tgid}, ppid {ppid})"),
        ));
    }
    let mut comm =
        String::from_utf8_lossy(comm_raw.get(..nul.unwrap_or(0)).unwrap_or_default()).into_owned();
    // /proc shows a kernel thread's full name, except for workqueue workers (PF_WQ_WORKER),
    // whose comm it shows with the work's description appended.
    if flags & PF_KTHREAD != 0 && flags & PF_WQ_WORKER == 0 && comm.len() + 1 == comm_raw.len() {
        if let Some(full) = kthread_full_name(k, km, addr) {
            if full.starts_with(&comm) {
                comm = full;
            }
        }
    }
    Ok(Task {
        addr,
        pid,
        tgid,
        ppid,
        comm,
        state: state_letter(state, exit_state),
        uid,
        flags,
        start_ticks: start / (1_000_000_000 / USER_HZ),
        mm,
        files,
        in_execve,
    })
}

/// A kernel thread's full name (`struct kthread.full_name`), when it was truncated in comm.
fn kthread_full_name(k: &Kernel, km: &Kmem<'_>, task: u64) -> Option<String> {
    let l = &k.layout;
    let kt = km
        .u64(task.wrapping_add(l.off("task_struct.worker_private|set_child_tid").ok()?))
        .ok()?;
    if kt == 0 {
        return None;
    }
    let name = km
        .u64(kt.wrapping_add(l.off("kthread.full_name").ok()?))
        .ok()?;
    if name == 0 {
        return None;
    }
    km.cstr(name, 64).ok().filter(|s| !s.is_empty())
}

/// Walks the task list: every thread-group leader but `init_task`, and the errors met.
pub fn tasks(k: &Kernel, km: &Kmem<'_>) -> Result<(Vec<Task>, Vec<Error>)> {
    tasks_with(k, km, &Bounds::none())
}

/// As [`tasks`], within `bounds`: at most [`Limits::tasks`] tasks (a longer list is an
/// [`Error::LimitExceeded`], the tasks before the bound kept), each [`Task`] reserved on
/// the budget, stopping at the deadline.
pub fn tasks_with(k: &Kernel, km: &Kmem<'_>, bounds: &Bounds) -> Result<(Vec<Task>, Vec<Error>)> {
    let init = k.symbol("init_task")?;
    let off = k.layout.off("task_struct.tasks")?;
    let (nodes, err) = km.list_until(
        "task_struct.tasks",
        init.wrapping_add(off),
        bounds.limits.tasks,
        &bounds.deadline,
    );
    let mut errors: Vec<Error> = err.into_iter().collect();
    let per_task = std::mem::size_of::<Task>() as u64 + 16;
    // The tasks are held to the crawl's end (the processes and connections come from
    // them).
    bounds
        .budget
        .reserve(
            "kernel task list",
            per_task.saturating_mul(nodes.len() as u64),
        )?
        .keep();
    let mut out = Vec::with_capacity(nodes.len());
    let tries = if km.is_live() { 3 } else { 1 };
    let fields = TaskFields::new(k)?;
    let mut scratch = vec![0u8; fields.span_bytes()];
    for node in nodes {
        if bounds.deadline.passed() {
            if !errors.iter().any(|e| matches!(e, Error::OverTime { .. })) {
                errors.push(bounds.deadline.error());
            }
            break;
        }
        let addr = node.wrapping_sub(off);
        let mut last = None;
        for _ in 0..tries {
            match read_task(k, km, &fields, &mut scratch, addr) {
                Ok(t) => {
                    last = None;
                    out.push(t);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        errors.extend(last);
    }
    Ok((out, errors))
}

/// The page-table root of a process (`mm->pgd`, a direct-map address).
fn user_root(k: &Kernel, km: &Kmem<'_>, mm: u64) -> Result<u64> {
    let pgd = km.u64(mm.wrapping_add(k.layout.off("mm_struct.pgd")?))?;
    km.direct_to_phys(pgd).map_or_else(|| km.translate(pgd), Ok)
}

/// Reads a process's command line from its own address space (at most [`MAX_CMDLINE`]
/// bytes of it).
pub fn cmdline(k: &Kernel, km: &Kmem<'_>, mm: u64) -> Result<Vec<String>> {
    cmdline_with(k, km, mm, MAX_CMDLINE, &Budget::unlimited()).map(|(args, _)| args)
}

/// Reads a process's command line from its own address space: at most `max` bytes,
/// reserved on `budget` (and kept: the frame holds them). A longer command line gives its
/// first `max` bytes and the [`Error::TooLarge`] that says so.
pub fn cmdline_with(
    k: &Kernel,
    km: &Kmem<'_>,
    mm: u64,
    max: u64,
    budget: &Budget,
) -> Result<(Vec<String>, Option<Error>)> {
    let start = km.u64(mm.wrapping_add(k.layout.off("mm_struct.arg_start")?))?;
    let end = km.u64(mm.wrapping_add(k.layout.off("mm_struct.arg_end")?))?;
    if end <= start {
        return Ok((Vec::new(), None));
    }
    let whole = end - start;
    let cut = (whole > max).then(|| Error::TooLarge {
        file: format!("command line at {start:#x} (mm_struct {mm:#x})"),
        size: whole,
        limit: max,
    });
    let len = whole.min(max);
    budget
        .reserve(format!("command line (mm_struct {mm:#x})"), len)?
        .keep();
    let len = usize::try_from(len).map_err(|_| bad("mm_struct", mm, "command line too long"))?;
    let root = user_root(k, km, mm)?;
    let vm = VirtualMemory::new(km.phys(), root, km.mode());
    let mut buf = vec![0u8; len];
    vm.read(start, &mut buf)?;
    let mut args: Vec<String> = buf
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // The area ends with a NUL: drop the empty piece after it.
    if args.last().is_some_and(String::is_empty) {
        args.pop();
    }
    Ok((args, cut))
}

/// Resident pages of an address space (file + anon + shmem, as /proc's VmRSS).
pub fn rss_pages(k: &Kernel, km: &Kmem<'_>, mm: u64) -> Result<u64> {
    let f = k.layout.field("mm_struct.rss_stat")?;
    // 6.1: `atomic_long_t count[4]` (32 bytes); 6.2+: `struct percpu_counter[4]`,
    // whose `count` (s64) follows a 4-byte lock.
    let elem = f.size / 4;
    let inner = if elem == 8 { 0 } else { 8 };
    let mut total = 0u64;
    for i in [0u64, 1, 3] {
        let v = km.u64(mm.wrapping_add(f.offset + i * elem + inner))? as i64;
        total += v.max(0) as u64;
    }
    Ok(total)
}

/// The frame's processes from the walked `tasks` (their command lines and RSS read from
/// their own address spaces), with errors met along the way (the feature goes on past
/// them).
pub fn processes(k: &Kernel, km: &Kmem<'_>, tasks: &[Task]) -> (Vec<Process>, Vec<Error>) {
    processes_with(k, km, tasks, &Bounds::none())
}

/// As [`processes`], within `bounds`: command lines of at most [`Limits::cmdline`] bytes
/// on the budget, stopping at the deadline (the processes read before it kept).
pub fn processes_with(
    k: &Kernel,
    km: &Kmem<'_>,
    tasks: &[Task],
    bounds: &Bounds,
) -> (Vec<Process>, Vec<Error>) {
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Err(e) = bounds.deadline.check() {
            errors.push(e);
            break;
        }
        let kernel_thread = t.kernel_thread();
        let mut p = Process {
            pid: t.tgid,
            ppid: t.ppid,
            name: t.comm.clone(),
            uid: t.uid,
            state: Some(t.state.to_string()),
            start_time: Some(t.start_ticks),
            kernel_thread,
            ..Process::default()
        };
        if t.mm != 0 && !kernel_thread {
            match cmdline_with(k, km, t.mm, bounds.limits.cmdline, &bounds.budget) {
                Ok((c, cut)) => {
                    p.cmdline = c;
                    errors.extend(cut.map(|e| match e {
                        Error::TooLarge { size, limit, .. } => Error::TooLarge {
                            file: format!("process {} command line", t.tgid),
                            size,
                            limit,
                        },
                        e => e,
                    }));
                }
                Err(e @ Error::OverBudget { .. }) => {
                    errors.push(e);
                    break;
                }
                Err(e) => errors.push(bad(
                    format!("process {} cmdline", t.tgid),
                    t.mm,
                    e.to_string(),
                )),
            }
            match rss_pages(k, km, t.mm) {
                Ok(n) => p.rss = Some(n * 4096),
                Err(e) => errors.push(e),
            }
        } else {
            p.rss = Some(0);
        }
        out.push(p);
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::state_letter;

    #[test]
    fn state_letters_follow_proc() {
        assert_eq!(state_letter(0, 0), 'R');
        assert_eq!(state_letter(1, 0), 'S');
        assert_eq!(state_letter(2, 0), 'D');
        assert_eq!(state_letter(0x402, 0), 'I');
        assert_eq!(state_letter(0x80, 0x20), 'Z');
        assert_eq!(state_letter(4, 0), 'T');
    }
}
