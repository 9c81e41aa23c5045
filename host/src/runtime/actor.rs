//! The app actor: one long-lived instance of an app, owned by one task on
//! the async runtime and fed by a bounded mailbox.
//!
//! Events of an app run one at a time, so module-level state in the guest
//! (a map of chat users) behaves as it does in Tina4. Each connection's
//! events run in arrival order; connections take turns, so one client's
//! backlog never makes its neighbours wait behind it. Guest calls are
//! futures: a call yields its worker at every epoch tick and traps at its
//! deadline, and an event sent to an idle app wakes its task on the worker
//! that sent it. Any guest error discards the `Store` (a trap poisons it)
//! and the next event runs on a fresh instance.
//!
//! An app with no event for its `hibernate_after` drops its instance; its
//! connections stay open, and the next event instantiates afresh from the
//! pre-linked component, as after a failure.
//!
//! A hot swap is a command in the same mailbox: events queued before it run
//! on the old version, events after it on the new one, so the switch falls
//! between two events. Routes are named by [`RouteKey`], so an event routed
//! under an older version still finds its route in the new one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use wasmtime::Store;

use super::bindings::{Connection, Handler, HttpRequest, HttpResponse, WsEvent};
use super::policy::MessageRate;
use super::turns::Turns;
use super::{InstanceFactory, PreparedApp, RouteKey, describe_guest_error};
use crate::bundle::Bundle;
use crate::delivery::{Membership, close};
use crate::telemetry::{AppMetrics, GuestFailure, HandlerEvent};

/// A route as named in a command: its index in the version that routed it,
/// and its key to find it in a later version.
#[derive(Debug, Clone)]
pub(crate) struct RouteRef {
    /// Its index in the version that routed the request.
    pub(crate) index: u32,
    /// Its identity across versions (kind and pattern).
    pub(crate) key: Arc<RouteKey>,
}

/// What an app is asked to do.
pub(crate) enum AppCommand {
    /// Answer an HTTP request on `route`.
    Http {
        route: RouteRef,
        request: HttpRequest,
        reply: oneshot::Sender<Result<HttpResponse, AppCallError>>,
    },
    /// Handle a WebSocket event of `conn` on `route`.
    WebSocket {
        route: RouteRef,
        /// The connection's place in delivery: joined at `open`; held
        /// until its `close` is handled, so the handler can still reach it.
        member: Arc<Membership>,
        conn: Arc<Connection>,
        event: WsEvent,
        /// Its share of the mailbox, given back when it is dropped, once
        /// it has been handled.
        _held: Option<Held>,
    },
    /// Serve every later command with a new version; say so on `done`.
    Swap {
        version: Box<PreparedApp>,
        done: oneshot::Sender<()>,
    },
}

/// The share of an app's mailbox one queued message holds: one of its
/// connection's places, and its bytes of the app's budget.
pub(crate) struct Held {
    /// A place of the connection's [`MailboxQuota`].
    _place: OwnedSemaphorePermit,
    /// Its KiB of the app's budget.
    _bytes: OwnedSemaphorePermit,
}

/// How many messages of one connection may wait in its app's mailbox: a
/// client that floods waits (and stops being read, so TCP slows it down)
/// once it has this many queued, and its neighbours never queue behind more
/// than that of it.
pub(crate) type MailboxQuota = Arc<Semaphore>;

/// Messages one connection may have queued for its app.
pub(crate) const MESSAGES_QUEUED_PER_CONNECTION: usize = 32;

/// A fresh quota for a new connection.
pub(crate) fn mailbox_quota() -> MailboxQuota {
    Arc::new(Semaphore::new(MESSAGES_QUEUED_PER_CONNECTION))
}

/// Why an app gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppCallError {
    /// The guest trapped, ran out of time or memory; it has been restarted.
    #[error("the app failed while handling the request")]
    GuestFailed,
    /// The app is gone (unloaded) or could not be instantiated.
    #[error("the app is not running")]
    Unavailable,
    /// The app was updated to a version without this route.
    #[error("the route no longer exists")]
    RouteGone,
}

