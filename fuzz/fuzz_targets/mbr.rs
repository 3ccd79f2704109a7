//! Any bytes as a disk with an MBR (and EBR chains): typed errors, never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origami_core::partition::read_partitions;

fuzz_target!(|data: &[u8]| {
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
});
