//! `serve --watch`: rebuild apps when their sources change, in any of the
//! languages `tina4-wasm build` knows.
//!
//! Each `--watch` folder is searched (it and up to [`DEPTH`] levels below,
//! build output and dependencies aside) for app source folders
//! ([`Language::detect`]); one whose name is a served app's (`chat` for
//! `<apps>/chat.wasm`) is watched. When a file under it changes, the app is
//! rebuilt with [`build::build`] and renamed into the apps folder, where the
//! reloader swaps it in. A failed build is shown in the log and the running
//! version keeps serving.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::build::toolchain::Toolchains;
use crate::build::{self, AppSource, Language};

/// Quiet time after the last source change before building (editors save
/// several files, and some save in several steps).
const SETTLE: Duration = Duration::from_millis(200);

/// How deep below a `--watch` folder app folders are looked for
/// (`--watch .` finds `examples/javascript/chat`).
const DEPTH: usize = 3;

/// A served app whose sources are watched.
#[derive(Debug, Clone)]
pub(crate) struct WatchedApp {
    /// Its sources and language.
    pub(crate) source: AppSource,
    /// The apps folder it is built into.
    pub(crate) apps_dir: PathBuf,
}

/// Folders that hold no app sources of their own.
fn is_output_or_hidden(name: &str) -> bool {
    name.starts_with('.')
        || matches!(
            name,
            "target" | "node_modules" | "__pycache__" | "venv" | "Cargo.lock"
        )
}

/// Finds the app source folders under `sources` that build apps present in
/// `apps_dir`. Two folders building the same app is an error: say which.
pub(crate) fn discover(sources: &[PathBuf], apps_dir: &Path) -> anyhow::Result<Vec<WatchedApp>> {
    let mut found: HashMap<String, AppSource> = HashMap::new();
    for source in sources {
        let mut candidates = Vec::new();
        find_app_folders(source, DEPTH, &mut candidates)
            .with_context(|| format!("searching {} for app sources", source.display()))?;
        for dir in candidates {
            let app = AppSource::new(&dir, None, None)?;
            if !app.app_file(apps_dir).exists() {
                continue;
            }
            if let Some(other) = found.get(&app.name)
                && other.dir != app.dir
            {
                bail!(
                    "both {} and {} build {}.wasm; --watch the one you mean",
                    other.dir.display(),
                    app.dir.display(),
                    app.name
                );
            }
            found.insert(app.name.clone(), app);
        }
    }
    let mut apps: Vec<WatchedApp> = found
        .into_values()
        .map(|source| WatchedApp {
            source,
            apps_dir: apps_dir.to_path_buf(),
        })
        .collect();
    apps.sort_by(|a, b| a.source.name.cmp(&b.source.name));
    Ok(apps)
}

/// Collects `dir` and the folders below it that hold an app. A JavaScript
/// or Python app's subfolders are its own modules; a Cargo folder may be a
/// workspace, so the search goes on below it.
fn find_app_folders(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let language = Language::detect(dir);
    if language.is_some() {
        found.push(dir.to_path_buf());
    }
    if depth == 0 || matches!(language, Some(Language::Javascript | Language::Python)) {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() && !is_output_or_hidden(&entry.file_name().to_string_lossy())
        {
            find_app_folders(&entry.path(), depth - 1, found)?;
        }
    }
    Ok(())
}

/// Whether a changed path is a source (not build output, not hidden, not
/// the lock file cargo itself rewrites while building).
fn is_source(path: &Path, app_dir: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(app_dir) else {
        return false;
    };
    !relative.components().any(|c| match c {
        Component::Normal(part) => is_output_or_hidden(&part.to_string_lossy()),
        _ => false,
    })
}

