#!/bin/sh
# Builds the small XFS and btrfs images the fs_xfs and fs_btrfs fuzz targets mutate,
# zstd-compressed (committed next to this script; rerun only to change them). Needs
# xfsprogs, btrfs-progs >= 6.13 and zstd.
#
#   xfs.img.zst     16 MiB XFS v5, one allocation group, 1 KiB blocks: short-form, block,
#                   leaf, node and B+tree directories, inline and remote symlinks, a guest /etc.
#   xfs-v4.img.zst  the same tree, v4 (no CRCs), 256-byte inodes.
#   btrfs-lzo.img.zst   btrfs (single profiles, --shrink), the tree in the default subvolume
#                   @ with a nested subvolume, another subvolume @home, LZO-compressed data.
#   btrfs-zlib.img.zst  the same, zlib.
# (mkfs.xfs refuses file systems under 300 MB unless the xfstests variables are set.)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root/etc" "$root/a/b" "$root/d/block" "$root/d/leaf" "$root/d/node" "$root/d/btree" "$root/srv/nested"
printf 'ID=fuzz\nVERSION_ID="1"\n' > "$root/etc/os-release"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
printf 'UUID=6f1b2c3d-0000-4000-8000-00000000f0b7 /home btrfs subvol=@home 0 0\n' > "$root/etc/fstab"
head -c 20000 /dev/zero | tr '\0' 'x' > "$root/a/b/multi-block"
seq 1 3000 > "$root/a/b/text"
ln -s ../etc/os-release "$root/a/short-link"
ln -s "/$(head -c 600 /dev/zero | tr '\0' 'y')" "$root/a/long-link"
i=0; while [ $i -lt 10 ]; do echo $i > "$root/d/block/file-$i"; i=$((i + 1)); done
i=0; while [ $i -lt 60 ]; do echo $i > "$root/d/leaf/leaf-entry-with-a-long-name-$i"; i=$((i + 1)); done
i=0; while [ $i -lt 400 ]; do : > "$root/d/node/node-entry-with-a-long-name-$i"; i=$((i + 1)); done
i=0; while [ $i -lt 700 ]; do echo $i > "$root/d/btree/btree-entry-with-a-long-name-$i"; i=$((i + 1)); done
echo nested > "$root/srv/nested/inside"

# The protofile (every entry root-owned, 0644/0755).
python3 - "$root" > "$work/proto" <<'PY'
import os, sys
def emit(d, depth):
    for n in sorted(os.listdir(d)):
        p = os.path.join(d, n)
        if os.path.islink(p):
            print(f"{depth}{n} l--777 0 0 {os.readlink(p)}")
        elif os.path.isdir(p):
            print(f"{depth}{n} d--755 0 0")
            emit(p, depth + " ")
            print(f"{depth}$")
        else:
            print(f"{depth}{n} ---644 0 0 {p}")
print("/dev/null\n0 0\nd--755 0 0")
emit(sys.argv[1], " ")
print("$")
PY
for v in v5 v4; do
    opts="-m crc=1"; [ $v = v4 ] && opts="-m crc=0 -i size=256"
    TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 mkfs.xfs -q -f -b size=1024 $opts \
        -m uuid=6f1b2c3d-0000-4000-8000-00000000f0a5 -L fuzz-xfs \
        -d file,name="$work/xfs.img",size=16m,agcount=1 -l size=4000b -p "$work/proto"
    name=xfs.img; [ $v = v4 ] && name=xfs-v4.img
    zstd -19 -q -f "$work/xfs.img" -o "$here/$name.zst"
done

mkdir -p "$work/b/@home/u"
cp -a "$root" "$work/b/@"
echo home > "$work/b/@home/u/file"
for c in lzo zlib; do
    : > "$work/btrfs.img"
    mkfs.btrfs -q -f -m single -d single -U 6f1b2c3d-0000-4000-8000-00000000f0b7 -L fuzz-btrfs \
        --rootdir "$work/b" --compress $c -u default:@ -u rw:@home -u rw:@/srv/nested --shrink \
        "$work/btrfs.img" >/dev/null
    zstd -19 -q -f "$work/btrfs.img" -o "$here/btrfs-$c.img.zst"
done
