//! `tina4-wasm build`: one command that turns an app's source folder, in
//! Rust, JavaScript or Python, into a component in the apps folder.
//!
//! - [`Language`]: which of the three a folder is, from the files in it.
//! - [`toolchain`]: each language's compiler, installed from its package
//!   registry (rustup, npm, PyPI) into a cache folder on first use:
//!   cargo; esbuild with componentize-js (SpiderMonkey) or componentize-qjs
//!   (QuickJS); componentize-py.
//! - [`sdk`]: the WIT contract and the JavaScript and Python SDKs, built
//!   into this binary so a build always matches the host that serves it.
//! - [`scaffold`]: `tina4-wasm new`, a project that builds and serves at once.
//! - [`stage`]: a scratch copy of an app's sources with the SDK beside them.
//! - [`tina4`]: a Tina4 project's layout (`src/routes/`, `src/templates/`,
//!   `src/public/`), built as it is.
//!
//! A build writes `<apps>/<name>.wasm` atomically, with the app's templates
//! and public files packed in ([`crate::bundle`]) (the reloader of a running
//! `serve` never sees half a file). `serve --watch` builds through
//! [`build`] too.

pub(crate) mod command;
pub(crate) mod scaffold;
pub(crate) mod sdk;
pub(crate) mod stage;
pub(crate) mod tina4;
pub(crate) mod toolchain;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::build::toolchain::Toolchains;
use crate::bundle;
use crate::config::JsEngine;

/// How much of a failed tool's output an error shows.
const OUTPUT_TAIL: usize = 40;

/// The languages an app can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Language {
    /// A Cargo package with a `cdylib` target, using the `tina4-guest` crate.
    Rust,
    /// An ES module (`app.js`, or `main` of `package.json`) using the
    /// `tina4-wasm` npm package, bundled with esbuild and compiled with
    /// SpiderMonkey (or QuickJS: [`JsEngine`]).
    #[value(alias = "js")]
    Javascript,
    /// A module `app.py` using the `tina4_wasm` package, compiled with
    /// componentize-py.
    #[value(alias = "py")]
    Python,
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rust => "Rust",
            Self::Javascript => "JavaScript",
            Self::Python => "Python",
        })
    }
}

impl Language {
    /// The language of the app in `dir`, from the files it holds:
    /// `Cargo.toml` is Rust; a Tina4 project (`src/routes/`) is the
    /// language of its route modules; else `package.json` or `app.js` is
    /// JavaScript, and `app.py` Python.
    pub(crate) fn detect(dir: &Path) -> Option<Self> {
        let has = |name: &str| dir.join(name).is_file();
        if has("Cargo.toml") {
            Some(Self::Rust)
        } else if tina4::is_project(dir) {
            tina4::language(dir)
        } else if has("package.json") || has("app.js") {
            Some(Self::Javascript)
        } else if has("app.py") {
            Some(Self::Python)
        } else {
            None
        }
    }
}

/// One app's source folder, and the component it builds.
#[derive(Debug, Clone)]
pub(crate) struct AppSource {
    /// The app's language.
    pub(crate) language: Language,
    /// The source folder (a Cargo package, or the folder of `app.js`/`app.py`).
    pub(crate) dir: PathBuf,
    /// The app's name: its component is `<apps>/<name>.wasm`.
    pub(crate) name: String,
    /// A Tina4 project (routes under `src/routes/`), built as it is.
    pub(crate) tina4: bool,
}

impl AppSource {
    /// The app in `dir`: its language detected unless given, its name the
    /// folder's (`my-app` → `my_app`) unless given.
    pub(crate) fn new(
        dir: &Path,
        language: Option<Language>,
        name: Option<String>,
    ) -> anyhow::Result<Self> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("no source folder {}", dir.display()))?;
        let language = match language.or_else(|| Language::detect(&dir)) {
            Some(language) => language,
            None => bail!(
                "{} holds no app: expected Cargo.toml (Rust), package.json or app.js \
                 (JavaScript), app.py (Python), or a Tina4 project's route modules \
                 (.py, .ts or .js) in src/routes/",
                dir.display()
            ),
        };
        let name = match name {
            Some(name) => name,
            None => default_name(&dir)?,
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("app name {name:?}: use letters, digits and `_` (it becomes <name>.wasm)");
        }
        Ok(Self {
            language,
            tina4: tina4::is_project(&dir),
            dir,
            name,
        })
    }

    /// Where the component goes in `apps_dir`.
    pub(crate) fn app_file(&self, apps_dir: &Path) -> PathBuf {
        apps_dir.join(format!("{}.wasm", self.name))
    }
}

