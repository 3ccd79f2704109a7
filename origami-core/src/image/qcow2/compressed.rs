//! Compressed clusters: deflate or zstd, inflated into the caller's buffer when a whole
//! cluster is wanted, through a small cache of inflated clusters otherwise, and on a few
//! scoped threads when one large read spans many of them (qemu, too, inflates in a pool).

use flate2::{Decompress, FlushDecompress};
use zstd::stream::raw::{Decoder as ZstdDecoder, InBuffer, Operation, OutBuffer};

use crate::error::{Error, Result};

use super::header::Compression;
use super::{lock, Qcow2Image};

/// A bounded cache of decompressed clusters, keyed by their L2 entry; slots are reused, so a
/// warm cache does not allocate.
pub(super) struct ClusterCache {
    slots: Vec<(u64, Box<[u8]>)>,
    next: usize,
    capacity: usize,
}

impl ClusterCache {
    pub(super) fn new(capacity: usize) -> ClusterCache {
        ClusterCache {
            slots: Vec::new(),
            next: 0,
            capacity,
        }
    }
}

/// Per-thread decompression state, pooled so reads do not allocate it each time.
pub(super) struct Decompressor {
    input: Vec<u8>,
    cluster: Box<[u8]>,
    inflate: Decompress,
    zstd: Option<ZstdDecoder<'static>>,
}

impl Qcow2Image {
    /// Decompresses the cluster of L2 entry `entry` into `out` (one cluster long).
    fn decompress(&self, entry: u64, out: &mut [u8], d: &mut Decompressor) -> Result<()> {
        let shift = 62 - (self.cluster_bits - 8);
        let host = entry & ((1u64 << shift) - 1);
        let sectors = ((entry >> shift) & ((1u64 << (self.cluster_bits - 8)) - 1)) + 1;
        let csize = (sectors * 512).saturating_sub(host & 511);
        let file_len = self.file.len();
        if host >= file_len {
            return Err(self.corrupt(
                host,
                "compressed cluster starts past the end of the file".into(),
            ));
        }
        // The last compressed cluster may end short of its sector-rounded size.
        let csize = csize.min(file_len - host) as usize;
        d.input.resize(csize, 0);
        self.file.read_at(host, &mut d.input)?;
        let bad = |why: String| Error::Corrupt {
            source_name: self.file.name(),
            offset: host,
            reason: why,
        };
        match self.header.compression {
            Compression::Deflate => {
                d.inflate.reset(false);
                d.inflate
                    .decompress(&d.input, out, FlushDecompress::Finish)
                    .map_err(|e| bad(format!("deflate: {e}")))?;
                if d.inflate.total_out() != out.len() as u64 {
                    return Err(bad(format!(
                        "deflate stream gives {} bytes, not a cluster of {}",
                        d.inflate.total_out(),
                        out.len()
                    )));
                }
            }
            Compression::Zstd => {
                let dec = match &mut d.zstd {
                    Some(z) => z,
                    slot @ None => {
                        slot.insert(ZstdDecoder::new().map_err(|e| bad(format!("zstd: {e}")))?)
                    }
                };
                dec.reinit().map_err(|e| bad(format!("zstd: {e}")))?;
                let mut inb = InBuffer::around(&d.input);
                let mut outb = OutBuffer::around(&mut *out);
                // As qemu does: feed until the cluster is full; the sector padding after the
                // frame is never parsed. Every turn must make progress, so this ends.
                while outb.pos() < outb.capacity() {
                    let (ip, op) = (inb.pos(), outb.pos());
                    dec.run(&mut inb, &mut outb)
                        .map_err(|e| bad(format!("zstd: {e}")))?;
                    if inb.pos() == ip && outb.pos() == op {
                        break;
                    }
                }
                if outb.pos() != outb.capacity() {
                    return Err(bad(format!(
                        "zstd frame gives {} bytes, not a cluster of {}",
                        outb.pos(),
                        outb.capacity()
                    )));
                }
            }
        }
        Ok(())
    }

    fn take_decompressor(&self) -> Decompressor {
        lock(&self.pool).pop().unwrap_or_else(|| Decompressor {
            input: Vec::new(),
            cluster: vec![0u8; self.cluster_size as usize].into_boxed_slice(),
            inflate: Decompress::new(false),
            zstd: None,
        })
    }

