#!/usr/bin/env bash
# What authentication costs on the real system (`shipwatch up`, one runner):
#   rps   — requests/s of GET /api/jobs/1 anonymous vs with a Bearer token, side by side
#   flood — a watcher's p50/p99 line latency at 100 lines/s alone, then during a flood of
#           200 concurrent clients sending wrong passwords
# Usage: bench/auth.sh [rps|flood]...   (default both; about a minute). Not part of
#        tests/run.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p shipwatch --bin shipwatch || exit 1
cargo build --release -q -p shipwatch-bench --bin auth --bin linegen || exit 1
for scenario in "${@:-rps flood}"; do
    for s in $scenario; do
        case "$s" in
            rps) target/release/auth rps 5 4 ;;
            flood) target/release/auth flood 100 10 200 ;;
            *) echo "unknown scenario $s" >&2; exit 2 ;;
        esac
        echo
    done
done
