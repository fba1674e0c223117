#!/usr/bin/env bash
# systemd-analyze verify on shipwatch.service, with ExecStart pointed at the built binary
# (verify insists the binary exists; the shipped unit names /usr/local/bin/shipwatch).
# Usage: systemd/verify.sh [BINARY]   (default: target/debug/shipwatch, built if missing)
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
bin=$(readlink -f "${1:-target/debug/shipwatch}")
[[ -x $bin ]] || cargo build -p shipwatch
tmp=$(mktemp -d /tmp/swunit.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
sed "s|^ExecStart=/usr/local/bin/shipwatch |ExecStart=$bin |" systemd/shipwatch.service \
    >"$tmp/shipwatch.service"
grep -q "^ExecStart=$bin " "$tmp/shipwatch.service"
# verify prints problems but may still exit 0 for some of them: fail on any output
# about our unit.
out=$(systemd-analyze verify "$tmp/shipwatch.service" 2>&1) || {
    printf '%s\n' "$out" >&2
    exit 1
}
if grep -i "shipwatch.service" <<<"$out" >&2; then
    exit 1
fi
echo "systemd-analyze verify: shipwatch.service ok"
