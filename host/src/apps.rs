//! The apps that are serving, one per component file, and every change to
//! them: load a new file, swap in a new version, unload a deleted one. The
//! [`AppManager`] is the only writer of the route table; each change builds
//! a whole new table and publishes it in one atomic store, so a request sees
//! either the old routes or the new ones, never a mix.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::router::{RouteEntry, RouteKind, RouteTable};
use crate::runtime::{
    AppHandle, DeclaredRoute, PreparedApp, RouteKey, RouteTarget, Runtime, component_files,
};
use crate::server::ServerState;

/// Close code for connections of an app that was removed or lost their route.
const GOING_AWAY: u16 = 1001;

/// An app that is serving.
pub struct ServingApp {
    /// Its actor.
    pub handle: Arc<AppHandle>,
    /// SHA-256 of the version serving now.
    pub hash: String,
    /// The routes of that version.
    pub routes: Vec<DeclaredRoute>,
}

/// What the manager keeps of a version once its actor has it.
struct Version {
    /// Its id: the content hash of the component and its settings.
    hash: String,
    /// Its own connection cap, from `<app>.toml`.
    max_connections: Option<usize>,
    /// Its routes, for the route table and the banner.
    routes: Vec<DeclaredRoute>,
    /// Its routes' keys, so commands routed by an older version still resolve.
    keys: Vec<Arc<RouteKey>>,
    /// How long loading it took, for the log line.
    timings: crate::runtime::LoadTimings,
}

impl Version {
    fn of(prepared: &PreparedApp) -> Self {
        Self {
            hash: prepared.hash.clone(),
            max_connections: prepared.policy().max_connections,
            routes: prepared.routes.clone(),
            keys: prepared.route_keys(),
            timings: prepared.timings,
        }
    }

    /// Logs what happened to the app, with the version and its load times.
    fn log(&self, handle: &AppHandle, file: &Path, what: &str) {
        tracing::info!(
            app = %handle.name,
            file = %file.display(),
            version = &self.hash[..12],
            compile = ?self.timings.compile,
            origin = %self.timings.origin,
            instantiate = ?self.timings.instantiate,
            routes = self.routes.len(),
            "{what}"
        );
    }

    fn serving(&self, handle: Arc<AppHandle>) -> ServingApp {
        ServingApp {
            handle,
            hash: self.hash.clone(),
            routes: self.routes.clone(),
        }
    }
}

/// Owns the set of serving apps and the route table.
pub struct AppManager {
    /// Compiles and instantiates.
    runtime: Arc<Runtime>,
    /// Holds the route table and the connection registry.
    state: Arc<ServerState>,
    /// Serving apps by component file.
    apps: BTreeMap<PathBuf, ServingApp>,
    /// Whether the initial scan of the folder has finished.
    initial_load_done: bool,
}

impl AppManager {
    pub fn new(runtime: Arc<Runtime>, state: Arc<ServerState>) -> Self {
        Self {
            runtime,
            state,
            apps: BTreeMap::new(),
            initial_load_done: false,
        }
    }

    /// The serving apps, by file name.
    pub fn apps(&self) -> impl Iterator<Item = &ServingApp> {
        self.apps.values()
    }

    /// Loads every `*.wasm` in `dir`, in file-name order (so which of two
    /// conflicting apps wins is stable).
    pub async fn load_dir(&mut self, dir: &Path) -> anyhow::Result<()> {
        for file in component_files(dir)? {
            self.update(&file).await;
        }
        if self.apps.is_empty() {
            tracing::warn!(dir = %dir.display(), "no apps loaded");
        }
        self.initial_load_done = true;
        self.publish_readiness();
        Ok(())
    }

    /// Ready: the initial load is done and at least one app serves. Also
    /// publishes the serving apps' public folders, in file-name order.
    fn publish_readiness(&self) {
        let public = self
            .apps
            .keys()
            .map(|file| file.with_extension("").join("public"))
            .collect();
        self.state.public_dirs.store(Arc::new(public));
        let ready = self.initial_load_done && !self.apps.is_empty();
        self.state
            .ready
            .store(ready, std::sync::atomic::Ordering::Release);
    }

