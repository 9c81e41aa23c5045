#!/usr/bin/env bash
# Builds everything in release and runs a benchmark scenario of tina4-bench.
# Usage: scripts/bench.sh SCENARIO [FLAGS]   (scripts/bench.sh --help lists them)
#        scripts/bench.sh all                 (every scenario against the native baseline)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

ensure_toolchain
ensure_packages
build_guests "${EXAMPLE_APPS[@]}" "${TEST_APPS[@]}" >&2
build_host >&2
cargo build --release -p tina4-bench >&2
exec "$CARGO_TARGET_DIR/release/tina4-bench" "$@"
