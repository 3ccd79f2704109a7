//! FAT12/16/32 through `fatfs`, wrapped read-only.
//!
//! `fatfs` wants `Read + Write + Seek` and may write on drop (the FSInfo sector, the dirty
//! flag); [`ReadOnlyIo`] gives it a stream whose every write fails, so nothing ever reaches
//! the image. FAT keeps no owners or modes: entries are reported as the Linux `vfat` driver
//! shows them with its defaults (uid/gid 0, directories 0755, files 0644, no write bits
//! when read-only). Names are the long (LFN) names; look-ups ignore case as FAT does.
//!
//! A [`FatFs`] is shared by threads like every [`FileSystem`], but `fatfs`'s handle is
//! neither `Send` nor `Sync` (`RefCell`s, and options holding `&'static dyn` converters), so
//! a `FatFs` keeps only its source and each call mounts it anew: `fatfs` parses the boot
//! sector again (one read-ahead of [`ReadOnlyIo`], 64 KiB), which is all the state it has
//! worth keeping. A file reader mounts per read, finds its file again and seeks to where it
//! stopped, then fills the caller's whole buffer, so that this is paid once per buffer.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use fatfs::{FileAttributes, FsOptions};
use origami_core::ReadAt;
use origami_frame::FileType;

use super::{guarded, path::display_path, DirEntry, FileSystem, FsInfo, FsKind, Stat};
use crate::error::{Error, Result};
use origami_core::bytes::le16;

const FS: &str = "fat";

/// True when `boot` (the first 512 bytes) is a plausible FAT boot sector.
pub(crate) fn looks_like_fat(boot: &[u8; 512]) -> bool {
    let bytes_per_sector = le16(boot, 11);
    let sectors_per_cluster = boot[13];
    let reserved = le16(boot, 14);
    let fats = boot[16];
    boot[510] == 0x55
        && boot[511] == 0xAA
        && matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && sectors_per_cluster.is_power_of_two()
        && reserved > 0
        && (1..=2).contains(&fats)
        && (boot[0] == 0xEB || boot[0] == 0xE9)
}

