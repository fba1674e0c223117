#!/usr/bin/env bash
# End-to-end bench on the real system: `shipwatch up` with one runner, hosts running
# linegen (lines stamped with their send time), watchers on real WebSockets. Every line
# is checked at every watcher (gapless seq, nothing missing or doubled) or the run fails.
# The load generator shares the 2 cores with the system it measures: compare the cpu
# column (gateway vs load gen) before reading a throughput figure as the gateway's limit.
# Usage: bench/e2e.sh            (about 3 minutes; not part of tests/run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
# 10,000 idle watchers need 10,000 descriptors on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -q -p shipwatch -p shipwatch-bench --bin shipwatch --bin e2e --bin linegen
e2e=target/release/e2e

cat <<'TABLE'
| scenario | delivered | latency script -> watcher | notes |
|---|---|---|---|
TABLE
$e2e flood 1 20 50000       # target >= 200,000 lines/s (stretch 400,000)
$e2e flood 100 20 10000     # target >= 20,000 lines/s each
$e2e flood 1000 20 2000     # target >= 5,000 lines/s each
$e2e paced 1 1000 10        # target p99 <= 1 ms
$e2e paced 100 1000 10      # target p99 <= 5 ms
$e2e paced 1000 100 10      # target p99 <= 25 ms
$e2e idle 10000             # target <= 16 KB per watcher
$e2e replay 1000000         # target <= 1 s
cat <<'TARGETS'

Targets (issue 5): 1 watcher >= 200k lines/s; 100 watchers >= 20k each; 1,000 watchers
>= 5k each; p99 1 ms (1 watcher, 1,000 lines/s), 5 ms (100 at 1,000/s), 25 ms (1,000
at 100/s); idle watcher <= 16 KB; replay of 1M lines <= 1 s.
TARGETS
