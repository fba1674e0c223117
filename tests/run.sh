#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
