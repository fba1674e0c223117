#!/usr/bin/env bash
# Runs every cargo fuzz target for SECONDS each (default 20) on a copy of its committed
# corpus (fuzz/corpus/TARGET, read only here) and prints each target's executions.
# Needs the nightly toolchain; installs cargo-fuzz from crates.io when missing.
# KEEP=1 writes what the run finds back into fuzz/corpus (bench/fuzz.sh does, then cmin).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

SECONDS_EACH=${1:-20}
TARGETS=(frame_decoder config_loader ws_query)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

cargo +nightly fuzz build -O
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in "${TARGETS[@]}"; do
    if [[ ${KEEP:-0} == 1 ]]; then
        dirs=("fuzz/corpus/$target")
    else
        mkdir -p "$work/$target"
        dirs=("$work/$target" "fuzz/corpus/$target")
    fi
    log="$work/$target.log"
    if ! cargo +nightly fuzz run -O "$target" "${dirs[@]}" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=1024 -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz: $target FAILED (the crashing input is under fuzz/artifacts/$target)" >&2
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    printf 'fuzz: %-14s %10s executions in %ss, no crash\n' "$target" "$runs" "$SECONDS_EACH"
done
