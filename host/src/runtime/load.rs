//! Loading one version of an app: read and check the component, compile it
//! (or take it from the cache), apply its settings, instantiate it and ask
//! for its routes.

use crate::outbound::OutboundGrant;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::actor::{AppActor, AppHandle};
use super::cache::{Origin, content_hash};
use super::engine::{Runtime, describe_guest_error};
use super::exports::ExportsPre;
use super::guest_output::AppLog;
use super::policy::AppPolicy;
use super::routes::{DeclaredRoute, RouteKey};
use super::sandbox::{Instance, InstanceFactory};
use super::templates::AppTemplates;
use super::timers::TimerLimits;
use crate::app_files::AppFiles;
use crate::bundle::Bundle;
use crate::delivery::{HistoryPolicy, PresencePolicy};
use crate::router::RouteKind;
use crate::telemetry::AppMetrics;

/// How long the steps of loading a version took.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadTimings {
    /// Compiled now, or deserialized from the cache.
    pub(crate) origin: Origin,
    /// Compile (or deserialize) time.
    pub(crate) compile: Duration,
    /// Instantiate time, `routes()` included.
    pub(crate) instantiate: Duration,
}

/// One version of an app, compiled and instantiated, not yet serving.
pub(crate) struct PreparedApp {
    /// The app's name (file name without `.wasm`).
    pub(crate) name: Arc<str>,
    /// The component file.
    pub(crate) file: PathBuf,
    /// SHA-256 of the file's bytes (and of its `<app>.toml`, if any): the
    /// version's id.
    pub(crate) hash: String,
    /// Its routes, in `routes()` order (the index is the route id).
    pub(crate) routes: Vec<DeclaredRoute>,
    /// The files of its public folder when it was loaded, relative to it.
    pub(crate) statics: Vec<String>,
    /// Its templates and public files, if its component packs them.
    pub(crate) bundle: Option<Arc<Bundle>>,
    /// What loading took.
    pub(crate) timings: LoadTimings,
    /// Makes more instances of this version.
    pub(super) factory: InstanceFactory,
    /// The instance `routes()` was asked on; it serves the first event.
    pub(super) instance: Instance,
}

impl PreparedApp {
    /// The limits and grants this version runs with.
    pub(crate) fn policy(&self) -> &AppPolicy {
        &self.factory.policy
    }

    /// The identities of its routes, in order.
    pub(crate) fn route_keys(&self) -> Vec<Arc<RouteKey>> {
        self.routes
            .iter()
            .map(|r| Arc::new(RouteKey::of(r.kind, &r.pattern)))
            .collect()
    }
}

/// One version of an app, compiled and linked, not yet instantiated.
struct CompiledApp {
    /// The component file.
    file: PathBuf,
    /// The version's id (see [`PreparedApp::hash`]).
    hash: String,
    /// The files of its public folder.
    statics: Vec<String>,
    /// Its packed files, if any.
    bundle: Option<Arc<Bundle>>,
    /// Compiled now, or deserialized from the cache.
    origin: Origin,
    /// Compile (or deserialize) time.
    compile: Duration,
    /// Makes its instances.
    factory: InstanceFactory,
}

impl Runtime {
    /// Prepares one component file: compile (or take from the cache) off
    /// the async runtime, check it is a `handler`, instantiate it and ask
    /// for its routes.
    pub(crate) async fn prepare(self: &Arc<Self>, file: &Path) -> anyhow::Result<PreparedApp> {
        let runtime = self.clone();
        let path = file.to_path_buf();
        tokio::task::spawn_blocking(move || runtime.compile(&path))
            .await
            .context("compiling the component panicked")??
            .instantiate()
            .await
    }

    /// Reads, checks, compiles (or loads from the cache) and links one
    /// component file. Blocking: call it off the async runtime.
    fn compile(&self, file: &Path) -> anyhow::Result<CompiledApp> {
        let files = AppFiles::of(file);
        let name: Arc<str> = files.name()?.into();
        let bytes = std::fs::read(file).context("cannot read the file")?;
        check_is_component(&bytes)?;
        let bundle = Bundle::read(&bytes)
            .context("its packed files")?
            .map(Arc::new);
        let hash = content_hash(&bytes);
        let (policy, config) = AppPolicy::for_component(
            file,
            &self.defaults,
            &self.ceilings,
            self.limits.fuel_per_event.is_some(),
        )?;
        let loaded = self.cache.load(&self.engine, &bytes, &hash)?;
        // The version is the component and its settings together.
        let version = if config.is_empty() {
            hash
        } else {
            content_hash(&[bytes.as_slice(), b"\0", config.as_bytes()].concat())
        };

        let instance_pre = self
            .linker
            .instantiate_pre(&loaded.component)
            .map_err(anyhow::Error::from)
            .context("the component needs imports this host does not provide")?;
        let pre = ExportsPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .context("the component does not implement the tina4:wasm/handler world")?;

        let outbound = policy
            .outbound
            .clone()
            .map(|grant| OutboundGrant::new(grant, &self.network));
        let factory = InstanceFactory {
            app: name.clone(),
            pre,
            delivery: self.delivery.clone(),
            connection_routes: Arc::new([]),
            _code: loaded.component.clone(),
            policy,
            log: AppLog::new(name.clone()),
            templates: Arc::new(AppTemplates::for_component(
                file,
                bundle.clone(),
                self.limits.max_body_bytes.get(),
                self.templates.clone(),
            )),
            metrics: Arc::new(AppMetrics::new(&name)),
            timers: self.timers.of(&name, self.timer_limits(), &self.delivery),
            storage: self.storage.clone(),
            outbound,
        };
        if factory.templates.exist() {
            self.prepare_templates();
        }
        Ok(CompiledApp {
            file: file.to_path_buf(),
            hash: version,
            statics: match &bundle {
                Some(bundle) => bundle.list(AppFiles::PUBLIC).map(str::to_string).collect(),
                None => files.public_files(),
            },
            bundle,
            origin: loaded.origin,
            compile: loaded.elapsed,
            factory,
        })
    }
}

