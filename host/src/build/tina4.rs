//! A Tina4 project as it is: a folder with `src/routes/` (Python modules
//! for tina4-python, TypeScript or JavaScript modules for tina4-nodejs),
//! `src/templates/` and `src/public/`. `build` compiles it without edits:
//!
//! - Python: every module under `src/` is imported, in path order, as
//!   tina4-python does on start; `tina4_python` (and `.core`,
//!   `.core.router`) is a shim over our SDK.
//! - Node: every `.ts` or `.js` module under `src/routes/` is imported, in
//!   path order; `tina4-nodejs` resolves to our SDK.
//! - `src/templates/` and `src/public/` are packed into the component as
//!   the app's templates and public files.
//!
//! The project's own entry (`app.py`, `app.ts`), which starts Tina4's
//! server, is not imported: the host is the server.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::Language;

/// Where a Tina4 project keeps its route modules.
const ROUTES: &str = "src/routes";

/// Folders under `src/` that hold no modules.
const NOT_MODULES: [&str; 2] = ["templates", "public"];

/// Extensions of the Node route modules esbuild bundles.
const NODE_MODULES: [&str; 4] = ["ts", "js", "mts", "mjs"];

/// The tina4-python names the chapter's route files import, as our SDK's.
const PYTHON_SHIM: &str = "\
# tina4-python's router, served by tina4-wasm.
from tina4_wasm import *  # noqa: F401,F403
from tina4_wasm import secured  # noqa: F401
";

/// The shim package: `tina4_python`, `tina4_python.core` and
/// `tina4_python.core.router`, each the SDK's names.
pub(crate) const PYTHON_SHIMS: &[(&str, &str)] = &[
    ("sdk/tina4_python/__init__.py", PYTHON_SHIM),
    ("sdk/tina4_python/core/__init__.py", PYTHON_SHIM),
    ("sdk/tina4_python/core/router.py", PYTHON_SHIM),
];

/// Whether `dir` is a Tina4 project (and not a Cargo package).
pub(crate) fn is_project(dir: &Path) -> bool {
    !dir.join("Cargo.toml").is_file() && dir.join(ROUTES).is_dir()
}

/// The language of a Tina4 project's routes: Python if `src/routes/` holds
/// a `.py` module, else JavaScript (TypeScript included) if it holds one of
/// those; `None` if it holds neither.
pub(crate) fn language(dir: &Path) -> Option<Language> {
    let routes = files_under(&dir.join(ROUTES), &[]).ok()?;
    if routes.iter().any(|f| has_extension(f, &["py"])) {
        Some(Language::Python)
    } else if routes.iter().any(|f| is_node_module(f)) {
        Some(Language::Javascript)
    } else {
        None
    }
}

/// The Python modules to import, as dotted names (`src.routes.chat_room`),
/// in path order: every `.py` under `src/` but its templates and public
/// folders.
pub(crate) fn python_modules(dir: &Path) -> anyhow::Result<Vec<String>> {
    let src = dir.join("src");
    let mut modules = Vec::new();
    for file in files_under(&src, &NOT_MODULES)? {
        if !has_extension(&file, &["py"]) {
            continue;
        }
        let relative = file.strip_prefix(dir).expect("found under the project");
        let mut parts: Vec<String> = relative
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "__init__") {
            parts.pop();
        }
        if let Some(bad) = parts.iter().find(|p| !is_identifier(p)) {
            bail!(
                "{} cannot be imported: {bad:?} is not a Python module name",
                relative.display()
            );
        }
        modules.push(parts.join("."));
    }
    Ok(modules)
}

/// The Node route modules to import, relative to the project, in path
/// order (type declarations left out).
pub(crate) fn node_routes(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut routes = Vec::new();
    for file in files_under(&dir.join(ROUTES), &[])? {
        if is_node_module(&file) {
            let relative = file.strip_prefix(dir).expect("found under the project");
            let relative = relative
                .to_str()
                .with_context(|| format!("{} is not a UTF-8 path", relative.display()))?;
            routes.push(relative.to_string());
        }
    }
    Ok(routes)
}

/// Files below `dir` (links not followed, hidden entries and caches left
/// out, folders named in `skip` at its top level too), sorted by path.
fn files_under(dir: &Path, skip: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), true)];
    while let Some((folder, top)) = pending.pop() {
        let entries = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot read {}", folder.display()))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "__pycache__" || name == "node_modules" {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() && !(top && skip.contains(&name.as_str())) {
                pending.push((entry.path(), false));
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

fn has_extension(file: &Path, extensions: &[&str]) -> bool {
    file.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.contains(&e))
}

fn is_node_module(file: &Path) -> bool {
    let declaration = file
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".d.ts"));
    has_extension(file, &NODE_MODULES) && !declaration
}

/// Whether `name` can be a Python module name (ASCII, as tina4 projects use).
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        dir
    }

    #[test]
    fn a_python_project_imports_every_module_under_src_in_path_order() {
        let dir = project(&[
            "app.py",
            "src/routes/chat_room.py",
            "src/routes/__init__.py",
            "src/app/models.py",
            "src/templates/macros.py",
            "src/routes/__pycache__/chat_room.cpython-312.pyc",
            "src/routes/notes.txt",
        ]);
        assert!(is_project(dir.path()));
        assert_eq!(language(dir.path()), Some(Language::Python));
        assert_eq!(
            python_modules(dir.path()).unwrap(),
            ["src.app.models", "src.routes", "src.routes.chat_room"]
        );
    }

    #[test]
    fn a_module_python_cannot_import_is_refused_by_name() {
        let dir = project(&["src/routes/chat-room.py"]);
        let err = python_modules(dir.path()).unwrap_err().to_string();
        assert!(err.contains("chat-room"), "{err}");
    }

    #[test]
    fn a_node_project_imports_its_route_modules_typescript_included() {
        let dir = project(&[
            "package.json",
            "src/routes/chat-room.ts",
            "src/routes/api/orders.js",
            "src/routes/types.d.ts",
            "src/app/helpers.ts",
        ]);
        assert_eq!(language(dir.path()), Some(Language::Javascript));
        assert_eq!(
            node_routes(dir.path()).unwrap(),
            ["src/routes/api/orders.js", "src/routes/chat-room.ts"]
        );
    }

    #[test]
    fn a_cargo_package_or_an_empty_routes_folder_is_not_a_tina4_project_app() {
        let cargo = project(&["Cargo.toml", "src/routes/mod.rs"]);
        assert!(!is_project(cargo.path()));
        let empty = project(&["src/routes/README.md"]);
        assert!(is_project(empty.path()));
        assert_eq!(language(empty.path()), None);
    }
}
