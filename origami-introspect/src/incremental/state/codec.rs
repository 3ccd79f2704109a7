//! The state file's record codec: little-endian numbers, length-prefixed bytes, counts
//! checked against the bytes left before anything is allocated for them.

use origami_frame::FileType;

use super::FILE_TYPES;

/// The writer of the payload's records.
pub(super) struct Enc(pub(super) Vec<u8>);

impl Enc {
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// A count; no list a crawl makes reaches 2^32 elements (the bounds of
    /// [`crate::Limits`] and of the inode tables are far below), and a larger one is cut,
    /// which the reader then refuses as corrupt rather than misread.
    pub(super) fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
}

/// The reader of the payload's records: every read checked against the bytes left.
pub(super) struct Dec<'a> {
    pub(super) buf: &'a [u8],
    pub(super) at: usize,
}

pub(super) type DecResult<T> = std::result::Result<T, String>;

impl<'a> Dec<'a> {
    pub(super) fn take(&mut self, n: usize) -> DecResult<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "{n} bytes needed at byte {} of the inflated payload, {} left",
                    self.at,
                    self.buf.len() - self.at
                )
            })?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }
    pub(super) fn u8(&mut self) -> DecResult<u8> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u32(&mut self) -> DecResult<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    pub(super) fn u64(&mut self) -> DecResult<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    pub(super) fn i64(&mut self) -> DecResult<i64> {
        Ok(self.u64()? as i64)
    }
    /// A count of elements each at least `min` bytes long: refused when the bytes left
    /// cannot hold them (so no allocation is sized by a count the file merely claims).
    pub(super) fn count(&mut self, min: usize) -> DecResult<usize> {
        let at = self.at;
        let n = self.u32()? as usize;
        if n.saturating_mul(min.max(1)) > self.buf.len() - self.at {
            return Err(format!(
                "a count of {n} at byte {at} of the inflated payload exceeds what follows"
            ));
        }
        Ok(n)
    }
    pub(super) fn bytes(&mut self) -> DecResult<Vec<u8>> {
        let n = self.count(1)?;
        Ok(self.take(n)?.to_vec())
    }
    pub(super) fn string(&mut self) -> DecResult<String> {
        let at = self.at;
        String::from_utf8(self.bytes()?)
            .map_err(|_| format!("text at byte {at} of the inflated payload is not UTF-8"))
    }
    pub(super) fn file_type(&mut self) -> DecResult<FileType> {
        let at = self.at;
        let c = self.u8()?;
        FILE_TYPES
            .get(usize::from(c))
            .copied()
            .ok_or_else(|| format!("file type {c} at byte {at} of the inflated payload"))
    }
    pub(super) fn digest(&mut self) -> DecResult<[u8; 32]> {
        let mut d = [0u8; 32];
        d.copy_from_slice(self.take(32)?);
        Ok(d)
    }
}