impl CompiledApp {
    /// Instantiates the version and asks it for its routes.
    async fn instantiate(self) -> anyhow::Result<PreparedApp> {
        let mut factory = self.factory;
        let instantiate_started = Instant::now();
        let mut instance = factory
            .instantiate()
            .await
            .map_err(anyhow::Error::from)
            .context("instantiating the component failed")?;
        let declared = instance
            .exports
            .call_routes(&mut instance.store)
            .await
            .map_err(|e| anyhow::anyhow!("routes() failed: {}", describe_guest_error(&e)))?;
        let instantiate = instantiate_started.elapsed();
        if u32::try_from(declared.len()).is_err() {
            bail!("too many routes");
        }
        let mut routes = Vec::with_capacity(declared.len());
        for route in declared {
            let presence = match route.presence {
                Some(p) if p.claim.is_some() && !route.secured => bail!(
                    "route {}: presence from a token claim needs a secured route",
                    route.path
                ),
                Some(p) => Some(PresencePolicy {
                    claim: p.claim.map(Arc::from),
                    announce: p.announce,
                    events: p.events,
                }),
                None => None,
            };
            routes.push(DeclaredRoute {
                kind: RouteKind::from(route.kind),
                pattern: route.path.parse()?,
                secured: route.secured,
                history: route.history.map(|h| HistoryPolicy {
                    max_messages: h.max_messages,
                    max_age: (h.max_age_secs > 0)
                        .then(|| Duration::from_secs(u64::from(h.max_age_secs))),
                }),
                presence,
            });
        }
        factory.connection_routes = routes
            .iter()
            .filter(|r| r.kind.has_connections())
            .map(|r| r.pattern.clone())
            .collect();
        instance.store.data_mut().connection_routes = factory.connection_routes.clone();

        Ok(PreparedApp {
            name: factory.app.clone(),
            file: self.file,
            hash: self.hash,
            routes,
            statics: self.statics,
            bundle: self.bundle,
            timings: LoadTimings {
                origin: self.origin,
                compile: self.compile,
                instantiate,
            },
            factory,
            instance,
        })
    }
}

impl Runtime {
    /// Starts a prepared app on its own actor task.
    pub(crate) fn start(&self, app: PreparedApp) -> Arc<AppHandle> {
        let keys = app.route_keys();
        let timers = app.factory.timers.clone();
        let handle = AppActor::spawn(
            app.factory,
            app.instance,
            keys,
            app.file,
            self.limits.mailbox_capacity.get(),
            self.limits.mailbox_bytes.get(),
        );
        timers.serve(&handle);
        handle
    }

    /// `app` is unloaded: its timers stop.
    pub(crate) fn forget(&self, app: &str) {
        self.timers.forget(app);
    }

    /// The operator's bounds on every app's timers.
    fn timer_limits(&self) -> TimerLimits {
        TimerLimits {
            per_app: self.limits.timers_per_app,
            min_interval: Duration::from_millis(self.limits.timer_min_interval_ms),
        }
    }
}

/// Rejects files that are not components before the compiler sees them, so
/// the message says what is wrong in words a user can act on.
fn check_is_component(bytes: &[u8]) -> anyhow::Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: [u8; 4] = [1, 0, 0, 0];
    if !bytes.starts_with(MAGIC) || bytes.len() < 8 {
        bail!("not a WebAssembly file");
    }
    if bytes[4..8] == CORE_MODULE {
        bail!(
            "a core WebAssembly module, not a component (build it with `--target wasm32-wasip2`)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_components_pass_the_header_check() {
        assert!(check_is_component(b"hello").is_err());
        let core = check_is_component(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(core.to_string().contains("core WebAssembly module"));
        assert!(check_is_component(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