/// A seekable stream over a [`ReadAt`] that refuses every write, with a small read-ahead
/// buffer (`fatfs` reads directory entries 32 bytes at a time).
pub struct ReadOnlyIo {
    inner: Arc<dyn ReadAt>,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl ReadOnlyIo {
    /// A read-only stream over `inner`, positioned at 0.
    pub fn new(inner: Arc<dyn ReadAt>) -> ReadOnlyIo {
        ReadOnlyIo {
            inner,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
        }
    }
}

impl Read for ReadOnlyIo {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        const AHEAD: u64 = 64 << 10;
        let len = self.inner.len();
        if self.pos >= len || out.is_empty() {
            return Ok(0);
        }
        let want = (out.len() as u64).min(len - self.pos) as usize;
        let in_buf = self.pos >= self.buf_start
            && self.pos + want as u64 <= self.buf_start + self.buf.len() as u64;
        if !in_buf {
            if want as u64 >= AHEAD {
                self.inner
                    .read_at(self.pos, &mut out[..want])
                    .map_err(io::Error::other)?;
                self.pos += want as u64;
                return Ok(want);
            }
            let start = self.pos - self.pos % 512;
            let n = AHEAD.min(len - start) as usize;
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

impl Write for ReadOnlyIo {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "origami reads guest images only: write refused",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for ReadOnlyIo {
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

type Fs = fatfs::FileSystem<ReadOnlyIo>;
type Dir<'a> = fatfs::Dir<'a, ReadOnlyIo>;

/// A FAT12/16/32 file system, read-only.
pub struct FatFs {
    source: Arc<dyn ReadAt>,
    info: FsInfo,
}

impl std::fmt::Debug for FatFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FatFs").field("info", &self.info).finish()
    }
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// FAT times are local time; the fixtures and most hypervisor guests keep UTC.
fn unix_time(t: fatfs::DateTime) -> i64 {
    let days = days_from_civil(
        i64::from(t.date.year),
        i64::from(t.date.month.clamp(1, 12)),
        i64::from(t.date.day.clamp(1, 31)),
    );
    days * 86_400
        + i64::from(t.time.hour) * 3600
        + i64::from(t.time.min) * 60
        + i64::from(t.time.sec)
}

fn stat_of(e: &fatfs::DirEntry<'_, ReadOnlyIo>) -> Stat {
    let attrs = e.attributes();
    let dir = e.is_dir();
    let mut mode = if dir { 0o755 } else { 0o644 };
    if attrs.contains(FileAttributes::READ_ONLY) {
        mode &= !0o222;
    }
    let mut fat_attrs = String::new();
    for (flag, letter) in [
        (FileAttributes::READ_ONLY, 'r'),
        (FileAttributes::HIDDEN, 'h'),
        (FileAttributes::SYSTEM, 's'),
    ] {
        if attrs.contains(flag) {
            fat_attrs.push('+');
            fat_attrs.push(letter);
        }
    }
    Stat {
        file_type: if dir { FileType::Dir } else { FileType::File },
        mode,
        uid: 0,
        gid: 0,
        size: if dir { 0 } else { e.len() },
        mtime: unix_time(e.modified()),
        ino: 0,
        fat_attrs,
        ntfs: None,
    }
}

fn root_stat() -> Stat {
    Stat {
        file_type: FileType::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        ino: 0,
        fat_attrs: String::new(),
        ntfs: None,
    }
}

/// Mounts the FAT file system on `source` (named `name` in errors).
fn mount(source: &Arc<dyn ReadAt>, name: &str) -> Result<Fs> {
    Fs::new(ReadOnlyIo::new(Arc::clone(source)), FsOptions::new()).map_err(|e| Error::FileSystem {
        source_name: name.to_string(),
        fs: FS,
        path: None,
        what: e.to_string(),
    })
}

fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

impl FatFs {
    /// Opens the FAT file system on `source`.
    pub fn open(source: Arc<dyn ReadAt>) -> Result<FatFs> {
        let name = source.name();
        let fs = guarded(&name, FS, b"/", || mount(&source, &name))?;
        let label = fs.volume_label().trim_end().to_string();
        let id = fs.volume_id();
        let info = FsInfo {
            kind: FsKind::Fat,
            uuid: Some(format!("{:04X}-{:04X}", id >> 16, id & 0xffff)),
            label: (!label.is_empty() && label != "NO NAME").then_some(label),
            source: name,
        };
        Ok(FatFs { source, info })
    }

    /// A `fatfs` handle for one call (see the module documentation); called under
    /// [`guarded`].
    fn mount(&self) -> Result<Fs> {
        mount(&self.source, &self.info.source)
    }

    fn err(&self, path: &[u8], e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::NotFound {
            return Error::NotFound {
                path: display_path(path),
            };
        }
        Error::FileSystem {
            source_name: self.info.source.clone(),
            fs: FS,
            path: Some(display_path(path)),
            what: e.to_string(),
        }
    }

    /// Splits `path` into its parent directory (opened) and the last name.
    fn components<'p>(&self, path: &'p [u8]) -> Result<Vec<&'p str>> {
        let text = std::str::from_utf8(path).map_err(|_| Error::NotFound {
            path: display_path(path),
        })?;
        Ok(text.split('/').filter(|c| !c.is_empty()).collect())
    }

    fn open_dir<'f>(&self, fs: &'f Fs, parts: &[&str], path: &[u8]) -> Result<Dir<'f>> {
        let mut dir = fs.root_dir();
        for part in parts {
            let entry = self.find(&dir, part, path)?;
            if !entry.is_dir() {
                return Err(Error::NotADirectory {
                    path: display_path(path),
                });
            }
            dir = entry.to_dir();
        }
        Ok(dir)
    }

    fn find<'a>(
        &self,
        dir: &Dir<'a>,
        name: &str,
        path: &[u8],
    ) -> Result<fatfs::DirEntry<'a, ReadOnlyIo>> {
        // A FAT directory can hold at most 65536 entries (16-bit index); a corrupt cluster
        // chain is cut by fatfs at the chain's end, and by this count otherwise.
        for (i, entry) in dir.iter().enumerate() {
            if i > 65_536 {
                break;
            }
            let entry = entry.map_err(|e| self.err(path, e))?;
            if same_name(&entry.file_name(), name) || same_name(&entry.short_file_name(), name) {
                return Ok(entry);
            }
        }
        Err(Error::NotFound {
            path: display_path(path),
        })
    }
}

impl FileSystem for FatFs {
    fn info(&self) -> FsInfo {
        self.info.clone()
    }

