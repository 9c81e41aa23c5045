//! Each language's compiler, installed from its package registry on first
//! use into `<cache>/toolchains/` (default `~/.cache/tina4-wasm/toolchains`),
//! at a pinned version so every machine builds the same component.
//!
//! An install goes to a scratch folder first and is renamed into place, so
//! an interrupted or concurrent install never leaves a half toolchain.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::build::run;
use crate::config::JsEngine;

/// The JavaScript toolchain (npm): the SpiderMonkey and QuickJS
/// componentizers, and esbuild, which bundles an app's modules and its npm
/// dependencies into the one module the componentizers take.
pub(crate) const JAVASCRIPT_PACKAGES: &[&str] = &[
    "@bytecodealliance/componentize-js@0.23.0",
    "componentize-qjs@0.4.5",
    "esbuild@0.25.12",
];

/// The folder the JavaScript toolchain is installed in (named for its
/// versions, so a new pin installs beside the old).
const JAVASCRIPT_DIR: &str = "javascript-componentize-js-0.23.0-qjs-0.4.5-esbuild-0.25.12";

/// The Python componentizer (PyPI).
pub(crate) const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// Runs componentize-py's command line from its installed package (the
/// venv's own launcher script would pin the venv's first location).
pub(crate) const COMPONENTIZE_PY_MAIN: &str = "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())";

/// Where toolchains are installed, and which JavaScript engine to use.
#[derive(Debug, Clone)]
pub(crate) struct Toolchains {
    /// The folder holding one sub-folder per installed toolchain version.
    root: PathBuf,
    /// The engine JavaScript apps are compiled with.
    js_engine: JsEngine,
}

/// `~/.cache/tina4-wasm/toolchains` (or under `$XDG_CACHE_HOME`).
pub(crate) fn default_dir() -> Option<PathBuf> {
    crate::config::default_cache_dir()
        .and_then(|components| components.parent().map(|p| p.join("toolchains")))
}

/// The cargo to build with: the one running us, if any.
pub(crate) fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

impl Toolchains {
    /// Toolchains kept in `root`, compiling JavaScript with SpiderMonkey.
    pub(crate) fn new(root: PathBuf) -> Self {
        Self {
            root,
            js_engine: JsEngine::default(),
        }
    }

    /// The same toolchains, compiling JavaScript with `engine`.
    pub(crate) fn with_js_engine(self, engine: JsEngine) -> Self {
        Self {
            js_engine: engine,
            ..self
        }
    }

    /// The engine JavaScript apps are compiled with.
    pub(crate) fn js_engine(&self) -> JsEngine {
        self.js_engine
    }

    /// Toolchains in the default folder.
    pub(crate) fn default_location() -> anyhow::Result<Self> {
        let root = default_dir().context(
            "no cache folder (neither HOME nor XDG_CACHE_HOME is set); pass --toolchains",
        )?;
        Ok(Self::new(root))
    }

