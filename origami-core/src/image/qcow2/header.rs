//! The qcow2 header (versions 2 and 3) and its extensions, read and checked against the
//! file before any field sizes an allocation or steers a read.
//!
//! Limits: encrypted images, external data files, unknown incompatible feature bits and
//! compression types other than deflate and zstd are refused with [`Error::Unsupported`].

use crate::bytes::{be32, be64};
use crate::error::{Error, Result};
use crate::read::ReadAt;

use super::QCOW2_MAGIC;

/// The longest backing file name qemu writes.
const MAX_BACKING_NAME: u32 = 1023;
const MIN_CLUSTER_BITS: u32 = 9;
const MAX_CLUSTER_BITS: u32 = 21;

const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_EXTERNAL_DATA: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 = INCOMPAT_DIRTY
    | INCOMPAT_CORRUPT
    | INCOMPAT_EXTERNAL_DATA
    | INCOMPAT_COMPRESSION
    | INCOMPAT_EXTENDED_L2;

const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_FULL_DISK_ENCRYPTION: u32 = 0x0537_be77;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// How compressed clusters are compressed (the v3 header's compression type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Raw deflate (RFC 1951), qemu's `zlib` type.
    Deflate,
    /// Zstandard, which sets the compression-type incompatible feature bit.
    Zstd,
}

/// The parts of a qcow2 header a reader needs, already checked against the file.
#[derive(Debug, Clone)]
pub struct Qcow2Header {
    /// 2 or 3.
    pub version: u32,
    /// log2 of the cluster size (9..=21).
    pub cluster_bits: u32,
    /// The guest-visible (virtual) size in bytes.
    pub size: u64,
    /// Entries in the L1 table, as the header states it.
    pub l1_size: u32,
    /// Where the L1 table starts in the file.
    pub l1_table_offset: u64,
    /// The incompatible feature bits (v3; 0 for v2).
    pub incompatible_features: u64,
    /// How compressed clusters are compressed.
    pub compression: Compression,
    /// L2 entries are 128-bit with a subcluster bitmap.
    pub extended_l2: bool,
    /// The backing file name as stored (relative names are relative to the image's folder).
    pub backing_file: Option<String>,
    /// The backing file's format, from the header extension, when present (`raw`, `qcow2`).
    pub backing_format: Option<String>,
}

impl Qcow2Header {
    /// Reads and checks the header (and its extensions) at the start of `src`.
    pub fn read(src: &dyn ReadAt) -> Result<Qcow2Header> {
        let corrupt = |offset: u64, reason: String| Error::Corrupt {
            source_name: src.name(),
            offset,
            reason,
        };
        let unsupported = |offset: u64, feature: String| Error::Unsupported {
            source_name: src.name(),
            offset,
            feature,
        };
        let file_len = src.len();
        if file_len < 72 {
            return Err(corrupt(
                0,
                format!("{file_len} bytes is too short for a qcow2 header"),
            ));
        }
        let mut h = [0u8; 112];
        let head_len = file_len.min(h.len() as u64) as usize;
        src.read_at(0, &mut h[..head_len])?;
        if h[..4] != QCOW2_MAGIC {
            return Err(corrupt(0, "not a qcow2 file (bad magic)".into()));
        }
        let version = be32(&h, 4);
        if version != 2 && version != 3 {
            return Err(unsupported(4, format!("qcow2 version {version}")));
        }
        let backing_file_offset = be64(&h, 8);
        let backing_file_size = be32(&h, 16);
        let cluster_bits = be32(&h, 20);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(corrupt(
                20,
                format!("cluster_bits {cluster_bits} out of 9..=21"),
            ));
        }
        let cluster_size = 1u64 << cluster_bits;
        let size = be64(&h, 24);
        let crypt_method = be32(&h, 32);
        if crypt_method != 0 {
            let kind = match crypt_method {
                1 => "AES",
                2 => "LUKS",
                _ => "unknown",
            };
            return Err(unsupported(
                32,
                format!("encrypted image ({kind} encryption, crypt_method {crypt_method})"),
            ));
        }
        let l1_size = be32(&h, 36);
        let l1_table_offset = be64(&h, 40);