/// An app's default name: its folder's, with `-` as `_`.
fn default_name(dir: &Path) -> anyhow::Result<String> {
    let folder = dir
        .file_name()
        .context("the source folder has no name")?
        .to_string_lossy();
    Ok(folder.replace('-', "_"))
}

/// Builds `app` into `<apps_dir>/<name>.wasm`, installing its language's
/// toolchain first if it is missing. Blocking (it runs compilers).
pub(crate) fn build(
    app: &AppSource,
    apps_dir: &Path,
    toolchains: &Toolchains,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(apps_dir)
        .with_context(|| format!("cannot create the apps folder {}", apps_dir.display()))?;
    let target = app.app_file(apps_dir);
    let staged = apps_dir.join(format!(".{}.wasm.building", app.name));
    let result = match app.language {
        Language::Rust => build_rust(app, &staged, toolchains),
        Language::Javascript => build_javascript(app, &staged, toolchains),
        Language::Python => build_python(app, &staged, toolchains),
    };
    let result = result.and_then(|()| pack_app_folders(app, &staged));
    if let Err(err) = result {
        let _ = std::fs::remove_file(&staged);
        return Err(err.context(format!("building the {} app {}", app.language, app.name)));
    }
    std::fs::rename(&staged, &target)
        .with_context(|| format!("cannot install {}", target.display()))?;
    Ok(target)
}

/// Packs the app's templates and public folders into the built component
/// (`templates/` and `public/` beside its sources; `src/templates/` and
/// `src/public/` in a Tina4 project), so the one file is the whole version.
fn pack_app_folders(app: &AppSource, component: &Path) -> anyhow::Result<()> {
    let base = if app.tina4 {
        app.dir.join("src")
    } else {
        app.dir.clone()
    };
    let folders: Vec<(PathBuf, &str)> = bundle::FOLDERS
        .into_iter()
        .map(|name| (base.join(name), name))
        .filter(|(dir, _)| dir.is_dir())
        .collect();
    if folders.is_empty() {
        return Ok(());
    }
    let mut bytes = std::fs::read(component).context("cannot read the built component")?;
    let folders: Vec<(&Path, &str)> = folders.iter().map(|(d, n)| (d.as_path(), *n)).collect();
    bundle::pack_into(&mut bytes, &folders).context("packing the templates and public files")?;
    std::fs::write(component, bytes).context("cannot write the built component")
}

/// `cargo build` for wasm32-wasip2; copies the package's cdylib component.
fn build_rust(app: &AppSource, out: &Path, toolchains: &Toolchains) -> anyhow::Result<()> {
    toolchains.rust()?;
    // A package that names `tina4-guest` by version (as `tina4-wasm new`
    // writes it) gets the SDK that matches this host.
    let sdk = sdk::rust_crate(&toolchains.root().join("sdk"))?;
    let patch = serde_json::to_string(&sdk.to_string_lossy())?;
    let mut cargo = Command::new(toolchain::cargo());
    cargo
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--config")
        .arg(format!("patch.crates-io.tina4-guest.path={patch}"))
        .args(["--message-format", "json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(app.dir.join("Cargo.toml"))
        .env("CARGO_TERM_COLOR", "never");
    let stdout = run(&mut cargo, "cargo build")?;
    let artifact = rust_artifact(&stdout, &app.dir)
        .context("cargo built no component: the package needs a `cdylib` target")?;
    std::fs::copy(&artifact, out).with_context(|| format!("cannot copy {}", artifact.display()))?;
    Ok(())
}

/// The `.wasm` of the cdylib cargo built for the package in `dir`, from
/// cargo's JSON messages.
fn rust_artifact(messages: &str, dir: &Path) -> Option<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| m["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
        })
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
        })
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
}

