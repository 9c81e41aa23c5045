//! The apps folder: load every component in it into one route table, and
//! describe the result in the startup banner.

use std::fmt::Write as _;
use std::path::Path;

use crate::router::{RouteEntry, RouteTable};
use crate::runtime::{LoadedApp, RouteTarget, Runtime, component_files};

/// The routes of every app that loaded, and the apps themselves.
pub struct AppSet {
    /// Every route, pointing at its app.
    pub routes: RouteTable<RouteTarget>,
    /// The apps that loaded, in load (file name) order.
    pub apps: Vec<LoadedApp>,
}

/// Loads every `*.wasm` in `dir`, in file-name order. A file that fails to
/// load, or whose routes conflict with an earlier app's, is reported with
/// its name and the reason, and skipped; the others still load.
pub fn load_all(runtime: &Runtime, dir: &Path) -> anyhow::Result<AppSet> {
    let mut set = AppSet {
        routes: RouteTable::default(),
        apps: Vec::new(),
    };
    for file in component_files(dir)? {
        let app = match runtime.load(&file) {
            Ok(app) => app,
            Err(err) => {
                tracing::error!(file = %file.display(), "cannot load app: {err:#}");
                continue;
            }
        };
        let entries = app
            .routes
            .iter()
            .enumerate()
            .map(|(index, (kind, pattern))| RouteEntry {
                kind: *kind,
                pattern: pattern.clone(),
                target: RouteTarget {
                    app: app.handle.clone(),
                    index: index as u32,
                },
            })
            .collect();
        match set.routes.add_all(entries) {
            Ok(()) => set.apps.push(app),
            Err(conflict) => {
                tracing::error!(file = %file.display(), "app refused: {conflict}");
            }
        }
    }
    if set.apps.is_empty() {
        tracing::warn!(dir = %dir.display(), "no apps loaded");
    }
    Ok(set)
}

/// The startup banner: each app and its routes.
pub fn banner(apps: &[LoadedApp]) -> String {
    let mut out = format!("tina4-wasm {}\n", env!("CARGO_PKG_VERSION"));
    for app in apps {
        let file = app
            .handle
            .file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let _ = writeln!(out, "  app {} ({file})", app.handle.name);
        for (kind, pattern) in &app.routes {
            let _ = writeln!(out, "    {:<7} {pattern}", kind.to_string());
        }
    }
    out
}
