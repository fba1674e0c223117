#!/usr/bin/env bash
# The soak (tests/faults/soak.rs): back-to-back 20-host deploys over the real sshd fleet
# for SECONDS (default 1800), each with 100 checking and 300 churning watchers; prints
# every counter and each process's RSS and open descriptors at start and end, and fails
# when one grew past its bound, a line was lost or repeated, or a process was left.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
SHIPWATCH_SOAK_SECS="${1:-1800}" cargo test --test faults -- --ignored --nocapture soak 2>&1 |
    grep -E '^(soak:|process \||[a-z0-9-]+ \| [0-9]+ \| [0-9]+ \|)|panicked|test result'
