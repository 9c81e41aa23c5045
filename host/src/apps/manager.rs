//! The apps that are serving, one per component file, and every change to
//! them: load a new file, swap in a new version, unload a deleted one. The
//! [`AppManager`] is the only writer of the route table; each change builds
//! a whole new table and publishes it in one atomic store, so a request sees
//! either the old routes or the new ones, never a mix.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::app_files::{AppFiles, component_files};
use crate::bundle::Bundle;
use crate::config::ServerNames;
use crate::delivery::{ConnectionRegistry, close};
use crate::router::{HostBinding, RequestPath, RouteEntry, RouteKind, RoutePattern, RouteTable};
use crate::runtime::{
    AppHandle, DeclaredRoute, EdgeSettings, PreparedApp, RouteKey, RouteTarget, Runtime, Serving,
    SharedServing, history_rule, presence_app,
};

/// An app that is serving.
pub(crate) struct ServingApp {
    /// Its actor.
    pub(crate) handle: Arc<AppHandle>,
    /// SHA-256 of the version serving now.
    pub(crate) hash: String,
    /// The routes of that version.
    pub(crate) routes: Vec<DeclaredRoute>,
}

/// What the manager keeps of a version once its actor has it.
struct Version {
    /// Its id: the content hash of the component and its settings.
    hash: String,
    /// What the edge checks before involving it, from `<app>.toml`.
    edge: EdgeSettings,
    /// Its routes, for the route table and the banner.
    routes: Vec<DeclaredRoute>,
    /// The host names it serves (`None`: the server's own).
    hosts: HostBinding,
    /// Its public files, claimed like routes.
    statics: Vec<String>,
    /// Its packed templates and public files, if it packs them.
    bundle: Option<Arc<Bundle>>,
    /// Its routes' keys, so commands routed by an older version still resolve.
    keys: Vec<Arc<RouteKey>>,
    /// How long loading it took, for the log line.
    timings: crate::runtime::LoadTimings,
}

