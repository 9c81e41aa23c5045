#!/usr/bin/env bash
# Builds the host and the example apps, then serves them on http://localhost:7146.
# Extra arguments go to `tina4-wasm serve` (e.g. --port 8080).
# EXAMPLES=javascript or EXAMPLES=python serves those versions of the apps.
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
case "${EXAMPLES:-rust}" in
    rust) ;;
    javascript | python)
        for app in "${EXAMPLE_APPS[@]}"; do
            "$CARGO_TARGET_DIR/release/tina4-wasm" build "examples/$EXAMPLES/$app" --apps apps
        done
        ;;
    *) echo "EXAMPLES must be rust, javascript or python" >&2; exit 2 ;;
esac
exec "$CARGO_TARGET_DIR/release/tina4-wasm" serve apps "$@"
