#!/usr/bin/env bash
# make-xfs-btrfs-images.sh xfs|btrfs OUTDIR
#
# Builds the XFS or btrfs test images of origami-introspect's tests/it/disk_xfs.rs and
# tests/it/disk_btrfs.rs with Debian's own tools and no mount, and writes their ground truth
# from the source trees (fixture_tool.py manifest: path, type, size, mode, uid, gid, symlink
# target, sha256), never from origami:
#
#   xfs:   OUTDIR/xfs-v5.img (mkfs.xfs -p PROTOFILE), OUTDIR/xfs-v4.img (-m crc=0, 256-byte
#          inodes), OUTDIR/xfs-tree.manifest.json, OUTDIR/xfs-times.txt ("START END": the
#          protofile gives every inode the time of mkfs, so mtimes lie in that window);
#          OUTDIR/xfs-forms.txt: the directory and data-fork forms xfs_db reports.
#   btrfs: OUTDIR/btrfs-{none,zlib,lzo,zstd}.img (mkfs.btrfs --rootdir --compress ALGO,
#          subvolumes with --subvol: @ the default, @home, and @/srv/nested inside it),
#          OUTDIR/btrfs-root.manifest.json (what the default subvolume shows, nested
#          subvolume included), OUTDIR/btrfs-home.manifest.json (@home).
#
# Needs root (the trees hold devices and files of other owners), python3, xfsprogs and
# btrfs-progs >= 6.11 (--subvol; --compress is 6.13). ORIGAMI_FIXTURES names the shared
# fixture folder holding fixture_tool.py. The result appears atomically (built in
# OUTDIR/.work-KIND, moved into place last).
set -euo pipefail
[[ $# -eq 2 ]] || { sed -n '2,24p' "$0" >&2; exit 2; }
kind=$1
mkdir -p "$2"
out=$(cd "$2" && pwd)
tool=${ORIGAMI_FIXTURES:?set ORIGAMI_FIXTURES to the shared fixture folder}/fixture_tool.py
export TZ=UTC LC_ALL=C.UTF-8
umask 022
work=$out/.work-$kind
rm -rf "$work"
mkdir -p "$work"

# The synthetic ext4 tree of the shared fixtures, plus directories big enough for every
# directory form and long symlinks.
make_tree() {
    local t=$1
    python3 "$tool" synth-tree "$t" --flavor ext4 --epoch 1700000000 >/dev/null
    python3 - "$t" <<'EOF'
import os, sys
t = sys.argv[1]
def w(p, data):
    with open(p, "wb") as f:
        f.write(data)
forms = os.path.join(t, "forms")
for name, n, content in [("block", 20, True), ("leaf", 200, True),
                         ("node", 3000, False), ("btree", 5000, True)]:
    d = os.path.join(forms, name)
    os.makedirs(d)
    for i in range(n):
        w(os.path.join(d, f"entry-{i:05d}-{name}-directory-form.txt"),
          (f"{name} {i}\n".encode() if content else b""))
links = os.path.join(t, "links")
os.symlink("/" + "r" * 399 + "/remote-400", os.path.join(links, "remote-symlink-412"))
os.symlink("x" * 1023, os.path.join(links, "max-symlink-1023"))
# A file of 40 MiB of text (mkfs.xfs -p of xfsprogs 6.1 writes a file as one extent, at
# most an allocation group: a bigger file would be cut short, so the extent B+trees of
# these images are those of the big directories).
with open(os.path.join(t, "big-text.bin"), "wb") as f:
    line = 0
    while f.tell() < 40 * 1024 * 1024 + 777:
        f.write(b"big line %09d the quick brown fox jumps over the lazy dog\n" % line)
        line += 1
    f.truncate(40 * 1024 * 1024 + 777)
EOF
}

case $kind in
xfs)
    tree=$work/tree
    make_tree "$tree"
    # The protofile format has no sockets and no sticky bit: the tree the manifest
    # describes is the one the protofile can express.
    rm -f "$tree/special/socket"
    chmod 0777 "$tree/sticky-dir"
    find "$tree" -exec touch -h -d @1700000000 {} +
    python3 "$tool" manifest "$tree" --out "$work/xfs-tree.manifest.json" \
        --meta '{"tree":"xfs-tree","note":"ground truth for xfs-v5.img and xfs-v4.img (mkfs.xfs -p); mtimes are the time of mkfs (see xfs-times.txt)"}'
    python3 "$(dirname "$0")/xfs-protofile.py" "$tree" >"$work/proto"
    start=$(date +%s)
    truncate -s 400M "$work/xfs-v5.img"
    mkfs.xfs -q -f -L origami-xfs5 -m uuid=5f0e7a2c-1b3d-4e5f-8a9b-0c1d2e3f4a5b \
        -p "$work/proto" "$work/xfs-v5.img"
    truncate -s 400M "$work/xfs-v4.img"
    mkfs.xfs -q -f -L origami-xfs4 -m crc=0,uuid=4f0e7a2c-1b3d-4e5f-8a9b-0c1d2e3f4a5b \
        -i size=256 -p "$work/proto" "$work/xfs-v4.img"
    end=$(date +%s)
    echo "$start $end" >"$work/xfs-times.txt"
    # What xfs_db says the forms are (a record for people; the tests read the images).
    for img in xfs-v5 xfs-v4; do
        for p in / /hello.txt /forms /forms/block /forms/leaf /forms/node /forms/btree \
            /links/rel-symlink /links/max-symlink-1023 /big-text.bin; do
            f=$(xfs_db -r -c "path $p" -c "print core.format core.nextents core.size" \
                "$work/$img.img" | tr '\n' ' ')
            echo "$img $p $f"
        done
    done >"$work/xfs-forms.txt"
    rm -rf "$tree" "$work/proto"
    mv "$work"/xfs-* "$out/"
    ;;
btrfs)
    src=$work/src
    mkdir -p "$src"
    make_tree "$src/@"
    mkdir -p "$src/@/srv/nested" "$src/@/etc" "$src/@home/alice"
    printf 'NAME="Origami btrfs test"\nID=origami\n' >"$src/@/etc/os-release"
    printf 'UUID=7b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d / btrfs defaults 0 0\nUUID=7b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d /home btrfs subvol=@home 0 0\n' >"$src/@/etc/fstab"
    mkdir -p "$src/@/home"
    printf 'in a nested subvolume\n' >"$src/@/srv/nested/inside.txt"
    printf 'alice home file\n' >"$src/@home/alice/notes.txt"
    python3 "$tool" detfile "$src/@home/alice/random.bin" 300000 alice
    chown -R 1000:1000 "$src/@home/alice"
    find "$src" -exec touch -h -d @1700000000 {} +
    python3 "$tool" manifest "$src/@" --out "$work/btrfs-root.manifest.json" \
        --meta '{"tree":"btrfs-root","note":"ground truth for the default subvolume @ of btrfs-*.img (mkfs.btrfs --rootdir)"}'
    python3 "$tool" manifest "$src/@home" --out "$work/btrfs-home.manifest.json" \
        --meta '{"tree":"btrfs-home","note":"ground truth for the subvolume @home of btrfs-*.img"}'
    for c in none zlib lzo zstd; do
        comp=()
        [[ $c != none ]] && comp=(--compress "$c")
        : >"$work/btrfs-$c.img"
        mkfs.btrfs -q -f -L "origami-$c" -U 7b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d \
            --rootdir "$src" "${comp[@]}" -u default:@ -u rw:@home -u rw:@/srv/nested \
            --shrink "$work/btrfs-$c.img" >/dev/null
    done
    rm -rf "$src"
    mv "$work"/btrfs-* "$out/"
    ;;
*)
    echo "make-xfs-btrfs-images.sh: unknown kind $kind (xfs or btrfs)" >&2
    exit 2
    ;;
esac
rm -rf "$work"
