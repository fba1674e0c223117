#!/usr/bin/env python3
"""Restart latency after kill -9 and idle RSS of `shipwatch up`, talking to its control
socket directly (a `ctl` process per poll would measure exec, not the supervisor).

Usage: measure.py BINARY [KILLS]
"""
import json
import shutil
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BIN = os.path.abspath(sys.argv[1])
KILLS = int(sys.argv[2]) if len(sys.argv) > 2 else 20


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def status(sock_path):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.sendall(b'{"cmd":"status"}\n')
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return {p["name"]: p for p in json.loads(data)["processes"]}


def wait(what, cond, timeout=30.0):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            value = cond()
            if value:
                return value
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.0005)
    sys.exit(f"timed out waiting for {what}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    tmp = tempfile.mkdtemp(prefix="swb", dir="/tmp")
    port = free_port()
    cfg = os.path.join(tmp, "shipwatch.toml")
    with open(cfg, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{port}"
data_dir = "./data"
run_dir = "./run"
public_url = "http://127.0.0.1:{port}"
[supervisor]
runners = 4
start_secs = 0.2
[hosts]
web = ["web-01"]
[[tasks]]
name = "deploy"
hosts = ["web"]
transport = "local"
script = "echo hi"
""")
    log = open(os.path.join(tmp, "up.log"), "w")
    up = subprocess.Popen([BIN, "up", "-c", cfg], cwd=tmp, stdout=log, stderr=log,
                          env={k: v for k, v in os.environ.items()
                               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")})
    sock = os.path.join(tmp, "run", "control.sock")
    try:
        wait("all running", lambda: all(p["state"] == "running"
                                         for p in status(sock).values())
             and len(status(sock)) == 5)
        spawn_ms, ready_ms = [], []
        for i in range(KILLS):
            victim = f"runner-{i % 4}"
            before = status(sock)[victim]
            # A restart is immediate only after a good run (start_secs).
            wait("good run", lambda: (status(sock)[victim]["uptime_us"] or 0) > 250_000)
            t0 = time.monotonic()
            os.kill(before["pid"], signal.SIGKILL)
            new = wait("new pid", lambda: (lambda p: p if p["pid"] not in (None, before["pid"]) else None)(status(sock)[victim]))
            t_seen = time.monotonic()
            spawn_ms.append(((t_seen - new["uptime_us"] / 1e6) - t0) * 1000)
            wait("running", lambda: status(sock)[victim]["state"] == "running")
            ready_ms.append((time.monotonic() - t0) * 1000)
        time.sleep(2)  # idle: nothing starting, nothing logging
        rss = rss_kib(up.pid)
        print(f"restart after kill -9, {KILLS} kills of runners:")
        print(f"  to new process spawned: median {statistics.median(spawn_ms):.2f} ms, "
              f"max {max(spawn_ms):.2f} ms")
        print(f"  to new runner ready:    median {statistics.median(ready_ms):.2f} ms, "
              f"max {max(ready_ms):.2f} ms")
        print(f"supervisor idle RSS: {rss / 1024:.2f} MiB ({rss} KiB), 4 runners + gateway")
        print("targets: median < 20 ms, RSS < 8 MB")
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


main()