impl Version {
    fn of(prepared: &PreparedApp) -> Self {
        Self {
            hash: prepared.hash.clone(),
            edge: EdgeSettings {
                max_connections: prepared.policy().max_connections,
                audience: prepared.policy().audience(&prepared.name),
                message_rate: prepared.policy().message_rate,
            },
            routes: prepared.routes.clone(),
            hosts: prepared.policy().hosts.clone(),
            statics: prepared.statics.clone(),
            bundle: prepared.bundle.clone(),
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
pub(crate) struct AppManager {
    /// Compiles and instantiates.
    runtime: Arc<Runtime>,
    /// What is serving, published whole after each change.
    serving: SharedServing,
    /// The connections, to close those an update leaves without a route.
    registry: Arc<ConnectionRegistry>,
    /// The server's own host names, which no app may claim.
    names: ServerNames,
    /// Serving apps by component file.
    apps: BTreeMap<PathBuf, ServingApp>,
    /// Whether the initial scan of the folder has finished.
    initial_load_done: bool,
    /// Apps refused at startup, and why, for the banner.
    refused: Vec<String>,
}

impl AppManager {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        serving: SharedServing,
        registry: Arc<ConnectionRegistry>,
        names: ServerNames,
    ) -> Self {
        Self {
            runtime,
            serving,
            registry,
            names,
            apps: BTreeMap::new(),
            initial_load_done: false,
            refused: Vec::new(),
        }
    }

    /// Loads every `*.wasm` in `dir`. No app is serving yet, so none has a
    /// claim over another: two apps whose routes or files would answer the
    /// same requests are both refused, loudly (in the log and the banner),
    /// and the others serve. Nothing about the order of the files decides
    /// who gets a contested path.
    pub(crate) async fn load_dir(&mut self, dir: &Path) -> anyhow::Result<()> {
        let mut ready = Vec::new();
        for file in component_files(dir)? {
            if let Some(prepared) = self.prepare(&file).await {
                ready.push(prepared);
            }
        }
        // Every version's claims in one table, each checked against the
        // others': the host index keeps this linear in the number of apps.
        let own: Vec<_> = ready
            .iter()
            .enumerate()
            .map(|(i, p)| claims_of(i, p))
            .collect();
        let mut claims = RouteTable::default();
        for entries in &own {
            claims.insert_unchecked(entries.clone());
        }
        let mut table = self.table_without(None);
        let mut loaded = Vec::new();
        for (i, prepared) in ready.into_iter().enumerate() {
            match claims.conflict_with_others(&own[i], |c: &Claimant| c.index == i) {
                Some(conflict) => {
                    tracing::error!(app = %prepared.name, file = %prepared.file.display(), "app refused: {conflict}; at startup neither of two conflicting apps serves");
                    self.refused.push(format!("{} ({conflict})", prepared.name));
                }
                None => loaded.extend(self.start_into(&mut table, prepared)),
            }
        }
        if self.apps.is_empty() {
            tracing::warn!(dir = %dir.display(), "no apps loaded");
        }
        self.initial_load_done = true;
        self.publish(table);
        for (version, handle, file) in loaded {
            version.log(&handle, &file, "app loaded");
        }
        Ok(())
    }

    /// Publishes `routes` as what is serving, in one store with readiness:
    /// ready once the initial load is done while at least one app serves.
    fn publish(&self, routes: RouteTable<RouteTarget>) {
        let ready = self.initial_load_done && !self.apps.is_empty();
        self.serving.store(Arc::new(Serving { routes, ready }));
    }

    /// Brings the app of `file` in line with the file: loads it if new,
    /// swaps in the new version if changed, unloads it if gone. A version
    /// that fails to load is reported and the previous one keeps serving.
    pub(crate) async fn update(&mut self, file: &Path) {
        if !file.is_file() {
            self.unload(file);
            return;
        }
        let serving = self.apps.contains_key(file);
        let Some(prepared) = self.prepare(file).await else {
            return;
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
            let mut table = self.table_without(None);
            if let Some((version, handle, file)) = self.start_into(&mut table, prepared) {
                // Ready as soon as it serves, before anyone reads the log line.
                self.publish(table);
                version.log(&handle, &file, "app loaded");
            }
        }
    }

    /// Compiles (off the async runtime) and instantiates the version in
    /// `file`; a failure is logged and is `None`.
    async fn prepare(&self, file: &Path) -> Option<PreparedApp> {
        let keeps = if self.apps.contains_key(file) {
            "; the previous version keeps serving"
        } else {
            ""
        };
        match self.runtime.prepare(file).await {
            Ok(prepared) => Some(prepared),
            Err(err) => {
                tracing::error!(app = %app_of(file), file = %file.display(), "cannot load app: {err:#}{keeps}");
                None
            }
        }
    }

    /// The table without `except`'s routes.
    fn table_without(&self, except: Option<&Arc<AppHandle>>) -> RouteTable<RouteTarget> {
        let mut table = self.serving.load().routes.clone();
        if let Some(app) = except {
            table.remove_where(|t| Arc::ptr_eq(&t.app, app));
        }
        table
    }

    /// Starts a new app and adds its routes to `table` (for the caller to
    /// publish), unless they conflict; what to log once it is published.
    fn start_into(
        &mut self,
        table: &mut RouteTable<RouteTarget>,
        prepared: PreparedApp,
    ) -> Option<(Version, Arc<AppHandle>, PathBuf)> {
        let file = prepared.file.clone();
        let version = Version::of(&prepared);
        let handle = self.runtime.start(prepared);
        if let Err(refusal) = self.admit(table, &handle, &version) {
            // Dropping the handle stops the actor.
            tracing::error!(app = %app_of(&file), file = %file.display(), "app refused: {refusal}");
            return None;
        }
        handle.follow(version.edge.clone(), version.bundle.clone());
        self.registry
            .history()
            .keep_for(&handle.name, history_rule(&version.routes));
        self.registry
            .presence()
            .keep_for(&handle.name, presence_app(&version.routes, &handle));
        self.apps
            .insert(file.clone(), version.serving(handle.clone()));
        Some((version, handle, file))
    }

    async fn swap(&mut self, file: &Path, prepared: PreparedApp) {
        let Some(handle) = self.apps.get(file).map(|app| app.handle.clone()) else {
            return;
        };
        let version = Version::of(&prepared);
        let mut table = self.table_without(Some(&handle));
        if let Err(refusal) = self.admit(&mut table, &handle, &version) {
            tracing::error!(
                app = %app_of(file),
                file = %file.display(),
                "new version refused: {refusal}; the previous version keeps serving"
            );
            return;
        }
        // The actor switches between two events; requests routed by the old
        // table meanwhile find their route in the new version by its key.
        if handle.swap(prepared).await.is_err() {
            tracing::error!(app = %app_of(file), file = %file.display(), "the app stopped before it could be swapped");
            return;
        }
        handle.follow(version.edge.clone(), version.bundle.clone());
        self.registry
            .history()
            .keep_for(&handle.name, history_rule(&version.routes));
        self.registry
            .presence()
            .keep_for(&handle.name, presence_app(&version.routes, &handle));
        self.publish(table);
        self.close_orphans(&handle, &version.routes);
        version.log(&handle, file, "app swapped to a new version");
        handle
            .metrics
            .swapped(version.timings.compile + version.timings.instantiate);
        self.apps
            .insert(file.to_path_buf(), version.serving(handle));
    }

    /// Adds a version's routes and files to `table`, unless it claims a
    /// host name that belongs to the server's own apps or conflicts with
    /// what another app already serves.
    fn admit(
        &self,
        table: &mut RouteTable<RouteTarget>,
        handle: &Arc<AppHandle>,
        version: &Version,
    ) -> anyhow::Result<()> {
        for claim in version.hosts.iter().flat_map(|hosts| hosts.iter()) {
            anyhow::ensure!(
                !self.names.listed(claim),
                "hosts: {claim} is one of the server's own names (--server-names), which belong to apps that claim no hosts"
            );
        }
        table.add_all(entries(handle, version), |t| Arc::ptr_eq(&t.app, handle))?;
        Ok(())
    }

    /// Closes the app's connections whose path no route of their kind
    /// (WebSocket, or SSE for an event stream) of the new version serves.
    fn close_orphans(&self, handle: &AppHandle, routes: &[DeclaredRoute]) {
        for conn in self.registry.connections_of(&handle.name) {
            let kind = if conn.one_way {
                RouteKind::Sse
            } else {
                RouteKind::WebSocket
            };
            let still_served = RequestPath::from_decoded(conn.room.path()).is_some_and(|p| {
                routes
                    .iter()
                    .any(|r| r.kind == kind && r.pattern.matches_path(&p))
            });
            if !still_served {
                conn.evict(close::GOING_AWAY, "route removed by an update of the app");
            }
        }
    }

    fn unload(&mut self, file: &Path) {
        let Some(app) = self.apps.remove(file) else {
            return;
        };
        self.publish(self.table_without(Some(&app.handle)));
        let open = self.registry.connections_of(&app.handle.name);
        for conn in &open {
            conn.evict(close::GOING_AWAY, "app removed");
        }
        self.registry.history().forget(&app.handle.name);
        self.registry.presence().keep_for(&app.handle.name, None);
        self.runtime.forget(&app.handle.name);
        tracing::info!(
            app = %app.handle.name,
            file = %file.display(),
            closed = open.len(),
            "app unloaded: its file is gone"
        );
    }

    /// The startup banner: each app and its routes.
    pub(crate) fn banner(&self) -> String {
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
        for refused in &self.refused {
            let _ = writeln!(out, "  REFUSED app {refused}");
        }
        out
    }
}

/// The app name a file would have, for log lines about it.
fn app_of(file: &Path) -> String {
    AppFiles::of(file)
        .name()
        .unwrap_or_else(|_| file.display().to_string())
}

/// One of the versions loaded at startup, as its claims name it.
#[derive(Debug, Clone)]
struct Claimant {
    /// Its place among them.
    index: usize,
    /// `app "<name>"`, for the message about a conflict.
    label: Arc<str>,
}

impl std::fmt::Display for Claimant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

/// What the `index`th version loaded at startup would claim, for checking
/// it against the others before any serves.
fn claims_of(index: usize, prepared: &PreparedApp) -> Vec<RouteEntry<Claimant>> {
    let version = Version::of(prepared);
    let claimant = Claimant {
        index,
        label: format!("app {:?}", &*prepared.name).into(),
    };
    entry_shapes(&version)
        .map(|(kind, pattern)| RouteEntry {
            kind,
            pattern,
            hosts: version.hosts.clone(),
            target: claimant.clone(),
        })
        .collect()
}

/// The kind and pattern of every route and public file of a version.
fn entry_shapes(version: &Version) -> impl Iterator<Item = (RouteKind, RoutePattern)> + '_ {
    let routes = version.routes.iter().map(|r| (r.kind, r.pattern.clone()));
    let files = version.statics.iter().filter_map(|file| {
        let path = RequestPath::parse(&format!("/{file}")).ok()?;
        (path.decoded != super::FROND_PATH)
            .then(|| (RouteKind::Static, RoutePattern::literal(&path)))
    });
    routes.chain(files)
}

/// Route table entries for one version of an app: its routes, then its
/// public files (except the built-in client's path, which it cannot take).
fn entries(handle: &Arc<AppHandle>, version: &Version) -> Vec<RouteEntry<RouteTarget>> {
    let secured = |index: usize| version.routes.get(index).is_some_and(|r| r.secured);
    entry_shapes(version)
        .enumerate()
        .map(|(index, (kind, pattern))| {
            let key = match version.keys.get(index) {
                Some(key) if kind != RouteKind::Static => key.clone(),
                _ => Arc::new(RouteKey::of(kind, &pattern)),
            };
            RouteEntry {
                kind,
                hosts: version.hosts.clone(),
                target: RouteTarget {
                    app: handle.clone(),
                    index: if kind == RouteKind::Static {
                        u32::MAX
                    } else {
                        index as u32
                    },
                    key,
                    secured: kind != RouteKind::Static && secured(index),
                },
                pattern,
            }
        })
        .collect()
}
