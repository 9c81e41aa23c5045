//! The WebAssembly side: the wasmtime engine, loading app components,
//! instantiating them in a sandbox, and the actor that runs each app.

pub mod actor;
pub mod bindings;
pub mod cache;
mod guest_output;
mod host;
mod limiter;
pub mod policy;
mod sleeps;
mod turns;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wasmtime::component::Linker;
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::p2::add_to_linker_sync;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use self::actor::{AppActor, Instance};
pub use self::actor::{AppCallError, AppHandle, EdgeSettings};
use self::bindings::{Connection, Handler, HandlerPre, WsEvent};
use self::cache::{ComponentCache, Origin, content_hash};
use self::guest_output::{AppLog, GuestOutput, Stream};
pub use self::host::HostState;
use self::limiter::AppLimiter;
use self::policy::{AppPolicy, Ceilings};
use crate::backplane::Backplane;
use crate::config::Limits;
use crate::layout::AppLayout;
use crate::router::{RouteKind, RoutePattern, RouteTable};
use crate::telemetry::AppMetrics;
use crate::templates::{AppTemplates, TemplateEngine};

/// How often the engine's epoch advances; the granularity of CPU deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The published route table: written by the app manager, read by the edge
/// to route requests and by apps' imports to decide which paths an app may
/// address. Replaced whole, never edited in place.
pub type SharedRoutes = Arc<arc_swap::ArcSwap<RouteTable<RouteTarget>>>;

/// Names a route across versions of an app: what it answers, and the shape
/// of its path (parameter names erased). A hot swap keeps serving the open
/// connections of every route whose key the new version still has.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteKey {
    /// HTTP method or WebSocket.
    pub kind: RouteKind,
    /// [`RoutePattern::shape`] of the path.
    pub shape: String,
}

impl RouteKey {
    /// The key of a declared route.
    pub fn of(kind: RouteKind, pattern: &RoutePattern) -> Self {
        Self {
            kind,
            shape: pattern.shape(),
        }
    }
}

/// A route as an app declared it.
#[derive(Debug, Clone)]
pub struct DeclaredRoute {
    /// HTTP method or WebSocket.
    pub kind: RouteKind,
    /// Its path pattern.
    pub pattern: RoutePattern,
    /// Whether a valid token is required.
    pub secured: bool,
}

impl std::fmt::Display for DeclaredRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<7} {}", self.kind.to_string(), self.pattern)?;
        if self.secured {
            f.write_str("  (secured)")?;
        }
        Ok(())
    }
}

/// Where a route sends its requests: an app and the route's index in it.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    /// The app serving the route.
    pub app: Arc<AppHandle>,
    /// The route's index in the `routes()` of the version that declared it.
    pub index: u32,
    /// The route's identity, to find it again in a later version.
    pub key: Arc<RouteKey>,
    /// Whether a valid token is required.
    pub secured: bool,
}

impl RouteTarget {
    /// Delivers a WebSocket event of `conn` to the app; false if the app
    /// is gone and the event went nowhere.
    pub async fn dispatch(
        &self,
        conn: &Arc<Connection>,
        event: WsEvent,
        quota: &actor::MailboxQuota,
    ) -> bool {
        self.app
            .websocket_event(self.route(), conn, event, quota)
            .await
    }

    /// The route as the app's actor resolves it.
    pub fn route(&self) -> actor::RouteRef {
        actor::RouteRef {
            index: self.index,
            key: self.key.clone(),
        }
    }
}

impl std::fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.app.fmt(f)
    }
}

/// How long the steps of loading a version took.
#[derive(Debug, Clone, Copy)]
pub struct LoadTimings {
    /// Compiled now, or deserialized from the cache.
    pub origin: Origin,
    /// Compile (or deserialize) time.
    pub compile: Duration,
    /// Instantiate time, `routes()` included.
    pub instantiate: Duration,
}

/// One version of an app, compiled and instantiated, not yet serving.
pub struct PreparedApp {
    /// The app's name (file name without `.wasm`).
    pub name: Arc<str>,
    /// The component file.
    pub file: PathBuf,
    /// SHA-256 of the file's bytes (and of its `<app>.toml`, if any): the
    /// version's id.
    pub hash: String,
    /// Its routes, in `routes()` order (the index is the route id).
    pub routes: Vec<DeclaredRoute>,
    /// The files of its public folder when it was loaded, relative to it.
    pub statics: Vec<String>,
    /// What loading took.
    pub timings: LoadTimings,
    /// Makes more instances of this version.
    factory: InstanceFactory,
    /// The instance `routes()` was asked on; it serves the first event.
    instance: Instance,
}

impl PreparedApp {
    /// The limits and grants this version runs with.
    pub fn policy(&self) -> &AppPolicy {
        &self.factory.policy
    }

    /// The identities of its routes, in order.
    pub fn route_keys(&self) -> Vec<Arc<RouteKey>> {
        self.routes
            .iter()
            .map(|r| Arc::new(RouteKey::of(r.kind, &r.pattern)))
            .collect()
    }
}

