//! NTFS, read-only, through the `ntfs` crate (Colin Finck), guarded.
//!
//! The crate reads through `Read + Seek`; every call here gets a fresh [`BudgetIo`] over the
//! volume: a read-ahead stream whose total reads are bounded, so that a hostile volume (an
//! index B-tree whose subnodes point back at their parents, an MFT record that names itself
//! in its attribute list) ends with [`Error::LimitExceeded`] instead of looping. Before the
//! crate sees anything, [`check_boot_sector`] validates the boot sector (sector, cluster and
//! record sizes, the MFT's place inside the volume), and every call into the crate runs
//! under origami's guard (`catch_unwind`).
//!
//! What is shown: the Win32 (long) names, case-insensitive look-ups as Windows does them,
//! the unnamed `$DATA` stream as the file's content, and per entry its creation,
//! modification and access times, its attribute flags, hard-link count, alternate data
//! streams and reparse tag ([`NtfsMeta`]). A reparse point (junction, symlink, deduplicated
//! file) is reported and never followed: a junction's target may lie on another volume.
//! A file whose unnamed `$DATA` is LZNT1-compressed (attribute flag `0x0001`, `+c` in its
//! attribute letters) is read through its compression units ([`lznt1`]): a unit whose
//! clusters are all allocated is stored as it is, one with none is zeros, one with some is
//! LZNT1 data decompressing to the whole unit. One that is EFS-encrypted (`0x4000`, `+e`)
//! is listed with its size, but reading its content is an error naming the flag: the
//! `ntfs` crate would return the stored (encrypted) clusters, and a hash of those would be
//! wrong.
//! The file-system metadata files of the root (`$MFT`, `$LogFile`, ..., `$Extend`: MFT
//! records 0 to 15) are not listed; they are the volume's own structures, not guest files.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use ntfs::attribute_value::NtfsAttributeValue;
use ntfs::structured_values::{NtfsFileAttributeFlags, NtfsFileNamespace};
use ntfs::{Ntfs, NtfsAttribute, NtfsAttributeFlags, NtfsAttributeType, NtfsFile, NtfsReadSeek};
use origami_core::ReadAt;
use origami_frame::FileType;

mod compressed;
pub mod lznt1;

use super::{guarded, path::display_path, DirEntry, FileSystem, FsInfo, FsKind, Stat};
use crate::error::{Error, Result};
use origami_core::bytes::{le16, le32};

const FS: &str = "ntfs";
/// The MFT record of the root directory.
const ROOT: u64 = 5;
/// MFT records below this are the volume's metadata files.
const FIRST_USER_RECORD: u64 = 16;
/// The most attributes read from one file record (with its attribute list).
const MAX_ATTRIBUTES: usize = 4096;
/// The most bytes one metadata call (a look-up, a listing, a stat) may read from the volume.
pub const METADATA_READ_BUDGET: u64 = 64 << 20;
/// Alternate data streams listed per file.
const MAX_STREAMS: usize = 256;
/// The largest compression unit read (Windows and ntfs-3g write 16 clusters of at most
/// 4 KiB: 64 KiB).
const MAX_COMPRESSION_UNIT: u64 = 1 << 20;
/// The most data runs read from one compressed attribute.
const MAX_RUNS: usize = 1 << 16;

/// True when `boot` (the first 512 bytes) carries the NTFS OEM id.
pub(crate) fn looks_like_ntfs(boot: &[u8; 512]) -> bool {
    &boot[3..11] == b"NTFS    " && boot[510] == 0x55 && boot[511] == 0xAA
}

/// What the boot sector says, checked: sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootSector {
    /// Bytes per sector (512 to 4096, a power of two).
    pub sector_size: u32,
    /// Bytes per cluster (a sector to 2 MiB).
    pub cluster_size: u32,
    /// Bytes per MFT record (1024 to 4096).
    pub record_size: u32,
    /// Bytes per index record (1024 to 4096... 64 KiB).
    pub index_record_size: u32,
    /// The volume's size.
    pub volume_size: u64,
    /// Where the MFT starts, in bytes from the volume's start.
    pub mft_offset: u64,
    /// The volume serial number.
    pub serial: u64,
}

fn record_size(info: i8, cluster: u32) -> Option<u32> {
    if info < 0 {
        let exp = u32::from(info.unsigned_abs());
        (exp < 31).then(|| 1u32 << exp)
    } else {
        u32::try_from(info).ok()?.checked_mul(cluster)
    }
}

