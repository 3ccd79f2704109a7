#!/usr/bin/env python3
"""NTFS images whose files ntfs-3g compressed (LZNT1), and their truth.

  make.py OUTDIR     writes ntfs-4k.img.zst (4 KiB clusters: 64 KiB compression units, the
                     Windows default), ntfs-512.img.zst (512-byte clusters: 8 KiB units)
                     and truth.json

Each image is made by mkntfs, then mounted with ntfs-3g's FUSE driver and its
`compression` option (the only ntfs-3g path that writes compressed files: ntfscp and
libntfs-3g without the option write them plain); a directory gets FILE_ATTRIBUTE_COMPRESSED
through the `system.ntfs_attrib_be` extended attribute, so the files created in it are
compressed as they are written. Needs ntfs-3g, /dev/fuse and root.

Truth is this script's own input: every file's size and sha256, and its allocation as
ntfs-3g reports it (st_blocks), which shows which files were stored compressed.
"""
import hashlib, json, os, struct, subprocess, sys, tempfile

def det_bytes(seed, n):
    out, i = bytearray(), 0
    while len(out) < n:
        out += hashlib.sha256(b"%s:%d" % (seed.encode(), i)).digest()
        i += 1
    return bytes(out[:n])

def text(n):
    out, i = bytearray(), 0
    while len(out) < n:
        out += b"line %d: the quick brown fox jumps over the lazy dog %d\r\n" % (i, i * 7 % 13)
        i += 1
    return bytes(out[:n])

# name -> content: several compressed units; incompressible units (stored as they are);
# compressible, zero (left sparse), random and partial units in one file; a resident one.
FILES = {
    "text.txt": text(300_000),
    "random.bin": det_bytes("random", 70_000),
    "mixed.bin": text(65_536) + bytes(131_072) + det_bytes("mixed", 65_536) + text(1000),
    "small.txt": b"small and resident\r\n",
}

def build(outdir, cluster):
    work = tempfile.mkdtemp()
    img = os.path.join(work, "ntfs.img")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    with open(img, "wb") as f:
        f.truncate(4 << 20)
    subprocess.check_call(["mkntfs", "-q", "-F", "-Q", "-s", "512", "-c", str(cluster), "-L",
                           "LZNT1", img], stderr=subprocess.DEVNULL)
    subprocess.check_call(["ntfs-3g", "-o", "compression", img, mnt])
    out = {}
    try:
        d = os.path.join(mnt, "Compressed")
        os.mkdir(d)
        # FILE_ATTRIBUTE_DIRECTORY | FILE_ATTRIBUTE_COMPRESSED
        os.setxattr(d, "system.ntfs_attrib_be", struct.pack(">I", 0x810))
        for name, data in FILES.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        os.sync()
        for name, data in FILES.items():
            p = os.path.join(d, name)
            attrib = struct.unpack(">I", os.getxattr(p, "system.ntfs_attrib_be"))[0]
            out["/Compressed/" + name] = {
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "allocated": os.stat(p).st_blocks * 512,
                "attributes": attrib,
            }
    finally:
        subprocess.check_call(["fusermount", "-u", mnt])
    # The compressible file must really be stored compressed, or the images test nothing.
    t = out["/Compressed/text.txt"]
    assert t["attributes"] & 0x800 and t["allocated"] < t["size"] // 2, t
    name = "ntfs-%s.img.zst" % ("4k" if cluster == 4096 else cluster)
    subprocess.check_call(["zstd", "-q", "-19", "-f", img, "-o", os.path.join(outdir, name)])
    os.unlink(img)
    os.rmdir(mnt)
    os.rmdir(work)
    return name, out

def main():
    outdir = sys.argv[1]
    truth = {}
    for cluster in (4096, 512):
        name, files = build(outdir, cluster)
        truth[name] = files
    with open(os.path.join(outdir, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1, sort_keys=True)
        f.write("\n")

if __name__ == "__main__":
    main()
