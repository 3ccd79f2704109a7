//! VMDK descriptor files: a text file (`# Disk DescriptorFile`) naming the extents that
//! hold a disk's bytes, one after the other (`monolithicFlat`, `twoGbMaxExtentFlat`,
//! `twoGbMaxExtentSparse`, `vmfs`).
//!
//! Extent lines are read as qemu reads them (`block/vmdk.c`): `RW SECTORS FLAT "FILE"
//! OFFSET` is raw bytes from `OFFSET` sectors into its file (past the file's end it reads as
//! zeros, as qemu does), `RW SECTORS VMFS "FILE"` the same from offset 0, `RW SECTORS SPARSE
//! "FILE"` a hosted sparse extent ([`super::VmdkImage`]); lines that are not `RW` (`RDONLY`,
//! `NOACCESS`) or name no file (`ZERO`) are skipped, as qemu skips them. The files are
//! opened by the caller, which applies the rule for files an image names
//! ([`super::ImageOptions`]); this module never touches the file system.
//!
//! Limits: images with a parent (`parentCID` other than `ffffffff`) and ESX
//! `VMFSSPARSE`/`SESPARSE` extents are refused with [`Error::Unsupported`]; at most
//! [`MAX_EXTENTS`] extents and a descriptor of at most 1 MiB.

use crate::error::{Error, Result};
use crate::read::{check_range, FileSource, ReadAt};

use super::vmdk::VmdkImage;

const SECTOR: u64 = 512;
/// The largest descriptor file read.
pub(crate) const MAX_DESCRIPTOR: u64 = 1 << 20;
/// The most extents one descriptor may list (a 2 TiB disk in 2 GiB pieces is 1024).
pub const MAX_EXTENTS: usize = 4096;

/// What an extent line says its bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExtentKind {
    /// Raw bytes in a file (`FLAT`, `VMFS`).
    Flat,
    /// A hosted sparse extent file (`SPARSE`).
    Sparse,
}

/// One parsed extent line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtentLine {
    pub(crate) kind: ExtentKind,
    /// Size in bytes.
    pub(crate) len: u64,
    /// The file name as written.
    pub(crate) file: Option<String>,
    /// Where a flat extent's bytes start in its file, in bytes.
    pub(crate) offset: u64,
}

/// Parses a descriptor's text (already bounded by the caller) into its extent lines;
/// errors give the byte offset of the offending line.
pub(crate) fn parse(text: &str, name: &str) -> Result<Vec<ExtentLine>> {
    let mut extents = Vec::new();
    let mut at = 0u64;
    for raw in text.split('\n') {
        let line_at = at;
        at += raw.len() as u64 + 1;
        let line = raw.trim();
        let corrupt = |reason: String| Error::Corrupt {
            source_name: name.to_string(),
            offset: line_at,
            reason,
        };
        let unsupported = |feature: String| Error::Unsupported {
            source_name: name.to_string(),
            offset: line_at,
            feature,
        };
        if let Some(v) = line.strip_prefix("parentCID") {
            let v = v.trim_start().trim_start_matches('=').trim();
            if !v.eq_ignore_ascii_case("ffffffff") {
                return Err(unsupported(
                    "VMDK with a parent (differencing image)".into(),
                ));
            }
            continue;
        }
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("RW") {
            continue;
        }
        let sectors = words.next().and_then(|s| s.parse::<u64>().ok());
        let kind_word = words.next().unwrap_or_default();
        // `RW N TYPE "FILE" [OFFSET]`: the name is quoted and may hold spaces.
        let quoted = line.split_once('"').and_then(|(_, r)| r.split_once('"'));
        let (Some(sectors), Some((file, tail))) = (sectors, quoted) else {
            continue; // qemu skips lines that do not match the pattern (ZERO extents, say).
        };
        if sectors == 0 {
            continue;
        }
        let kind = match kind_word {
            "FLAT" | "VMFS" => ExtentKind::Flat,
            "SPARSE" => ExtentKind::Sparse,
            "VMFSSPARSE" | "SESPARSE" => {
                return Err(unsupported(format!("VMDK extent type {kind_word:?}")))
            }
            _ => continue,
        };
        if extents.len() >= MAX_EXTENTS {
            return Err(corrupt(format!("more than {MAX_EXTENTS} extents")));
        }
        let len = sectors
            .checked_mul(SECTOR)
            .ok_or_else(|| corrupt(format!("extent of {sectors} sectors")))?;
        let offset_text = tail.split_ascii_whitespace().next();
        // qemu: FLAT takes an offset, VMFS and SPARSE take none.
        let offset_sectors: u64 = match (kind_word, offset_text) {
            ("FLAT", Some(o)) => o
                .parse()
                .map_err(|_| corrupt(format!("extent line {line:?}: bad offset")))?,
            ("VMFS" | "SPARSE", None) => 0,
            _ => {
                return Err(corrupt(format!(
                    "extent line {line:?}: a FLAT extent needs an offset, others take none"
                )))
            }
        };
        let offset = offset_sectors
            .checked_mul(SECTOR)
            .ok_or_else(|| corrupt(format!("extent offset of {offset_sectors} sectors")))?;
        let file = Some(file.to_string());
        extents.push(ExtentLine {
            kind,
            len,
            file,
            offset,
        });
    }
    if extents.is_empty() {
        return Err(Error::Corrupt {
            source_name: name.to_string(),
            offset: 0,
            reason: "VMDK descriptor lists no extent".into(),
        });
    }
    Ok(extents)
}