/// Validates an NTFS boot sector against the size of the volume holding it (`len`).
pub fn check_boot_sector(boot: &[u8; 512], len: u64) -> std::result::Result<BootSector, String> {
    if !looks_like_ntfs(boot) {
        return Err("no NTFS boot sector (OEM id or 0x55AA missing)".into());
    }
    let sector_size = u32::from(le16(boot, 11));
    if !(512..=4096).contains(&sector_size) || !sector_size.is_power_of_two() {
        return Err(format!("sector size {sector_size} out of 512..=4096"));
    }
    let spc = boot[13];
    // Sectors per cluster above 128 are stored as a negative exponent.
    let sectors_per_cluster: u32 = if spc <= 128 {
        u32::from(spc)
    } else {
        1 << (256 - u32::from(spc)).min(31)
    };
    if sectors_per_cluster == 0 || !sectors_per_cluster.is_power_of_two() {
        return Err(format!("sectors per cluster {spc} invalid"));
    }
    let cluster_size = sector_size.saturating_mul(sectors_per_cluster);
    if cluster_size > 2 << 20 {
        return Err(format!("cluster size {cluster_size} above 2 MiB"));
    }
    let record = record_size(boot[0x40] as i8, cluster_size)
        .filter(|r| (1024..=4096).contains(r) && r.is_power_of_two())
        .ok_or_else(|| format!("MFT record size byte {:#x} invalid", boot[0x40]))?;
    let index = record_size(boot[0x44] as i8, cluster_size)
        .filter(|r| (512..=65536).contains(r) && r.is_power_of_two())
        .ok_or_else(|| format!("index record size byte {:#x} invalid", boot[0x44]))?;
    let total_sectors = u64::from(le32(boot, 0x28)) | (u64::from(le32(boot, 0x2C)) << 32);
    let volume_size = total_sectors
        .checked_mul(u64::from(sector_size))
        .filter(|s| *s <= len)
        .ok_or_else(|| format!("{total_sectors} sectors do not fit in {len} bytes"))?;
    let mft_lcn = u64::from(le32(boot, 0x30)) | (u64::from(le32(boot, 0x34)) << 32);
    let mft_offset = mft_lcn
        .checked_mul(u64::from(cluster_size))
        .filter(|o| *o > 0 && o.saturating_add(u64::from(record) * 16) <= volume_size)
        .ok_or_else(|| format!("MFT at cluster {mft_lcn} lies outside the volume"))?;
    let serial = u64::from(le32(boot, 0x48)) | (u64::from(le32(boot, 0x4C)) << 32);
    Ok(BootSector {
        sector_size,
        cluster_size,
        record_size: record,
        index_record_size: index,
        volume_size,
        mft_offset,
        serial,
    })
}

/// A seekable stream over a volume with a small read-ahead and a bound on the bytes it
/// reads in all: the last line against loops inside the NTFS library.
pub struct BudgetIo<'a> {
    inner: &'a dyn ReadAt,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
    budget: u64,
}

impl<'a> BudgetIo<'a> {
    /// A stream over `inner` that reads at most `budget` bytes from it.
    pub fn new(inner: &'a dyn ReadAt, budget: u64) -> BudgetIo<'a> {
        BudgetIo {
            inner,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
            budget,
        }
    }

    fn spend(&mut self, n: u64) -> io::Result<()> {
        if n > self.budget {
            return Err(io::Error::other(BudgetExceeded));
        }
        self.budget -= n;
        Ok(())
    }
}

/// The error a [`BudgetIo`] gives when its budget is spent.
#[derive(Debug)]
struct BudgetExceeded;

impl std::fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("read budget of the NTFS call spent (a loop in the volume's metadata?)")
    }
}

impl std::error::Error for BudgetExceeded {}

