#!/usr/bin/env python3
"""Writes the seeds of fs_xfs and fs_btrfs: a flags byte (bit 0 verify checksums, bit 1
the other template), then patches `[offset: u24 LE][len: u8][bytes]` over the template
(see fuzz-harness/src/fs.rs). Each template plain, verified, and with one field of a
key structure changed (offsets from the structures' on-disk layouts, read from the
templates). Needs zstd. Usage: make-fs-seeds.py"""
import os, struct, subprocess

here = os.path.dirname(os.path.abspath(__file__))
tpl = os.path.join(here, "..", "templates")

def out(target, name, data):
    d = os.path.join(here, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def patch(offset, data):
    return struct.pack("<I", offset)[:3] + bytes([len(data)]) + data

def image(name):
    return subprocess.run(["zstd", "-d", "-c", os.path.join(tpl, name)], check=True,
                          capture_output=True).stdout

for flags, name in [(0, "v5"), (2, "v4")]:
    img = image("xfs.img.zst" if flags == 0 else "xfs-v4.img.zst")
    out("fs_xfs", f"{name}-plain", bytes([flags]))
    bs, = struct.unpack_from(">I", img, 4)
    isz, = struct.unpack_from(">H", img, 104)
    inopblog = img[123]
    root, = struct.unpack_from(">Q", img, 56)
    root_off = (root >> inopblog) * bs + (root & ((1 << inopblog) - 1)) * isz
    # The root directory's fork format made "B+tree", and its size doubled.
    out("fs_xfs", f"{name}-root-format-btree", bytes([flags]) + patch(root_off + 5, b"\x03"))
    out("fs_xfs", f"{name}-root-size", bytes([flags]) + patch(root_off + 56, struct.pack(">Q", 1 << 40)))
    # Allocation-group count and directory block size.
    out("fs_xfs", f"{name}-agcount", bytes([flags]) + patch(88, struct.pack(">I", 7)))
    out("fs_xfs", f"{name}-dirblklog", bytes([flags]) + patch(192, b"\x03"))
out("fs_xfs", "v5-verify", b"\x01")

for flags, name in [(0, "lzo"), (2, "zlib")]:
    out("fs_btrfs", f"{name}-plain", bytes([flags]))
    sb = 0x10000
    # The bootstrap chunk's stripe offset, the root tree's level, the node size.
    out("fs_btrfs", f"{name}-sys-chunk-stripe", bytes([flags]) + patch(sb + 0x32b + 17 + 48 + 8, struct.pack("<Q", 1 << 22)))
    out("fs_btrfs", f"{name}-root-level", bytes([flags]) + patch(sb + 0xc6, b"\x01"))
    out("fs_btrfs", f"{name}-nodesize", bytes([flags]) + patch(sb + 0x94, struct.pack("<I", 8192)))
out("fs_btrfs", "lzo-verify", b"\x01")
