//! An app's core: its current instance, and running one event on it.
//!
//! Running an event means finding its route in the serving version,
//! instantiating afresh if the app failed or hibernated, calling the guest
//! under its deadline, and discarding the store if the guest fails (a trap
//! poisons it; after any error its state is suspect). Whoever holds the
//! core runs one event at a time on it: the actor for queued events, or the
//! task that read an event while the app was idle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::bindings::{Connection, HttpRequest, HttpResponse, PresenceChange, WsEvent};
use super::describe_guest_error;
use super::load::PreparedApp;
use super::routes::RouteKey;
use super::sandbox::{Instance, InstanceFactory};
use crate::delivery::{Membership, close};
use crate::telemetry::{GuestFailure, HandlerEvent};

/// A route as an event names it: its index in the version that routed it,
/// and its key to find it in a later version.
#[derive(Debug, Clone)]
pub(crate) struct RouteRef {
    /// Its index in the version that routed the request.
    pub(crate) index: u32,
    /// Its identity across versions (kind and pattern).
    pub(crate) key: Arc<RouteKey>,
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

/// An app's instance and what it takes to run an event on it.
pub(crate) struct AppCore {
    /// Makes fresh instances after a failure or a hibernation.
    factory: InstanceFactory,
    /// The current instance; `None` after a failure until re-instantiated,
    /// and while hibernating.
    instance: Option<Instance>,
    /// Whether the instance was dropped for want of events (so the next
    /// one is a wake, not a restart).
    hibernating: bool,
    /// The serving version's routes, by index.
    keys: Vec<Arc<RouteKey>>,
    /// When the last event ended: the hibernation clock runs from there.
    last_event: Instant,
    /// Told when an instance is made, so the actor, which keeps the
    /// hibernation clock, starts it again.
    instantiated: Arc<Notify>,
}

impl std::fmt::Debug for AppCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCore")
            .field("app", &self.factory.app)
            .field("instantiated", &self.instance.is_some())
            .field("hibernating", &self.hibernating)
            .finish_non_exhaustive()
    }
}

impl AppCore {
    /// The core of an app serving `instance` of the version `factory` makes.
    pub(crate) fn new(
        factory: InstanceFactory,
        instance: Instance,
        keys: Vec<Arc<RouteKey>>,
    ) -> Self {
        Self {
            factory,
            instance: Some(instance),
            hibernating: false,
            keys,
            last_event: Instant::now(),
            instantiated: Arc::new(Notify::new()),
        }
    }

    /// The app's metrics.
    pub(crate) fn metrics(&self) -> &crate::telemetry::AppMetrics {
        &self.factory.metrics
    }

    /// What tells of a new instance (see [`AppCore::until_hibernation`]).
    pub(crate) fn instantiated(&self) -> Arc<Notify> {
        self.instantiated.clone()
    }

    /// How long until the app hibernates if no event comes: `None` if it
    /// never does (no `hibernate_after`, or no instance to drop).
    pub(crate) fn until_hibernation(&self) -> Option<Duration> {
        let after = self.factory.policy.hibernate_after?;
        self.instance.as_ref()?;
        Some(after.saturating_sub(self.last_event.elapsed()))
    }

    /// Drops the instance (its memory, its module-level state); the
    /// connections, their attachments and the pre-linked component stay.
    pub(crate) fn hibernate(&mut self) {
        self.instance = None;
        self.hibernating = true;
        self.factory.metrics.hibernated();
        self.factory.metrics.memory(0);
        tracing::debug!(app = %self.factory.app, "app hibernated");
    }

    /// Serves every later event with `version`.
    pub(crate) fn swap(&mut self, version: PreparedApp) {
        self.keys = version.route_keys();
        self.factory = version.factory;
        self.instance = Some(version.instance);
        self.hibernating = false;
        self.last_event = Instant::now();
        self.instantiated.notify_one();
    }