impl Read for BudgetIo<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        const AHEAD: u64 = 16 << 10;
        let len = self.inner.len();
        if self.pos >= len || out.is_empty() {
            return Ok(0);
        }
        let want = (out.len() as u64).min(len - self.pos) as usize;
        let in_buf = self.pos >= self.buf_start
            && self.pos + want as u64 <= self.buf_start + self.buf.len() as u64;
        if !in_buf {
            if want as u64 >= AHEAD {
                self.spend(want as u64)?;
                self.inner
                    .read_at(self.pos, &mut out[..want])
                    .map_err(io::Error::other)?;
                self.pos += want as u64;
                return Ok(want);
            }
            let start = self.pos - self.pos % 512;
            let n = AHEAD.min(len - start) as usize;
            self.spend(n as u64)?;
            self.buf.resize(n, 0);
            self.inner
                .read_at(start, &mut self.buf)
                .map_err(io::Error::other)?;
            self.buf_start = start;
        }
        let at = (self.pos - self.buf_start) as usize;
        let n = want.min(self.buf.len() - at);
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BudgetIo<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let bad = || io::Error::new(io::ErrorKind::InvalidInput, "seek out of range");
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.inner.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(bad)?;
        self.pos = pos;
        Ok(pos)
    }
}

/// What NTFS keeps of an entry beyond [`Stat`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NtfsMeta {
    /// Creation time, seconds since the Unix epoch.
    pub created: i64,
    /// Last access time, seconds since the Unix epoch.
    pub accessed: i64,
    /// The file attribute flags (`FILE_ATTRIBUTE_*`).
    pub attributes: u32,
    /// The names pointing at this MFT record (hard links), as the record counts them.
    pub hard_links: u16,
    /// The reparse tag, for a reparse point (junction `0xA0000003`, symlink `0xA000000C`).
    pub reparse_tag: Option<u32>,
    /// Alternate data streams: name and size.
    pub streams: Vec<(String, u64)>,
}

impl NtfsMeta {
    /// The attribute flags as letters (`+r+h+s+a`), as `attrib` shows them.
    pub fn attribute_letters(&self) -> String {
        let mut s = String::new();
        for (bit, letter) in [
            (0x1, 'r'),
            (0x2, 'h'),
            (0x4, 's'),
            (0x20, 'a'),
            (0x200, 'p'),
            (0x400, 'l'),
            (0x800, 'c'),
            (0x4000, 'e'),
        ] {
            if self.attributes & bit != 0 {
                s.push('+');
                s.push(letter);
            }
        }
        s
    }
}

/// An NTFS volume, read-only.
pub struct NtfsFs {
    source: Arc<dyn ReadAt>,
    ntfs: Ntfs,
    boot: BootSector,
    info: FsInfo,
}

impl std::fmt::Debug for NtfsFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtfsFs")
            .field("info", &self.info)
            .field("boot", &self.boot)
            .finish()
    }
}

/// Seconds since the Unix epoch of an NTFS time (100 ns ticks since 1601).
fn unix(t: ntfs::NtfsTime) -> i64 {
    (t.nt_timestamp() / 10_000_000) as i64 - 11_644_473_600
}

fn io_error_is_budget(e: &ntfs::NtfsError) -> bool {
    matches!(e, ntfs::NtfsError::Io(io) if io.get_ref().is_some_and(|i| i.is::<BudgetExceeded>()))
}

impl NtfsFs {
    /// Opens the NTFS volume on `source` (the whole partition).
    pub fn open(source: Arc<dyn ReadAt>) -> Result<NtfsFs> {
        let name = source.name();
        let mut boot = [0u8; 512];
        if source.len() < 512 {
            return Err(Error::FileSystem {
                source_name: name,
                fs: FS,
                path: None,
                what: "shorter than a boot sector".into(),
            });
        }
        source.read_at(0, &mut boot)?;
        let checked = check_boot_sector(&boot, source.len()).map_err(|what| Error::FileSystem {
            source_name: name.clone(),
            fs: FS,
            path: None,
            what: format!("boot sector at offset 0: {what}"),
        })?;
        let ntfs = guarded(&name, FS, b"/", || {
            let mut io = BudgetIo::new(&*source, METADATA_READ_BUDGET);
            let mut ntfs = Ntfs::new(&mut io).map_err(|e| lib_err(&name, b"/", e))?;
            ntfs.read_upcase_table(&mut io)
                .map_err(|e| lib_err(&name, b"/", e))?;
            Ok(ntfs)
        })?;
        let mut fs = NtfsFs {
            source,
            ntfs,
            boot: checked,
            info: FsInfo {
                kind: FsKind::Ntfs,
                // As blkid prints an NTFS UUID: the 64-bit serial in hex, upper case.
                uuid: Some(format!("{:016X}", checked.serial)),
                label: None,
                source: name,
            },
        };
        fs.info.label = fs.volume_label();
        // The root must be a readable directory.
        fs.read_dir(b"/", 1 << 20)?;
        Ok(fs)
    }

