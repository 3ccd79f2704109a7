//! The crate's one error type: every error names what was being read and where.

use std::path::PathBuf;

/// What went wrong reading a guest's bytes, with the file and offset or address.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The host failed to read or open a file.
    #[error("{}: I/O error at offset {offset:#x}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Where the read started.
        offset: u64,
        /// The host's error.
        source: std::io::Error,
    },
    /// A disk structure is malformed: a bad magic or checksum, a size out of range, a table
    /// pointing outside its file, a loop in a chain of tables.
    #[error("{source_name}: corrupt at offset {offset:#x}: {reason}")]
    Corrupt {
        /// The source (file, image, disk).
        source_name: String,
        /// Where the bad structure (or the bad field) lies.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The input uses a feature this crate does not read (an encrypted qcow2, an external
    /// data file, unknown incompatible feature bits, ...).
    #[error("{source_name}: unsupported at offset {offset:#x}: {feature}")]
    Unsupported {
        /// The source (file, image).
        source_name: String,
        /// Where the field that asks for the feature lies.
        offset: u64,
        /// The feature.
        feature: String,
    },
    /// A disk image format recognised by its magic but not read by this crate (VMDK, VHDX, ...).
    #[error("{}: unsupported image format: {format}", path.display())]
    UnsupportedFormat {
        /// The image file.
        path: PathBuf,
        /// The format its magic names.
        format: String,
    },
    /// A qcow2 backing chain cannot be followed: it loops, is too deep, or names a file that
    /// cannot be used.
    #[error("{}: backing chain: {reason}", path.display())]
    BackingChain {
        /// The image whose backing file is at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An image names a file (a qcow2 backing file, a VMDK extent) that the rule for named
    /// files does not let us open: outside the image's folder and every allowed folder, or
    /// a `json:` or protocol name. Nothing was read from it. See [`crate::ImageOptions`].
    #[error("{}: refused to open the {what} {name:?} it names: {rule}", image.display())]
    RefusedFile {
        /// The image that names the file.
        image: PathBuf,
        /// What the file is to the image (`backing file`, `extent`).
        what: &'static str,
        /// The name as the image stores it.
        name: String,
        /// The rule it breaks, and how to allow it when that is possible.
        rule: String,
    },
    /// A read reached past the end of a source.
    #[error("{source_name}: read of {len} bytes at offset {offset:#x} is past the end ({size:#x} bytes)")]
    OutOfBounds {
        /// The source (file, partition, image).
        source_name: String,
        /// Where the read started.
        offset: u64,
        /// How many bytes were asked for.
        len: usize,
        /// The size of the source.
        size: u64,
    },
    /// A memory dump is malformed, truncated or of a kind this crate does not read.
    #[error("{source_name}: bad memory dump at offset {offset:#x}: {reason}")]
    BadDump {
        /// The dump file (or `<memory>`).
        source_name: String,
        /// Where in the file the problem is.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A guest-physical read touched an address that no range of the source holds.
    #[error(
        "{source_name}: no guest-physical memory at {addr:#x} (read of {len} bytes at {start:#x})"
    )]
    PhysicalHole {
        /// The memory source (dump file, live RAM file).
        source_name: String,
        /// The first address that is missing.
        addr: u64,
        /// Where the read started.
        start: u64,
        /// How many bytes were asked for.
        len: usize,
    },
    /// A virtual address has no translation: a paging entry is not present.
    #[error("{source_name}: virtual address {vaddr:#x} is not mapped ({level} entry {entry:#x} at physical {entry_addr:#x} is not present)")]
    NotMapped {
        /// The physical memory source.
        source_name: String,
        /// The virtual address being translated.
        vaddr: u64,
        /// The paging level whose entry is not present (`PML5`, `PML4`, `PDPT`, `PD`, `PT`).
        level: &'static str,
        /// The entry's value.
        entry: u64,
        /// The entry's guest-physical address.
        entry_addr: u64,
    },
    /// A virtual address cannot be translated for another reason (non-canonical, reserved bits).
    #[error("{source_name}: cannot translate virtual address {vaddr:#x}: {reason}")]
    BadTranslation {
        /// The physical memory source.
        source_name: String,
        /// The virtual address being translated.
        vaddr: u64,
        /// Why.
        reason: String,
    },
    /// Reading guest memory through a virtual address failed in physical memory.
    #[error("virtual address {vaddr:#x} ({what}): {source}")]
    VirtualRead {
        /// The virtual address being read or translated.
        vaddr: u64,
        /// What was read: a paging level's entry or the data.
        what: &'static str,
        /// The physical read's error (names the source and the physical address).
        source: Box<Error>,
    },
    /// A running QEMU's guest RAM could not be attached to by its process id
    /// ([`crate::memory::MemoryDump::attach_qemu_pid`]).
    #[error("QEMU process {pid}: {problem}")]
    QemuAttach {
        /// The process id given.
        pid: u32,
        /// What was looked for and not found, or not allowed.
        problem: AttachProblem,
    },
    /// Live guest memory kept changing while it was read.
    #[error("{source_name}: guest memory at {addr:#x} changed in each of {tries} reads (live VM)")]
    TornRead {
        /// The live memory source.
        source_name: String,
        /// Where the read started.
        addr: u64,
        /// How many reads were tried.
        tries: u32,
    },
    /// An NBD server could not be reached, refused, failed a request or broke the
    /// protocol ([`crate::nbd::NbdClient`]).
    #[error("NBD server {server}: at offset {offset:#x}: {problem}")]
    Nbd {
        /// The export, as an NBD URI.
        server: String,
        /// The export offset of the request (0 during the handshake).
        offset: u64,
        /// What went wrong.
        problem: crate::nbd::NbdProblem,
    },
    /// A QEMU monitor (QMP) exchange failed, or QEMU refused a command
    /// ([`crate::qmp::QmpClient`], [`crate::qmp::Fleece`]).
    #[error("QMP {}: {problem}", socket.display())]
    Qmp {
        /// The QMP socket.
        socket: PathBuf,
        /// What went wrong.
        problem: crate::qmp::QmpProblem,
    },
    /// A qcow2 image changed (its header, L1 table or refcount table) while it was read:
    /// something (a running QEMU) writes it. What was read may mix two states.
    #[error("{source_name}: the image changed while it was read ({what}); it is in use by a writer (a running VM?): crawl it through a fleecing export (--qmp) or a snapshot")]
    ChangedWhileRead {
        /// The image.
        source_name: String,
        /// What changed.
        what: String,
    },
}

