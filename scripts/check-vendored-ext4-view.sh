#!/usr/bin/env bash
# Checks that vendor/ext4-view is exactly the published ext4-view crate with Origami's patch
# series applied:
#   1. fetch the .crate named in vendor/ext4-view/ORIGAMI-UPSTREAM from crates.io (or take
#      the file given as EXT4_VIEW_CRATE=path, for offline use), check its sha256;
#   2. unpack it and apply every patch listed in vendor/ext4-view.patches/series, in order,
#      with no fuzz (a patch that does not apply exactly fails the check);
#   3. diff the result against vendor/ext4-view (Origami's own ORIGAMI-* files aside).
# Exit status 0 when they are identical; the difference is printed otherwise.
#
# With `--new-patch NAME`, the difference found in step 3 is written as the next patch of the
# series (NNNN-NAME.patch, appended to `series`) instead of failing: the way to record a
# change made in vendor/ext4-view. Edit the patch's header afterwards to say why.
set -euo pipefail
cd "$(dirname "$0")/.."

vendor=vendor/ext4-view
patches=vendor/ext4-view.patches
upstream_file=$vendor/ORIGAMI-UPSTREAM

new_patch=
case "${1:-}" in
    --new-patch)
        new_patch=${2:?"--new-patch needs a NAME"}
        ;;
    "") ;;
    *)
        echo "usage: $0 [--new-patch NAME]" >&2
        exit 2
        ;;
esac

field() {
    local v
    v=$(sed -n "s/^$1 *= *//p" "$upstream_file")
    if [ -z "$v" ]; then
        echo "$upstream_file: no '$1 = ...' line" >&2
        exit 1
    fi
    printf '%s\n' "$v"
}
name=$(field name)
version=$(field version)
url=$(field url)
want_sha=$(field sha256)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

crate=$tmp/$name-$version.crate
if [ -n "${EXT4_VIEW_CRATE:-}" ]; then
    cp "$EXT4_VIEW_CRATE" "$crate"
else
    curl -sSfL --retry 3 -o "$crate" "$url"
fi
got_sha=$(sha256sum "$crate" | cut -d' ' -f1)
if [ "$got_sha" != "$want_sha" ]; then
    echo "sha256 mismatch for $name $version: got $got_sha, $upstream_file records $want_sha" >&2
    exit 1
fi
echo "$name $version: sha256 $got_sha ok"

mkdir "$tmp/a"
tar -xzf "$crate" -C "$tmp/a" --strip-components=1

# Every patch file is in the series, and every series entry is a file.
listed=$(grep -v -e '^#' -e '^[[:space:]]*$' "$patches/series")
for p in "$patches"/*.patch; do
    if ! grep -qxF "$(basename "$p")" <<<"$listed"; then
        echo "$p is not listed in $patches/series" >&2
        exit 1
    fi
done
count=0
while read -r p; do
    if [ ! -f "$patches/$p" ]; then
        echo "$patches/series lists $p, which does not exist" >&2
        exit 1
    fi
    if ! out=$(patch -d "$tmp/a" -p1 --batch --forward --fuzz=0 --no-backup-if-mismatch \
        --remove-empty-files -i "$PWD/$patches/$p" 2>&1); then
        echo "$p does not apply:" >&2
        echo "$out" >&2
        exit 1
    fi
    count=$((count + 1))
done <<<"$listed"
echo "applied $count patches"

# The vendored tree, without Origami's own files (they are not part of the crate).
mkdir "$tmp/b"
tar -C "$vendor" --exclude='./ORIGAMI-*' -cf - . | tar -C "$tmp/b" -xf -

if (cd "$tmp" && diff -ruN a b >"$tmp/diff"); then
    if [ -n "$new_patch" ]; then
        echo "nothing to record: $vendor is the series applied" >&2
        exit 1
    fi
    echo "$vendor == $name $version + $count patches"
    exit 0
fi
if [ -n "$new_patch" ]; then
    next=$(printf '%04d-%s.patch' $((count + 1)) "$new_patch")
    {
        echo "Subject: [PATCH] $new_patch"
        echo
        echo "(say what this changes and why)"
        echo "---"
        # Without diff's timestamps, so that the patch does not change with checkouts.
        sed -E 's/^((---|\+\+\+) [^\t]+)\t.*$/\1/' "$tmp/diff"
    } >"$patches/$next"
    echo "$next" >>"$patches/series"
    echo "wrote $patches/$next and appended it to $patches/series"
    exit 0
fi
echo "$vendor differs from $name $version + the series:" >&2
cat "$tmp/diff" >&2
exit 1