    /// The validated boot sector.
    pub fn boot_sector(&self) -> BootSector {
        self.boot
    }

    fn volume_label(&self) -> Option<String> {
        guarded(&self.info.source, FS, b"/", || {
            let mut io = self.io();
            Ok(match self.ntfs.volume_name(&mut io) {
                Some(Ok(n)) => Some(n.name().to_string_lossy()),
                _ => None,
            })
        })
        .ok()
        .flatten()
        .filter(|l| !l.is_empty())
    }

    fn io(&self) -> BudgetIo<'_> {
        BudgetIo::new(&*self.source, METADATA_READ_BUDGET)
    }

    fn err(&self, path: &[u8], e: ntfs::NtfsError) -> Error {
        lib_err(&self.info.source, path, e)
    }

    fn file<'n>(&'n self, io: &mut BudgetIo<'_>, rec: u64, path: &[u8]) -> Result<NtfsFile<'n>> {
        self.ntfs.file(io, rec).map_err(|e| self.err(path, e))
    }

    /// The entries of directory record `rec`: (name, record number), Win32/POSIX names
    /// only, the root's metadata files left out.
    fn entries(&self, rec: u64, path: &[u8], limit: usize) -> Result<Vec<(String, u64)>> {
        let mut io = self.io();
        let dir = self.file(&mut io, rec, path)?;
        if !dir.is_directory() {
            return Err(Error::NotADirectory {
                path: display_path(path),
            });
        }
        let index = dir
            .directory_index(&mut io)
            .map_err(|e| self.err(path, e))?;
        let mut iter = index.entries();
        let mut out = Vec::new();
        while let Some(entry) = iter.next(&mut io) {
            let entry = entry.map_err(|e| self.err(path, e))?;
            let Some(key) = entry.key() else { continue };
            let key = key.map_err(|e| self.err(path, e))?;
            if key.namespace() == NtfsFileNamespace::Dos {
                continue;
            }
            let child = entry.file_reference().file_record_number();
            if child == rec || (rec == ROOT && child < FIRST_USER_RECORD) {
                continue;
            }
            if out.len() >= limit {
                return Err(Error::LimitExceeded {
                    what: format!("entries of directory {}", display_path(path)),
                    limit: limit as u64,
                });
            }
            out.push((key.name().to_string_lossy(), child));
        }
        Ok(out)
    }

    /// The MFT record of `path`, looked up from the root, ignoring case as Windows does.
    fn resolve(&self, path: &[u8]) -> Result<u64> {
        let text = std::str::from_utf8(path).map_err(|_| Error::NotFound {
            path: display_path(path),
        })?;
        let mut rec = ROOT;
        for part in text.split('/').filter(|c| !c.is_empty()) {
            let entries = self.entries(rec, path, 1 << 20)?;
            rec = entries
                .iter()
                .find(|(n, _)| n == part)
                .or_else(|| {
                    let lower = part.to_lowercase();
                    entries.iter().find(|(n, _)| n.to_lowercase() == lower)
                })
                .map(|(_, r)| *r)
                .ok_or_else(|| Error::NotFound {
                    path: display_path(path),
                })?;
        }
        Ok(rec)
    }

    /// The metadata of record `rec`.
    fn stat_record(&self, rec: u64, path: &[u8]) -> Result<Stat> {
        let mut io = self.io();
        let file = self.file(&mut io, rec, path)?;
        let dir = file.is_directory();
        let std_info = file.info().map_err(|e| self.err(path, e))?;
        let mut meta = NtfsMeta {
            created: unix(std_info.creation_time()),
            accessed: unix(std_info.access_time()),
            attributes: std_info.file_attributes().bits(),
            hard_links: file.hard_link_count(),
            reparse_tag: None,
            streams: Vec::new(),
        };
        let mut size = 0u64;
        let mut attrs = file.attributes();
        let mut seen = 0usize;
        while let Some(item) = attrs.next(&mut io) {
            seen += 1;
            if seen > MAX_ATTRIBUTES {
                return Err(Error::LimitExceeded {
                    what: format!("attributes of MFT record {rec} ({})", display_path(path)),
                    limit: MAX_ATTRIBUTES as u64,
                });
            }
            let item = item.map_err(|e| self.err(path, e))?;
            let attr = item.to_attribute().map_err(|e| self.err(path, e))?;
            match attr.ty() {
                Ok(NtfsAttributeType::Data) => {
                    let name = attr.name().map_err(|e| self.err(path, e))?;
                    if name.is_empty() {
                        size = attr.value_length();
                    } else if meta.streams.len() < MAX_STREAMS {
                        meta.streams
                            .push((name.to_string_lossy(), attr.value_length()));
                    }
                }
                Ok(NtfsAttributeType::ReparsePoint) => {
                    let mut tag = [0u8; 4];
                    let value = attr.value(&mut io).map_err(|e| self.err(path, e))?;
                    let mut value = value.attach(&mut io);
                    meta.reparse_tag = value
                        .read_exact(&mut tag)
                        .ok()
                        .map(|_| u32::from_le_bytes(tag));
                }
                _ => {}
            }
        }
        if meta.reparse_tag.is_none()
            && std_info
                .file_attributes()
                .contains(NtfsFileAttributeFlags::REPARSE_POINT)
        {
            meta.reparse_tag = Some(0);
        }
        let read_only = meta.attributes & 1 != 0;
        let mut mode = if dir { 0o755 } else { 0o644 };
        if read_only && !dir {
            mode &= !0o222;
        }
        Ok(Stat {
            file_type: if dir { FileType::Dir } else { FileType::File },
            mode,
            uid: 0,
            gid: 0,
            size: if dir { 0 } else { size },
            mtime: unix(std_info.modification_time()),
            ino: rec,
            fat_attrs: String::new(),
            ntfs: Some(Box::new(meta)),
        })
    }

    fn read_dir_record(&self, rec: u64, path: &[u8], limit: usize) -> Result<Vec<DirEntry>> {
        let entries = self.entries(rec, path, limit)?;
        let mut out = Vec::with_capacity(entries.len());
        for (name, child) in entries {
            let mut child_path = path.to_vec();
            if child_path.last() != Some(&b'/') {
                child_path.push(b'/');
            }
            child_path.extend_from_slice(name.as_bytes());
            out.push(DirEntry {
                stat: self.stat_record(child, &child_path)?,
                name: name.into_bytes(),
            });
        }
        Ok(out)
    }

    /// Reads up to `buf.len()` bytes of record `rec`'s unnamed data stream at `pos`.
    fn read_data(&self, rec: u64, path: &[u8], pos: u64, buf: &mut [u8]) -> Result<usize> {
        // The data itself is bounded by the buffer; the budget covers the metadata reads.
        let mut io = BudgetIo::new(
            &*self.source,
            METADATA_READ_BUDGET.saturating_add(2 * buf.len() as u64),
        );
        let file = self.file(&mut io, rec, path)?;
        let item = match file.data(&mut io, "") {
            Some(item) => item.map_err(|e| self.err(path, e))?,
            None => return Ok(0),
        };
        let attr = item.to_attribute().map_err(|e| self.err(path, e))?;
        let flags = attr.flags();
        if flags.contains(NtfsAttributeFlags::ENCRYPTED) && !attr.is_resident() {
            return Err(self.data_err(
                rec,
                path,
                "its $DATA is EFS-encrypted (flag 0x4000), which this reader does not \
                 decode; the content is not read"
                    .into(),
            ));
        }
        if flags.contains(NtfsAttributeFlags::COMPRESSED) && !attr.is_resident() {
            return self.read_compressed(&attr, &mut io, rec, path, pos, buf);
        }
        let mut value = attr.value(&mut io).map_err(|e| self.err(path, e))?;
        if pos >= value.len() {
            return Ok(0);
        }
        value
            .seek(&mut io, SeekFrom::Start(pos))
            .map_err(|e| self.err(path, e))?;
        let mut n = 0;
        while n < buf.len() {
            match value
                .read(&mut io, &mut buf[n..])
                .map_err(|e| self.err(path, e))?
            {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
}

fn lib_err(source: &str, path: &[u8], e: ntfs::NtfsError) -> Error {
    if io_error_is_budget(&e) {
        return Error::LimitExceeded {
            what: format!(
                "bytes read from {source} for {} (a loop in the NTFS metadata?)",
                display_path(path)
            ),
            limit: METADATA_READ_BUDGET,
        };
    }
    Error::FileSystem {
        source_name: source.to_string(),
        fs: FS,
        path: Some(display_path(path)),
        what: e.to_string(),
    }
}

impl FileSystem for NtfsFs {
    fn info(&self) -> FsInfo {
        self.info.clone()
    }

    fn lstat(&self, path: &[u8]) -> Result<Stat> {
        guarded(&self.info.source, FS, path, || {
            let rec = self.resolve(path)?;
            self.stat_record(rec, path)
        })
    }

    fn read_dir(&self, path: &[u8], limit: usize) -> Result<Vec<DirEntry>> {
        guarded(&self.info.source, FS, path, || {
            let rec = self.resolve(path)?;
            self.read_dir_record(rec, path, limit)
        })
    }

    fn read_dir_by_inode(&self, path: &[u8], ino: u64, limit: usize) -> Result<Vec<DirEntry>> {
        if ino == 0 {
            return self.read_dir(path, limit);
        }
        guarded(&self.info.source, FS, path, || {
            self.read_dir_record(ino, path, limit)
        })
    }

    fn read_link(&self, path: &[u8]) -> Result<Vec<u8>> {
        Err(Error::FileSystem {
            source_name: self.info.source.clone(),
            fs: FS,
            path: Some(display_path(path)),
            what: "NTFS reparse points are reported, not followed".into(),
        })
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + '_>> {
        let rec = guarded(&self.info.source, FS, path, || self.resolve(path))?;
        self.open_by_inode(path, rec)
    }

    fn open_by_inode(&self, path: &[u8], ino: u64) -> Result<Box<dyn Read + '_>> {
        if ino == 0 {
            return self.open(path);
        }
        let st = guarded(&self.info.source, FS, path, || self.stat_record(ino, path))?;
        if st.file_type == FileType::Dir {
            return Err(Error::FileSystem {
                source_name: self.info.source.clone(),
                fs: FS,
                path: Some(display_path(path)),
                what: "is a directory".into(),
            });
        }
        Ok(Box::new(NtfsRead {
            fs: self,
            rec: ino,
            path: path.to_vec(),
            pos: 0,
            size: st.size,
        }))
    }
}

/// A reader of one file's unnamed data stream: each read finds the record again (one MFT
/// read) and fills the caller's buffer.
struct NtfsRead<'a> {
    fs: &'a NtfsFs,
    rec: u64,
    path: Vec<u8>,
    pos: u64,
    size: u64,
}

