#!/usr/bin/env bash
# Builds the host and the example apps, then serves them on http://localhost:7146.
# Extra arguments go to `tina4-wasm serve` (e.g. --port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

ensure_toolchain
build_guests "${EXAMPLE_APPS[@]}"
build_host
mkdir -p apps
for app in "${EXAMPLE_APPS[@]}"; do
    install_example "$app" apps
done
exec "$CARGO_TARGET_DIR/release/tina4-wasm" serve apps "$@"
