//! `serve --watch`: rebuild apps from their Rust sources when they change.
//!
//! An app's source is the Cargo package, found by `cargo metadata` in one of
//! the `--watch` folders, whose `cdylib` target builds a component with the
//! app's file name (target `chat` builds `chat.wasm`; `my-app` builds
//! `my_app.wasm`). When a file under that package's folder changes (its
//! `target/` and hidden folders aside), the package is rebuilt with
//! `cargo build --release --target wasm32-wasip2`, and the new component is
//! renamed into the apps folder, where the reloader swaps it in. A failed
//! build is shown in the log and the running version keeps serving.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Quiet time after the last source change before building (editors save
/// several files, and some save in several steps).
const SETTLE: Duration = Duration::from_millis(200);
/// How much of a failed build's output the log shows.
const BUILD_OUTPUT_TAIL: usize = 40;

/// A guest package that builds one of the served apps.
#[derive(Debug, Clone)]
pub struct GuestPackage {
    /// The Cargo package name (for `-p`).
    pub package: String,
    /// Its manifest.
    pub manifest: PathBuf,
    /// The folder watched for changes (the manifest's folder).
    pub dir: PathBuf,
    /// The component cargo builds.
    pub artifact: PathBuf,
    /// Where it goes: `<apps>/<app>.wasm`.
    pub app_file: PathBuf,
}

