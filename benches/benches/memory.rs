//! Guest memory reads on the fixture dump (memdump/memory.elf, 256 MiB of a Linux guest):
//! translated 4 KiB reads per second through `VirtualMemory` (each one a page-table walk
//! plus the copy), sequential GB/s through `VirtualMemory` and through `read_phys`, and the
//! floor: a plain memcpy out of the same file mapped with memmap2.
//!
//! Run: `cargo bench -p origami-benches --bench memory`. Skips when the fixtures are
//! missing.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use origami_core::memory::{MemoryDump, PhysicalMemory};
use origami_core::paging::{PagingMode, VirtualMemory};

const SEQ: usize = 64 << 20;
const CHUNK: usize = 1 << 20;

fn hex(v: &serde_json::Value) -> u64 {
    v.as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0)
}

fn memory(c: &mut Criterion) {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let path = fx.path("memdump/memory.elf");
    let truth = fx.json("memdump/truth.json");
    let dump = MemoryDump::open(&path).expect("the fixture dump opens");
    let cpu = dump.cpus().first().expect("the dump has CPU notes").clone();
    let virt = VirtualMemory::new(&dump, cpu.cr3, PagingMode::Level4);
    let pob = hex(&truth["kernel"]["page_offset_base"]);
    let text = hex(&truth["kernel"]["symbols_runtime"]["_text"]);
    let end = hex(&truth["kernel"]["symbols_runtime"]["_end"]);

    // Pages that map as 4 KiB pages (a full four-level walk each): from the kernel image and
    // the direct map; and the direct map's large pages for comparison.
    let mut small = Vec::new();
    let mut large = Vec::new();
    let candidates = (text..end)
        .step_by(4096)
        .chain((pob..pob + (256 << 20)).step_by(4096));
    for va in candidates {
        if let Ok(t) = virt.translate_page(va) {
            if t.page_size == 4096 {
                small.push(va);
            } else if large.len() < 4096 {
                large.push(va);
            }
        }
    }
    // Spread the reads over the address space rather than walking pages in order.
    let spread = |v: &mut Vec<u64>| {
        let n = v.len();
        if n > 1 {
            let step = n / 2 + 1;
            let order: Vec<u64> = (0..n).map(|i| v[(i * step) % n]).collect();
            *v = order;
        }
        v.truncate(4096);
    };
    spread(&mut small);
    spread(&mut large);
    eprintln!(
        "memory bench: {} 4 KiB-mapped pages, {} large-mapped pages sampled",
        small.len(),
        large.len()
    );

    let mut g = c.benchmark_group("memory");
    g.sample_size(20);
    g.measurement_time(std::time::Duration::from_secs(4));
    let mut page = vec![0u8; 4096];
    for (name, set) in [
        ("virt_4k_read_4k_pages", &small),
        ("virt_4k_read_large_pages", &large),
    ] {
        if set.is_empty() {
            continue;
        }
        g.throughput(Throughput::Elements(set.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                for &va in set.iter() {
                    virt.read(va, &mut page).expect("mapped page");
                }
                black_box(&page);
            })
        });
    }

    // Sequential: 64 MiB of the direct map (= physical 0x1000000..) in 1 MiB reads.
    let mut buf = vec![0u8; CHUNK];
    let base = 0x0100_0000u64;
    g.throughput(Throughput::Bytes(SEQ as u64));
    g.bench_function("virt_sequential_64MiB", |b| {
        b.iter(|| {
            for i in 0..SEQ / CHUNK {
                virt.read(pob + base + (i * CHUNK) as u64, &mut buf)
                    .expect("direct map");
            }
            black_box(&buf);
        })
    });
    g.bench_function("phys_sequential_64MiB", |b| {
        b.iter(|| {
            for i in 0..SEQ / CHUNK {
                dump.read_phys(base + (i * CHUNK) as u64, &mut buf)
                    .expect("RAM");
            }
            black_box(&buf);
        })
    });
    // The floor: memcpy of the same bytes out of the file mapped by memmap2.
    let file = std::fs::File::open(&path).expect("open");
    // SAFETY: the fixture file is read-only and not modified while mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.expect("map");
    let load_offset = truth["dump"]["elf_load_segments"][0]["file_offset"]
        .as_u64()
        .unwrap_or(0) as usize;
    g.bench_function("memcpy_mapped_file_64MiB", |b| {
        b.iter(|| {
            for i in 0..SEQ / CHUNK {
                let at = load_offset + base as usize + i * CHUNK;
                buf.copy_from_slice(&map[at..at + CHUNK]);
            }
            black_box(&buf);
        })
    });
    g.finish();
}

criterion_group!(benches, memory);
criterion_main!(benches);
