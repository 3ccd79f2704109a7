//! A regular btrfs file's content as a reader (inline, regular and compressed extents).

use super::*;

/// A file's content through its extents.
pub(super) struct FileReader<'a> {
    pub(super) fs: &'a BtrfsFs,
    pub(super) path: Vec<u8>,
    pub(super) extents: Vec<FileExtent>,
    pub(super) size: u64,
    pub(super) pos: u64,
    /// The last decompressed extent: (disk address or inline marker, bytes).
    pub(super) cached: Option<(u64, Arc<Vec<u8>>)>,
}

impl FileReader<'_> {
    pub(super) fn read_all(&mut self, out: &mut Vec<u8>, n: usize) -> BResult<()> {
        out.resize(n, 0);
        let mut done = 0;
        while done < n {
            let k = self.fill(&mut out[done..])?;
            if k == 0 {
                break;
            }
            done += k;
        }
        out.truncate(done);
        Ok(())
    }

    pub(super) fn fill(&mut self, buf: &mut [u8]) -> BResult<usize> {
        let left = self.size.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let pos = self.pos;
        let i = self
            .extents
            .partition_point(|e| e.off.saturating_add(e.len) <= pos);
        let inner = &self.fs.inner;
        let n = match self.extents.get(i) {
            Some(e) if e.off <= pos => {
                let within = pos - e.off;
                let n = want.min(usize::try_from(e.len - within).unwrap_or(usize::MAX));
                match &e.kind {
                    ExtentKind::Prealloc | ExtentKind::Regular { disk: 0, .. } => buf[..n].fill(0),
                    ExtentKind::Regular {
                        disk,
                        offset,
                        compression: 0,
                        ..
                    } => {
                        let at = disk
                            .checked_add(*offset)
                            .and_then(|a| a.checked_add(within))
                            .ok_or_else(|| BErr::Bad("extent address overflows".into()))?;
                        inner.read_logical(at, &mut buf[..n])?;
                    }
                    ExtentKind::Regular {
                        disk,
                        disk_len,
                        offset,
                        compression,
                        ram,
                    } => {
                        let data = match &self.cached {
                            Some((d, data)) if d == disk => data.clone(),
                            _ => {
                                if *disk_len > decompress::MAX_RAM {
                                    return bad(format!(
                                        "compressed extent of {disk_len} bytes on disk"
                                    ));
                                }
                                let mut raw = vec![0u8; *disk_len as usize];
                                inner.read_logical(*disk, &mut raw)?;
                                let d = decompress::decompress(
                                    *compression,
                                    &raw,
                                    *ram,
                                    inner.sectorsize,
                                )
                                .map_err(|e| BErr::Bad(format!("extent at {disk:#x}: {e}")))?;
                                let d = Arc::new(d);
                                self.cached = Some((*disk, d.clone()));
                                d
                            }
                        };
                        copy_from(&data, offset.saturating_add(within), &mut buf[..n]);
                    }
                    ExtentKind::Inline(data, 0, _) => copy_from(data, within, &mut buf[..n]),
                    ExtentKind::Inline(data, c, ram) => {
                        let d = decompress::decompress(*c, data, *ram, inner.sectorsize)
                            .map_err(|e| BErr::Bad(format!("inline extent: {e}")))?;
                        copy_from(&d, within, &mut buf[..n]);
                    }
                }
                n
            }
            next => {
                let hole_end = next.map_or(u64::MAX, |e| e.off);
                let n = want.min(usize::try_from(hole_end - pos).unwrap_or(usize::MAX));
                buf[..n].fill(0);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// Copies `src[from..]` into `dst`, zeros where `src` ends.
pub(super) fn copy_from(src: &[u8], from: u64, dst: &mut [u8]) {
    let from = usize::try_from(from).unwrap_or(usize::MAX);
    let avail = src.get(from..).unwrap_or(&[]);
    let n = avail.len().min(dst.len());
    dst[..n].copy_from_slice(&avail[..n]);
    dst[n..].fill(0);
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.fill(buf)
            .map_err(|e| std::io::Error::other(self.fs.fail(&self.path, e)))
    }
}