/// An opened extent's bytes.
enum Source {
    Flat { file: FileSource, offset: u64 },
    Sparse(Box<VmdkImage>),
    Zero,
}

struct Extent {
    start: u64,
    len: u64,
    source: Source,
}

/// A disk made of the extents a descriptor lists, in order.
pub(crate) struct VmdkDescriptorImage {
    name: String,
    extents: Vec<Extent>,
    capacity: u64,
}

impl std::fmt::Debug for VmdkDescriptorImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmdkDescriptorImage")
            .field("name", &self.name)
            .field("extents", &self.extents.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl VmdkDescriptorImage {
    /// Opens the extents of `lines`; `open` opens a named file (applying the caller's rule).
    pub(crate) fn open(
        name: String,
        lines: &[ExtentLine],
        open: &mut dyn FnMut(&str) -> Result<FileSource>,
    ) -> Result<VmdkDescriptorImage> {
        let mut extents = Vec::with_capacity(lines.len());
        let mut start = 0u64;
        for l in lines {
            let source = match (&l.file, l.kind) {
                (None, _) => Source::Zero,
                (Some(f), ExtentKind::Flat) => Source::Flat {
                    file: open(f)?,
                    offset: l.offset,
                },
                (Some(f), ExtentKind::Sparse) => {
                    let sparse = VmdkImage::extent_from_boxed(Box::new(open(f)?))?;
                    if sparse.len() < l.len {
                        return Err(Error::Corrupt {
                            source_name: sparse.name(),
                            offset: 12,
                            reason: format!(
                                "sparse extent holds {} bytes, the descriptor {name} says {}",
                                sparse.len(),
                                l.len
                            ),
                        });
                    }
                    Source::Sparse(Box::new(sparse))
                }
            };
            extents.push(Extent {
                start,
                len: l.len,
                source,
            });
            start = start.checked_add(l.len).ok_or_else(|| Error::Corrupt {
                source_name: name.clone(),
                offset: 0,
                reason: "extents add up to more than 2^64 bytes".into(),
            })?;
        }
        Ok(VmdkDescriptorImage {
            name,
            extents,
            capacity: start,
        })
    }
}

impl ReadAt for VmdkDescriptorImage {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(|| self.name(), offset, buf.len(), self.capacity)?;
        let mut pos = 0usize;
        // Each turn finishes one extent (or the read), so this runs once per extent touched.
        while pos < buf.len() {
            let g = offset + pos as u64;
            let i = self.extents.partition_point(|e| e.start <= g);
            let Some(e) = i.checked_sub(1).and_then(|i| self.extents.get(i)) else {
                return Err(self.corrupt_at(g));
            };
            let within = g - e.start;
            let n = (e.len - within).min((buf.len() - pos) as u64) as usize;
            if n == 0 {
                return Err(self.corrupt_at(g));
            }
            let out = &mut buf[pos..pos + n];
            match &e.source {
                Source::Zero => out.fill(0),
                Source::Sparse(s) => s.read_at(within, out)?,
                Source::Flat { file, offset } => {
                    let at = offset.saturating_add(within);
                    let have = file.len().saturating_sub(at).min(n as u64) as usize;
                    let (head, tail) = out.split_at_mut(have);
                    if !head.is_empty() {
                        file.read_at(at, head)?;
                    }
                    tail.fill(0);
                }
            }
            pos += n;
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.capacity
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

impl VmdkDescriptorImage {
    fn corrupt_at(&self, g: u64) -> Error {
        Error::Corrupt {
            source_name: self.name.clone(),
            offset: 0,
            reason: format!("no extent holds guest offset {g:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_extent_lines_qemu_writes() {
        let text = "# Disk DescriptorFile\nversion=1\nparentCID=ffffffff\n\
                    createType=\"monolithicFlat\"\n\n# Extent description\n\
                    RW 2048 FLAT \"my disk-flat.vmdk\" 2\nRW 16 ZERO\n\
                    RDONLY 4 FLAT \"ro.bin\" 0\n\
                    RW 8 SPARSE \"s.vmdk\"\nRW 4 VMFS \"v.bin\"\n";
        let e = parse(text, "d").unwrap();
        // The ZERO and RDONLY lines are skipped, as qemu skips them.
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].file.as_deref(), Some("my disk-flat.vmdk"));
        assert_eq!(e[0].len, 2048 * 512);
        assert_eq!(e[0].offset, 1024);
        assert_eq!(e[1].kind, ExtentKind::Sparse);
        assert_eq!((e[2].kind, e[2].offset), (ExtentKind::Flat, 0));
    }

    #[test]
    fn refuses_parents_odd_extents_and_empty_descriptors() {
        assert!(matches!(
            parse("parentCID=1234abcd\nRW 1 FLAT \"a\" 0\n", "d"),
            Err(Error::Unsupported { .. })
        ));
        assert!(matches!(
            parse("RW 1 VMFSSPARSE \"a\"\n", "d"),
            Err(Error::Unsupported { .. })
        ));
        assert!(matches!(
            parse("RW 99999999999999999999 FLAT \"a\" 0\n", "d"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            parse("RW 1 FLAT \"a\"\n", "d"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            parse("RW 1 SPARSE \"a\" 7\n", "d"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            parse("# Disk DescriptorFile\n", "d"),
            Err(Error::Corrupt { .. })
        ));
    }
}
