#!/usr/bin/env bash
# The long fuzz run: every target for SECONDS each (default 600), keeping what it finds
# in fuzz/corpus, then the corpus minimised (cargo fuzz cmin) so what is committed stays
# small. Prints each target's executions; a crash stops it with the input's path.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
KEEP=1 fuzz/run.sh "${1:-600}"
for target in frame_decoder config_loader ws_query; do
    cargo +nightly fuzz cmin -O "$target" "fuzz/corpus/$target" >/dev/null 2>&1
    echo "fuzz: $target corpus $(ls "fuzz/corpus/$target" | wc -l) inputs, $(du -sh "fuzz/corpus/$target" | cut -f1)"
done
