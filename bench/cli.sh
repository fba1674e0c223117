#!/usr/bin/env bash
# The client's read path: `shipwatch tail` of a finished LINES-line job to /dev/null,
# beside curl of the same job's /log (text and NDJSON), on a real `shipwatch up` with
# one local host. Prints lines/s for each. Target: tail within 2x of curl.
# Usage: bench/cli.sh [LINES]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-1000000}
cargo build --release -q --bin shipwatch
bin=$PWD/target/release/shipwatch
dir=$(mktemp -d /tmp/swcli.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
cat >"$dir/shipwatch.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
data_dir = "./data"
run_dir = "./run"
public_url = "$url"
[supervisor]
runners = 1
watch_config = false
[auth]
anonymous = "admin"
[hosts]
one = ["web-01"]
[[tasks]]
name = "flood"
hosts = ["one"]
transport = "local"
timeout_secs = 3600
script = "seq -f 'line %07g of a long job, with some text to make it look real' 1 $lines"
EOF
(cd "$dir" && exec "$bin" up -c shipwatch.toml >up.log 2>&1) &
up=$!
trap 'kill -TERM $up 2>/dev/null; wait $up 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 200); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done
export SHIPWATCH_URL=$url
id=$("$bin" run flood)
until "$bin" show "$id" | head -1 | grep -qE 'succeeded|failed|lost'; do sleep 0.5; done
echo "job $id: $("$bin" show "$id" | head -1)" >&2

measure() {
    local name=$1
    shift
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'| {sys.argv[3]} | {s:.2f} s | {int(int(sys.argv[4])/s):,} lines/s |')" \
        "$start" "$end" "$name" "$lines"
}
echo "| reader ($lines lines) | time | rate |"
echo "|---|---|---|"
measure "curl /log (text)" curl -sf "$url/api/jobs/$id/log"
measure "curl /log?format=ndjson" curl -sf "$url/api/jobs/$id/log?format=ndjson"
measure "shipwatch tail (text)" "$bin" tail "$id"
measure "shipwatch tail -o ndjson" "$bin" tail "$id" -o ndjson