    /// Brings the app of `file` in line with the file: loads it if new,
    /// swaps in the new version if changed, unloads it if gone. A version
    /// that fails to load is reported and the previous one keeps serving.
    pub async fn update(&mut self, file: &Path) {
        if !file.is_file() {
            self.unload(file);
            return;
        }
        let runtime = self.runtime.clone();
        let path = file.to_path_buf();
        let prepared = tokio::task::spawn_blocking(move || runtime.prepare(&path)).await;
        let serving = self.apps.contains_key(file);
        let prepared = match prepared {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(err)) => {
                let keeps = if serving {
                    "; the previous version keeps serving"
                } else {
                    ""
                };
                tracing::error!(app = %app_of(file), file = %file.display(), "cannot load app: {err:#}{keeps}");
                return;
            }
            Err(panic) => {
                tracing::error!(app = %app_of(file), file = %file.display(), "loading the app panicked: {panic}");
                return;
            }
        };
        if self
            .apps
            .get(file)
            .is_some_and(|app| app.hash == prepared.hash)
        {
            tracing::debug!(file = %file.display(), "unchanged; nothing to do");
            return;
        }
        if serving {
            self.swap(file, prepared).await;
        } else {
            self.start(prepared);
        }
    }

    /// The table without `except`'s routes.
    fn table_without(&self, except: Option<&Arc<AppHandle>>) -> RouteTable<RouteTarget> {
        let mut table = (**self.state.routes.load()).clone();
        if let Some(app) = except {
            table.remove_where(|t| Arc::ptr_eq(&t.app, app));
        }
        table
    }

    fn start(&mut self, prepared: PreparedApp) {
        let file = prepared.file.clone();
        let version = Version::of(&prepared);
        let handle = match self.runtime.start(prepared) {
            Ok(handle) => handle,
            Err(err) => {
                tracing::error!(app = %app_of(&file), file = %file.display(), "cannot start app: {err:#}");
                return;
            }
        };
        let mut table = self.table_without(None);
        if let Err(conflict) = table.add_all(entries(&handle, &version)) {
            // Dropping the handle stops the actor.
            tracing::error!(app = %app_of(&file), file = %file.display(), "app refused: {conflict}");
            return;
        }
        handle.set_max_connections(version.max_connections);
        self.state.routes.store(Arc::new(table));
        self.apps
            .insert(file.clone(), version.serving(handle.clone()));
        // Ready as soon as it serves, before anyone reads the log line.
        self.publish_readiness();
        version.log(&handle, &file, "app loaded");
    }

    async fn swap(&mut self, file: &Path, prepared: PreparedApp) {
        let Some(handle) = self.apps.get(file).map(|app| app.handle.clone()) else {
            return;
        };
        let version = Version::of(&prepared);
        let mut table = self.table_without(Some(&handle));
        if let Err(conflict) = table.add_all(entries(&handle, &version)) {
            tracing::error!(
                file = %file.display(),
                "new version refused: {conflict}; the previous version keeps serving"
            );
            return;
        }
        // The actor switches between two events; requests routed by the old
        // table meanwhile find their route in the new version by its key.
        if handle.swap(prepared).await.is_err() {
            tracing::error!(app = %app_of(file), file = %file.display(), "the app stopped before it could be swapped");
            return;
        }
        handle.set_max_connections(version.max_connections);
        self.state.routes.store(Arc::new(table));
        self.close_orphans(&handle, &version.routes);
        version.log(&handle, file, "app swapped to a new version");
        let app = handle.name.to_string();
        metrics::counter!(crate::telemetry::SWAPS, "app" => app.clone()).increment(1);
        metrics::histogram!(crate::telemetry::SWAP_SECONDS, "app" => app)
            .record(version.timings.compile + version.timings.instantiate);
        self.apps
            .insert(file.to_path_buf(), version.serving(handle));
    }

    /// Closes the app's connections whose path no WebSocket route of the
    /// new version serves.
    fn close_orphans(&self, handle: &AppHandle, routes: &[DeclaredRoute]) {
        for conn in self.state.registry.connections_of(&handle.name) {
            let still_served =
                crate::router::RequestPath::from_decoded(&conn.path).is_some_and(|p| {
                    routes
                        .iter()
                        .any(|r| r.kind == RouteKind::WebSocket && r.pattern.matches_path(&p))
                });
            if !still_served {
                conn.evict(GOING_AWAY, "route removed by an update of the app");
            }
        }
    }

    fn unload(&mut self, file: &Path) {
        let Some(app) = self.apps.remove(file) else {
            return;
        };
        let table = self.table_without(Some(&app.handle));
        self.state.routes.store(Arc::new(table));
        self.publish_readiness();
        let open = self.state.registry.connections_of(&app.handle.name);
        for conn in &open {
            conn.evict(GOING_AWAY, "app removed");
        }
        tracing::info!(
            app = %app.handle.name,
            file = %file.display(),
            closed = open.len(),
            "app unloaded: its file is gone"
        );
    }

    /// The startup banner: each app and its routes.
    pub fn banner(&self) -> String {
        let mut out = format!("tina4-wasm {}\n", env!("CARGO_PKG_VERSION"));
        for (file, app) in &self.apps {
            let file = file.file_name().unwrap_or_default().to_string_lossy();
            let _ = writeln!(
                out,
                "  app {} ({file}, version {})",
                app.handle.name,
                &app.hash[..12]
            );
            for route in &app.routes {
                let _ = writeln!(out, "    {route}");
            }
        }
        out
    }
}

/// The app name a file would have, for log lines about it.
fn app_of(file: &Path) -> String {
    crate::runtime::app_name(file).unwrap_or_else(|_| file.display().to_string())
}

/// Route table entries for one version of an app.
fn entries(handle: &Arc<AppHandle>, version: &Version) -> Vec<RouteEntry<RouteTarget>> {
    version
        .routes
        .iter()
        .zip(&version.keys)
        .enumerate()
        .map(|(index, (route, key))| RouteEntry {
            kind: route.kind,
            pattern: route.pattern.clone(),
            target: RouteTarget {
                app: handle.clone(),
                index: index as u32,
                key: key.clone(),
                secured: route.secured,
            },
        })
        .collect()
}
