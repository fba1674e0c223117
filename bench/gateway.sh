#!/usr/bin/env bash
# Gateway fan-out bench, in process: the real SQLite store commits 1,000-line batches and
# the real hub hands them to 1, 100 and 1,000 watchers, then a late joiner replays the
# whole job. Prints a markdown table. Not yet end to end over WebSocket (see README note
# in the report): no runner process, no sockets.
# Usage: bench/gateway.sh [LINES] [WATCHERS...]   (default 200000 lines; 1 100 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
# Each watcher is a task, not a file descriptor, here; raise the limit anyway for later
# socket-level runs.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -q -p shipwatch-bench --bin fanout
exec target/release/fanout "${1:-200000}" "${@:2}"
