//! The files a JavaScript or Python build needs besides the app's own: the
//! WIT contract and the guest SDK, built into this binary from the
//! repository's `wit/` and `guest-sdk/` so that a build always matches the
//! host that serves it.

/// A file to write into a staging folder: path relative to it, and contents.
pub(crate) type File = (&'static str, &'static str);

/// The WIT contract (`wit/tina4.wit`).
pub(crate) const WIT: File = ("wit/tina4.wit", include_str!("../../../wit/tina4.wit"));

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
];