/// A loaded app, as the rest of the host sees it.
#[derive(Debug)]
pub(crate) struct AppHandle {
    /// The app's name (its file name without `.wasm`).
    pub(crate) name: Arc<str>,
    /// The component file it was loaded from.
    pub(crate) file: PathBuf,
    /// The actor's mailbox.
    mailbox: mpsc::Sender<AppCommand>,
    /// What the edge checks before involving the app; follows the serving
    /// version's settings.
    edge: arc_swap::ArcSwap<EdgeSettings>,
    /// The serving version's packed files, if it packs them: the edge
    /// serves its public files from there.
    bundle: arc_swap::ArcSwapOption<Bundle>,
    /// KiB of messages its mailbox may hold, across all its connections.
    mailbox_bytes: Arc<Semaphore>,
    /// The size of that budget, in KiB (one message never asks for more).
    mailbox_kib: u32,
    /// The app's metrics (HTTP answers are counted by the caller).
    pub(crate) metrics: Arc<AppMetrics>,
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

    /// Sends a WebSocket event to the app, waiting for the connection's
    /// place (`quota`), the app's byte budget and mailbox space; false if
    /// the app is gone (unloaded), so the event went nowhere. A close event
    /// waits for mailbox space only: it must always get through.
    pub(crate) async fn websocket_event(
        &self,
        route: RouteRef,
        member: &Arc<Membership>,
        conn: &Arc<Connection>,
        event: WsEvent,
        quota: &MailboxQuota,
    ) -> bool {
        let bytes = match &event {
            WsEvent::Text(text) => text.len(),
            WsEvent::Binary(data) => data.len(),
            _ => 0,
        };
        let held = if matches!(event, WsEvent::Close(_)) {
            None
        } else {
            let kib = u32::try_from(bytes.div_ceil(1024))
                .unwrap_or(u32::MAX)
                .clamp(1, self.mailbox_kib);
            let (Ok(place), Ok(budget)) = (
                quota.clone().acquire_owned().await,
                self.mailbox_bytes.clone().acquire_many_owned(kib).await,
            ) else {
                return false;
            };
            Some(Held {
                _place: place,
                _bytes: budget,
            })
        };
        let command = AppCommand::WebSocket {
            route,
            member: member.clone(),
            conn: conn.clone(),
            event,
            _held: held,
        };
        self.mailbox.send(command).await.is_ok()
    }

    /// Asks the app to answer an HTTP request.
    pub(crate) async fn http(
        &self,
        route: RouteRef,
        request: HttpRequest,
    ) -> Result<HttpResponse, AppCallError> {
        let (reply, answer) = oneshot::channel();
        let command = AppCommand::Http {
            route,
            request,
            reply,
        };
        self.mailbox
            .send(command)
            .await
            .map_err(|_| AppCallError::Unavailable)?;
        answer.await.map_err(|_| AppCallError::Unavailable)?
    }

    /// Hands the app a new version, which serves every command sent after
    /// this one; resolves once the switch has happened.
    pub(crate) async fn swap(&self, version: PreparedApp) -> Result<(), AppCallError> {
        let (done, switched) = oneshot::channel();
        let command = AppCommand::Swap {
            version: Box::new(version),
            done,
        };
        self.mailbox
            .send(command)
            .await
            .map_err(|_| AppCallError::Unavailable)?;
        switched.await.map_err(|_| AppCallError::Unavailable)
    }
}

/// A live instance: its store and its typed exports.
pub(crate) struct Instance {
    /// The store: the instance's memory and the host state it calls into.
    pub(crate) store: Store<super::HostState>,
    /// The typed exports (`routes`, `handle-http`, `on-websocket`).
    pub(crate) handler: Handler,
}

/// Whose turn an event waits for: its connection's (events of one
/// connection keep their order), or its own (an HTTP request).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Lane {
    /// A connection, by the address of its shared [`Connection`], which
    /// every event it sends carries and keeps alive while it waits.
    Connection(usize),
    /// One HTTP request, numbered as it arrived.
    Request(u64),
}

/// The task-side half of an app.
pub(crate) struct AppActor {
    /// Makes fresh instances after a failure or a hibernation.
    factory: InstanceFactory,
    /// The current instance; `None` after a failure until re-instantiated,
    /// and while hibernating.
    instance: Option<Instance>,
    /// Whether the instance was dropped for want of events (so the next
    /// one is a wake, not a restart).
    hibernating: bool,
    /// The current version's routes, by index.
    keys: Vec<Arc<RouteKey>>,
}

