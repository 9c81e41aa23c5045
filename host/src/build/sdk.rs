//! The files a JavaScript or Python build needs besides the app's own: the
//! WIT contract and the guest SDK, built into this binary from the
//! repository's `wit/` and `guest-sdk/` so that a build always matches the
//! host that serves it.

/// A file to write into a staging folder: path relative to it, and contents.
pub(crate) type File = (&'static str, &'static str);

/// The WIT contract (`wit/tina4.wit`).
pub(crate) const WIT: File = ("wit/tina4.wit", include_str!("../../../wit/tina4.wit"));

/// The standard WASI interfaces the `handler-http` world imports, as
/// `wit/deps/` beside the contract.
pub(crate) const WIT_DEPS: &[File] = &[
    (
        "wit/deps/cli.wit",
        include_str!("../../../wit/deps/cli.wit"),
    ),
    (
        "wit/deps/clocks.wit",
        include_str!("../../../wit/deps/clocks.wit"),
    ),
    (
        "wit/deps/filesystem.wit",
        include_str!("../../../wit/deps/filesystem.wit"),
    ),
    (
        "wit/deps/http.wit",
        include_str!("../../../wit/deps/http.wit"),
    ),
    ("wit/deps/io.wit", include_str!("../../../wit/deps/io.wit")),
    (
        "wit/deps/random.wit",
        include_str!("../../../wit/deps/random.wit"),
    ),
    (
        "wit/deps/sockets.wit",
        include_str!("../../../wit/deps/sockets.wit"),
    ),
];

/// The `tina4-wasm` npm package, as `node_modules/tina4-wasm`.
pub(crate) const JAVASCRIPT: &[File] = &[
    (
        "node_modules/tina4-wasm/package.json",
        include_str!("../../../guest-sdk/javascript/package.json"),
    ),
    (
        "node_modules/tina4-wasm/index.js",
        include_str!("../../../guest-sdk/javascript/index.js"),
    ),
    (
        "node_modules/tina4-wasm/utf8.js",
        include_str!("../../../guest-sdk/javascript/utf8.js"),
    ),
];

/// The `tina4_wasm` Python package, in the staging folder's `sdk/`.
pub(crate) const PYTHON: &[File] = &[
    (
        "sdk/tina4_wasm/__init__.py",
        include_str!("../../../guest-sdk/python/tina4_wasm/__init__.py"),
    ),
    (
        "sdk/tina4_wasm/world.py",
        include_str!("../../../guest-sdk/python/tina4_wasm/world.py"),
    ),
    (
        "sdk/tina4_wasm/fetch.py",
        include_str!("../../../guest-sdk/python/tina4_wasm/fetch.py"),
    ),
];

/// The `tina4-guest` crate, laid out as in the repository (the crate's
/// bindings find the contract at `../../wit`), with a manifest of its own.
pub(crate) const RUST: &[File] = &[
    ("wit/tina4.wit", WIT.1),
    (
        "guest-sdk/rust/Cargo.toml",
        "[package]\nname = \"tina4-guest\"\nversion = \"0.1.0\"\nedition = \"2024\"\nlicense = \"MIT\"\n\n\
         [dependencies]\nserde = { version = \"1\", features = [\"derive\"] }\nserde_json = \"1\"\n\
         wit-bindgen = { version = \"0.63\", default-features = false, features = [\"macros\", \"realloc\", \"std\"] }\n",
    ),
    (
        "guest-sdk/rust/src/lib.rs",
        include_str!("../../../guest-sdk/rust/src/lib.rs"),
    ),
    (
        "guest-sdk/rust/src/connection.rs",
        include_str!("../../../guest-sdk/rust/src/connection.rs"),
    ),
    (
        "guest-sdk/rust/src/dispatch.rs",
        include_str!("../../../guest-sdk/rust/src/dispatch.rs"),
    ),
    (
        "guest-sdk/rust/src/error.rs",
        include_str!("../../../guest-sdk/rust/src/error.rs"),
    ),
    (
        "guest-sdk/rust/src/http.rs",
        include_str!("../../../guest-sdk/rust/src/http.rs"),
    ),
    (
        "guest-sdk/rust/src/log.rs",
        include_str!("../../../guest-sdk/rust/src/log.rs"),
    ),
    (
        "guest-sdk/rust/src/presence.rs",
        include_str!("../../../guest-sdk/rust/src/presence.rs"),
    ),
    (
        "guest-sdk/rust/src/router.rs",
        include_str!("../../../guest-sdk/rust/src/router.rs"),
    ),
    (
        "guest-sdk/rust/src/storage.rs",
        include_str!("../../../guest-sdk/rust/src/storage.rs"),
    ),
    (
        "guest-sdk/rust/src/timers.rs",
        include_str!("../../../guest-sdk/rust/src/timers.rs"),
    ),
    (
        "guest-sdk/rust/src/fetch.rs",
        include_str!("../../../guest-sdk/rust/src/fetch.rs"),
    ),
];

/// Writes the Rust SDK under `root` once per content (a folder named by
/// its hash, written whole then renamed into place); returns the crate's
/// folder, for cargo's `patch.crates-io.tina4-guest.path`.
pub(crate) fn rust_crate(root: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for (path, contents) in RUST.iter().chain(WIT_DEPS) {
        hash.update(path.as_bytes());
        hash.update(contents.as_bytes());
    }
    let digest = crate::hex::hex(&hash.finalize());
    let folder = root.join(format!("rust-{}", &digest[..16]));
    let crate_dir = folder.join("guest-sdk/rust");
    if crate_dir.join("Cargo.toml").is_file() {
        return Ok(crate_dir);
    }
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let fresh = tempfile::tempdir_in(root).context("cannot stage the Rust SDK")?;
    for (path, contents) in RUST.iter().chain(WIT_DEPS) {
        let target = fresh.path().join(path);
        std::fs::create_dir_all(target.parent().expect("SDK files are in folders"))?;
        std::fs::write(&target, contents)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    match std::fs::rename(fresh.keep(), &folder) {
        Ok(()) => {}
        // Another build wrote the same SDK meanwhile.
        Err(_) if crate_dir.join("Cargo.toml").is_file() => {}
        Err(err) => return Err(err).context("cannot install the Rust SDK"),
    }
    Ok(crate_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_file_of_the_rust_sdk_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/rust/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                format!(
                    "guest-sdk/rust/src/{}",
                    entry.unwrap().file_name().to_string_lossy()
                )
            })
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = RUST
            .iter()
            .map(|(path, _)| path.to_string())
            .filter(|path| path.starts_with("guest-sdk/rust/src/"))
            .collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }
}
