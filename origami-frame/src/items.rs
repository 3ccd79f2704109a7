//! The items of a frame's sections, one struct per section.
//!
//! Field names follow osquery and agentless-system-crawler so that people recognise them.
//! Every struct keeps the fields it does not know in `extra`, so that a frame written by a
//! newer crawler survives a round trip through an older one.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Fields an item carries that this version of the model does not name.
pub type Extra = Map<String, Value>;

/// The sections of a frame that hold items, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    /// The operating system (one item a frame).
    Os,
    /// File inventory: files, directories, symlinks, devices.
    File,
    /// Text content of configuration files.
    Config,
    /// Installed packages.
    Package,
    /// User accounts.
    User,
    /// Running tasks.
    Process,
    /// Sockets.
    Connection,
    /// Loaded kernel modules.
    Module,
    /// Mounted file systems (from memory: the initial mount namespace).
    Mount,
    /// Kernel log records (from memory: the printk ring buffer).
    #[serde(rename = "kernel_log")]
    KernelLog,
    /// Services (from disk: Windows services and drivers of the current control set).
    Service,
}

impl Section {
    /// Every section, in frame order.
    pub const ALL: [Section; 11] = [
        Section::Os,
        Section::File,
        Section::Config,
        Section::Package,
        Section::User,
        Section::Process,
        Section::Connection,
        Section::Module,
        Section::Mount,
        Section::KernelLog,
        Section::Service,
    ];

    /// The section's name as it appears in a frame's JSON (`"process"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Section::Os => "os",
            Section::File => "file",
            Section::Config => "config",
            Section::Package => "package",
            Section::User => "user",
            Section::Process => "process",
            Section::Connection => "connection",
            Section::Module => "module",
            Section::Mount => "mount",
            Section::KernelLog => "kernel_log",
            Section::Service => "service",
        }
    }

    /// The section named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl std::fmt::Display for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An item of a frame section: it has a key that is stable across frames of one system,
/// so that two frames can be diffed item by item.
pub trait Item: Clone + PartialEq + std::fmt::Debug + Serialize {
    /// The section this kind of item lives in.
    const SECTION: Section;
    /// The item's key, unique within its section of one frame.
    fn key(&self) -> String;
}

/// The operating system of the machine (`os` section; one per frame).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Os {
    /// `NAME` from os-release, e.g. `Debian GNU/Linux`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `VERSION_ID` from os-release, e.g. `12`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `ID` from os-release, e.g. `debian`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `ID_LIKE` from os-release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_like: Option<String>,
    /// `PRETTY_NAME` from os-release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
    /// The running kernel release (from memory) or the installed one(s) (from disk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// CPU architecture, e.g. `x86_64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// The guest's host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Boot time, RFC 3339, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_time: Option<String>,
    /// The running kernel's taint mask, the number `/proc/sys/kernel/tainted` shows (from
    /// memory); 0 for an untainted kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tainted: Option<u64>,
    /// The set taint bits as the kernel's own letters, lowest bit first (`P` proprietary
    /// module, `D` died in an oops, `W` warning, `O` out-of-tree module, `E` unsigned
    /// module, ...; `?` for a bit this version does not name); empty when untainted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taint_flags: Option<String>,
    /// True when the kernel has oopsed since boot (taint bit `D`, `TAINT_DIE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oopsed: Option<bool>,
    /// True when an oops is being handled right now (`oops_in_progress` is non-zero; it stays
    /// so in a kernel that panicked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oops_in_progress: Option<bool>,
    /// True when the kernel has panicked (`panic_cpu` is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panicked: Option<bool>,
    /// The CPU that panicked, when the kernel has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panic_cpu: Option<u32>,
    /// Fields this version does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Os {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        *self == Os::default()
    }
}

impl Item for Os {
    const SECTION: Section = Section::Os;
    fn key(&self) -> String {
        "os".to_string()
    }
}

/// The type of a file-system entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    /// A regular file.
    #[default]
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
}

impl FileType {
    /// The name used in frames (`file`, `dir`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FileType::File => "file",
            FileType::Dir => "dir",
            FileType::Symlink => "symlink",
            FileType::Char => "char",
            FileType::Block => "block",
            FileType::Fifo => "fifo",
            FileType::Socket => "socket",
        }
    }
}

/// One entry of the guest's file tree (`file` section; key: `path`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileItem {
    /// Absolute path inside the guest (lossy UTF-8; see `path_hex` in `extra` for others).
    pub path: String,
    /// Entry type.
    #[serde(rename = "type")]
    pub file_type: FileType,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// Target of a symlink, as stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    /// Hex sha256 of a regular file's content, when hashing was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Fields this version does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Item for FileItem {
    const SECTION: Section = Section::File;
    fn key(&self) -> String {
        self.path.clone()
    }
}