    fn lstat(&self, path: &[u8]) -> Result<Stat> {
        let parts = self.components(path)?;
        let Some((last, dirs)) = parts.split_last() else {
            return Ok(root_stat());
        };
        guarded(&self.info.source, FS, path, || {
            let fs = self.mount()?;
            let dir = self.open_dir(&fs, dirs, path)?;
            Ok(stat_of(&self.find(&dir, last, path)?))
        })
    }

    fn read_dir(&self, path: &[u8], limit: usize) -> Result<Vec<DirEntry>> {
        let parts = self.components(path)?;
        guarded(&self.info.source, FS, path, || {
            let fs = self.mount()?;
            let dir = self.open_dir(&fs, &parts, path)?;
            let mut out = Vec::new();
            for entry in dir.iter() {
                let entry = entry.map_err(|e| self.err(path, e))?;
                let name = entry.file_name();
                if name == "." || name == ".." {
                    continue;
                }
                if out.len() >= limit {
                    return Err(Error::LimitExceeded {
                        what: format!("entries of directory {}", display_path(path)),
                        limit: limit as u64,
                    });
                }
                out.push(DirEntry {
                    name: name.into_bytes(),
                    stat: stat_of(&entry),
                });
            }
            Ok(out)
        })
    }

    fn read_link(&self, path: &[u8]) -> Result<Vec<u8>> {
        Err(Error::FileSystem {
            source_name: self.info.source.clone(),
            fs: FS,
            path: Some(display_path(path)),
            what: "FAT has no symbolic links".into(),
        })
    }

    fn open(&self, path: &[u8]) -> Result<Box<dyn Read + '_>> {
        let size = self.file_entry(path, |entry| Ok(entry.len()))?;
        Ok(Box::new(FatRead {
            fat: self,
            path: path.to_vec(),
            pos: 0,
            size,
        }))
    }
}

impl FatFs {
    /// Runs `f` on the entry of regular file `path`, on a mount of its own.
    fn file_entry<T>(
        &self,
        path: &[u8],
        f: impl FnOnce(&fatfs::DirEntry<'_, ReadOnlyIo>) -> Result<T>,
    ) -> Result<T> {
        let parts = self.components(path)?;
        let Some((last, dirs)) = parts.split_last() else {
            return Err(self.err(path, io::Error::other("is a directory")));
        };
        guarded(&self.info.source, FS, path, || {
            let fs = self.mount()?;
            let dir = self.open_dir(&fs, dirs, path)?;
            let entry = self.find(&dir, last, path)?;
            if entry.is_dir() {
                return Err(self.err(path, io::Error::other("is a directory")));
            }
            f(&entry)
        })
    }
}

/// A reader of one FAT file. Each read mounts the file system, finds the file again and
/// seeks to `pos` (see the module documentation), then fills as much of the buffer as the
/// file has, so that this is paid once per buffer, not once per cluster.
struct FatRead<'a> {
    fat: &'a FatFs,
    path: Vec<u8>,
    pos: u64,
    size: u64,
}

impl Read for FatRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.size {
            return Ok(0);
        }
        let pos = self.pos;
        let read_err = |e: io::Error| Error::FileSystem {
            source_name: self.fat.info.source.clone(),
            fs: FS,
            path: Some(display_path(&self.path)),
            what: e.to_string(),
        };
        let n = self
            .fat
            .file_entry(&self.path, |entry| {
                let mut file = entry.to_file();
                file.seek(SeekFrom::Start(pos)).map_err(read_err)?;
                let mut n = 0;
                // Bounded by the buffer: each read gives at least one byte or ends.
                while n < buf.len() {
                    match file.read(&mut buf[n..]).map_err(read_err)? {
                        0 => break,
                        k => n += k,
                    }
                }
                Ok(n)
            })
            .map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2023, 11, 14), 19_675);
    }

    #[test]
    fn writes_are_refused() {
        let mut io = ReadOnlyIo::new(Arc::new(vec![0u8; 1024]));
        assert!(io.write(b"x").is_err());
        let mut b = [0u8; 4];
        io.seek(SeekFrom::Start(1022)).unwrap();
        assert_eq!(io.read(&mut b).unwrap(), 2);
        assert_eq!(io.read(&mut b).unwrap(), 0);
    }
}
