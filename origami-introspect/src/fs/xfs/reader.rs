//! A regular XFS file's content as a reader.

use super::*;

/// A regular file's content, read through its block map.
pub(super) struct FileReader<'a> {
    pub(super) fs: &'a XfsFs,
    pub(super) path: Vec<u8>,
    pub(super) extents: Vec<Extent>,
    pub(super) inline: Option<Vec<u8>>,
    pub(super) size: u64,
    pub(super) pos: u64,
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.size.saturating_sub(self.pos);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        if let Some(data) = &self.inline {
            let at = self.pos as usize;
            buf[..n].copy_from_slice(&data[at..at + n]);
        } else {
            self.fs
                .read_mapped(&self.extents, self.pos, &mut buf[..n])
                .map_err(|e| std::io::Error::other(self.fs.fail(&self.path, e)))?;
        }
        self.pos += n as u64;
        Ok(n)
    }
}
