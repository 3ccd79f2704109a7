//! What a memory crawl found, as typed values, and the one place they meet a frame.
//!
//! [`super::crawl`] returns [`MemoryFacts`]: the running kernel and machine
//! ([`RunningOs`]), processes, connections and modules (each `None` when its section was not
//! crawled), the errors met and the time each step took. [`MemoryFacts::merge_into`] writes
//! them into a frame that may already hold what the disks said, by fixed rules: the running
//! kernel and the kernel's host name win over the disk's; the disk's architecture and
//! os-release fields stay.

use origami_frame::{Connection, Frame, KernelLogRecord, Module, Mount, Process};

use super::health::Health;

use crate::error::Error;

/// The running kernel and machine, as the kernel's memory says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunningOs {
    /// The running kernel's release (`init_uts_ns`, else the banner's).
    pub release: String,
    /// The `Linux version ...` banner.
    pub banner: String,
    /// The machine (`x86_64`), when `init_uts_ns` was read.
    pub arch: Option<String>,
    /// The host name the kernel holds (the initial UTS namespace's).
    pub hostname: Option<String>,
    /// `MemTotal`, KiB.
    pub mem_total_kb: Option<u64>,
    /// `MemFree`, KiB.
    pub mem_free_kb: Option<u64>,
    /// Seconds since boot, to the hundredth.
    pub uptime_s: Option<f64>,
    /// Boot time, RFC 3339 (the wall clock minus the uptime, whole seconds).
    pub boot_time: Option<String>,
}

/// An error a memory crawl met, with the frame feature it belongs to (`kernel`, `os`,
/// `process`, `connection`, `module`, `mount`, `kernel_log`).
#[derive(Debug)]
pub struct FeatureFailure {
    /// The feature.
    pub feature: &'static str,
    /// What went wrong.
    pub error: Error,
}

/// What a memory crawl found.
#[derive(Debug, Default)]
pub struct MemoryFacts {
    /// The running kernel and machine (`None` when the `os` section was not crawled or no
    /// kernel was found).
    pub os: Option<RunningOs>,
    /// Processes, one per thread group (`None` when the section was not crawled or the
    /// task list could not be read at all).
    pub process: Option<Vec<Process>>,
    /// TCP and UDP sockets.
    pub connection: Option<Vec<Connection>>,
    /// Loaded kernel modules.
    pub module: Option<Vec<Module>>,
    /// Mounted file systems of the initial mount namespace.
    pub mount: Option<Vec<Mount>>,
    /// The printk ring buffer's records, one item per line.
    pub kernel_log: Option<Vec<KernelLogRecord>>,
    /// Taint, oops and panic state (with the `os` section).
    pub health: Option<Health>,
    /// The errors met; a section with errors may still hold what was read before them.
    pub errors: Vec<FeatureFailure>,
    /// How long each step took, in milliseconds (`kernel`, `kernel.*`, `os.memory`,
    /// `process`, `connection`, `module`).
    pub timings: Vec<(String, f64)>,
}

impl MemoryFacts {
    /// Records an error of `feature` (a section's overrun of its time once, however many
    /// of its steps met it).
    pub fn fail(&mut self, feature: &'static str, error: Error) {
        if matches!(error, Error::OverTime { .. })
            && self
                .errors
                .iter()
                .any(|f| f.feature == feature && matches!(f.error, Error::OverTime { .. }))
        {
            return;
        }
        self.errors.push(FeatureFailure { feature, error });
    }

    /// What a feature read, its errors recorded: the items of `Ok((items, errors))` (a
    /// feature that went on past some errors), `None` after recording `Err(e)`.
    pub fn keep<T>(
        &mut self,
        feature: &'static str,
        read: std::result::Result<(T, Vec<Error>), Error>,
    ) -> Option<T> {
        match read {
            Ok((items, errors)) => {
                for e in errors {
                    self.fail(feature, e);
                }
                Some(items)
            }
            Err(e) => {
                self.fail(feature, e);
                None
            }
        }
    }

    /// Writes the facts into `frame`. The running kernel's release and host name replace
    /// what the disk said (the host name also becomes `_frame.hostname`), as does the boot
    /// time; the disk's architecture stays when it has one; `kernel_banner`,
    /// `mem_total_kb`, `mem_free_kb` and `uptime_s` go into `os`'s extra fields unless the
    /// frame has them; each crawled section replaces the frame's; errors and timings are
    /// added.
    pub fn merge_into(self, frame: &mut Frame) {
        if let Some(os) = self.os {
            frame.os.kernel = Some(os.release);
            if os.hostname.is_some() {
                frame.os.hostname = os.hostname;
            }
            if frame.os.arch.is_none() {
                frame.os.arch = os.arch;
            }
            if os.boot_time.is_some() {
                frame.os.boot_time = os.boot_time;
            }
            let extra = &mut frame.os.extra;
            extra
                .entry("kernel_banner")
                .or_insert_with(|| os.banner.into());
            if let Some(kb) = os.mem_total_kb {
                extra.entry("mem_total_kb").or_insert_with(|| kb.into());
            }
            if let Some(kb) = os.mem_free_kb {
                extra.entry("mem_free_kb").or_insert_with(|| kb.into());
            }
            if let Some(s) = os.uptime_s {
                extra.entry("uptime_s").or_insert_with(|| s.into());
            }
            if frame.os.hostname.is_some() {
                frame.meta.hostname = frame.os.hostname.clone();
            }
        }
        if let Some(p) = self.process {
            frame.process = p;
        }
        if let Some(c) = self.connection {
            frame.connection = c;
        }
        if let Some(m) = self.module {
            frame.module = m;
        }
        if let Some(m) = self.mount {
            frame.mount = m;
        }
        if let Some(k) = self.kernel_log {
            frame.kernel_log = k;
        }
        if let Some(h) = self.health {
            frame.os.tainted = Some(h.tainted);
            frame.os.oopsed = Some(h.oopsed);
            frame.os.oops_in_progress = Some(h.oops_in_progress);
            frame.os.panicked = Some(h.panicked());
            frame.os.panic_cpu = h.panic_cpu;
            frame.os.taint_flags = Some(h.taint_flags);
        }
        for f in self.errors {
            frame.record_error(f.feature, f.error.to_string());
        }
        for (name, ms) in self.timings {
            frame.meta.timings.insert(name, ms);
        }
    }
}
