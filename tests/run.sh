#!/usr/bin/env bash
# Runs every check CI runs, in order: system packages the tests need, formatting, lints,
# the whole test suite. Works from any directory; exits with the first failing step's code.
#
# Under CI=true a missing tool is a failure, never a silent skip.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

# Debian packages the tests need. Extend this list (one package per line) when a test
# needs a new system tool:
#   openssh-server, openssh-client: the runner's tests drive a real sshd fleet on loopback
#   systemd:                        systemd-analyze verify for the shipped unit files
#   prometheus:                     promtool check metrics on the gateway's /metrics
#   bsdutils:                       script(1), the client's terminal test (tests/cli.rs)
#   chromium:                       the browser suite (tests/browser) drives Debian's build
#   postgresql:                     the store's PostgreSQL tests start a private server
#                                   (pgtest/: initdb + pg_ctl as the postgres user)
#   iproute2, util-linux:           ip netns + veth (the fault suite's host whose network
#                                   vanishes), unshare (its data disk that fills up)
TEST_PACKAGES=(
    openssh-server
    openssh-client
    systemd
    prometheus
    bsdutils
    chromium
    postgresql
    iproute2
    util-linux
)

CI="${CI:-false}"
SUMMARY=()

say() { printf '==> %s\n' "$*" >&2; }

# step NAME COMMAND...: runs COMMAND, prints how long it took, stops on failure.
step() {
    local name=$1
    shift
    say "$name: $*"
    local start end rc=0
    start=$(date +%s.%N)
    "$@" || rc=$?
    end=$(date +%s.%N)
    local took
    took=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }')
    if [[ $rc -ne 0 ]]; then
        say "$name FAILED (exit $rc) after ${took}s"
        exit "$rc"
    fi
    say "$name ok in ${took}s"
    SUMMARY+=("$(printf '%8ss  %s' "$took" "$name")")
}

missing_packages() {
    local pkg
    for pkg in "${TEST_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            printf '%s\n' "$pkg"
        fi
    done
}

install_test_packages() {
    if ! command -v dpkg-query >/dev/null; then
        if [[ $CI == true ]]; then
            say "not a Debian system: cannot check for ${TEST_PACKAGES[*]}"
            return 1
        fi
        say "warning: not a Debian system; make sure these are installed: ${TEST_PACKAGES[*]}"
        return 0
    fi
    local missing
    mapfile -t missing < <(missing_packages)
    if [[ ${#missing[@]} -eq 0 ]]; then
        say "test packages present: ${TEST_PACKAGES[*]}"
        return 0
    fi
    if [[ $(id -u) -eq 0 ]]; then
        say "installing ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
        return 0
    fi
    local msg="missing packages: ${missing[*]} (as root: apt-get install -y --no-install-recommends ${missing[*]})"
    if [[ $CI == true ]]; then
        say "$msg"
        return 1
    fi
    say "warning: $msg; tests that need them will fail"
}

check_toolchain() {
    local tool
    for tool in cargo rustfmt cargo-clippy; do
        if ! command -v "$tool" >/dev/null; then
            say "missing $tool (rustup component add rustfmt clippy)"
            return 1
        fi
    done
}

step "test packages" install_test_packages
step "toolchain" check_toolchain
step "fmt" cargo fmt --all --check
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
# Every log the tests' processes write is kept here, then searched for secrets.
SHIPWATCH_TEST_LOGS=$(mktemp -d /tmp/shipwatch-test-logs.XXXXXX)
export SHIPWATCH_TEST_LOGS
step "test" cargo test --workspace
step "systemd unit" systemd/verify.sh

# --- browser suite -----------------------------------------------------------------------
# playwright-core (no browser download) drives /usr/bin/chromium against the release binary
# it builds here; node_modules comes from package-lock.json when missing.
browser_suite() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        say "missing node/npm for the browser suite"
        return 1
    fi
    cargo build --release --bin shipwatch
    if [[ ! -d tests/browser/node_modules ]]; then
        (cd tests/browser && npm ci --no-audit --no-fund)
    fi
    (cd tests/browser && SHIPWATCH_BIN="$PWD/../../target/release/shipwatch" npm test --silent)
}
step "browser" browser_suite
# ------------------------------------------------------------------------------------------

# Last, so it reads the logs of the cargo tests and of every shipwatch the browser suite ran.
step "no secret in the logs" tests/no_secret_in_logs.sh "$SHIPWATCH_TEST_LOGS"

say "all steps passed:"
printf '%s\n' "${SUMMARY[@]}" >&2