    /// Answers an HTTP request on `route`.
    pub(crate) async fn http(
        &mut self,
        route: &RouteRef,
        request: &HttpRequest,
    ) -> Result<HttpResponse, AppCallError> {
        let started = Instant::now();
        let answer = self.call_http(route, request).await;
        self.finished(HandlerEvent::Http, started);
        answer
    }

    /// Handles a WebSocket event of `conn` on `route`. A connection the app
    /// cannot serve (its route is gone, the app is down or just failed on
    /// it) is closed.
    pub(crate) async fn websocket(
        &mut self,
        route: &RouteRef,
        member: &Membership,
        conn: &Connection,
        event: &WsEvent,
    ) {
        let started = Instant::now();
        self.call_websocket(route, member, conn, event).await;
        let kind = match event {
            WsEvent::Open => HandlerEvent::Open,
            WsEvent::Close(_) => HandlerEvent::Close,
            _ => HandlerEvent::Message,
        };
        self.finished(kind, started);
    }

    /// Tells the app a key joined or left a path of `route` (a route gone
    /// in an update hears nothing).
    pub(crate) async fn presence(&mut self, route: &RouteRef, change: &PresenceChange) {
        let started = Instant::now();
        if let Some(index) = self.resolve(route)
            && let Some(instance) = self.instance().await
        {
            let result = instance
                .exports
                .call_on_presence(&mut instance.store, index, change)
                .await;
            if let Err(err) = result {
                self.fail(&err, "presence", &change.path).await;
            }
        }
        self.finished(HandlerEvent::Message, started);
    }

    /// Gives the app a firing of its timer `name`.
    pub(crate) async fn timer(&mut self, name: &str, tick: u64) {
        let started = Instant::now();
        if let Some(instance) = self.instance().await {
            let result = instance
                .exports
                .call_on_timer(&mut instance.store, name, tick)
                .await;
            if let Err(err) = result {
                self.fail(&err, "timer", name).await;
            }
        }
        self.finished(HandlerEvent::Message, started);
    }

    /// Records an event's time and the memory its instance holds after it.
    fn finished(&mut self, event: HandlerEvent, started: Instant) {
        let metrics = &self.factory.metrics;
        metrics.handler_time(event, started.elapsed());
        if let Some(instance) = &self.instance {
            metrics.memory(instance.store.data().limits.used());
        }
        self.last_event = Instant::now();
    }

    async fn call_http(
        &mut self,
        route: &RouteRef,
        request: &HttpRequest,
    ) -> Result<HttpResponse, AppCallError> {
        let index = self.resolve(route).ok_or(AppCallError::RouteGone)?;
        let instance = self.instance().await.ok_or(AppCallError::Unavailable)?;
        let answer = instance
            .exports
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

    async fn call_websocket(
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
            .exports
            .call_on_websocket(&mut instance.store, index, conn, event)
            .await;
        if let Err(err) = result {
            self.fail(&err, "WebSocket", &conn.path).await;
            end(close::INTERNAL_ERROR, "internal error");
        }
    }

    /// The current instance, instantiating afresh if the last one failed
    /// or hibernated, ready for one call.
    async fn instance(&mut self) -> Option<&mut Instance> {
        if self.instance.is_none() {
            let started = Instant::now();
            match self.factory.instantiate().await {
                Ok(instance) => {
                    if self.hibernating {
                        self.factory.metrics.woke(started.elapsed());
                        tracing::debug!(app = %self.factory.app, elapsed = ?started.elapsed(), "app woke");
                    } else {
                        tracing::info!(app = %self.factory.app, elapsed = ?started.elapsed(), "app re-instantiated");
                    }
                    self.instance = Some(instance);
                    self.instantiated.notify_one();
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

    /// Logs a guest failure and throws the instance away, then makes a
    /// fresh one at once, so a broken app is reported now and the next
    /// event does not pay for it.
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
        let _ = self.instance().await;
    }
}
