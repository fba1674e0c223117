#!/usr/bin/env bash
# The gateway under callgrind (instruction counts are stable on a loaded box; wall time is
# not): `shipwatch gateway` alone under valgrind (the supervisor's pidfd_open is not in
# Debian's valgrind 3.19), the runner native, one job of 20 local hosts × PER_HOST linegen
# lines of 100 bytes followed by one `shipwatch tail` watcher, then REPLAYS WebSocket
# watchers reading the finished job from after=0 at once. Part 1 of the profile
# (callgrind.out.1) is the flood to one watcher, the last part the replays.
# Usage: bench/callgrind.sh [PER_HOST=5000] [REPLAYS=10]   (after cargo build --release
#        -p shipwatch -p shipwatch-bench); prints where the profile is, then
#        callgrind_annotate --inclusive=no DIR/callgrind.out.1 | head -40
set -u
cd "$(dirname "$0")/.."
bin=${BIN:-$PWD/target/release}
per=${1:-5000}; replays=${2:-10}
dir=$(mktemp -d /tmp/swcg.XXXXXX)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
hosts=$(for i in $(seq -w 1 20); do printf '"h-%s", ' "$i"; done)
cat > "$dir/shipwatch.toml" <<EOT
[server]
listen = "127.0.0.1:$port"
data_dir = "./data"
run_dir = "./run"
max_log_bytes = 1073741824

[auth]
anonymous = "admin"

[hosts]
load = [${hosts%, }]

[[tasks]]
name = "load"
hosts = ["load"]
transport = "local"
batch = "100%"
timeout_secs = 3600
script = '''exec $bin/linegen --lines $per --rate 0 --size 100 --start-file $dir/go'''
EOT
# A WebSocket reader of /ws/jobs/JOB?after=0 to its close: frames and events it got.
cat > "$dir/wsread.py" <<'EOT'
import base64, os, socket, sys
port, job = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET /ws/jobs/{job}?after=0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
f = s.makefile("rb", buffering=1 << 20)
while f.readline() not in (b"\r\n", b""):
    pass
frames = events = 0
while True:
    h = f.read(2)
    if len(h) < 2:
        break
    op, n = h[0] & 15, h[1] & 127
    if n == 126:
        n = int.from_bytes(f.read(2), "big")
    elif n == 127:
        n = int.from_bytes(f.read(8), "big")
    data = f.read(n)
    if op == 8:
        print(f"close {int.from_bytes(data[:2], 'big')} frames {frames} events {events}")
        break
    if op == 1:
        frames += 1
        events += data.count(b'"seq":')
EOT
cd "$dir" || exit 1
SHIPWATCH_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    "$bin/shipwatch" gateway -c shipwatch.toml > gateway.log 2>&1 &
gw=$!
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/healthz" > /dev/null && break; sleep 0.2; done
SHIPWATCH_LOG=warn "$bin/shipwatch" runner --index 0 -c shipwatch.toml > runner.log 2>&1 &
rn=$!
metric() { curl -sf "http://127.0.0.1:$port/metrics" | grep -E "^$1 " | cut -d' ' -f2; }
for _ in $(seq 600); do [ "$(metric shipwatch_runners)" = 1 ] && break; sleep 0.2; done
id=$(curl -sf -X POST -H 'content-type: application/json' -d '{"task":"load"}' \
    "http://127.0.0.1:$port/api/jobs" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
"$bin/shipwatch" tail "$id" --server "http://127.0.0.1:$port" > tail.out 2> tail.err &
tl=$!
for _ in $(seq 600); do [ "$(metric shipwatch_ws_watchers)" = 1 ] && break; sleep 0.2; done
touch go
wait $tl
echo "1 watcher: $(wc -l < tail.out) lines"
callgrind_control -d "$gw" > /dev/null
pids=()
for i in $(seq "$replays"); do python3 wsread.py "$port" "$id" > "replay.$i.out" 2>&1 & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done
echo "$replays replays: $(sort replay.*.out | uniq -c | tr -s ' \n' ' ')"
echo "store reads for watchers: $(metric shipwatch_watcher_store_reads_total)"
kill -TERM $rn $gw; wait $gw; wait $rn
for f in callgrind.out.1 callgrind.out; do echo "$dir/$f: $(grep -a '^summary' "$f")"; done
