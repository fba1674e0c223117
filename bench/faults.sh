#!/usr/bin/env bash
# The fault suite (tests/faults, issue 12) at the issue's sizes: each scenario a 20-host
# deploy over the real sshd fleet with 100 checking watchers, 10,000 churning watchers,
# 100 config rewrites, the 20 ms restart bound. Prints the table of every scenario's row
# (a failing scenario still prints its row, then the run exits non-zero). Root: network
# namespaces, a tmpfs mount. Extra arguments go to the test binary (a scenario's name).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

table=$(mktemp)
trap 'rm -f "$table"' EXIT
rc=0
SHIPWATCH_FAULTS=full SHIPWATCH_FAULTS_TABLE="$table" \
    cargo test --test faults -- --test-threads=1 "$@" || rc=$?
echo
echo "scenario | events expected | delivered | lost | duplicated | final states ok | leaked processes | leaked fds | notes"
cat "$table"
exit "$rc"