/// Watches the apps' sources and rebuilds them on change, until the
/// process ends.
pub(crate) async fn run(apps: Vec<WatchedApp>, toolchains: Toolchains) -> anyhow::Result<()> {
    let (tx, mut events) = mpsc::channel(1024);
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.blocking_send(event);
    })
    .context("cannot start the source watcher")?;
    for app in &apps {
        watcher
            .watch(&app.source.dir, RecursiveMode::Recursive)
            .with_context(|| format!("cannot watch {}", app.source.dir.display()))?;
        tracing::info!(
            app = app.source.name,
            language = %app.source.language,
            dir = %app.source.dir.display(),
            "watching the app's sources"
        );
    }
    let mut dirty: HashMap<usize, Instant> = HashMap::new();
    loop {
        let next = dirty.values().min().copied();
        tokio::select! {
            event = events.recv() => {
                let Some(Ok(event)) = event else { continue };
                if matches!(event.kind, EventKind::Access(_)) {
                    continue;
                }
                for (i, app) in apps.iter().enumerate() {
                    if event.paths.iter().any(|p| is_source(p, &app.source.dir)) {
                        dirty.insert(i, Instant::now() + SETTLE);
                    }
                }
            }
            () = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                let due: Vec<usize> = dirty.iter().filter(|(_, at)| **at <= now).map(|(i, _)| *i).collect();
                for i in due {
                    dirty.remove(&i);
                    rebuild(apps[i].clone(), toolchains.clone()).await;
                }
            }
        }
    }
}

/// Builds one app and installs it in the apps folder (atomically: the
/// reloader never sees half a file).
async fn rebuild(app: WatchedApp, toolchains: Toolchains) {
    let name = app.source.name.clone();
    tracing::info!(app = name, "sources changed; building");
    let started = std::time::Instant::now();
    let built =
        tokio::task::spawn_blocking(move || build::build(&app.source, &app.apps_dir, &toolchains))
            .await;
    match built {
        Ok(Ok(_)) => tracing::info!(
            app = name,
            elapsed = ?started.elapsed(),
            "built; installing the new version"
        ),
        Ok(Err(err)) => {
            tracing::error!("build of {name} failed; the running version keeps serving:\n{err:#}")
        }
        Err(err) => tracing::error!("build of {name} did not finish: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_app_folders_of_served_apps_in_every_language() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let touch = |path: &str| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        };
        touch("src/Cargo.toml"); // a workspace: searched below
        touch("src/rust/chat/Cargo.toml");
        touch("src/js/my-feed/app.js");
        touch("src/js/my-feed/lib/inner/app.py"); // a module of the JS app
        touch("src/py/alerts/app.py");
        touch("src/py/unserved/app.py");
        touch("src/rust/chat/target/x/app.js"); // build output
        // Tina4 projects as they are: their own entry beside src/routes.
        touch("src/tina4/shop/app.py");
        touch("src/tina4/shop/src/routes/cart.py");
        touch("src/tina4/board/package.json");
        touch("src/tina4/board/src/routes/board.ts");
        for app in ["chat", "my_feed", "alerts", "inner", "shop", "board"] {
            touch(&format!("apps/{app}.wasm"));
        }
        let found = discover(&[root.join("src")], &root.join("apps")).unwrap();
        let names: Vec<(&str, Language)> = found
            .iter()
            .map(|a| (a.source.name.as_str(), a.source.language))
            .collect();
        assert_eq!(
            names,
            [
                ("alerts", Language::Python),
                ("board", Language::Javascript),
                ("chat", Language::Rust),
                ("my_feed", Language::Javascript),
                ("shop", Language::Python),
            ]
        );

        touch("src/py/chat/app.py");
        let err = discover(&[root.join("src")], &root.join("apps")).unwrap_err();
        assert!(err.to_string().contains("build chat.wasm"), "{err}");
    }

    #[test]
    fn build_output_and_hidden_folders_are_not_sources() {
        let dir = Path::new("/src/chat");
        assert!(is_source(Path::new("/src/chat/src/lib.rs"), dir));
        assert!(is_source(Path::new("/src/chat/Cargo.toml"), dir));
        assert!(is_source(Path::new("/src/chat/app.py"), dir));
        assert!(!is_source(Path::new("/src/chat/target/release/x"), dir));
        assert!(!is_source(Path::new("/src/chat/.git/index"), dir));
        assert!(!is_source(Path::new("/src/chat/Cargo.lock"), dir));
        assert!(!is_source(Path::new("/src/chat/node_modules/x/i.js"), dir));
        assert!(!is_source(Path::new("/src/chat/__pycache__/app.pyc"), dir));
        assert!(!is_source(Path::new("/elsewhere/lib.rs"), dir));
    }
}
