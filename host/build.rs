//! Builds the template engine (`template-guest/`, minijinja) into a
//! WebAssembly component the host embeds: pages are rendered inside a
//! sandbox of their own, not in host code.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let guest = manifest_dir.join("template-guest");
    for input in ["Cargo.toml", "Cargo.lock", "src", "wit"] {
        println!("cargo:rerun-if-changed={}", guest.join(input).display());
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let target_dir = out.join("template-guest");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--manifest-path")
        .arg(guest.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // What the outer build set for its own crates is not for this one.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("running cargo for the template engine");
    if !status.success() {
        panic!(
            "building the template engine failed; it needs the wasm32-wasip2 target \
             (`rustup target add wasm32-wasip2`, which scripts/test.sh and scripts/serve.sh run)"
        );
    }
    let built: &Path = &target_dir.join("wasm32-wasip2/release/tina4_template_guest.wasm");
    std::fs::copy(built, out.join("template_guest.wasm")).expect("copying the template engine");
}