        let (incompatible_features, header_length, compression_byte) = if version == 3 {
            if head_len < 104 {
                return Err(corrupt(0, "file too short for a version 3 header".into()));
            }
            let hl = be32(&h, 100);
            if hl < 104 || u64::from(hl) > cluster_size || !hl.is_multiple_of(8) {
                return Err(corrupt(100, format!("header_length {hl} invalid")));
            }
            let ct = if hl > 104 { h[104] } else { 0 };
            (be64(&h, 72), hl, ct)
        } else {
            (0, 72, 0)
        };
        let unknown = incompatible_features & !INCOMPAT_KNOWN;
        if unknown != 0 {
            return Err(unsupported(
                72,
                format!("unknown incompatible feature bits {unknown:#x}"),
            ));
        }
        if incompatible_features & INCOMPAT_EXTERNAL_DATA != 0 {
            return Err(unsupported(
                72,
                "external data file (incompatible feature bit 2)".into(),
            ));
        }
        let compression = match compression_byte {
            0 => Compression::Deflate,
            1 => Compression::Zstd,
            t => return Err(unsupported(104, format!("compression type {t}"))),
        };
        if (compression != Compression::Deflate)
            != (incompatible_features & INCOMPAT_COMPRESSION != 0)
        {
            return Err(corrupt(
                72,
                "compression type and its incompatible feature bit disagree".into(),
            ));
        }
        let extended_l2 = incompatible_features & INCOMPAT_EXTENDED_L2 != 0;
        if extended_l2 && cluster_bits < 14 {
            return Err(corrupt(
                20,
                "extended L2 entries need clusters of 16 KiB or more".into(),
            ));
        }

        // Header extensions and the backing file name live in the first cluster.
        let area_len = file_len.min(cluster_size);
        let mut backing_format = None;
        let ext_end = if backing_file_offset != 0 {
            backing_file_offset.min(area_len)
        } else {
            area_len
        };
        let mut at = u64::from(header_length);
        // Each extension is at least 8 bytes and `at` only grows: the walk ends within the
        // first cluster.
        while at + 8 <= ext_end {
            let mut eh = [0u8; 8];
            src.read_at(at, &mut eh)?;
            let ty = be32(&eh, 0);
            let len = be32(&eh, 4);
            if ty == EXT_END {
                break;
            }
            let data_at = at + 8;
            let data_end = data_at + u64::from(len);
            if data_end > ext_end {
                return Err(corrupt(
                    at,
                    format!("header extension {ty:#x} of {len} bytes runs past the header area"),
                ));
            }
            match ty {
                EXT_BACKING_FORMAT => {
                    let mut v = vec![0u8; len as usize];
                    src.read_at(data_at, &mut v)?;
                    backing_format = Some(String::from_utf8_lossy(&v).into_owned());
                }
                EXT_FULL_DISK_ENCRYPTION => {
                    return Err(unsupported(at, "full disk encryption header".into()));
                }
                EXT_DATA_FILE => {
                    return Err(unsupported(at, "external data file".into()));
                }
                _ => {}
            }
            at = data_end.div_ceil(8) * 8;
        }

        let backing_file = if backing_file_offset != 0 {
            if backing_file_size == 0 || backing_file_size > MAX_BACKING_NAME {
                return Err(corrupt(
                    16,
                    format!("backing file name of {backing_file_size} bytes"),
                ));
            }
            match backing_file_offset.checked_add(u64::from(backing_file_size)) {
                Some(end) if end <= area_len => {}
                _ => {
                    return Err(corrupt(
                        8,
                        "backing file name lies outside the first cluster".into(),
                    ))
                }
            }
            let mut v = vec![0u8; backing_file_size as usize];
            src.read_at(backing_file_offset, &mut v)?;
            Some(String::from_utf8(v).map_err(|_| {
                corrupt(backing_file_offset, "backing file name is not UTF-8".into())
            })?)
        } else {
            None
        };
        Ok(Qcow2Header {
            version,
            cluster_bits,
            size,
            l1_size,
            l1_table_offset,
            incompatible_features,
            compression,
            extended_l2,
            backing_file,
            backing_format,
        })
    }
}
