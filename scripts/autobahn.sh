#!/usr/bin/env bash
# RFC 6455 conformance: runs the Autobahn|Testsuite fuzzing client (cases
# 1-10; 12-13 are permessage-deflate, which the host does not offer) against
# the echo example's /ws/mirror route and prints a one-line summary.
# Exits non-zero if any case failed or did not run.
#
# Installs the test suite on first use (it needs Python 2.7, taken from
# pyenv or AUTOBAHN_PY2) under ~/.cache/tina4-wasm/autobahn.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

HOME_DIR="${AUTOBAHN_HOME:-$HOME/.cache/tina4-wasm/autobahn}"
VENV="$HOME_DIR/venv"
WSTEST="$VENV/bin/wstest"
SUITE_VERSION=25.10.1

python27() {
    local candidate
    for candidate in "${AUTOBAHN_PY2:-}" "$(command -v python2.7 || true)" \
        $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python 2>/dev/null | sort -r); do
        if [ -n "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

install_suite() {
    local py2
    py2=$(python27) || { echo "autobahn: Python 2.7 not found (set AUTOBAHN_PY2)" >&2; exit 2; }
    echo "==> installing autobahntestsuite $SUITE_VERSION (Python: $py2)" >&2
    rm -rf "$VENV"
    mkdir -p "$HOME_DIR"
    # The last virtualenv release that still creates Python 2.7 environments.
    python3 -m pip install -q --disable-pip-version-check --target "$HOME_DIR/virtualenv" 'virtualenv<20.22' >&2
    PYTHONPATH="$HOME_DIR/virtualenv" python3 -m virtualenv -q -p "$py2" "$VENV" >&2
    local pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-warn-script-location)
    # The suite's own pins, installed in this order without build isolation.
    PYTHONWARNINGS=ignore "${pip[@]}" 'pip==20.3.4' 'setuptools==44.0.0' 'wheel==0.36.2' >&2
    PYTHONWARNINGS=ignore "${pip[@]}" 'incremental==16.10.1' >&2
    PYTHONWARNINGS=ignore "${pip[@]}" 'pyOpenSSL==19.1.0' 'cryptography==3.3.2' >&2
    PYTHONWARNINGS=ignore "${pip[@]}" --no-build-isolation 'Twisted==19.10.0' >&2
    PYTHONWARNINGS=ignore "${pip[@]}" --no-build-isolation "autobahntestsuite==$SUITE_VERSION" >&2
}

"$WSTEST" -a 2>/dev/null | grep -q "$SUITE_VERSION" || install_suite

work=$(mktemp -d)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/apps" "$work/report"
cp "$GUEST_DIR/echo.wasm" "$work/apps/"
# The suite sends messages of up to 16 MiB; everything else stays default.
"$CARGO_TARGET_DIR/release/tina4-wasm" serve "$work/apps" --host 127.0.0.1 --port 0 \
    --no-cache --max-message-bytes 16777216 --app-memory-mb 256 \
    >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 300); do
    grep -q '^listening on ' "$work/server.out" 2>/dev/null && break
    sleep 0.1
done
address=$(sed -n 's#^listening on http://##p' "$work/server.out")
[ -n "$address" ] || { echo "autobahn: the server did not start" >&2; cat "$work/server.log" >&2; exit 2; }

cat >"$work/spec.json" <<JSON
{
  "outdir": "$work/report",
  "servers": [{"agent": "tina4-wasm", "url": "ws://$address/ws/mirror"}],
  "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "8.*", "9.*", "10.*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
started=$(date +%s)
(cd "$work" && timeout 1800 "$WSTEST" -m fuzzingclient -s spec.json >"$work/wstest.log" 2>&1) || true
elapsed=$(( $(date +%s) - started ))

python3 - "$work/report/index.json" "$elapsed" "$work/wstest.log" <<'PY'
import json, re, sys
from collections import Counter
planned = re.search(r"will run (\d+) test cases", open(sys.argv[3]).read())
results = {}
try:
    for cases in json.load(open(sys.argv[1])).values():
        results.update(cases)
except FileNotFoundError:
    print("autobahn: no report (the run did not finish)")
    sys.exit(1)
behaviours = Counter(r["behavior"] for r in results.values())
failed = sorted((c for c, r in results.items() if r["behavior"] == "FAILED"),
                key=lambda c: [int(p) for p in c.split(".")])
print("autobahn: %d passed, %d non-strict, %d failed, %d unimplemented, %d informational "
      "(%d cases, cases 1-10, %ss)" % (behaviours["OK"], behaviours["NON-STRICT"], len(failed),
      behaviours["UNIMPLEMENTED"], behaviours["INFORMATIONAL"], len(results), sys.argv[2]))
if failed:
    print("failed: " + " ".join(failed))
if not planned or len(results) < int(planned.group(1)):
    print("not run: %s of the planned cases" % (int(planned.group(1)) - len(results) if planned else "some"))
    sys.exit(1)
sys.exit(1 if failed else 0)
PY