impl AppActor {
    /// Starts the actor on its own task with an already-created instance.
    /// Call it on the async runtime.
    pub(crate) fn spawn(
        factory: InstanceFactory,
        instance: Instance,
        keys: Vec<Arc<RouteKey>>,
        file: PathBuf,
        mailbox_capacity: usize,
        mailbox_bytes: usize,
    ) -> Arc<AppHandle> {
        let mailbox_kib = u32::try_from(mailbox_bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let (mailbox, rx) = mpsc::channel(mailbox_capacity);
        let name = factory.app.clone();
        let metrics = factory.metrics.clone();
        let actor = Self {
            factory,
            instance: Some(instance),
            hibernating: false,
            keys,
        };
        tokio::spawn(actor.run(rx, mailbox_capacity));
        Arc::new(AppHandle {
            edge: arc_swap::ArcSwap::from_pointee(EdgeSettings {
                max_connections: None,
                audience: name.clone(),
                message_rate: None,
            }),
            bundle: arc_swap::ArcSwapOption::empty(),
            name,
            file,
            mailbox,
            mailbox_bytes: Arc::new(Semaphore::new(mailbox_kib as usize)),
            mailbox_kib,
            metrics,
        })
    }

    /// Takes what the mailbox brings into lanes that take turns (see
    /// [`Turns`]), at most `capacity` events at a time, and handles them.
    /// A swap is a barrier: everything that arrived before it runs on the
    /// old version, so intake pauses until that is done.
    async fn run(mut self, mut mailbox: mpsc::Receiver<AppCommand>, capacity: usize) {
        let mut turns: Turns<Lane, AppCommand> = Turns::default();
        let mut swap: Option<AppCommand> = None;
        let mut requests: u64 = 0;
        let mut take = |command: AppCommand, turns: &mut Turns<_, _>, swap: &mut Option<_>| {
            let lane = match &command {
                AppCommand::WebSocket { member, .. } => {
                    Lane::Connection(Arc::as_ptr(member).addr())
                }
                AppCommand::Http { .. } => {
                    requests = requests.wrapping_add(1);
                    Lane::Request(requests)
                }
                AppCommand::Swap { .. } => {
                    *swap = Some(command);
                    return;
                }
            };
            turns.push(lane, command);
        };
        loop {
            if swap.is_none() {
                if turns.is_empty() {
                    let Some(command) = self.next_command(&mut mailbox).await else {
                        break;
                    };
                    take(command, &mut turns, &mut swap);
                }
                while swap.is_none() && turns.len() < capacity {
                    let Ok(command) = mailbox.try_recv() else {
                        break;
                    };
                    take(command, &mut turns, &mut swap);
                }
            }
            match turns.pop().or_else(|| swap.take()) {
                Some(command) => self.handle(command).await,
                None => break,
            }
            // An app that is never idle still lets the other tasks of its
            // worker have their turn.
            tokio::task::consume_budget().await;
        }
        tracing::debug!(app = %self.factory.app, "app stopped");
    }

    /// The next command; `None` once the app is gone. An app that waits
    /// longer than its `hibernate_after` drops its instance meanwhile.
    async fn next_command(
        &mut self,
        mailbox: &mut mpsc::Receiver<AppCommand>,
    ) -> Option<AppCommand> {
        if let Some(after) = self.hibernate_after()
            && self.instance.is_some()
        {
            match tokio::time::timeout(after, mailbox.recv()).await {
                Ok(command) => return command,
                Err(_) => self.hibernate(),
            }
        }
        mailbox.recv().await
    }

    /// How long the app may be idle before it hibernates, if it does.
    fn hibernate_after(&self) -> Option<Duration> {
        self.factory.policy.hibernate_after
    }

    /// Drops the instance (its memory, its module-level state); the
    /// connections, their attachments and the pre-linked component stay.
    fn hibernate(&mut self) {
        self.instance = None;
        self.hibernating = true;
        self.factory.metrics.hibernated();
        self.factory.metrics.memory(0);
        tracing::debug!(app = %self.factory.app, "app hibernated");
    }

    /// The current instance, instantiating afresh if the last one failed
    /// or hibernated, ready for one call.
    async fn instance(&mut self) -> Option<&mut Instance> {
        if self.instance.is_none() {
            let started = Instant::now();
            match self.factory.instantiate().await {
                Ok(instance) if self.hibernating => {
                    self.factory.metrics.woke(started.elapsed());
                    tracing::debug!(app = %self.factory.app, elapsed = ?started.elapsed(), "app woke");
                    self.instance = Some(instance);
                }
                Ok(instance) => {
                    tracing::info!(app = %self.factory.app, elapsed = ?started.elapsed(), "app re-instantiated");
                    self.instance = Some(instance);
                }
                Err(err) => {
                    tracing::error!(app = %self.factory.app, "cannot instantiate app: {err:#}");
                }
            }
            self.hibernating = false;
        }
        let instance = self.instance.as_mut()?;
        self.factory.start_call(&mut instance.store);
        Some(instance)
    }

    /// The index of `route` in the current version, if it still has it.
    fn resolve(&self, route: &RouteRef) -> Option<u32> {
        let same = |k: &Arc<RouteKey>| Arc::ptr_eq(k, &route.key) || **k == *route.key;
        if self.keys.get(route.index as usize).is_some_and(same) {
            return Some(route.index);
        }
        self.keys.iter().position(same).map(|i| i as u32)
    }

    async fn handle(&mut self, command: AppCommand) {
        let started = Instant::now();
        let event = match &command {
            AppCommand::Http { .. } => Some(HandlerEvent::Http),
            AppCommand::WebSocket {
                event: WsEvent::Open,
                ..
            } => Some(HandlerEvent::Open),
            AppCommand::WebSocket {
                event: WsEvent::Close(_),
                ..
            } => Some(HandlerEvent::Close),
            AppCommand::WebSocket { .. } => Some(HandlerEvent::Message),
            AppCommand::Swap { .. } => None,
        };
        self.dispatch(command).await;
        if let Some(event) = event {
            self.factory.metrics.handler_time(event, started.elapsed());
        }
        if let Some(instance) = &self.instance {
            self.factory
                .metrics
                .memory(instance.store.data().limits.used());
        }
    }

    async fn dispatch(&mut self, command: AppCommand) {
        match command {
            AppCommand::Http {
                route,
                request,
                reply,
            } => {
                // A caller that gave up (its client left, or its deadline
                // passed) does not cost the app an event.
                if reply.is_closed() {
                    self.factory.metrics.http_abandoned();
                    return;
                }
                let answer = self.http(&route, &request).await;
                let _ = reply.send(answer);
            }
            AppCommand::WebSocket {
                route,
                member,
                conn,
                event,
                ..
            } => {
                // After a close, dropping `member` here (with the connection
                // task's) forgets the connection: its handler has run.
                self.websocket(&route, &member, &conn, &event).await;
            }
            AppCommand::Swap { version, done } => {
                let version = *version;
                self.keys = version.route_keys();
                self.factory = version.factory;
                self.instance = Some(version.instance);
                self.hibernating = false;
                let _ = done.send(());
            }
        }
    }

    async fn http(
        &mut self,
        route: &RouteRef,
        request: &HttpRequest,
    ) -> Result<HttpResponse, AppCallError> {
        let index = self.resolve(route).ok_or(AppCallError::RouteGone)?;
        let instance = self.instance().await.ok_or(AppCallError::Unavailable)?;
        let answer = instance
            .handler
            .call_handle_http(&mut instance.store, index, request)
            .await;
        match answer {
            Ok(response) => Ok(response),
            Err(err) => {
                self.fail(&err, "HTTP", &request.path).await;
                Err(AppCallError::GuestFailed)
            }
        }
    }

    async fn websocket(
        &mut self,
        route: &RouteRef,
        member: &Membership,
        conn: &Connection,
        event: &WsEvent,
    ) {
        let is_close = matches!(event, WsEvent::Close(_));
        if matches!(event, WsEvent::Open) {
            member.opened();
        }
        // Closing is moot for a close event: the connection is already gone.
        let end = |code, reason| {
            if !is_close {
                let _ = member.handle().close(code, reason);
            }
        };
        let Some(index) = self.resolve(route) else {
            end(close::GOING_AWAY, "route removed by an update of the app");
            return;
        };
        let Some(instance) = self.instance().await else {
            end(close::INTERNAL_ERROR, "app unavailable");
            return;
        };
        let result = instance
            .handler
            .call_on_websocket(&mut instance.store, index, conn, event)
            .await;
        if let Err(err) = result {
            self.fail(&err, "WebSocket", &conn.path).await;
            end(close::INTERNAL_ERROR, "internal error");
        }
    }

    /// Logs a guest failure and throws the instance away: after a trap its
    /// store is poisoned, and after any error its state is suspect.
    async fn fail(&mut self, err: &wasmtime::Error, kind: &str, path: &str) {
        let why = match err.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => GuestFailure::Interrupt,
            Some(wasmtime::Trap::OutOfFuel) => GuestFailure::Fuel,
            Some(_) => GuestFailure::Trap,
            None => GuestFailure::Other,
        };
        self.factory.metrics.guest_failed(why);
        tracing::error!(
            app = %self.factory.app,
            kind,
            path,
            "guest failed: {}; restarting the app",
            describe_guest_error(err)
        );
        self.instance = None;
        // Re-instantiate now, so a broken app is reported at once and the
        // next event does not pay for it.
        let _ = self.instance().await;
    }
}