impl Read for NtfsRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.size {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.size - self.pos) as usize;
        let (fs, rec, pos) = (self.fs, self.rec, self.pos);
        let path = &self.path;
        let n = guarded(&fs.info.source, FS, path, || {
            fs.read_data(rec, path, pos, &mut buf[..want])
        })
        .map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot() -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0] = 0xEB;
        b[3..11].copy_from_slice(b"NTFS    ");
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 8;
        b[0x28..0x30].copy_from_slice(&(131_072u64).to_le_bytes());
        b[0x30..0x38].copy_from_slice(&4u64.to_le_bytes());
        b[0x40] = 0xF6; // 2^10
        b[0x44] = 1;
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    #[test]
    fn boot_sector_checks() {
        let ok = check_boot_sector(&boot(), 64 << 20).unwrap();
        assert_eq!(ok.cluster_size, 4096);
        assert_eq!(ok.record_size, 1024);
        assert_eq!(ok.index_record_size, 4096);
        assert_eq!(ok.mft_offset, 16384);
        // The volume claims more sectors than the partition has.
        assert!(check_boot_sector(&boot(), 1 << 20).is_err());
        let mut b = boot();
        b[0x40] = 0xE0; // 2^32-byte records
        assert!(check_boot_sector(&b, 64 << 20).is_err());
        let mut b = boot();
        b[11] = 0x01; // 513-byte sectors
        assert!(check_boot_sector(&b, 64 << 20).is_err());
        let mut b = boot();
        b[0x30..0x38].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(check_boot_sector(&b, 64 << 20).is_err());
    }

    #[test]
    fn budget_ends_reading() {
        let data = vec![0u8; 1 << 20];
        let mut io = BudgetIo::new(&data, 64 << 10);
        let mut buf = vec![0u8; 32 << 10];
        io.read_exact(&mut buf).unwrap();
        io.read_exact(&mut buf).unwrap();
        assert!(io.read_exact(&mut buf).is_err());
    }
}