    /// Sets how many threads may inflate the compressed clusters of one large read (1: only
    /// the caller's). The default is the host's parallelism, at most 4.
    pub fn with_decompress_threads(mut self, threads: usize) -> Qcow2Image {
        self.threads = threads.max(1);
        self
    }

    /// Inflates whole clusters `(L2 entry, offset in buf)` straight into `buf`, splitting them
    /// among threads when there are enough to pay for it (qemu, too, inflates in a pool).
    pub(super) fn inflate_whole_clusters(
        &self,
        buf: &mut [u8],
        whole: &[(u64, usize)],
    ) -> Result<()> {
        let cs = self.cluster_size as usize;
        // Cut `buf` into the clusters' disjoint slices, in order.
        let mut jobs: Vec<(u64, &mut [u8])> = Vec::with_capacity(whole.len());
        let mut rest: &mut [u8] = buf;
        let mut consumed = 0usize;
        for &(entry, start) in whole {
            let tail = std::mem::take(&mut rest);
            let skip = start.checked_sub(consumed).filter(|s| s + cs <= tail.len());
            let Some(skip) = skip else {
                return Err(self.corrupt(0, "compressed clusters out of order".into()));
            };
            let (chunk, after) = tail[skip..].split_at_mut(cs);
            jobs.push((entry, chunk));
            rest = after;
            consumed = start + cs;
        }
        let threads = self.threads.min(jobs.len() / 4).max(1);
        let run = |part: &mut [(u64, &mut [u8])]| -> Result<()> {
            let mut d = self.take_decompressor();
            let r = part
                .iter_mut()
                .try_for_each(|(entry, out)| self.decompress(*entry, out, &mut d));
            lock(&self.pool).push(d);
            r
        };
        if threads == 1 {
            return run(&mut jobs);
        }
        let per = jobs.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let mut parts = jobs.chunks_mut(per);
            let mine = parts.next();
            let handles: Vec<_> = parts.map(|p| scope.spawn(|| run(p))).collect();
            let mut result = mine.map_or(Ok(()), &run);
            for h in handles {
                let r = h.join().unwrap_or_else(|_| {
                    Err(self.corrupt(0, "a decompression thread panicked".into()))
                });
                if result.is_ok() {
                    result = r;
                }
            }
            result
        })
    }

    pub(super) fn read_compressed(&self, g: u64, entry: u64, out: &mut [u8]) -> Result<()> {
        let within = (g & (self.cluster_size - 1)) as usize;
        let mut d = self.take_decompressor();
        let result = if within == 0 && out.len() as u64 == self.cluster_size {
            // The whole cluster is wanted: inflate straight into the caller's buffer.
            self.decompress(entry, out, &mut d)
        } else {
            self.read_compressed_cached(entry, within, out, &mut d)
        };
        lock(&self.pool).push(d);
        result
    }

    fn read_compressed_cached(
        &self,
        entry: u64,
        within: usize,
        out: &mut [u8],
        d: &mut Decompressor,
    ) -> Result<()> {
        let range = within..within + out.len();
        {
            let cache = lock(&self.clusters);
            if let Some((_, data)) = cache.slots.iter().find(|(e, _)| *e == entry) {
                if let Some(src) = data.get(range.clone()) {
                    out.copy_from_slice(src);
                    return Ok(());
                }
            }
        }
        let mut cluster = std::mem::take(&mut d.cluster);
        let r = self.decompress(entry, &mut cluster, d);
        d.cluster = cluster;
        r?;
        let src = d
            .cluster
            .get(range)
            .ok_or_else(|| self.corrupt(0, "read past a compressed cluster".into()))?;
        out.copy_from_slice(src);
        let mut cache = lock(&self.clusters);
        if cache.slots.len() < cache.capacity {
            cache.slots.push((entry, d.cluster.clone()));
        } else {
            let slot = cache.next;
            cache.next = (slot + 1) % cache.capacity;
            if let Some((e, data)) = cache.slots.get_mut(slot) {
                *e = entry;
                data.copy_from_slice(&d.cluster);
            }
        }
        Ok(())
    }
}
