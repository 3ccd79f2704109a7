//! Disk images and partition tables (origami-core).

use origami_core::partition::read_partitions;
use origami_core::{Qcow2Image, ReadAt, VhdxImage, VmdkImage};

/// The qemu-written 3 MiB VHDX that [`vhdx`] patches.
static VHDX_TEMPLATE: &[u8] = include_bytes!("../../fuzz/templates/small.vhdx");

/// Any bytes as a qcow2 file (header, extensions, L1/L2 tables, compressed clusters), over a
/// small backing image: typed errors, never a panic, an unbounded allocation or a hang.
pub fn qcow2(data: &[u8]) {
    let Ok(img) = Qcow2Image::from_source(data.to_vec()) else {
        return;
    };
    let img = img
        .with_backing(Box::new(vec![0x5au8; 3 << 16]))
        .with_decompress_threads(2);
    let len = img.len();
    let mut buf = vec![0u8; 1 << 20];
    // The start of the device in one large read, then small unaligned reads at offsets
    // spread over the whole virtual size (which may be huge).
    let n = len.min(buf.len() as u64) as usize;
    let _ = img.read_at(0, &mut buf[..n]);
    for i in 0..64u64 {
        let off = (len / 64).saturating_mul(i).saturating_add(i * 4097);
        let n = len.saturating_sub(off).min(5000) as usize;
        let _ = img.read_at(off, &mut buf[..n]);
    }
}

/// Any bytes as a VMDK sparse extent (header, footer, descriptor, grain directory and
/// tables, compressed grains): typed errors, never a panic, an unbounded allocation or a
/// hang.
pub fn vmdk(data: &[u8]) {
    let Ok(img) = VmdkImage::from_source(data.to_vec()) else {
        return;
    };
    let len = img.len();
    let mut buf = vec![0u8; 1 << 20];
    let n = len.min(buf.len() as u64) as usize;
    let _ = img.read_at(0, &mut buf[..n]);
    for i in 0..64u64 {
        let off = (len / 64).saturating_mul(i).saturating_add(i * 4097);
        let n = len.saturating_sub(off).min(5000) as usize;
        let _ = img.read_at(off, &mut buf[..n]);
    }
}

/// CRC-32C (Castagnoli), the VHDX header and region table checksum.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Recomputes the CRC-32C at `at + 4` of the `len`-byte structure at `at`.
fn fix_crc32c(img: &mut [u8], at: usize, len: usize) {
    img[at + 4..at + 8].fill(0);
    let c = crc32c(&img[at..at + len]);
    img[at + 4..at + 8].copy_from_slice(&c.to_le_bytes());
}

/// A real (qemu-written, 3 MiB) VHDX patched by the input: headers, region tables, metadata
/// and BAT; typed errors, never a panic, an unbounded allocation or a hang.
///
/// The input is a flag byte, then records `[offset: 3 bytes LE][n: 1 byte][n bytes]` written
/// over the template. When the flag's low bit is set, the CRC-32C checksums of both headers
/// and both region tables are fixed up afterwards, so the fuzzer gets past them.
pub fn vhdx(data: &[u8]) {
    let Some((&flag, mut rest)) = data.split_first() else {
        return;
    };
    let mut img = VHDX_TEMPLATE.to_vec();
    while rest.len() >= 4 {
        let off = (usize::from(rest[0]) | usize::from(rest[1]) << 8 | usize::from(rest[2]) << 16)
            % img.len();
        let n = usize::from(rest[3])
            .min(rest.len() - 4)
            .min(img.len() - off);
        img[off..off + n].copy_from_slice(&rest[4..4 + n]);
        rest = &rest[4 + n..];
    }
    if flag & 1 == 1 {
        fix_crc32c(&mut img, 64 << 10, 4096);
        fix_crc32c(&mut img, 128 << 10, 4096);
        fix_crc32c(&mut img, 192 << 10, 64 << 10);
        fix_crc32c(&mut img, 256 << 10, 64 << 10);
    }
    let Ok(v) = VhdxImage::from_source(img) else {
        return;
    };
    let len = v.len();
    let mut buf = vec![0u8; 1 << 20];
    let n = len.min(buf.len() as u64) as usize;
    let _ = v.read_at(0, &mut buf[..n]);
    for i in 0..64u64 {
        let off = (len / 64).saturating_mul(i).saturating_add(i * 4097);
        let n = len.saturating_sub(off).min(5000) as usize;
        let _ = v.read_at(off, &mut buf[..n]);
    }
}

/// Any bytes as a disk with an MBR (and EBR chains): typed errors, never a panic or a hang.
pub fn mbr(data: &[u8]) {
    // Sector 0 always carries the signature, so the fuzzer spends its time in the entries
    // and the EBR chain rather than rediscovering 0x55AA.
    let mut disk = data.to_vec();
    if disk.len() < 512 {
        disk.resize(512, 0);
    }
    disk[510] = 0x55;
    disk[511] = 0xaa;
    if let Ok(table) = read_partitions(&disk) {
        for p in &table.partitions {
            let _ = p.open(&disk);
        }
    }
}

/// CRC-32 (IEEE), so the fuzzer can get past the GPT checksums.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Any bytes as a GPT disk (behind a protective MBR): headers, entry arrays and the backup
/// header; typed errors, never a panic or an allocation sized by a header field.
///
/// Layout: a protective MBR, then the input from LBA 1 on. When the first input byte is
/// odd, the header's CRC fields are fixed up so the parser goes past them.
pub fn gpt(data: &[u8]) {
    let mut disk = vec![0u8; 512];
    disk[446 + 4] = 0xee;
    disk[446 + 8] = 1;
    disk[510] = 0x55;
    disk[511] = 0xaa;
    disk.extend_from_slice(data);
    if disk.len() < 3 * 512 {
        disk.resize(3 * 512, 0);
    }
    if data.first().is_some_and(|b| b & 1 == 1) {
        disk[512..520].copy_from_slice(b"EFI PART");
        let le32 =
            |at: usize| u32::from_le_bytes([disk[at], disk[at + 1], disk[at + 2], disk[at + 3]]);
        let count = le32(512 + 80);
        let size = le32(512 + 84);
        let lba = u64::from_le_bytes(disk[512 + 72..512 + 80].try_into().unwrap_or([0; 8]));
        let bytes = u64::from(count) * u64::from(size);
        if let Some(start) = lba
            .checked_mul(512)
            .filter(|s| s.saturating_add(bytes) <= disk.len() as u64)
        {
            let crc = crc32(&disk[start as usize..(start + bytes) as usize]);
            disk[512 + 88..512 + 92].copy_from_slice(&crc.to_le_bytes());
        }
        disk[512 + 12..512 + 16].copy_from_slice(&92u32.to_le_bytes());
        disk[512 + 24..512 + 32].copy_from_slice(&1u64.to_le_bytes());
        disk[512 + 16..512 + 20].fill(0);
        let crc = crc32(&disk[512..512 + 92]);
        disk[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());
    }
    if let Ok(table) = read_partitions(&disk) {
        for p in &table.partitions {
            let _ = p.open(&disk);
        }
    }
}
