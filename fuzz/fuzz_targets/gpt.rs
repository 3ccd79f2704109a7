//! Any bytes as a GPT disk (behind a protective MBR): headers, entry arrays and the backup
//! header; typed errors, never a panic or an allocation sized by a header field.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origami_core::partition::read_partitions;

/// CRC-32 (IEEE), so the fuzzer can get past the checksums.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fuzz_target!(|data: &[u8]| {
    // Layout: a protective MBR, then the input from LBA 1 on. When the first input byte is
    // odd, the header's CRC fields are fixed up so the parser goes past them.
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
        let count = u32::from_le_bytes([disk[512 + 80], disk[512 + 81], disk[512 + 82], disk[512 + 83]]);
        let size = u32::from_le_bytes([disk[512 + 84], disk[512 + 85], disk[512 + 86], disk[512 + 87]]);
        let lba = u64::from_le_bytes(disk[512 + 72..512 + 80].try_into().unwrap_or([0; 8]));
        let bytes = u64::from(count) * u64::from(size);
        if let Some(start) = lba.checked_mul(512).filter(|s| s.saturating_add(bytes) <= disk.len() as u64) {
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
});