/// Why attaching to a QEMU process failed; each says what was looked for and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachProblem {
    /// No process has this id.
    #[error("no such process; pass the id of a running qemu-system-x86_64 (`pgrep -a qemu`)")]
    NoProcess,
    /// The process is not an x86 QEMU system emulator.
    #[error(
        "its executable {exe} is not an x86 QEMU system emulator (qemu-system-x86_64, \
         qemu-kvm); pass the id of the QEMU process that runs the guest (`pgrep -a qemu`)"
    )]
    NotQemu {
        /// `/proc/PID/exe`.
        exe: String,
    },
    /// The process's files could not be read: not the same user, or ptrace not allowed.
    #[error(
        "cannot read {}: {source}; reading another process's memory needs its user or \
         root, and ptrace permission (CAP_SYS_PTRACE, or kernel.yama.ptrace_scope 0 or 1 \
         with the reader as QEMU's parent); the guest is not stopped either way",
        path.display()
    )]
    Access {
        /// The file under `/proc/PID`.
        path: PathBuf,
        /// The host's error.
        source: std::io::Error,
    },
    /// No mapping of the process holds the guest's RAM (or several could).
    #[error(
        "no guest RAM found: looked for {looked_for}; found {found}. A guest whose RAM is \
         split over several backends (NUMA nodes, DIMMs) is not read; start it with one \
         memory backend, or give its RAM file with --memory"
    )]
    NoGuestRam {
        /// What was looked for (size, where the size came from, which mappings count).
        looked_for: String,
        /// What was found instead.
        found: String,
    },
    /// The machine type's guest-physical layout is not known.
    #[error(
        "machine type {machine:?}: its guest-physical RAM layout is not known (known: q35, \
         pc, pc-q35-*, pc-i440fx-*, microvm, isapc)"
    )]
    UnknownMachine {
        /// The `-machine` type.
        machine: String,
    },
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
