#!/usr/bin/env bash
# End-to-end bench on the real system (issue 5's targets): `shipwatch up` with one
# runner, hosts running linegen (lines stamped with their send time), watchers on real
# WebSockets. Every line is checked at every watcher (gapless seq, every host's lines once
# and in order) or the scenario fails, keeps its temp dir and says why on stderr.
# The load generator shares the 2 cores with the system it measures: read the cpu
# figures in the notes (gateway vs load gen vs others) before taking a throughput as the
# gateway's limit.
# Usage: bench/e2e.sh [SCENARIO...]   from anywhere; about 3 minutes for all; not part of
#        tests/run.sh. SCENARIO: a b c d e f g h i j k l (default all), see the list below.
set -uo pipefail
cd "$(dirname "$0")/.."
# 10,000 idle watchers need 10,000 descriptors on each side; e2e raises its own soft
# limit to the hard one too, and the gateway inherits it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# Two builds, so the shipwatch binary's dependencies resolve exactly as in everyone
# else's `cargo build --release -p shipwatch` and its artifacts are shared.
cargo build --release -q -p shipwatch --bin shipwatch || exit 1
cargo build --release -q -p shipwatch-bench --bin e2e --bin linegen || exit 1
e2e=target/release/e2e

want=("${@:-a b c d e f g h i j k l}")
want=" ${want[*]} "
failed=0
run() { # letter, e2e arguments
    case "$want" in *" $1 "*) ;; *) return ;; esac
    shift
    "$e2e" "$@" || failed=$((failed + 1))
}

echo "shipwatch $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- . 2>/dev/null || echo '+dirty'), $(nproc) cores, load before:$(uptime | sed 's/.*load average://')"
echo
echo "| figure | measured | target | met | notes |"
echo "|---|---|---|---|---|"
run a flood 1 20 50000       # 1 runner -> 1 watcher, 1M lines
run b flood 100 20 10000     # 100 watchers, 200k lines
run c flood 1000 20 2000     # 1,000 watchers, 40k lines
run d paced 1 1000 10        # latency, 1 watcher at 1,000 lines/s
run d paced 100 1000 10      # latency, 100 watchers at 1,000 lines/s
run d paced 1000 100 10      # latency, 1,000 watchers at 100 lines/s
run e idle 10000             # gateway RSS per idle watcher
run f replay 1000000         # late joiner of a finished 1M-line job
run g churn 100 20 5000      # exactness: 100 from the start + 100 joining, slow readers
run h stalled 4 20 50000     # 4 watchers that never read during 1M lines, then catch up
run i flood 1000 20 5000     # 1,000 watchers on a job larger than the fan-out ring (32 MiB)
run j crash 100 20 25000 2   # gateway SIGKILLed twice during 500k lines: nothing lost or doubled
run k store 10000000 20 25000   # disk: a flood capped at 10 MB of text, database + WAL after it
run l ssh 20 5 0.5              # a 20-host deploy over real sshd in 5 waves, twice: per-host overhead
echo
echo "load after:$(uptime | sed 's/.*load average://'); $failed scenario(s) failed"
exit $((failed > 0))
