#!/usr/bin/env python3
"""Writes seeds of fs_ext4 that reach the journal replay of the vendored ext4-view with
other journal formats than the template's (64bit, checksum v3): a flags byte (bit 0
verify checksums, bits 1-2 the template: 2 = ext4-journal.img), then patches
`[offset: u24 LE][len: u8][bytes]` over the template (see fuzz-harness/src/fs.rs).

- journal-plain: the template as it is (two transactions to replay);
- journal-64bit-nocsum, journal-32bit-nocsum, journal-csum-v2, journal-csum-v1: the
  journal superblock's features changed (its checksum redone where one is kept), so
  the same blocks are read as another format's tags;
- journal-wrap: the log moved so that it wraps around the journal's end (the first
  transaction in the last three blocks, the second in blocks 1-3);
- journal-bad-maxlen, -first, -start: s_maxlen past the journal inode, s_first 0,
  s_start outside the journal.

Needs debugfs (e2fsprogs). Usage: make-ext4-journal-seeds.py"""
import os, struct, subprocess

here = os.path.dirname(os.path.abspath(__file__))
template = os.path.join(here, "..", "templates", "ext4-journal.img")
FLAGS = 2 << 1
BS = 1024


def out(name, flags, patches):
    d = os.path.join(here, "fs_ext4")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes([flags]) + b"".join(patches))


def patch(offset, data):
    return struct.pack("<I", offset)[:3] + bytes([len(data)]) + data


def patches(offset, data):
    return [patch(offset + i, data[i:i + 255]) for i in range(0, len(data), 255)]


def crc32c(data, crc=0xFFFFFFFF):
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc


with open(template, "rb") as f:
    img = bytearray(f.read())
blocks = [int(b) for b in subprocess.run(
    ["debugfs", "-R", "blocks <8>", template], check=True, capture_output=True,
    text=True).stdout.split()]
sb = blocks[0] * BS


def superblock(changes):
    """The journal superblock with `changes` ({offset: u32 BE}), checksum redone."""
    s = bytearray(img[sb:sb + 1024])
    for at, v in changes.items():
        s[at:at + 4] = struct.pack(">I", v)
    s[0xFC:0x100] = b"\0" * 4
    s[0xFC:0x100] = struct.pack(">I", crc32c(bytes(s)))
    return patches(sb, bytes(s))


out("journal-plain", FLAGS, [])
out("journal-64bit-nocsum", FLAGS, superblock({0x28: 0x2}))
out("journal-32bit-nocsum", FLAGS | 1, superblock({0x28: 0x0}))
out("journal-csum-v2", FLAGS, superblock({0x28: 0x2 | 0x8}))
out("journal-csum-v1", FLAGS, superblock({0x24: 0x1, 0x28: 0x2}))
log = [bytes(img[blocks[i] * BS:(blocks[i] + 1) * BS]) for i in range(1, 7)]
moved = []
for i, content in enumerate(log[:3]):
    moved += patches(blocks[len(blocks) - 3 + i] * BS, content)
for i, content in enumerate(log[3:]):
    moved += patches(blocks[1 + i] * BS, content)
out("journal-wrap", FLAGS, moved + superblock({0x1C: len(blocks) - 3}))
out("journal-bad-maxlen", FLAGS, superblock({0x10: 0xFFFFFFFF}))
out("journal-bad-first", FLAGS, superblock({0x14: 0}))
out("journal-bad-start", FLAGS, superblock({0x1C: 5000}))
