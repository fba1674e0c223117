#!/usr/bin/env bash
# One runner, 20 local hosts printing 100-byte lines as fast as they can, through the
# frame codec into a gateway double that reads and acks: lines/s and runner CPU/Mlines.
# Usage: bench/runner.sh [LINES_PER_HOST]   (default 500000, i.e. 10M lines)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p shipwatch-runner --example runner_bench
exec target/release/examples/runner_bench "${1:-500000}"