/// Compiles and instantiates apps; one per host process.
pub struct Runtime {
    /// The shared engine (compiled code, epoch counter).
    engine: Engine,
    /// Host imports: the tina4 interfaces and a capability-free WASI.
    linker: Linker<HostState>,
    /// Precompiled components on disk.
    cache: ComponentCache,
    /// Where the connections apps act on live.
    backplane: Arc<Backplane>,
    /// The published route table, which decides what an app may address.
    routes: SharedRoutes,
    /// Server-wide limits (mailbox size and the app defaults).
    limits: Limits,
    /// Every app's limits unless its `<app>.toml` says otherwise.
    defaults: AppPolicy,
    /// The most an `<app>.toml` may ask for.
    ceilings: Ceilings,
    /// Renders apps' templates, in a sandbox of its own.
    templates: Arc<TemplateEngine>,
}

impl Runtime {
    /// An engine with epoch interruption, and a linker with the host imports.
    pub fn new(
        backplane: Arc<Backplane>,
        routes: SharedRoutes,
        limits: Limits,
        cache_dir: Option<PathBuf>,
        fast_compile: bool,
    ) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Component-model concurrency would roughly double the cost of a call.
        config.concurrency_support(false);
        config.consume_fuel(limits.fuel_per_event.is_some());
        if fast_compile {
            // Roughly 40% less compile time for slower guest code: for the
            // edit-build-swap loop of development.
            config.cranelift_opt_level(wasmtime::OptLevel::None);
            config.cranelift_regalloc_algorithm(wasmtime::RegallocAlgorithm::SinglePass);
        }
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;
        start_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        add_to_linker_sync(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        sleeps::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI sleeps bounded by the event deadline")?;
        Handler::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(anyhow::Error::from)
        .context("linking the tina4 host interfaces")?;
        let cache = ComponentCache::new(cache_dir, &engine);
        let defaults = AppPolicy::defaults(&limits, limits.fuel_per_event.map(|f| f.get()));
        let ceilings = Ceilings::from_limits(&limits, &defaults);
        Ok(Self {
            templates: Arc::new(TemplateEngine::new(engine.clone(), EPOCH_TICK)),
            engine,
            linker,
            cache,
            backplane,
            routes,
            limits,
            defaults,
            ceilings,
        })
    }

    /// The compile cache.
    pub fn cache(&self) -> &ComponentCache {
        &self.cache
    }

    /// Loads the template engine (through the compile cache) unless that
    /// was done; apps with templates need it before they serve.
    fn prepare_templates(&self) {
        self.templates.prepare(|bytes| {
            let loaded = self.cache.load(&self.engine, bytes, &content_hash(bytes))?;
            tracing::info!(compile = ?loaded.elapsed, origin = %loaded.origin, "template engine loaded");
            Ok(loaded.component)
        });
    }

    /// Prepares one component file: compile (or take from the cache), check
    /// it is a `handler`, instantiate it and ask for its routes. Blocking:
    /// call it off the async runtime.
    pub fn prepare(&self, file: &Path) -> anyhow::Result<PreparedApp> {
        let name: Arc<str> = app_name(file)?.into();
        let bytes = std::fs::read(file).context("cannot read the file")?;
        check_is_component(&bytes)?;
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
        let pre = HandlerPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .context("the component does not implement the tina4:wasm/handler world")?;

        let factory = InstanceFactory {
            app: name.clone(),
            pre,
            backplane: self.backplane.clone(),
            routes: self.routes.clone(),
            deadline_ticks: deadline_ticks(policy.event_timeout),
            policy,
            log: AppLog::new(name.clone()),
            templates: Arc::new(AppTemplates::for_component(
                file,
                self.limits.max_body_bytes.get(),
                self.templates.clone(),
            )),
            metrics: Arc::new(AppMetrics::new(&name)),
        };
        if factory.templates.exist() {
            self.prepare_templates();
        }
        let instantiate_started = Instant::now();
        let mut instance = factory
            .instantiate()
            .map_err(anyhow::Error::from)
            .context("instantiating the component failed")?;
        let declared = instance
            .handler
            .call_routes(&mut instance.store)
            .map_err(|e| anyhow::anyhow!("routes() failed: {}", describe_guest_error(&e)))?;
        let instantiate = instantiate_started.elapsed();
        if u32::try_from(declared.len()).is_err() {
            bail!("too many routes");
        }
        let mut routes = Vec::with_capacity(declared.len());
        for route in declared {
            routes.push(DeclaredRoute {
                kind: RouteKind::from(route.kind),
                pattern: route.path.parse()?,
                secured: route.secured,
            });
        }

        Ok(PreparedApp {
            name,
            file: file.to_path_buf(),
            hash: version,
            routes,
            statics: AppLayout::of(file).public_files(),
            timings: LoadTimings {
                origin: loaded.origin,
                compile: loaded.elapsed,
                instantiate,
            },
            factory,
            instance,
        })
    }

