#!/usr/bin/env bash
# Fails when a log of the test run holds a secret: a password the tests use, an API
# token, an argon2 hash, a session id (64 hex digits, as is any SHA-256 a log would
# leak), or a Cookie / Authorization header. tests/run.sh points SHIPWATCH_TEST_LOGS at
# a directory for the test and browser steps; the test helpers (tests/support Setup, the
# gateway tests' in-process gateways, the browser harness) keep their processes' logs there.
# Usage: tests/no_secret_in_logs.sh DIR
set -euo pipefail
dir=${1:?usage: tests/no_secret_in_logs.sh DIR}
mapfile -t logs < <(find "$dir" -type f -name '*.log' -size +0)
if [[ ${#logs[@]} -eq 0 ]]; then
    echo "no logs in $dir: the helpers did not keep them, so nothing was checked" >&2
    exit 1
fi
# The passwords the tests type (gateway/tests/common, tests/auth_cli.rs, bench/auth,
# tests/browser/auth.test.js).
patterns=(
    -e '(alice|vic|ada)-secret'
    -e 'correct horse battery staple'
    -e 'hunter2-but-longer'
    -e 'not-it-at-all'
    -e '\$argon2(id|i|d)\$'
    -e 'swt_[0-9A-Za-z]{8,}'
    -e '(^|[^0-9a-fA-F])[0-9a-f]{64}([^0-9a-fA-F]|$)'
    -e '(^|[^a-z_])(cookie|authorization)[:=] *"?[a-z]'
    -e 'shipwatch_session='
)
if found=$(grep -HniE "${patterns[@]}" "${logs[@]}" | head -20) && [[ -n $found ]]; then
    echo "secrets in the logs of the test run:" >&2
    printf '%s\n' "$found" >&2
    exit 1
fi
echo "no secret in ${#logs[@]} logs ($(cat "${logs[@]}" | wc -l) lines)"
