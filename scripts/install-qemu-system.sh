#!/usr/bin/env bash
# Installs qemu-system-x86_64 for the live-memory test (origami-core/tests/memory_live.rs),
# at the same version as the installed qemu-utils. On these Debian 12 machines qemu-utils
# comes from bookworm-backports; Debian 12's own qemu-system-x86 (7.2) would replace it and
# take qemu-img away, so the fixtures' common.sh (`ensure_qemu system`) pins backports with
# a private apt state dir. Its `ensure_qemu system` asks for exact versions without
# `-t <suite>-backports`, which leaves qemu-system-x86's own dependencies (qemu-system-common,
# qemu-system-data, seabios) at their bookworm versions and fails; this script reuses
# common.sh's apt helpers and adds the target release. Idempotent: does nothing when
# qemu-system-x86_64 and qemu-img are there.
set -euo pipefail
if command -v qemu-system-x86_64 >/dev/null 2>&1 && command -v qemu-img >/dev/null 2>&1; then
    exit 0
fi
fixtures=${ORIGAMI_FIXTURES:-$(cd "$(dirname "$0")/../.." && pwd)/shared/fixtures}
common=$fixtures/common.sh
if [ ! -f "$common" ]; then
    echo "install-qemu-system: $common not found (set ORIGAMI_FIXTURES)" >&2
    exit 1
fi
# shellcheck source=/dev/null
source "$common"
uv=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
if [[ $uv == *bpo* ]]; then
    log "qemu-utils $uv is from backports: installing qemu-system-x86 $uv from $FIXTURE_SUITE-backports"
    apt_backports install -y -qq --no-install-recommends -t "$FIXTURE_SUITE-backports" \
        "qemu-utils=$uv" "qemu-system-x86=$uv" >/dev/null \
        || die "could not install qemu-system-x86=$uv from backports"
else
    apt_install_missing qemu-utils qemu-system-x86
fi
have qemu-img || die "qemu-img missing after install"
have qemu-system-x86_64 || die "qemu-system-x86_64 missing after install"
qemu-system-x86_64 --version | head -n 1
