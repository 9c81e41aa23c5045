# Shared set-up for the project's scripts; sourced, not run.
# Builds are kept outside the checkout so fresh clones reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tina4-wasm/target}"
# Two cores: more parallel jobs only thrash.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

# The guest apps are WebAssembly components built by rustc's wasm32-wasip2 target.
ensure_wasm_target() {
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        echo "==> installing the wasm32-wasip2 Rust target"
        rustup target add wasm32-wasip2
    fi
}

# Every guest crate in the workspace: the examples and the test fixtures.
GUEST_PACKAGES=(echo chat notifications probe other-world)
EXAMPLE_APPS=(echo chat notifications)

build_guests() {
    ensure_wasm_target
    echo "==> building the guest apps (wasm32-wasip2)"
    local args=()
    for p in "${GUEST_PACKAGES[@]}"; do args+=(-p "$p"); done
    cargo build --release --target wasm32-wasip2 "${args[@]}"
}

build_host() {
    echo "==> building the tina4-wasm host"
    cargo build --release -p tina4-wasm
}
