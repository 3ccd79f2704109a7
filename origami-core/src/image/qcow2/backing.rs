//! Reads of clusters the image does not hold: from the attached backing image (zeros past
//! its end), or zeros when the image names no backing file. Opening the backing chain is
//! [`crate::Image::open`]'s job.

use crate::error::{Error, Result};
use crate::read::ReadAt;

use super::Qcow2Image;

impl Qcow2Image {
    pub(super) fn read_backing(&self, g: u64, out: &mut [u8]) -> Result<()> {
        match &self.backing {
            Some(b) => {
                // A backing image shorter than this one reads as zeros past its end.
                let avail = b.len().saturating_sub(g).min(out.len() as u64) as usize;
                let (head, tail) = out.split_at_mut(avail);
                if !head.is_empty() {
                    b.read_at(g, head)?;
                }
                tail.fill(0);
                Ok(())
            }
            None if self.header.backing_file.is_some() => Err(Error::BackingChain {
                path: self.file.name().into(),
                reason: format!(
                    "backing file {:?} is not attached; cannot read guest offset {g:#x}",
                    self.header.backing_file.as_deref().unwrap_or_default()
                ),
            }),
            None => {
                out.fill(0);
                Ok(())
            }
        }
    }
}
