//! The engine every app shares: wasmtime configured for epoch deadlines,
//! the linker with the host imports (WASI's async bindings, so a guest's
//! WASI call never blocks a worker), the compile cache, and the deadline
//! every guest call runs under.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::add_to_linker_async;

use super::bindings::Handler;
use super::cache::{ComponentCache, content_hash};
use super::compiler::{CodeSettings, CompileIn, Compiler};
use super::host::HostState;
use super::policy::{AppPolicy, Ceilings};
use super::sleeps;
use super::templates::TemplateEngine;
use super::timers::TimerBook;
use crate::config::Limits;
use crate::delivery::Delivery;
use crate::outbound::Network;
use crate::storage::Storage;

/// How often the engine's epoch advances; the granularity of CPU deadlines.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Compiles and instantiates apps; one per host process.
pub(crate) struct Runtime {
    /// The shared engine (compiled code, epoch counter).
    pub(super) engine: Engine,
    /// Host imports: the tina4 interfaces and a capability-free WASI.
    pub(super) linker: Linker<HostState>,
    /// Precompiled components on disk.
    pub(super) cache: ComponentCache,
    /// Where the connections apps act on live.
    pub(super) delivery: Arc<Delivery>,
    /// Server-wide limits (mailbox size and the app defaults).
    pub(super) limits: Limits,
    /// Every app's limits unless its `<app>.toml` says otherwise.
    pub(super) defaults: AppPolicy,
    /// The most an `<app>.toml` may ask for.
    pub(super) ceilings: Ceilings,
    /// Renders apps' templates, in a sandbox of its own.
    pub(super) templates: Arc<TemplateEngine>,
    /// Every app's timers, which outlive its versions.
    pub(super) timers: TimerBook,
    /// What apps with a storage grant keep.
    pub(super) storage: Arc<Storage>,
    /// What apps' outbound requests share (idle connections, TLS roots).
    pub(super) network: Network,
}

impl Runtime {
    /// An engine with epoch interruption, and a linker with the host imports.
    pub(crate) fn new(
        delivery: Arc<Delivery>,
        limits: Limits,
        cache_dir: Option<PathBuf>,
        fast_compile: bool,
        compile_in: CompileIn,
    ) -> anyhow::Result<Self> {
        let settings = CodeSettings {
            fuel: limits.fuel_per_event.is_some(),
            fast_compile,
        };
        let engine = settings.engine()?;
        start_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking wasi:http's outgoing handler")?;
        sleeps::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI sleeps bounded by the event deadline")?;
        Handler::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(anyhow::Error::from)
        .context("linking the tina4 host interfaces")?;
        let cache = ComponentCache::new(cache_dir, &engine, Compiler::new(settings, compile_in));
        let defaults = AppPolicy::defaults(&limits, limits.fuel_per_event.map(|f| f.get()));
        let ceilings = Ceilings::from_limits(&limits, &defaults);
        let storage = Arc::new(limits.store().context("the store")?);
        let network = Network::new(&limits.outbound)?;
        Ok(Self {
            templates: Arc::new(TemplateEngine::new(engine.clone())),
            engine,
            linker,
            cache,
            delivery,
            limits,
            defaults,
            ceilings,
            timers: TimerBook::default(),
            storage,
            network,
        })
    }

    /// The compile cache.
    pub(crate) fn cache(&self) -> &ComponentCache {
        &self.cache
    }

    /// Loads the template engine (through the compile cache) unless that
    /// was done; apps with templates need it before they serve.
    pub(super) fn prepare_templates(&self) {
        self.templates.prepare(|bytes| {
            let loaded = self.cache.load(&self.engine, bytes, &content_hash(bytes))?;
            tracing::info!(compile = ?loaded.elapsed, origin = %loaded.origin, "template engine loaded");
            Ok(Component::clone(&loaded.component))
        });
    }
}

/// Bounds the guest calls of `store` in time without holding a worker:
/// at every epoch tick a running call yields to the other tasks of the
/// async runtime, and once `deadline` (read from the store's data) has
/// passed, it traps with [`Trap::Interrupt`].
pub(crate) fn yield_until_deadline<T: 'static>(
    store: &mut Store<T>,
    deadline: fn(&T) -> Option<Instant>,
) {
    store.epoch_deadline_callback(move |context| match deadline(context.data()) {
        Some(at) if Instant::now() >= at => Ok(UpdateDeadline::Interrupt),
        _ => Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        )),
    });
    store.set_epoch_deadline(1);
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
pub(crate) fn describe_guest_error(err: &wasmtime::Error) -> String {
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
