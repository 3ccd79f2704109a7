#!/usr/bin/env python3
"""Writes small seed inputs for the memory fuzz targets (run: cd fuzz && RUSTC_BOOTSTRAP=1
cargo fuzz run memory_elf seeds/memory_elf ...). The ELF seed keeps the fixture dump's real
headers and notes (CPU states, VMCOREINFO) with its PT_LOADs shrunk to a few pages; the
others are built from their format descriptions. Usage: make-seeds.py FIXTURES_CACHE"""
import os, struct, sys, zlib

fx = sys.argv[1] if len(sys.argv) > 1 else "/work/fx"
here = os.path.dirname(os.path.abspath(__file__))

def out(target, name, data):
    d = os.path.join(here, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

# ELF: real headers and notes, PT_LOADs cut to 2 pages each, stored after the notes.
with open(os.path.join(fx, "memdump/memory.elf"), "rb") as f:
    head = bytearray(f.read(8192))
phoff, = struct.unpack_from("<Q", head, 32)
phnum, = struct.unpack_from("<H", head, 56)
first_load = min(struct.unpack_from("<Q", head, phoff + i * 56 + 8)[0]
                 for i in range(phnum) if struct.unpack_from("<I", head, phoff + i * 56)[0] == 1)
elf = bytearray(head[:first_load])
for i in range(phnum):
    at = phoff + i * 56
    if struct.unpack_from("<I", elf, at)[0] != 1:
        continue
    struct.pack_into("<Q", elf, at + 8, len(elf))      # p_offset
    struct.pack_into("<Q", elf, at + 32, 0x2000)       # p_filesz
    struct.pack_into("<Q", elf, at + 40, 0x2000)       # p_memsz
    elf += bytes(range(256)) * 32
out("memory_elf", "qemu-shrunk.elf", bytes(elf))

# LiME: two ranges.
lime = b""
for first, data in [(0x1000, b"A" * 64), (0x100000, b"B" * 32)]:
    lime += struct.pack("<4sIQQ8s", b"EMiL", 1, first, first + len(data) - 1, b"\0" * 8) + data
out("memory_lime", "two-ranges.lime", lime)

# kdump (diskdump v6): 4 KiB blocks, 1 sub-header block, 2 bitmap blocks, 4 pages dumped
# (page 0 zlib, pages 1-3 raw), a VMCOREINFO text in the sub-header area.
bs = 4096
vmci = b"OSRELEASE=6.1.0\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=ffffffff82a10000\n"
hdr = bytearray(bs)
hdr[0:8] = b"KDUMP   "
struct.pack_into("<i", hdr, 8, 6)
struct.pack_into("<IiiIII", hdr, 424, 1, bs, 1, 2, 16, 16)
struct.pack_into("<i", hdr, 460, 1)
sub = bytearray(bs)
vm_off = bs + 512
struct.pack_into("<QiiQQqQ", sub, 0, 0, 31, 0, 0, 16, vm_off, len(vmci))
struct.pack_into("<QQQ", sub, 80, 0, 16, 16)
sub[512:512 + len(vmci)] = vmci
bitmap = bytearray(bs)
bitmap[0] = 0x0f
bitmaps = bitmap + bitmap
pages = [zlib.compress(bytes(bs))] + [bytes([p]) * bs for p in (1, 2, 3)]
data_at = 4 * bs  # header, sub-header, two bitmap blocks
descs = b""
blob = b""
for i, p in enumerate(pages):
    descs += struct.pack("<qIIQ", data_at + 4 * 24 + len(blob), len(p), 1 if i == 0 else 0, 0)
    blob += p
out("memory_kdump", "four-pages.kdump", bytes(hdr + sub + bitmaps) + descs + blob)

# Page walk: root 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000 -> page 0x5000, plus a
# 2 MiB entry; head = root, vaddr, mode.
ram = bytearray(0x6000)
struct.pack_into("<Q", ram, 0x1000, 0x2003)
struct.pack_into("<Q", ram, 0x2000, 0x3003)
struct.pack_into("<Q", ram, 0x3000, 0x4003)
struct.pack_into("<Q", ram, 0x3008, 0x0083)
struct.pack_into("<Q", ram, 0x4000, 0x5003)
ram[0x5000:0x5010] = b"Linux version 6."
out("page_walk", "four-levels", struct.pack("<QQB", 0x1000, 0x10, 0) + bytes(ram))

out("vmcoreinfo", "sample", open(os.path.join(fx, "memdump/vmcoreinfo.txt"), "rb").read())
