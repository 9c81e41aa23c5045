//! Staging folders: a scratch copy of an app's sources with the SDK and the
//! WIT contract beside them, laid out the way each compiler resolves
//! imports. Removed when dropped.

use std::path::Path;

use anyhow::Context;
use tempfile::TempDir;

use crate::build::{sdk, tina4};

/// The generated JavaScript entry module: imports the app (which registers
/// its routes) and re-exports the world's functions from the SDK.
pub(crate) const JS_ENTRY: &str = "tina4-entry.js";

/// The generated Python entry module: imports `app` (which registers its
/// routes) and names the SDK's `WitWorld`.
pub(crate) const PY_ENTRY: &str = "tina4_entry";

/// Folders never copied: build output, dependencies the build supplies,
/// version control and caches.
fn skipped(name: &str) -> bool {
    name.starts_with('.') || matches!(name, "target" | "__pycache__" | "venv" | "node_modules")
}

/// `app.js`, or the `main` of the app's package.json.
fn javascript_main(dir: &Path) -> anyhow::Result<String> {
    let manifest = dir.join("package.json");
    if manifest.is_file() {
        let text = std::fs::read_to_string(&manifest).context("reading package.json")?;
        let package: serde_json::Value =
            serde_json::from_str(&text).context("package.json is not valid JSON")?;
        if let Some(main) = package["main"].as_str() {
            return Ok(main.trim_start_matches("./").to_string());
        }
    }
    if dir.join("app.js").is_file() {
        return Ok("app.js".into());
    }
    anyhow::bail!("no app.js, and package.json names no \"main\"")
}

/// The app's sources under `app/`, the `tina4-wasm` package under
/// `node_modules/`, the app's own dependencies beside it, and the entry.
pub(crate) fn javascript(dir: &Path) -> anyhow::Result<TempDir> {
    let main = javascript_main(dir)?;
    if !dir.join(&main).is_file() {
        anyhow::bail!("the app's main module {main} does not exist");
    }
    javascript_stage(dir, &[main])
}

/// A Tina4 Node project's stage: like [`javascript`], with an entry that
/// imports every route module under `src/routes/`.
pub(crate) fn tina4_javascript(dir: &Path) -> anyhow::Result<TempDir> {
    javascript_stage(dir, &tina4::node_routes(dir)?)
}

/// The app's sources, its dependencies, the SDK, and an entry importing
/// `modules` (relative to the app) in order.
fn javascript_stage(dir: &Path, modules: &[String]) -> anyhow::Result<TempDir> {
    let staging = tempfile::tempdir().context("cannot create a staging folder")?;
    copy_sources(dir, &staging.path().join("app"))?;
    let dependencies = dir.join("node_modules");
    if dependencies.is_dir() {
        // Ours is the SDK, under either name.
        copy_tree(
            &dependencies,
            &staging.path().join("node_modules"),
            &|name| matches!(name, "tina4-wasm" | "tina4-nodejs") || name.starts_with('.'),
        )?;
    }
    write(staging.path(), &[sdk::WIT])?;
    write(staging.path(), sdk::WIT_DEPS)?;
    write(staging.path(), sdk::JAVASCRIPT)?;
    let mut entry = String::new();
    for module in modules {
        let module = serde_json::to_string(&format!("./app/{module}"))?;
        entry.push_str(&format!("import {module};\n"));
    }
    entry.push_str(
        "export { routes, handleHttp, onWebsocket, onPresence, onTimer } from \"tina4-wasm\";\n",
    );
    std::fs::write(staging.path().join(JS_ENTRY), entry).context("writing the entry module")?;
    Ok(staging)
}

/// The app's sources under `app/` (on the Python path, so `import app`
/// finds `app/app.py`), the SDK under `sdk/`, and the entry beside `app.py`.
pub(crate) fn python(dir: &Path) -> anyhow::Result<TempDir> {
    if !dir.join("app.py").is_file() {
        anyhow::bail!("no app.py in {}", dir.display());
    }
    python_stage(dir, &[], "import app  # registers the app's routes\n")
}

