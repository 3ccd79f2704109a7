#!/bin/sh
# Builds the small file-system images the fs_ext4 and fs_fat fuzz targets mutate
# (committed next to this script; rerun only to change them). Needs e2fsprogs,
# dosfstools and mtools.
#
#   ext4.img  3 MiB, 1 KiB blocks, a 1 MiB journal, metadata_csum, extents, an htree
#             directory, inline and block symlinks, a sparse file, a small guest /etc.
#   ext4-journal.img  ext4.img with a transaction left in its journal (needs_recovery).
#   ext4-inline.img  the same tree, 3 MiB, with inline_data.
#   fat12.img 512 KiB FAT12 with long names, nested directories, a guest /etc.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root/etc" "$root/var/lib/dpkg" "$root/usr/lib/os-release.d" "$root/big/dir" "$root/a/b/c"
printf 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Fuzz 12"\n' > "$root/etc/os-release"
printf 'fuzz\n' > "$root/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:U:/home/u:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\nusers:x:100:user\n' > "$root/etc/group"
printf '127.0.0.1 localhost\n10.20.30.40 db\n' > "$root/etc/hosts"
printf 'Package: a\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 2\nArchitecture: all\n' > "$root/var/lib/dpkg/status"
i=0
while [ $i -lt 80 ]; do
    printf '%s\n' "$i" > "$root/big/dir/entry-with-a-rather-long-name-number-$i"
    i=$((i + 1))
done
head -c 20000 /dev/zero | tr '\0' 'x' > "$root/a/b/c/multi-block"
ln -s ../../etc/hosts "$root/a/short-link"
ln -s /usr/lib/os-release.d/this/is/a/symlink/target/longer/than/sixty/bytes/so/it/lives/in/a/block "$root/a/long-link"
truncate -s 300000 "$root/a/sparse"
printf 'end\n' >> "$root/a/sparse"

E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -b 1024 -J size=1 -O metadata_csum,extent,dir_index \
    -U 6f1b2c3d-0000-4000-8000-00000000f022 -E root_owner=0:0,hash_seed=6f1b2c3d-0000-4000-8000-000000000001 \
    -L fuzz -d "$root" "$work/ext4.img" 3M
# -D rebuilds directories, giving /big/dir an htree index (mkfs -d writes linear ones).
E2FSPROGS_FAKE_TIME=1700000000 e2fsck -fyD "$work/ext4.img" >/dev/null 2>&1 || [ $? -le 1 ]
cp "$work/ext4.img" "$here/ext4.img"

# The same image stopped with a transaction in its journal (debugfs's journal
# commands): one transaction with new content for /etc/hosts' block and the root
# directory's block.
cp "$work/ext4.img" "$work/ext4-journal.img"
hosts=$(debugfs -R "bmap /etc/hosts 0" "$work/ext4-journal.img" 2>/dev/null)
rootdir=$(debugfs -R "bmap / 0" "$work/ext4-journal.img" 2>/dev/null)
printf "127.0.0.1 localhost\n10.9.9.9 journ\n" > "$work/hosts.blk"
truncate -s 1024 "$work/hosts.blk"
dd if="$work/ext4-journal.img" of="$work/root.blk" bs=1024 skip="$rootdir" count=1 2>/dev/null
printf 'jo -c\njw -b %s %s\njw -b %s %s\njc\n' "$hosts" "$work/hosts.blk" "$rootdir" "$work/root.blk" |
    debugfs -w -f - "$work/ext4-journal.img" >/dev/null 2>&1
cp "$work/ext4-journal.img" "$here/ext4-journal.img"

# The same tree with inline_data (small files and directories inside their inodes).
E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -b 1024 -I 256 -J size=1 -O metadata_csum,extent,inline_data \
    -U 6f1b2c3d-0000-4000-8000-00000000f023 -E root_owner=0:0 \
    -L fuzz-inline -d "$root" "$work/ext4-inline.img" 3M
cp "$work/ext4-inline.img" "$here/ext4-inline.img"

truncate -s 512K "$work/fat12.img"
mkfs.fat -F 12 -n FUZZ -i 0f022fa7 "$work/fat12.img" >/dev/null
export MTOOLS_SKIP_CHECK=1
mcopy -s -i "$work/fat12.img" "$root/etc" "$root/var" "$root/a" ::/ 2>/dev/null || true
mmd -i "$work/fat12.img" ::/EFI ::/EFI/debian
printf 'fs0:\\EFI\\debian\\grubx64.efi\n' > "$work/startup.nsh"
mcopy -i "$work/fat12.img" "$work/startup.nsh" "::/EFI/debian/A long name with spaces.nsh"
cp "$work/fat12.img" "$here/fat12.img"
ls -l "$here"/*.img