/// Finds the packages under `sources` that build apps present in `apps_dir`.
pub fn discover(sources: &[PathBuf], apps_dir: &Path) -> anyhow::Result<Vec<GuestPackage>> {
    let mut found = Vec::new();
    for source in sources {
        let output = std::process::Command::new(cargo())
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(source)
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("cannot run cargo metadata in {}", source.display()))?;
        if !output.status.success() {
            bail!(
                "cargo metadata failed in {}: {}",
                source.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let metadata: serde_json::Value =
            serde_json::from_slice(&output.stdout).context("reading cargo metadata")?;
        found.extend(guest_packages(&metadata, apps_dir));
    }
    Ok(found)
}

/// The `cdylib` packages of one `cargo metadata` answer that build an app in `apps_dir`.
fn guest_packages(metadata: &serde_json::Value, apps_dir: &Path) -> Vec<GuestPackage> {
    let target_dir = PathBuf::from(metadata["target_directory"].as_str().unwrap_or("target"));
    let mut found = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let (Some(name), Some(manifest)) =
            (package["name"].as_str(), package["manifest_path"].as_str())
        else {
            continue;
        };
        let manifest = PathBuf::from(manifest);
        let builds_component = |t: &&serde_json::Value| {
            t["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
        };
        for target in package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(builds_component)
        {
            let Some(target_name) = target["name"].as_str() else {
                continue;
            };
            let stem = target_name.replace('-', "_");
            let app_file = apps_dir.join(format!("{stem}.wasm"));
            if !app_file.exists() {
                continue;
            }
            found.push(GuestPackage {
                package: name.to_string(),
                dir: manifest.parent().unwrap_or(Path::new(".")).to_path_buf(),
                manifest: manifest.clone(),
                artifact: target_dir
                    .join("wasm32-wasip2/release")
                    .join(format!("{stem}.wasm")),
                app_file,
            });
        }
    }
    found
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Whether a changed path is a source (not build output, not hidden, not
/// the lock file cargo itself rewrites while building).
fn is_source(path: &Path, package_dir: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(package_dir) else {
        return false;
    };
    if relative == Path::new("Cargo.lock") {
        return false;
    }
    !relative.components().any(|c| match c {
        Component::Normal(part) => part == "target" || part.to_string_lossy().starts_with('.'),
        _ => false,
    })
}

/// Watches the packages and rebuilds them on change, until the process ends.
pub async fn run(packages: Vec<GuestPackage>) -> anyhow::Result<()> {
    let (tx, mut events) = mpsc::channel(1024);
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.blocking_send(event);
    })
    .context("cannot start the source watcher")?;
    for package in &packages {
        watcher
            .watch(&package.dir, RecursiveMode::Recursive)
            .with_context(|| format!("cannot watch {}", package.dir.display()))?;
        tracing::info!(
            package = package.package,
            dir = %package.dir.display(),
            app = %package.app_file.display(),
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
                for (i, package) in packages.iter().enumerate() {
                    if event.paths.iter().any(|p| is_source(p, &package.dir)) {
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
                    rebuild(&packages[i]).await;
                }
            }
        }
    }
}

/// Builds one package and, if it builds, renames its component into the
/// apps folder (atomically: the reloader never sees half a file).
async fn rebuild(package: &GuestPackage) {
    tracing::info!(package = package.package, "sources changed; building");
    let started = std::time::Instant::now();
    let output = tokio::process::Command::new(cargo())
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&package.manifest)
        .args(["-p", &package.package])
        .env("CARGO_TERM_COLOR", "never")
        .stdin(Stdio::null())
        .output()
        .await;
    let output = match output {
        Ok(output) => output,
        Err(err) => {
            tracing::error!(package = package.package, "cannot run cargo: {err}");
            return;
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(BUILD_OUTPUT_TAIL)..].join("\n");
        tracing::error!(
            "build of {} failed; the running version keeps serving:\n{tail}",
            package.package
        );
        return;
    }
    let staged = package.app_file.with_extension("wasm.building");
    let installed = std::fs::copy(&package.artifact, &staged)
        .and_then(|_| std::fs::rename(&staged, &package.app_file));
    match installed {
        Ok(()) => tracing::info!(
            package = package.package,
            elapsed = ?started.elapsed(),
            "built; installing the new version"
        ),
        Err(err) => tracing::error!(
            package = package.package,
            artifact = %package.artifact.display(),
            "cannot install the built component: {err}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cdylib_packages_of_served_apps() {
        let apps = tempfile_dir();
        std::fs::write(apps.join("chat.wasm"), b"").unwrap();
        std::fs::write(apps.join("my_app.wasm"), b"").unwrap();
        let metadata = serde_json::json!({
            "target_directory": "/build/target",
            "packages": [
                {"name": "chat", "manifest_path": "/src/chat/Cargo.toml",
                 "targets": [{"name": "chat", "kind": ["cdylib"]}]},
                {"name": "my-app", "manifest_path": "/src/my-app/Cargo.toml",
                 "targets": [{"name": "my-app", "kind": ["cdylib"]}]},
                {"name": "not-served", "manifest_path": "/src/x/Cargo.toml",
                 "targets": [{"name": "x", "kind": ["cdylib"]}]},
                {"name": "host", "manifest_path": "/src/host/Cargo.toml",
                 "targets": [{"name": "chat", "kind": ["bin"]}]}
            ]
        });
        let found = guest_packages(&metadata, &apps);
        let names: Vec<&str> = found.iter().map(|p| p.package.as_str()).collect();
        assert_eq!(names, ["chat", "my-app"]);
        assert_eq!(
            found[1].artifact,
            Path::new("/build/target/wasm32-wasip2/release/my_app.wasm")
        );
        assert_eq!(found[1].app_file, apps.join("my_app.wasm"));
        std::fs::remove_dir_all(apps).unwrap();
    }

    #[test]
    fn build_output_and_hidden_folders_are_not_sources() {
        let dir = Path::new("/src/chat");
        assert!(is_source(Path::new("/src/chat/src/lib.rs"), dir));
        assert!(is_source(Path::new("/src/chat/Cargo.toml"), dir));
        assert!(!is_source(Path::new("/src/chat/target/release/x"), dir));
        assert!(!is_source(Path::new("/src/chat/.git/index"), dir));
        assert!(!is_source(Path::new("/src/chat/Cargo.lock"), dir));
        assert!(!is_source(Path::new("/elsewhere/lib.rs"), dir));
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tina4-source-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
