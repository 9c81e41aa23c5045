#!/usr/bin/env bash
# Runs every check and test: formatting, lints, unit tests, and the
# end-to-end suite against the real binary and real components.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

ensure_toolchain rustfmt clippy
ensure_packages
ensure_browser_driver
echo "==> formatting"
cargo fmt --all --check
cargo fmt --manifest-path host/template-guest/Cargo.toml --check

build_guests "${EXAMPLE_APPS[@]}" "${TEST_APPS[@]}"
build_host
build_language_examples "$CARGO_TARGET_DIR/guest-apps"

echo "==> lints"
cargo clippy --release --all-targets -- -D warnings
guests=()
for p in "${EXAMPLE_APPS[@]}" "${TEST_APPS[@]}"; do guests+=(-p "$p"); done
cargo clippy --profile guest --target wasm32-wasip2 "${guests[@]}" -- -D warnings
# The template engine the host embeds: its own crate, built by host/build.rs.
cargo clippy --release --locked --target wasm32-wasip2 --manifest-path host/template-guest/Cargo.toml \
    --target-dir "$CARGO_TARGET_DIR/template-guest" -- -D warnings
for file in guest-sdk/javascript/*.js examples/javascript/*/app.js tests/fixtures/sdk-javascript/*.js; do
    node --check "$file"
done
python3 -c 'import ast, sys; [ast.parse(open(f).read(), f) for f in sys.argv[1:]]' \
    guest-sdk/python/tina4_wasm/*.py examples/python/*/app.py tests/fixtures/sdk-python/*.py

echo "==> tests"
cargo test --release

echo "==> RFC 6455 conformance (Autobahn|Testsuite)"
bash scripts/autobahn.sh