/// A Tina4 Python project's stage: the project under `app/` (on the Python
/// path, so `import src.routes.chat` finds `app/src/routes/chat.py`), the
/// SDK and the `tina4_python` shim under `sdk/`, and an entry importing
/// every module under `src/`.
pub(crate) fn tina4_python(dir: &Path) -> anyhow::Result<TempDir> {
    let mut imports = String::from("# Imports the project's modules, which register its routes.\n");
    for module in tina4::python_modules(dir)? {
        imports.push_str(&format!("import {module}\n"));
    }
    python_stage(dir, tina4::PYTHON_SHIMS, &imports)
}

/// The app's sources under `app/`, the SDK (and `extra` files) under
/// `sdk/`, and an entry that runs `imports`, then names the SDK's world.
fn python_stage(dir: &Path, extra: &[sdk::File], imports: &str) -> anyhow::Result<TempDir> {
    let staging = tempfile::tempdir().context("cannot create a staging folder")?;
    copy_sources(dir, &staging.path().join("app"))?;
    write(staging.path(), &[sdk::WIT])?;
    write(staging.path(), sdk::WIT_DEPS)?;
    write(staging.path(), sdk::PYTHON)?;
    write(staging.path(), extra)?;
    let entry = format!("{imports}from tina4_wasm.world import WitWorld\n");
    std::fs::write(
        staging.path().join("app").join(format!("{PY_ENTRY}.py")),
        entry,
    )
    .context("writing the entry module")?;
    Ok(staging)
}

/// Copies an app's sources (build output, dependencies, caches and hidden
/// files left out; links not followed).
fn copy_sources(from: &Path, to: &Path) -> anyhow::Result<()> {
    copy_tree(from, to, &skipped)
}

fn copy_tree(from: &Path, to: &Path, skip: &dyn Fn(&str) -> bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let entries =
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if skip(&name.to_string_lossy()) {
            continue;
        }
        let kind = entry.file_type()?;
        let target = to.join(&name);
        if kind.is_dir() {
            copy_tree(&entry.path(), &target, skip)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn write(root: &Path, files: &[sdk::File]) -> anyhow::Result<()> {
    for (path, contents) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_javascript_stage_has_the_app_the_sdk_and_an_entry() {
        let app = tempfile::tempdir().unwrap();
        std::fs::write(
            app.path().join("package.json"),
            r#"{"main": "./src/main.js"}"#,
        )
        .unwrap();
        std::fs::create_dir_all(app.path().join("src")).unwrap();
        std::fs::write(app.path().join("src/main.js"), "").unwrap();
        std::fs::create_dir_all(app.path().join("node_modules/tina4-wasm")).unwrap();
        std::fs::write(app.path().join("node_modules/tina4-wasm/index.js"), "stale").unwrap();
        let stage = javascript(app.path()).unwrap();
        let root = stage.path();
        assert!(root.join("app/src/main.js").is_file());
        assert!(!root.join("app/node_modules").exists());
        let sdk = std::fs::read_to_string(root.join("node_modules/tina4-wasm/index.js")).unwrap();
        assert!(sdk.contains("export const Router"), "the built-in SDK wins");
        let entry = std::fs::read_to_string(root.join(JS_ENTRY)).unwrap();
        assert!(
            entry.starts_with("import \"./app/src/main.js\";"),
            "{entry}"
        );
    }

    #[test]
    fn a_folder_without_its_main_module_is_refused() {
        let app = tempfile::tempdir().unwrap();
        std::fs::write(app.path().join("package.json"), "{}").unwrap();
        let err = javascript(app.path()).unwrap_err();
        assert!(err.to_string().contains("no app.js"), "{err}");
        let err = python(app.path()).unwrap_err();
        assert!(err.to_string().contains("no app.py"), "{err}");
    }
}
