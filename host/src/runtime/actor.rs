//! The app actor: an app's instance behind a fair lock, and the task that
//! keeps its hibernation clock.
//!
//! Events of an app run one at a time, so module-level state in the guest
//! (a map of chat users) behaves as it does in Tina4. Each event runs on the
//! task that read it: at once if the app is idle, otherwise after waiting
//! its turn for the app's lock, which is first come, first served. A
//! connection reads its next frame only once its event has run, so it has
//! at most one event waiting, its order is kept, and one client's backlog
//! waits in its socket, never in front of its neighbours. Guest calls are
//! futures that yield their worker at every epoch tick and trap at their
//! deadline; a WebSocket event, once read, runs to its end even if its
//! connection stops waiting for it.
//!
//! An app with no event for its `hibernate_after` drops its instance; its
//! connections stay open, and the next event instantiates afresh from the
//! pre-linked component, as after a failure.
//!
//! A hot swap waits its turn for the lock like an event: events that were
//! waiting before it run on the old version, later ones on the new one, so
//! the switch falls between two events. Routes are named by [`RouteKey`],
//! so an event routed under an older version still finds its route in the
//! new one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify, OwnedMutexGuard, oneshot};

use super::app_core::AppCore;
pub(crate) use super::app_core::{AppCallError, RouteRef};
use super::bindings::{Connection, HttpRequest, HttpResponse, WsEvent};
use super::policy::MessageRate;
use super::run_to_end::RunToEnd;
use super::sandbox::{Instance, InstanceFactory};
use super::{PreparedApp, RouteKey};
use crate::bundle::Bundle;
use crate::delivery::Membership;
use crate::telemetry::AppMetrics;

/// A loaded app, as the rest of the host sees it.
#[derive(Debug)]
pub(crate) struct AppHandle {
    /// The app's name (its file name without `.wasm`).
    pub(crate) name: Arc<str>,
    /// The component file it was loaded from.
    pub(crate) file: PathBuf,
    /// What the edge checks before involving the app; follows the serving
    /// version's settings.
    edge: arc_swap::ArcSwap<EdgeSettings>,
    /// The serving version's packed files, if it packs them: the edge
    /// serves its public files from there.
    bundle: arc_swap::ArcSwapOption<Bundle>,
    /// The app's metrics (HTTP answers are counted by the caller).
    pub(crate) metrics: Arc<AppMetrics>,
    /// The app's instance, held by whichever task runs an event on it;
    /// tokio's mutex hands it on in the order it was asked for.
    core: Arc<Mutex<AppCore>>,
    /// Dropped with the handle, which stops the hibernation clock.
    _clock: oneshot::Sender<()>,
}

impl std::fmt::Display for AppHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "app {:?}", &*self.name)
    }
}

/// What the edge checks for an app before involving it, from the serving
/// version's `<app>.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EdgeSettings {
    /// The most WebSocket connections the app may hold, if it has a cap of
    /// its own.
    pub(crate) max_connections: Option<usize>,
    /// The `aud` claim a token must carry to open the app's secured routes.
    pub(crate) audience: Arc<str>,
    /// How fast each connection may send, if there is a limit.
    pub(crate) message_rate: Option<MessageRate>,
}

impl AppHandle {
    /// Starts an app serving `instance` of the version `factory` makes,
    /// with its hibernation clock on a task of its own. Call it on the
    /// async runtime.
    pub(crate) fn start(
        factory: InstanceFactory,
        instance: Instance,
        keys: Vec<Arc<RouteKey>>,
        file: PathBuf,
    ) -> Arc<Self> {
        let name = factory.app.clone();
        let metrics = factory.metrics.clone();
        let core = AppCore::new(factory, instance, keys);
        let instantiated = core.instantiated();
        let core = Arc::new(Mutex::new(core));
        let (clock, stopped) = oneshot::channel();
        tokio::spawn(hibernation_clock(
            core.clone(),
            instantiated,
            stopped,
            name.clone(),
        ));
        Arc::new(Self {
            edge: arc_swap::ArcSwap::from_pointee(EdgeSettings {
                max_connections: None,
                audience: name.clone(),
                message_rate: None,
            }),
            bundle: arc_swap::ArcSwapOption::empty(),
            name,
            file,
            metrics,
            core,
            _clock: clock,
        })
    }

