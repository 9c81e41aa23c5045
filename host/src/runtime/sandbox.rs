//! The sandbox of one instance: a fresh store with the app's limits, its
//! CPU deadline and fuel, and a WASI with no capabilities beyond what its
//! settings grant.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;

use super::engine::yield_until_deadline;
use super::exports::{Exports, ExportsPre};
use super::guest_output::{AppLog, GuestOutput, Stream};
use super::host::HostState;
use super::limiter::AppLimiter;
use super::policy::AppPolicy;
use super::templates::AppTemplates;
use super::timers::AppTimers;
use crate::delivery::Delivery;
use crate::outbound::{AppOutbound, OutboundGrant};
use crate::router::RoutePattern;
use crate::storage::Storage;
use crate::telemetry::AppMetrics;

/// WASI handles one instance may hold at once (streams, pollables, HTTP
/// headers, requests and bodies): far above what a guest uses, low enough
/// that what they keep in host memory stays small. Past it, the call that
/// would make another traps, and the instance is discarded with them.
const MAX_RESOURCES: usize = 2048;

/// Largest set of HTTP headers (names and values) a guest may build, in
/// bytes: with [`MAX_RESOURCES`], about 32 MiB at the very most.
const MAX_FIELDS_BYTES: usize = 16 * 1024;

/// An empty resource table that holds at most [`MAX_RESOURCES`].
fn resource_table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES);
    table
}

/// A live instance: its store and its typed exports.
pub(crate) struct Instance {
    /// The store: the instance's memory and the host state it calls into.
    pub(crate) store: Store<HostState>,
    /// The exports (`routes`, `handle-http`, `on-websocket`).
    pub(crate) exports: Exports,
}

/// Everything needed to make a fresh sandboxed instance of one app.
pub(crate) struct InstanceFactory {
    /// The app's name.
    pub(crate) app: Arc<str>,
    /// The pre-linked component.
    pub(super) pre: ExportsPre,
    /// Its compiled code, held so that apps loaded later with the same
    /// content share it.
    pub(super) _code: Arc<wasmtime::component::Component>,
    /// Where the app's connections live.
    pub(crate) delivery: Arc<Delivery>,
    /// The version's WebSocket and SSE route patterns (tenancy for paths), known
    /// once it has declared its routes.
    pub(super) connection_routes: Arc<[RoutePattern]>,
    /// The app's limits and grants.
    pub(crate) policy: AppPolicy,
    /// The app's log-line allowance, shared by all its instances.
    pub(super) log: AppLog,
    /// The app's templates, shared by all its instances.
    pub(super) templates: Arc<AppTemplates>,
    /// The app's metrics, shared by all its instances.
    pub(crate) metrics: Arc<AppMetrics>,
    /// The app's timers, shared by all its instances and versions.
    pub(crate) timers: Arc<AppTimers>,
    /// The server's store, for an app with a storage grant.
    pub(crate) storage: Arc<Storage>,
    /// Where the app may send HTTP requests, and its requests in flight.
    pub(crate) outbound: Option<Arc<OutboundGrant>>,
}

impl InstanceFactory {
    /// A new instance in a new store, with no capabilities beyond the host
    /// imports: no files, no environment, no sockets (HTTP requests only as
    /// its grant allows); output to the log.
    /// Its start-up code runs under the event deadline, as any call does.
    pub(crate) async fn instantiate(&self) -> wasmtime::Result<Instance> {
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
            connection_routes: self.connection_routes.clone(),
            delivery: self.delivery.clone(),
            max_message_bytes: self.policy.max_message_bytes,
            max_attachment_bytes: self.policy.max_attachment_bytes,
            wasi,
            table: resource_table(),
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
            timers: self.timers.clone(),
            storage: self
                .policy
                .storage
                .map(|quota| (self.storage.clone(), quota)),
            outbound: AppOutbound {
                app: self.app.clone(),
                grant: self.outbound.clone(),
                deadline: None,
                failures: Some(Arc::new({
                    let log = self.log.clone();
                    move |line: &str| log.line(tracing::Level::WARN, "outbound", line)
                })),
                recent: Default::default(),
            },
            http: {
                let mut http = WasiHttpCtx::new();
                http.set_field_size_limit(MAX_FIELDS_BYTES);
                http
            },
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        yield_until_deadline(&mut store, |state| state.deadline);
        self.start_call(&mut store);
        let exports = self.pre.instantiate(&mut store).await?;
        // The first call gets a full budget too.
        self.start_call(&mut store);
        Ok(Instance { store, exports })
    }

    /// Gives the next guest call of `store` its deadline and its fuel.
    pub(crate) fn start_call(&self, store: &mut Store<HostState>) {
        store.data_mut().deadline = Some(Instant::now() + self.policy.event_timeout);
        store.set_epoch_deadline(1);
        self.refuel(store);
    }

    /// A fresh fuel budget for the next call, when fuel is metered.
    fn refuel(&self, store: &mut Store<HostState>) {
        if let Some(fuel) = self.policy.fuel {
            // Cannot fail: a policy only has fuel when the engine meters it.
            let _ = store.set_fuel(fuel);
        }
    }
}
