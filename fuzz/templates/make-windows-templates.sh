#!/usr/bin/env bash
# Templates of the fs_ntfs and registry_hive fuzz targets (fuzz-harness/src/windows.rs):
#   ntfs.img    a 2 MiB NTFS volume (mkntfs) with directories, files (resident and not), an
#               alternate data stream, a hard link and a directory (/Many) whose index
#               has an INDX block, placed as the Windows fixture places
#               them (scripts/fixtures/windows/build.py: libntfs-3g and ntfscp, no mount),
#               then /Compressed: LZNT1-compressed files, written through ntfs-3g's FUSE
#               driver with its `compression` option (the only ntfs-3g path that writes
#               compressed files; needs /dev/fuse): 8 KiB units compressed, stored whole
#               and left sparse;
#   system.hive the Windows fixture's SYSTEM hive (hivexregedit --merge of SYSTEM.reg).
# Usage: make-windows-templates.sh   (writes beside itself; needs ntfs-3g, libwin-hivex-perl)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
win="$here/../../scripts/fixtures/windows"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
truncate -s 2M "$work/ntfs.img"
mkntfs -q -F -Q -s 512 -c 512 -L T "$work/ntfs.img" 2>/dev/null
python3 "$win/build.py" hives "$work"
PYTHONPATH="$win" python3 - "$work" <<'PY'
import os, sys, build
work = sys.argv[1]
img = os.path.join(work, "ntfs.img")
v = build.Ntfs(img)
for d in ["Windows/System32/drivers/etc", "Users/alice/Documents", "Empty", "Many"]:
    v.mkdirs(d)
v.close()
build.ntfscp(img, work, build.HOSTS, "Windows/System32/drivers/etc/hosts")
build.ntfscp(img, work, b"notes\r\n", "Users/alice/Documents/notes.txt")
build.ntfscp(img, work, b"[ZoneTransfer]\r\nZoneId=3\r\n", "Users/alice/Documents/notes.txt",
             "Zone.Identifier")
build.ntfscp(img, work, build.det_bytes("t", 20000), "Windows/big.bin")
# Enough names that /Many's index spills out of its MFT record into an INDX block.
for i in range(40):
    build.ntfscp(img, work, b"%d" % i, "Many/file-with-a-long-name-%02d.txt" % i)
v = build.Ntfs(img)
v.link("Users/alice/Documents/link.txt", "Users/alice/Documents/notes.txt")
v.close()
PY
mkdir "$work/mnt"
ntfs-3g -o compression "$work/ntfs.img" "$work/mnt"
python3 - "$work/mnt" "$win" <<'PY'
import os, struct, sys
sys.path.insert(0, sys.argv[2])
import build
d = os.path.join(sys.argv[1], "Compressed")
os.mkdir(d)
os.setxattr(d, "system.ntfs_attrib_be", struct.pack(">I", 0x810))  # directory, compressed
text = b"".join(b"line %d of a compressible file\r\n" % i for i in range(800))
with open(os.path.join(d, "text.txt"), "wb") as f:
    f.write(text[:20000])
with open(os.path.join(d, "mixed.bin"), "wb") as f:
    f.write(text[:8192] + bytes(8192) + build.det_bytes("mixed", 8192) + text[:100])
PY
fusermount -u "$work/mnt"
cp "$work/ntfs.img" "$here/ntfs.img"
cp "$work/SYSTEM" "$here/system.hive"
