//! Reading an LZNT1-compressed unnamed `$DATA` through its compression units (see the
//! module docs of [`super`]): stored, sparse, or decompressed by [`super::lznt1`].

use super::*;

impl NtfsFs {
    pub(super) fn data_err(&self, rec: u64, path: &[u8], what: String) -> Error {
        Error::FileSystem {
            source_name: self.info.source.clone(),
            fs: FS,
            path: Some(display_path(path)),
            what: format!("MFT record {rec}: {what}"),
        }
    }

    /// The compression unit of a compressed non-resident attribute, in clusters: the
    /// exponent at offset 0x22 of its header (not exposed by the `ntfs` crate, so read
    /// from the volume; where that byte sits in an update-sequence slot of the record, the
    /// value every writer uses, 4).
    fn compression_unit(&self, attr: &NtfsAttribute<'_, '_>, rec: u64, path: &[u8]) -> Result<u64> {
        let at = attr
            .position()
            .value()
            .and_then(|p| p.get().checked_add(0x22))
            .ok_or_else(|| self.data_err(rec, path, "compressed $DATA has no position".into()))?;
        let exponent = if at % 512 >= 510 {
            4
        } else {
            let mut b = [0u8; 1];
            self.source.read_at(at, &mut b)?;
            u32::from(b[0])
        };
        let cluster = u64::from(self.boot.cluster_size);
        let unit = (exponent < 16).then(|| cluster << exponent);
        match unit {
            Some(u) if exponent > 0 && u <= MAX_COMPRESSION_UNIT => Ok(1 << exponent),
            _ => Err(self.data_err(
                rec,
                path,
                format!(
                    "compressed $DATA (header at offset {}) has a compression unit of 2^{exponent} \
                     clusters of {cluster} bytes, not 2 to {MAX_COMPRESSION_UNIT} bytes",
                    at - 0x22
                ),
            )),
        }
    }

    /// Reads up to `buf.len()` bytes at `pos` of the LZNT1-compressed non-resident `attr`
    /// (record `rec`'s unnamed `$DATA`), one compression unit at a time.
    pub(super) fn read_compressed(
        &self,
        attr: &NtfsAttribute<'_, '_>,
        io: &mut BudgetIo<'_>,
        rec: u64,
        path: &[u8],
        pos: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let unit_clusters = self.compression_unit(attr, rec, path)?;
        let cluster = u64::from(self.boot.cluster_size);
        let unit_bytes = unit_clusters * cluster;
        let value = attr.value(io).map_err(|e| self.err(path, e))?;
        let NtfsAttributeValue::NonResident(value) = value else {
            return Err(self.data_err(
                rec,
                path,
                "compressed $DATA spread over an attribute list is not decoded".into(),
            ));
        };
        let size = value.len();
        if pos >= size || buf.is_empty() {
            return Ok(0);
        }
        // The runs as (first VCN, clusters, byte position or None for sparse).
        let mut runs: Vec<(u64, u64, Option<u64>)> = Vec::new();
        let mut vcn = 0u64;
        for run in value.data_runs() {
            let run = run.map_err(|e| self.err(path, e))?;
            if runs.len() >= MAX_RUNS {
                return Err(Error::LimitExceeded {
                    what: format!(
                        "data runs of the compressed $DATA of MFT record {rec} ({})",
                        display_path(path)
                    ),
                    limit: MAX_RUNS as u64,
                });
            }
            let clusters = run.allocated_size() / cluster;
            runs.push((vcn, clusters, run.data_position().value().map(|p| p.get())));
            vcn = vcn.saturating_add(clusters);
        }
        let want = (buf.len() as u64).min(size - pos);
        let mut done = 0u64;
        let mut unit = Vec::new();
        let mut packed = Vec::new();
        while done < want {
            let at = pos + done;
            let index = at / unit_bytes;
            self.read_unit(
                &runs,
                index * unit_clusters,
                unit_clusters,
                &mut unit,
                &mut packed,
            )
            .map_err(|what| {
                self.data_err(
                    rec,
                    path,
                    format!(
                        "compression unit {index} (byte {}): {what}",
                        index * unit_bytes
                    ),
                )
            })?;
            let from = (at - index * unit_bytes) as usize;
            let n = (unit.len() - from).min((want - done) as usize);
            buf[done as usize..done as usize + n].copy_from_slice(&unit[from..from + n]);
            done += n as u64;
        }
        Ok(done as usize)
    }

    /// Fills `unit` with the decompressed compression unit of `clusters` clusters from
    /// VCN `first`: all clusters allocated, stored as they are; none, zeros; some, LZNT1
    /// data (read into `packed`) decompressing to the unit.
    fn read_unit(
        &self,
        runs: &[(u64, u64, Option<u64>)],
        first: u64,
        clusters: u64,
        unit: &mut Vec<u8>,
        packed: &mut Vec<u8>,
    ) -> std::result::Result<(), String> {
        let cluster = u64::from(self.boot.cluster_size);
        let unit_bytes = (clusters * cluster) as usize;
        packed.clear();
        let end = first + clusters;
        for &(start, n, position) in runs {
            let (lo, hi) = (start.max(first), (start + n).min(end));
            if lo >= hi {
                continue;
            }
            let Some(p) = position else { continue };
            let from = (lo - start)
                .checked_mul(cluster)
                .and_then(|o| o.checked_add(p))
                .ok_or("a run's position overflows")?;
            let len = ((hi - lo) * cluster) as usize;
            let old = packed.len();
            packed.resize(old + len, 0);
            self.source
                .read_at(from, &mut packed[old..])
                .map_err(|e| format!("clusters at byte {from}: {e}"))?;
        }
        unit.clear();
        if packed.len() == unit_bytes {
            std::mem::swap(unit, packed);
        } else if !packed.is_empty() {
            lznt1::decompress(packed, unit, unit_bytes, true).map_err(|e| e.to_string())?;
        }
        unit.resize(unit_bytes, 0);
        Ok(())
    }
}