/// Bundles the app's modules, its dependencies and the SDK into one module
/// (esbuild), then compiles that with the chosen engine.
fn build_javascript(app: &AppSource, out: &Path, toolchains: &Toolchains) -> anyhow::Result<()> {
    let bin = toolchains.javascript()?;
    let staging = if app.tina4 {
        stage::tina4_javascript(&app.dir)?
    } else {
        stage::javascript(&app.dir)?
    };
    let root = staging.path();
    let bundle = root.join("bundle.js");
    let mut esbuild = Command::new(bin.join("esbuild"));
    esbuild
        // Aliases resolve from the working folder: the stage's.
        .current_dir(root)
        .arg(root.join(stage::JS_ENTRY))
        .args(["--bundle", "--format=esm", "--platform=neutral"])
        .args([
            "--main-fields=module,main",
            // Tina4 Node's route files import its router by its name.
            "--alias:tina4-nodejs=tina4-wasm",
            "--external:tina4:*",
            "--log-level=warning",
        ])
        // The engines differ: SpiderMonkey runs the event loop until an
        // export's promise settles (so the SDK returns handlers' promises
        // there), and takes 64-bit integers as BigInts.
        .arg(format!(
            "--define:TINA4_SPIDERMONKEY={}",
            toolchains.js_engine() == JsEngine::Spidermonkey
        ))
        .arg(format!("--outfile={}", bundle.display()));
    run(&mut esbuild, "esbuild")?;
    let mut compile = match toolchains.js_engine() {
        JsEngine::Spidermonkey => {
            let mut command = Command::new(bin.join("componentize-js"));
            command
                .arg(&bundle)
                .arg("--wit")
                .arg(root.join("wit"))
                .args(["--world-name", "handler"])
                // `fetch` is on (the engine imports wasi:http itself; the
                // host sends only what the app's grant allows); requests
                // come in through the handler world, not a fetch event.
                .args(["--disable", "fetch-event", "--out"])
                .arg(out);
            command
        }
        JsEngine::Quickjs => {
            let mut command = Command::new(bin.join("componentize-qjs"));
            command
                .arg("--wit")
                .arg(root.join("wit"))
                .arg("--js")
                .arg(&bundle)
                .args(["--world", "handler", "--sync", "--output"])
                .arg(out);
            command
        }
    };
    run(&mut compile, "the JavaScript componentizer")?;
    Ok(())
}

/// componentize-py over `app.py` (and its folder) and the SDK.
fn build_python(app: &AppSource, out: &Path, toolchains: &Toolchains) -> anyhow::Result<()> {
    let python = toolchains.python()?;
    let staging = if app.tina4 {
        stage::tina4_python(&app.dir)?
    } else {
        stage::python(&app.dir)?
    };
    let root = staging.path();
    let mut command = Command::new(python);
    command
        // The Python traceback says what is wrong; a Rust backtrace buries it.
        .env("RUST_BACKTRACE", "0")
        .args(["-c", toolchain::COMPONENTIZE_PY_MAIN])
        .arg("--wit-path")
        .arg(root.join("wit"))
        // With outgoing HTTP, for `tina4_wasm.fetch`.
        .args(["--world", "handler-http", "componentize"])
        .arg("--python-path")
        .arg(root.join("app"))
        .arg("--python-path")
        .arg(root.join("sdk"))
        .arg(stage::PY_ENTRY)
        .arg("--output")
        .arg(out);
    run(&mut command, "componentize-py")?;
    Ok(())
}

/// Runs a tool to completion; its stdout if it succeeds, else an error with
/// the tail of what it said.
pub(crate) fn run(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let said = [output.stderr.as_slice(), output.stdout.as_slice()]
        .map(String::from_utf8_lossy)
        .join("\n");
    let lines: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim_start().starts_with("{\"reason\""))
        .collect();
    let tail = lines[lines.len().saturating_sub(OUTPUT_TAIL)..].join("\n");
    bail!("{what} failed ({}):\n{}", output.status, tail.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_follows_the_files_in_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Language::detect(dir.path()), None);
        std::fs::write(dir.path().join("app.py"), "").unwrap();
        assert_eq!(Language::detect(dir.path()), Some(Language::Python));
        std::fs::write(dir.path().join("app.js"), "").unwrap();
        assert_eq!(Language::detect(dir.path()), Some(Language::Javascript));
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        assert_eq!(Language::detect(dir.path()), Some(Language::Rust));
    }

    #[test]
    fn names_come_from_the_folder_and_must_make_a_file_name() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("my-app");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("app.js"), "").unwrap();
        let app = AppSource::new(&dir, None, None).unwrap();
        assert_eq!(app.name, "my_app");
        assert_eq!(app.language, Language::Javascript);
        let err = AppSource::new(&dir, None, Some("../x".into())).unwrap_err();
        assert!(err.to_string().contains("use letters"), "{err}");
        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let err = AppSource::new(&empty, None, None).unwrap_err();
        assert!(err.to_string().contains("holds no app"), "{err}");
    }

    #[test]
    fn the_rust_artifact_is_the_packages_cdylib_wasm() {
        let messages = [
            r#"{"reason":"compiler-artifact","manifest_path":"/src/dep/Cargo.toml","target":{"kind":["lib"]},"filenames":["/t/libdep.rlib"]}"#,
            r#"{"reason":"compiler-artifact","manifest_path":"/src/chat/Cargo.toml","target":{"kind":["cdylib"]},"filenames":["/t/wasm32-wasip2/release/chat.wasm"]}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        assert_eq!(
            rust_artifact(&messages, Path::new("/src/chat")),
            Some(PathBuf::from("/t/wasm32-wasip2/release/chat.wasm"))
        );
        assert_eq!(rust_artifact(&messages, Path::new("/src/dep")), None);
    }
}