/// The text content of a configuration file (`config` section; key: `path`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigItem {
    /// Absolute path inside the guest.
    pub path: String,
    /// The file's text.
    pub content: String,
    /// True when the content was cut at the size bound.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Fields this version does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Item for ConfigItem {
    const SECTION: Section = Section::Config;
    fn key(&self) -> String {
        self.path.clone()
    }
}

/// An installed package (`package` section; key: `name:arch`, or `name` without an arch).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Version string as the package manager writes it.
    pub version: String,
    /// Architecture (`amd64`, `all`, ...).
    pub arch: String,
    /// Source package, when it differs or is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Installed size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The package manager: `dpkg`, `rpm`, `apk`.
    pub manager: String,
    /// The manager's status line, e.g. `install ok installed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Fields this version does not name. The package readers of origami-introspect add:
    /// dpkg `source_version`; rpm `epoch` (a number), `release`, `source_rpm` (the source
    /// rpm's file name), `license`, `vendor` (rpm's `version` is `[epoch:]version-release`);
    /// apk `license`, `maintainer`.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Item for Package {
    const SECTION: Section = Section::Package;
    fn key(&self) -> String {
        if self.arch.is_empty() {
            self.name.clone()
        } else {
            format!("{}:{}", self.name, self.arch)
        }
    }
}

/// A user account (`user` section; key: `name`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// GECOS / description field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
    /// Names of the groups the user belongs to (primary first, then supplementary).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Fields this version does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Item for User {
    const SECTION: Section = Section::User;
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// A task (`process` section; key: `pid`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Process {
    /// Process id (the kernel's tgid for the thread-group leader).
    pub pid: u32,
    /// Parent's process id.
    pub ppid: u32,
    /// Short name (`comm`, at most 15 bytes in Linux).
    pub name: String,
    /// Arguments, as the process laid them out.
    pub cmdline: Vec<String>,
    /// Real user id.
    pub uid: u32,
    /// State letter as in `/proc/PID/stat` (`R`, `S`, `D`, `Z`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Start time, clock ticks after boot (as `/proc/PID/stat` field 22).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// Resident set size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss: Option<u64>,
    /// True for kernel threads (no user address space).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub kernel_thread: bool,
    /// Fields this version does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Item for Process {
    const SECTION: Section = Section::Process;
    fn key(&self) -> String {
        self.pid.to_string()
    }
}

/// A socket (`connection` section; key: `protocol/local_address:local_port/remote_address:remote_port`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Connection {
    /// `tcp` or `udp`.
    pub protocol: String,
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// Local address, in its usual text form.
    pub local_address: String,
    /// Local port.
    pub local_port: u16,
    /// Remote address (`0.0.0.0` / `::` when unconnected).
    pub remote_address: String,
    /// Remote port (0 when unconnected).
    pub remote_port: u16,
    /// TCP state name (`LISTEN`, `ESTABLISHED`, ...); `UNCONN`/`ESTABLISHED` style for UDP.
    pub state: String,
    /// Owning process, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Fields this version does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Item for Connection {
    const SECTION: Section = Section::Connection;
    fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.protocol,
            join_host_port(&self.local_address, self.local_port),
            join_host_port(&self.remote_address, self.remote_port)
        )
    }
}

/// An address and a port as one endpoint, the way connection keys write them:
/// `10.0.0.5:443`, and an IPv6 address in brackets, `[::1]:22` (any address with a `:`).
///
/// ```
/// use origami_frame::join_host_port;
/// assert_eq!(join_host_port("10.0.0.5", 443), "10.0.0.5:443");
/// assert_eq!(join_host_port("::1", 22), "[::1]:22");
/// ```
pub fn join_host_port(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// A loaded kernel module (`module` section; key: `name`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Module {
    /// Module name.
    pub name: String,
    /// Size of the module's core in bytes.
    pub size: u64,
    /// `Live`, `Loading`, `Unloading`.
    pub state: String,
    /// Fields this version does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Item for Module {
    const SECTION: Section = Section::Module;
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// A mounted file system (`mount` section; key: `path`, or `path#N` for the N-th file
/// system mounted over the same path).
///
/// A path can carry several mounts at once: a second file system mounted on `/mnt` hides
/// the first without unmounting it, and `/proc/mounts` lists both. Such mounts are told
/// apart by [`Mount::stack`], their position in mount order among the mounts at that path,
/// rather than by the kernel's mount id: ids are handed out anew at every boot and remount,
/// so keys built on them would make every reboot look like a new set of mounts, while the
/// stack position is as stable as the mount order. A path that itself ends in `#N` could in
/// principle share a key with an over-mount; the diff then keeps the later item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Mount {
    /// The device or source, as `/proc/mounts` shows it (`/dev/vda1`, `tmpfs`, `none`).
    pub device: String,
    /// Where it is mounted, an absolute path as seen from the guest's init process.
    pub path: String,
    /// The file-system type (`ext4`, `tmpfs`, `fuse.sshfs`).
    #[serde(rename = "type")]
    pub fs_type: String,
    /// Mount options, comma-separated as in `/proc/mounts` (`rw,nosuid,relatime,size=65536k`).
    pub options: String,
    /// The kernel's mount id (the first column of `/proc/PID/mountinfo`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_id: Option<u32>,
    /// Position among the mounts at the same path, in mount order: 0 for the first, 1 for a
    /// file system mounted over it, and so on.
    #[serde(skip_serializing_if = "is_zero")]
    pub stack: u32,
    /// Fields this version does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Item for Mount {
    const SECTION: Section = Section::Mount;
    fn key(&self) -> String {
        if self.stack == 0 {
            self.path.clone()
        } else {
            format!("{}#{}", self.path, self.stack)
        }
    }
}