    /// Starts a prepared app on its own actor thread.
    pub fn start(&self, app: PreparedApp) -> anyhow::Result<Arc<AppHandle>> {
        let keys = app.route_keys();
        AppActor::spawn(
            app.factory,
            app.instance,
            keys,
            app.file,
            self.limits.mailbox_capacity.get(),
            self.limits.mailbox_bytes.get(),
        )
        .context("starting the app's thread")
    }
}

/// Everything needed to make a fresh sandboxed instance of one app.
pub struct InstanceFactory {
    /// The app's name.
    pub app: Arc<str>,
    /// The pre-linked component.
    pre: HandlerPre<HostState>,
    /// Where the app's connections live.
    pub backplane: Arc<Backplane>,
    /// The published route table (tenancy for paths).
    routes: SharedRoutes,
    /// The app's limits and grants.
    pub policy: AppPolicy,
    /// Epoch ticks one guest call may run.
    pub deadline_ticks: u64,
    /// The app's log-line allowance, shared by all its instances.
    log: AppLog,
    /// The app's templates, shared by all its instances.
    templates: Arc<AppTemplates>,
    /// The app's metrics, shared by all its instances.
    pub metrics: Arc<AppMetrics>,
}

impl InstanceFactory {
    /// A new instance in a new store, with no capabilities beyond the host
    /// imports: no files, no environment, no network; output to the log.
    pub fn instantiate(&self) -> wasmtime::Result<Instance> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(GuestOutput::new(self.log.clone(), Stream::Stdout))
            .stderr(GuestOutput::new(self.log.clone(), Stream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(dir) = &self.policy.data_dir {
            wasi.preopened_dir(dir, "/data", FsPerms::ReadOnly)?;
        }
        let wasi = wasi.build();
        let state = HostState {
            app: self.app.clone(),
            routes: self.routes.clone(),
            backplane: self.backplane.clone(),
            max_message_bytes: self.policy.max_message_bytes,
            max_attachment_bytes: self.policy.max_attachment_bytes,
            wasi,
            table: Default::default(),
            limits: AppLimiter::new(
                self.policy.memory_bytes,
                self.policy.max_instances,
                self.policy.max_memories,
                self.policy.max_tables,
                self.policy.max_table_elements,
            ),
            templates: self.templates.clone(),
            metrics: self.metrics.clone(),
            log: self.log.clone(),
            deadline: None,
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.deadline_ticks);
        self.refuel(&mut store);
        let handler = self.pre.instantiate(&mut store)?;
        // The first call gets a full budget too.
        self.refuel(&mut store);
        Ok(Instance { store, handler })
    }

    /// A fresh fuel budget for the next call, when fuel is metered.
    pub fn refuel(&self, store: &mut Store<HostState>) {
        if let Some(fuel) = self.policy.fuel {
            // Cannot fail: a policy only has fuel when the engine meters it.
            let _ = store.set_fuel(fuel);
        }
    }
}

/// The app name of a component file: its file name without `.wasm`. Only
/// ASCII letters, digits, `_`, `-` and `.`: the name labels metrics, names
/// rooms and channels, and is written in log lines.
pub fn app_name(file: &Path) -> anyhow::Result<String> {
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .context("the file name is not valid UTF-8")?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    anyhow::ensure!(
        !name.is_empty() && !name.starts_with('.') && name.chars().all(plain),
        "app names are ASCII letters, digits, '_', '-' and '.' (got {name:?})"
    );
    Ok(name.to_string())
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

/// Epoch ticks for a deadline, rounded up, plus one for the partial tick in
/// progress when the call starts.
fn deadline_ticks(timeout: Duration) -> u64 {
    let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX - 1) + 1
}

/// Advances the engine's epoch every [`EPOCH_TICK`] for the life of the process.
fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".to_string())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// One line saying why a guest call failed, for the log. The wasm backtrace,
/// if any, is logged separately at debug level.
pub fn describe_guest_error(err: &wasmtime::Error) -> String {
    tracing::debug!("guest error in full: {err:?}");
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => "it ran past its CPU time limit (epoch deadline)".to_string(),
        Some(Trap::StackOverflow) => "stack overflow".to_string(),
        Some(Trap::OutOfFuel) => "it ran out of fuel".to_string(),
        Some(Trap::UnreachableCodeReached) => {
            "trap: unreachable executed (a Rust panic or abort; see its stderr above)".to_string()
        }
        Some(trap) => format!("trap: {trap}"),
        // The cause, not the backtrace wasmtime wraps it in.
        None => err.root_cause().to_string(),
    }
}

/// The components of a folder ([`AppLayout::is_component`]), sorted by
/// name, so load order is stable.
pub fn component_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the apps folder {}", dir.display()))?
    {
        let path = entry?.path();
        if AppLayout::is_component(&path) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
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

    #[test]
    fn deadlines_round_up() {
        assert_eq!(deadline_ticks(Duration::from_millis(1000)), 101);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
    }
}
