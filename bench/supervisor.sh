#!/usr/bin/env bash
# The supervisor's figures: restart latency after kill -9 of a runner (median and max of
# 20; both "new process spawned" and "new runner ready") and the supervisor's idle RSS.
# Usage: bench/supervisor.sh [KILLS]   (default 20; release build)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p shipwatch
exec python3 bench/supervisor/measure.py target/release/shipwatch "${1:-20}"