/// One line of the kernel log (`kernel_log` section; key: `seq`, or `seq.line` for the
/// second and later lines of a record).
///
/// Nearly every printk record is one line. A record whose text holds newlines is printed by
/// `dmesg` (the kernel's syslog interface) as several lines, each behind the record's time
/// stamp; the frame follows `dmesg` and holds one item per line, all with the record's
/// sequence number, time, level and facility, told apart by [`KernelLogRecord::line`].
/// Each message is then one line, as people search for it and as `dmesg` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KernelLogRecord {
    /// The record's sequence number (counts every record since boot, including those the
    /// ring buffer has since dropped).
    pub seq: u64,
    /// The line's number within its record: 0 for the first (and usually only) line.
    #[serde(skip_serializing_if = "is_zero")]
    pub line: u32,
    /// When it was logged: nanoseconds since boot on the kernel's log clock (what `dmesg`
    /// shows as `[seconds.micros]`).
    pub time: u64,
    /// The syslog level: 0 (`emerg`) to 7 (`debug`).
    pub level: u8,
    /// The syslog facility: 0 (`kern`) for the kernel's own messages, 1 (`user`) for lines
    /// written to `/dev/kmsg`, ...
    pub facility: u8,
    /// The line's text, without its newline.
    pub message: String,
    /// Fields this version does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Item for KernelLogRecord {
    const SECTION: Section = Section::KernelLog;
    fn key(&self) -> String {
        if self.line == 0 {
            self.seq.to_string()
        } else {
            format!("{}.{}", self.seq, self.line)
        }
    }
}

/// A service (`service` section; key: `name`): on Windows, a subkey of the current control
/// set's `Services` key (services and drivers alike), named as osquery's `services` table
/// names its columns where one fits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Service {
    /// The service's key name (`Spooler`).
    pub name: String,
    /// The name shown to people (`Print Spooler`), when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The command or driver image it runs (`ImagePath`, as stored).
    pub path: String,
    /// `boot`, `system`, `auto`, `demand` or `disabled` (the `Start` value; its number when
    /// unknown).
    pub start_type: String,
    /// The account it runs as (`ObjectName`), when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `kernel_driver`, `fs_driver`, `own_process`, `share_process`, ... (the `Type` value).
    #[serde(rename = "type")]
    pub service_type: String,
    /// The running state, when known (from memory); never from disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Fields this version does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Item for Service {
    const SECTION: Section = Section::Service;
    fn key(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_at_one_path_have_distinct_keys() {
        let under = Mount {
            device: "tmpfs".into(),
            path: "/mnt".into(),
            fs_type: "tmpfs".into(),
            ..Default::default()
        };
        let over = Mount {
            device: "/dev/vdb".into(),
            stack: 1,
            ..under.clone()
        };
        assert_eq!(under.key(), "/mnt");
        assert_eq!(over.key(), "/mnt#1");
        // The stack position is written only when it is not 0.
        let v = serde_json::to_value(&under).unwrap();
        assert!(v.get("stack").is_none() && v["type"] == "tmpfs");
        assert_eq!(serde_json::to_value(&over).unwrap()["stack"], 1);
    }

    #[test]
    fn kernel_log_records_are_keyed_by_sequence() {
        let r = KernelLogRecord {
            seq: 42,
            time: 1_500_000_000,
            level: 6,
            message: "hello".into(),
            ..Default::default()
        };
        assert_eq!(r.key(), "42");
        let back: KernelLogRecord =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let second = KernelLogRecord { line: 1, ..r };
        assert_eq!(second.key(), "42.1");
        assert_eq!(serde_json::to_value(&second).unwrap()["line"], 1);
    }

    #[test]
    fn connection_keys_bracket_ipv6() {
        let c = Connection {
            protocol: "tcp".into(),
            local_address: "::1".into(),
            local_port: 22,
            remote_address: "10.0.0.1".into(),
            remote_port: 5000,
            ..Default::default()
        };
        assert_eq!(c.key(), "tcp/[::1]:22/10.0.0.1:5000");
    }

    #[test]
    fn section_names_round_trip() {
        for s in Section::ALL {
            assert_eq!(Section::from_name(s.name()), Some(s));
        }
        assert_eq!(Section::from_name("nope"), None);
        assert_eq!(
            serde_json::to_value(Section::KernelLog).unwrap(),
            Section::KernelLog.name()
        );
    }
}