    /// Makes sure rustup has the wasm32-wasip2 target (when rustup manages
    /// the toolchain; otherwise cargo says what is missing).
    /// Where toolchains (and the SDKs builds use) are installed.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn rust(&self) -> anyhow::Result<()> {
        let Ok(installed) = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()
        else {
            return Ok(());
        };
        if String::from_utf8_lossy(&installed.stdout)
            .lines()
            .any(|t| t.trim() == "wasm32-wasip2")
        {
            return Ok(());
        }
        tracing::info!("installing the wasm32-wasip2 Rust target (rustup)");
        run(
            Command::new("rustup").args(["target", "add", "wasm32-wasip2"]),
            "rustup target add wasm32-wasip2",
        )?;
        Ok(())
    }

    /// The folder of the JavaScript tools' commands (`node_modules/.bin`),
    /// installed with npm if missing.
    pub(crate) fn javascript(&self) -> anyhow::Result<PathBuf> {
        let dir = self.root.join(JAVASCRIPT_DIR);
        let bin = dir.join("node_modules/.bin");
        self.install_once(&dir, &bin.join("esbuild"), "npm", |scratch| {
            std::fs::write(scratch.join("package.json"), "{\"private\": true}\n")?;
            let mut npm = Command::new("npm");
            npm.args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                .arg("--prefix")
                .arg(scratch)
                .args(JAVASCRIPT_PACKAGES);
            run(&mut npm, "npm install").map(drop).map_err(|err| {
                err.context("installing the JavaScript toolchain needs Node.js and npm")
            })
        })?;
        Ok(bin)
    }

    /// A Python that runs componentize-py, installed into a venv with pip
    /// if missing.
    pub(crate) fn python(&self) -> anyhow::Result<PathBuf> {
        let dir = self.root.join(COMPONENTIZE_PY.replace("==", "-"));
        let python = dir.join("bin/python3");
        self.install_once(&dir, &python, "PyPI", |scratch| {
            let venv = run(
                Command::new("python3").args(["-m", "venv"]).arg(scratch),
                "python3 -m venv",
            );
            venv.map_err(|err| {
                err.context(
                    "installing the Python toolchain needs Python 3 with venv \
                     (Debian: apt-get install python3-venv)",
                )
            })?;
            run(
                Command::new(scratch.join("bin/python3"))
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                    ])
                    .arg(COMPONENTIZE_PY),
                "pip install componentize-py",
            )
            .map(drop)
        })?;
        Ok(python)
    }

    /// Installs into `dir` with `install` (given a scratch folder) unless
    /// `marker` already exists there.
    fn install_once(
        &self,
        dir: &Path,
        marker: &Path,
        registry: &str,
        install: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if marker.exists() {
            return Ok(());
        }
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        tracing::info!(toolchain = %name, "installing from {registry} (first build only)");
        eprintln!("tina4-wasm: installing {name} from {registry} (first build only)");
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        let scratch = self
            .root
            .join(format!(".{name}.installing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)?;
        let installed = install(&scratch).and_then(|()| {
            let relative = marker.strip_prefix(dir).unwrap_or(marker);
            if scratch.join(relative).exists() {
                Ok(())
            } else {
                bail!("the {name} install did not produce {}", relative.display())
            }
        });
        if let Err(err) = installed {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(err);
        }
        if !marker.exists() {
            // A folder without its marker is what an older, interrupted
            // install left: replace it.
            let _ = std::fs::remove_dir_all(dir);
        }
        if std::fs::rename(&scratch, dir).is_err() {
            // Someone else installed it meanwhile: theirs is as good.
            let _ = std::fs::remove_dir_all(&scratch);
        }
        if !marker.exists() {
            bail!("cannot install {name} into {}", dir.display());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_install_lands_whole_once_and_a_failed_one_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let toolchains = Toolchains::new(root.path().to_path_buf());
        let dir = root.path().join("tool-1.0");
        let marker = dir.join("bin/tool");
        let install = |scratch: &Path| {
            std::fs::create_dir_all(scratch.join("bin"))?;
            std::fs::write(scratch.join("bin/tool"), b"")?;
            Ok(())
        };
        toolchains
            .install_once(&dir, &marker, "test", install)
            .unwrap();
        assert!(marker.is_file());
        // Installed: the next call installs nothing.
        toolchains
            .install_once(&dir, &marker, "test", |_| panic!("installed twice"))
            .unwrap();

        let broken = root.path().join("broken-1.0");
        let err = toolchains
            .install_once(&broken, &broken.join("bin/tool"), "test", |_| {
                bail!("registry unreachable")
            })
            .unwrap_err();
        assert!(err.to_string().contains("registry unreachable"), "{err}");
        let empty = root.path().join("empty-1.0");
        let err = toolchains
            .install_once(&empty, &empty.join("bin/tool"), "test", |_| Ok(()))
            .unwrap_err();
        assert!(err.to_string().contains("did not produce"), "{err}");
        // Neither a half install nor a scratch folder is left behind.
        let left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["tool-1.0"]);

        // A folder an interrupted install left without its marker is replaced.
        std::fs::create_dir_all(empty.join("half")).unwrap();
        toolchains
            .install_once(&empty, &empty.join("bin/tool"), "test", install)
            .unwrap();
        assert!(empty.join("bin/tool").is_file() && !empty.join("half").exists());
    }
}
