//! The app actor: an app's mailbox, and the task that works through it.
//!
//! Events of an app run one at a time, so module-level state in the guest
//! (a map of chat users) behaves as it does in Tina4. An event for an idle
//! app (nothing queued, nothing running) runs at once on the task that read
//! it, with no hand-off. An event for a busy app waits in its mailbox, and
//! the actor's task runs it after the events before it: each connection's
//! events in arrival order, connections taking turns, so one client's
//! backlog never makes its neighbours wait behind it. Guest calls are
//! futures that yield their worker at every epoch tick and trap at their
//! deadline; a call whose caller stops waiting still runs to its end.
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::app_core::AppCore;
pub(crate) use super::app_core::{AppCallError, RouteRef};
use super::bindings::{Connection, HttpRequest, HttpResponse, PresenceChange, WsEvent};
use super::policy::MessageRate;
use super::run_to_end::RunToEnd;
use super::sandbox::{Instance, InstanceFactory};
use super::turns::Turns;
use super::{PreparedApp, RouteKey};
use crate::bundle::Bundle;
use crate::delivery::Membership;
use crate::telemetry::AppMetrics;

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
    /// Tell the app its timer `name` fired, for the `tick`th time.
    Timer { name: String, tick: u64 },
    /// Tell the app a key joined or left a path of `route`.
    Presence {
        route: RouteRef,
        change: PresenceChange,
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

/// Most presence changes on their way to one app (a host that dies with
/// thousands of members makes as many leaves at once).
pub(crate) const PRESENCE_PENDING: usize = 16_384;

/// Messages one connection may have queued for its app.
pub(crate) const MESSAGES_QUEUED_PER_CONNECTION: usize = 32;

/// A fresh quota for a new connection.
pub(crate) fn mailbox_quota() -> MailboxQuota {
    Arc::new(Semaphore::new(MESSAGES_QUEUED_PER_CONNECTION))
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
    /// The app's instance, held by whoever runs an event on it.
    core: Arc<Mutex<AppCore>>,
    /// Commands sent to the mailbox and not yet handled: while there are
    /// any, a new event queues behind them, so none overtakes another.
    queued: Arc<AtomicUsize>,
    /// Presence changes on their way to the app.
    presence_pending: AtomicUsize,
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

    /// Gives a WebSocket event to the app: run at once if the app is idle;
    /// otherwise queued, waiting for the connection's place (`quota`), the
    /// app's byte budget and mailbox space. False if the app is gone
    /// (unloaded), so the event went nowhere. A close event waits for
    /// mailbox space only: it must always get through.
    pub(crate) async fn websocket_event(
        &self,
        route: RouteRef,
        member: &Arc<Membership>,
        conn: &Arc<Connection>,
        event: WsEvent,
        quota: &MailboxQuota,
    ) -> bool {
        if let Some(mut core) = self.idle_core() {
            self.metrics.event_sent(false);
            let (member, conn) = (member.clone(), conn.clone());
            RunToEnd::new(async move { core.websocket(&route, &member, &conn, &event).await })
                .await;
            return true;
        }
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
        self.queue(command).await.is_ok()
    }

    /// Asks the app to answer an HTTP request: at once if it is idle,
    /// otherwise through its mailbox.
    pub(crate) async fn http(
        &self,
        route: RouteRef,
        request: HttpRequest,
    ) -> Result<HttpResponse, AppCallError> {
        if let Some(mut core) = self.idle_core() {
            self.metrics.event_sent(false);
            return RunToEnd::new(async move { core.http(&route, &request).await }).await;
        }
        let (reply, answer) = oneshot::channel();
        let command = AppCommand::Http {
            route,
            request,
            reply,
        };
        self.queue(command).await?;
        answer.await.map_err(|_| AppCallError::Unavailable)?
    }

    /// Tells the app a key joined or left a path of `route`: at once if
    /// it is idle, otherwise through its mailbox. At most
    /// [`PRESENCE_PENDING`] wait at a time; beyond, the change is dropped
    /// (counted in `tina4_presence_dropped_total`): an app that cannot keep
    /// up misses some.
    pub(crate) fn presence(self: &Arc<Self>, route: RouteRef, change: PresenceChange) {
        if self.presence_pending.fetch_add(1, Ordering::AcqRel) >= PRESENCE_PENDING {
            self.presence_pending.fetch_sub(1, Ordering::AcqRel);
            self.metrics.presence_dropped();
            return;
        }
        let app = self.clone();
        tokio::spawn(async move {
            if let Some(mut core) = app.idle_core() {
                app.metrics.event_sent(false);
                RunToEnd::new(async move { core.presence(&route, &change).await }).await;
            } else {
                let _ = app.queue(AppCommand::Presence { route, change }).await;
            }
            app.presence_pending.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Gives the app a firing of its timer `name`: at once if it is idle,
    /// otherwise through its mailbox; resolves once it ran or is queued.
    pub(crate) async fn timer(&self, name: String, tick: u64) {
        if let Some(mut core) = self.idle_core() {
            self.metrics.event_sent(false);
            RunToEnd::new(async move { core.timer(&name, tick).await }).await;
        } else {
            let _ = self.queue(AppCommand::Timer { name, tick }).await;
        }
    }

    /// Hands the app a new version, which serves every command sent after
    /// this one; resolves once the switch has happened.
    pub(crate) async fn swap(&self, version: PreparedApp) -> Result<(), AppCallError> {
        let (done, switched) = oneshot::channel();
        let command = AppCommand::Swap {
            version: Box::new(version),
            done,
        };
        self.queue(command).await?;
        switched.await.map_err(|_| AppCallError::Unavailable)
    }

    /// The app's core, if the app is idle: nothing queued, nothing running.
    fn idle_core(&self) -> Option<OwnedMutexGuard<AppCore>> {
        if self.queued.load(Ordering::SeqCst) != 0 {
            return None;
        }
        let core = self.core.clone().try_lock_owned().ok()?;
        // A command sent between the two looks goes first.
        (self.queued.load(Ordering::SeqCst) == 0).then_some(core)
    }

    /// Puts `command` in the mailbox, counted as queued until the actor has
    /// handled it (or until it could not be sent).
    async fn queue(&self, command: AppCommand) -> Result<(), AppCallError> {
        if !matches!(command, AppCommand::Swap { .. }) {
            self.metrics.event_sent(true);
        }
        let counted = Queued::count(&self.queued);
        self.mailbox
            .send(command)
            .await
            .map_err(|_| AppCallError::Unavailable)?;
        // Sent: the actor takes it off the count once handled.
        std::mem::forget(counted);
        Ok(())
    }
}

/// One command counted in [`AppHandle::queued`] while it is being sent;
/// uncounted again if it never gets into the mailbox (refused, or its
/// sender stopped waiting for space).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn count(queued: &'a AtomicUsize) -> Self {
        queued.fetch_add(1, Ordering::SeqCst);
        Self(queued)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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

/// The task-side half of an app: works through its mailbox and keeps its
/// hibernation clock.
pub(crate) struct AppActor {
    /// The app's instance, shared with the handle's at-once path.
    core: Arc<Mutex<AppCore>>,
    /// The handle's count of commands not yet handled.
    queued: Arc<AtomicUsize>,
    /// Told when an instance is made, to start the hibernation clock.
    instantiated: Arc<Notify>,
    /// The app's name, for the logs.
    app: Arc<str>,
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
        let core = AppCore::new(factory, instance, keys);
        let actor = Self {
            instantiated: core.instantiated(),
            core: Arc::new(Mutex::new(core)),
            queued: Arc::new(AtomicUsize::new(0)),
            app: name.clone(),
        };
        let (core, queued) = (actor.core.clone(), actor.queued.clone());
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
            core,
            queued,
            presence_pending: AtomicUsize::new(0),
        })
    }

    /// Holds the core while the mailbox has commands: takes them into lanes
    /// that take turns (see [`Turns`]), at most `capacity` at a time, and
    /// handles them. A swap is a barrier: everything that arrived before it
    /// runs on the old version, so intake pauses until that is done. Once
    /// the mailbox is empty, the core is free for events to run at once.
    async fn run(self, mut mailbox: mpsc::Receiver<AppCommand>, capacity: usize) {
        let mut turns: Turns<Lane, AppCommand> = Turns::default();
        let mut swap: Option<AppCommand> = None;
        let mut requests: u64 = 0;
        let mut take = |command: AppCommand, turns: &mut Turns<_, _>, swap: &mut Option<_>| {
            let lane = match &command {
                AppCommand::WebSocket { member, .. } => {
                    Lane::Connection(Arc::as_ptr(member).addr())
                }
                AppCommand::Http { .. }
                | AppCommand::Presence { .. }
                | AppCommand::Timer { .. } => {
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
        while let Some(first) = self.next_command(&mut mailbox).await {
            let mut core = self.core.lock().await;
            take(first, &mut turns, &mut swap);
            loop {
                while swap.is_none() && turns.len() < capacity {
                    let Ok(command) = mailbox.try_recv() else {
                        break;
                    };
                    take(command, &mut turns, &mut swap);
                }
                let Some(command) = turns.pop().or_else(|| swap.take()) else {
                    break;
                };
                handle(&mut core, command).await;
                self.queued.fetch_sub(1, Ordering::SeqCst);
                // An app that is never idle still lets the other tasks of
                // its worker have their turn.
                tokio::task::consume_budget().await;
            }
        }
        tracing::debug!(app = %self.app, "app stopped");
    }

    /// The next command; `None` once the app is gone. An app that has had
    /// no event for its `hibernate_after` (whichever path ran the last
    /// one) drops its instance meanwhile.
    async fn next_command(&self, mailbox: &mut mpsc::Receiver<AppCommand>) -> Option<AppCommand> {
        loop {
            let wait = self.core.lock().await.until_hibernation();
            let Some(wait) = wait else {
                // Nothing to drop until an instance is made.
                tokio::select! {
                    command = mailbox.recv() => return command,
                    () = self.instantiated.notified() => continue,
                }
            };
            if let Ok(command) = tokio::time::timeout(wait, mailbox.recv()).await {
                return command;
            }
            let mut core = self.core.lock().await;
            // An event may have run at once meanwhile: then the clock
            // starts again from its end.
            if core.until_hibernation() == Some(Duration::ZERO) {
                core.hibernate();
            }
        }
    }
}

/// Runs one command on the app's core.
async fn handle(core: &mut AppCore, command: AppCommand) {
    match command {
        AppCommand::Http {
            route,
            request,
            reply,
        } => {
            // A caller that gave up (its client left, or its deadline
            // passed) does not cost the app an event.
            if reply.is_closed() {
                core.metrics().http_abandoned();
                return;
            }
            let answer = core.http(&route, &request).await;
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
            core.websocket(&route, &member, &conn, &event).await;
        }
        AppCommand::Presence { route, change } => core.presence(&route, &change).await,
        AppCommand::Timer { name, tick } => core.timer(&name, tick).await,
        AppCommand::Swap { version, done } => {
            core.swap(*version);
            let _ = done.send(());
        }
    }
}
