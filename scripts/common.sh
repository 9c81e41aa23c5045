# Shared set-up for the project's scripts; sourced, not run.
# Builds are kept outside the checkout so fresh clones reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tina4-wasm/target}"
# Two cores: more parallel jobs only thrash.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

# The example apps, and the apps the tests use on top of them.
EXAMPLE_APPS=(echo chat notifications dashboard)
TEST_APPS=(probe probe-v2 bad-routes hostile other-world broad contract-0-1-0)

# rustup components and targets the build needs, installed when missing.
ensure_toolchain() {
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        echo "==> installing the wasm32-wasip2 Rust target"
        rustup target add wasm32-wasip2
    fi
    for component in "$@"; do
        if ! rustup component list --installed | grep -q "^$component"; then
            echo "==> installing the $component Rust component"
            rustup component add "$component"
        fi
    done
}

# Debian packages the tests drive for real (redis-server for the backplane
# tests, Chromium and Node.js for the browser test; Node.js and Python's
# venv for building JavaScript and Python apps), installed when missing.
ensure_packages() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
    command -v chromium >/dev/null || missing+=(chromium)
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    command -v python3 >/dev/null || missing+=(python3)
    python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing ${missing[*]} (apt-get)"
        local sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        # The package lists may be stale or absent on a fresh machine.
        "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" ||
            { "${sudo[@]}" apt-get update && "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; }
    fi
}

# Where built components land: the workspace's `guest` profile (small
# components compile faster when a version is first loaded).
GUEST_DIR="$CARGO_TARGET_DIR/wasm32-wasip2/guest"

# Builds guest crates (by package name) into components in $GUEST_DIR.
build_guests() {
    echo "==> building the guest apps: $* (wasm32-wasip2)"
    local args=()
    for p in "$@"; do args+=(-p "$p"); done
    cargo build --profile guest --target wasm32-wasip2 "${args[@]}"
}

# Puts example app $1 into apps folder $2: its component, and its templates
# and public folders when it has them (as <apps>/<app>/templates and public).
install_example() {
    local app=$1 dir=$2
    cp "$GUEST_DIR/$app.wasm" "$dir/"
    # Its grants and limits, if it has any.
    if [ -f "examples/$app/$app.toml" ]; then
        cp "examples/$app/$app.toml" "$dir/"
    fi
    for folder in templates public; do
        if [ -d "examples/$app/$folder" ]; then
            mkdir -p "$dir/$app"
            rm -rf "${dir:?}/$app/$folder"
            cp -r "examples/$app/$folder" "$dir/$app/$folder"
        fi
    done
}

# The languages the examples are written in besides Rust.
EXAMPLE_LANGUAGES=(javascript python)

# Builds examples/<language>/<app> for every example app with
# `tina4-wasm build` into $1/<language>/, precompiling them into the cache
# $1/cache. An app whose component is newer than its sources, the SDK and
# the host is skipped.
build_language_examples() {
    local out=$1 host="$CARGO_TARGET_DIR/release/tina4-wasm"
    for language in "${EXAMPLE_LANGUAGES[@]}"; do
        for app in "${EXAMPLE_APPS[@]}"; do
            local source="examples/$language/$app" target="$out/$language/$app.wasm"
            if [ -f "$target" ] && [ -z "$(find "$source" "guest-sdk/$language" wit "$host" -newer "$target" -print -quit)" ]; then
                continue
            fi
            echo "==> building the $language $app example"
            "$host" build "$source" --apps "$out/$language" --cache-dir "$out/cache"
        done
    done
}

build_host() {
    echo "==> building the tina4-wasm host"
    cargo build --release -p tina4-wasm
}

# playwright-core for the browser test (no browser download: it drives
# Debian's Chromium), at the version in tests/browser/package-lock.json.
ensure_browser_driver() {
    echo "==> installing the browser test's npm packages"
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
}