    /// The app's own connection cap, if it has one.
    pub(crate) fn max_connections(&self) -> Option<usize> {
        self.edge.load().max_connections
    }

    /// The audience its secured routes' tokens must name.
    pub(crate) fn audience(&self) -> Arc<str> {
        self.edge.load().audience.clone()
    }

    /// How fast each of its connections may send, if there is a limit.
    pub(crate) fn message_rate(&self) -> Option<MessageRate> {
        self.edge.load().message_rate
    }

    /// Follows the settings and packed files of a new serving version.
    pub(crate) fn follow(&self, settings: EdgeSettings, bundle: Option<Arc<Bundle>>) {
        self.edge.store(Arc::new(settings));
        self.bundle.store(bundle);
    }

    /// The serving version's packed files, if it packs them.
    pub(crate) fn bundle(&self) -> Option<Arc<Bundle>> {
        self.bundle.load_full()
    }

    /// Runs a WebSocket event of `conn` on `route`, after the events that
    /// were waiting before it. Once called it runs to its end even if the
    /// caller stops waiting (an eviction), so an event read from a client
    /// is never lost half-way.
    pub(crate) async fn websocket_event(
        &self,
        route: RouteRef,
        member: &Arc<Membership>,
        conn: &Arc<Connection>,
        event: WsEvent,
    ) {
        let (member, conn) = (member.clone(), conn.clone());
        let core = self.core.clone();
        let metrics = self.metrics.clone();
        RunToEnd::new(async move {
            let mut core = lock_in_turn(core, &metrics).await;
            core.websocket(&route, &member, &conn, &event).await;
        })
        .await;
    }

    /// Asks the app to answer an HTTP request, after the events that were
    /// waiting before it. A caller that gives up while waiting (its client
    /// left, or its deadline passed) does not cost the app an event; once
    /// the call has started it runs to its end.
    pub(crate) async fn http(
        &self,
        route: RouteRef,
        request: HttpRequest,
    ) -> Result<HttpResponse, AppCallError> {
        let waiting = Abandoned(Some(&self.metrics));
        let mut core = lock_in_turn(self.core.clone(), &self.metrics).await;
        waiting.started();
        RunToEnd::new(async move { core.http(&route, &request).await }).await
    }

    /// Serves every later event with a new version; events that were
    /// waiting before the swap run on the old one.
    pub(crate) async fn swap(&self, version: PreparedApp) {
        self.core.lock().await.swap(version);
    }
}

/// The app's core, once the events that asked before have run; counted as
/// run `at_once` if nothing held it, `queued` if it waited.
async fn lock_in_turn(core: Arc<Mutex<AppCore>>, metrics: &AppMetrics) -> OwnedMutexGuard<AppCore> {
    match core.clone().try_lock_owned() {
        Ok(idle) => {
            metrics.event_sent(false);
            idle
        }
        Err(_) => {
            metrics.event_sent(true);
            core.lock_owned().await
        }
    }
}

/// Counts an HTTP request whose caller stopped waiting before its app got
/// to it (dropped while it waited its turn).
struct Abandoned<'a>(Option<&'a AppMetrics>);

impl Abandoned<'_> {
    /// The app got to the request: nothing was abandoned.
    fn started(mut self) {
        self.0 = None;
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(metrics) = self.0 {
            metrics.http_abandoned();
        }
    }
}

/// Drops the app's instance once it has had no event for its
/// `hibernate_after` (whichever task ran the last one); stops when the
/// app's handle is dropped.
async fn hibernation_clock(
    core: Arc<Mutex<AppCore>>,
    instantiated: Arc<Notify>,
    mut stopped: oneshot::Receiver<()>,
    app: Arc<str>,
) {
    loop {
        let wait = core.lock().await.until_hibernation();
        tokio::select! {
            _ = &mut stopped => break,
            // Nothing to drop until an instance is made.
            () = instantiated.notified(), if wait.is_none() => {}
            () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                let mut core = core.lock().await;
                // An event may have run meanwhile: then the clock starts
                // again from its end.
                if core.until_hibernation() == Some(Duration::ZERO) {
                    core.hibernate();
                }
            }
        }
    }
    tracing::debug!(%app, "app stopped");
}
