//! [`Router`]: where an app registers its routes, Tina4 style.

use crate::bindings::tina4::wasm::types::{History, Method as WitMethod, Route, RouteKind};
use crate::connection::{Connection, Event};
use crate::http::{IntoResponse, Method, Request, Response};
use crate::presence::{Presence, PresenceChange};
use crate::timers::Every;
use std::time::Duration;

/// What a WebSocket handler may return: nothing, or a `Result` whose error
/// is logged (the connection stays open).
pub trait HandlerResult {
    /// The error to log, if any.
    fn into_error(self) -> Option<String>;
}

impl HandlerResult for () {
    fn into_error(self) -> Option<String> {
        None
    }
}

impl<E: std::fmt::Display> HandlerResult for Result<(), E> {
    fn into_error(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

pub(crate) type HttpHandler = Box<dyn Fn(&Request) -> Response>;
pub(crate) type WsHandler = Box<dyn Fn(&Connection, Event) -> Option<String>>;
pub(crate) type PresenceHandler = Box<dyn Fn(&PresenceChange) -> Option<String>>;
pub(crate) type TimerHandler = Box<dyn Fn(u64) -> Option<String>>;

/// A registered handler.
pub(crate) enum Handler {
    Http(HttpHandler),
    /// A WebSocket or SSE route's.
    Connection(WsHandler),
}

/// The routes of an app. Patterns are `/`-separated segments where
/// `{name}` binds any segment and `{name:int}` binds an integer.
#[derive(Default)]
pub struct Router {
    /// Routes in registration order; the index is the route's id.
    pub(crate) routes: Vec<(Route, Handler)>,
    /// Presence handlers, by the index of their route.
    pub(crate) on_presence: Vec<(usize, PresenceHandler)>,
    /// Timer handlers, by timer name.
    pub(crate) on_timer: Vec<(String, TimerHandler)>,
}

impl Router {
    fn http<R, F>(&mut self, method: Method, path: &str, handler: F) -> &mut Self
    where
        F: Fn(&Request) -> R + 'static,
        R: IntoResponse,
    {
        let route = Route {
            kind: RouteKind::Http(WitMethod::from(method)),
            path: path.to_string(),
            secured: false,
            history: None,
            presence: None,
        };
        let handler = Box::new(move |req: &Request| handler(req).into_response());
        self.routes.push((route, Handler::Http(handler)));
        self
    }

    /// Answers `GET path` (and `HEAD path`).
    pub fn get<R: IntoResponse, F: Fn(&Request) -> R + 'static>(
        &mut self,
        path: &str,
        handler: F,
    ) -> &mut Self {
        self.http(Method::Get, path, handler)
    }

    /// Answers `POST path`.
    pub fn post<R: IntoResponse, F: Fn(&Request) -> R + 'static>(
        &mut self,
        path: &str,
        handler: F,
    ) -> &mut Self {
        self.http(Method::Post, path, handler)
    }

    /// Answers `PUT path`.
    pub fn put<R: IntoResponse, F: Fn(&Request) -> R + 'static>(
        &mut self,
        path: &str,
        handler: F,
    ) -> &mut Self {
        self.http(Method::Put, path, handler)
    }

    /// Answers `PATCH path`.
    pub fn patch<R: IntoResponse, F: Fn(&Request) -> R + 'static>(
        &mut self,
        path: &str,
        handler: F,
    ) -> &mut Self {
        self.http(Method::Patch, path, handler)
    }

    /// Answers `DELETE path`.
    pub fn delete<R: IntoResponse, F: Fn(&Request) -> R + 'static>(
        &mut self,
        path: &str,
        handler: F,
    ) -> &mut Self {
        self.http(Method::Delete, path, handler)
    }

    /// Serves WebSocket connections on `path`; `handler` gets every event of
    /// every connection: `Open`, each `Message`/`Binary`, then `Close`.
    pub fn websocket<R, F>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Fn(&Connection, Event) -> R + 'static,
        R: HandlerResult,
    {
        self.connections(RouteKind::Websocket, path, handler)
    }

    /// Serves a Server-Sent Events stream on `path` (`GET` with
    /// `Accept: text/event-stream`, as a browser's `EventSource` sends).
    /// Its connections join the path's group beside WebSocket connections
    /// there, so [`Connection::send`], [`Connection::broadcast`] and
    /// [`push_to_websocket`](crate::push_to_websocket) reach both alike;
    /// `handler` gets `Open` and `Close` (the client cannot send).
    ///
    /// ```ignore
    /// app.sse("/events/{user}", |conn: &Connection, event: Event| match event {
    ///     Event::Open => conn.send("welcome"),
    ///     _ => Ok(()),
    /// });
    /// ```
    pub fn sse<R, F>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Fn(&Connection, Event) -> R + 'static,
        R: HandlerResult,
    {
        self.connections(RouteKind::Sse, path, handler)
    }

    /// A route whose clients stay connected (WebSocket or SSE).
    fn connections<R, F>(&mut self, kind: RouteKind, path: &str, handler: F) -> &mut Self
    where
        F: Fn(&Connection, Event) -> R + 'static,
        R: HandlerResult,
    {
        let route = Route {
            kind,
            path: path.to_string(),
            secured: false,
            history: None,
            presence: None,
        };
        let handler =
            Box::new(move |conn: &Connection, event: Event| handler(conn, event).into_error());
        self.routes.push((route, Handler::Connection(handler)));
        self
    }

    /// Keeps the recent messages of each path of the WebSocket or SSE route
    /// registered last: up to `max_messages` (the host may cap it lower),
    /// none older than `max_age` (`Duration::ZERO`: no age limit). Every
    /// `broadcast` and push to the path is numbered, and a client that
    /// reconnects with its last position (frond.js, an `EventSource`) is
    /// sent what it missed, in order and once, before live messages.
    ///
    /// ```ignore
    /// app.sse("/events/{user}", events).history(100, Duration::from_secs(3600));
    /// ```
    pub fn history(&mut self, max_messages: u32, max_age: std::time::Duration) -> &mut Self {
        if let Some((route, _)) = self.routes.last_mut() {
            route.history = Some(History {
                max_messages,
                max_age_secs: u32::try_from(max_age.as_secs()).unwrap_or(u32::MAX),
            });
        }
        self
    }

    /// Keeps who is on each path of the WebSocket or SSE route registered
    /// last: each connection says who it is with
    /// [`Connection::set_presence`] (or its token does, with
    /// [`Presence::from_claim`]), and [`crate::presence`] lists a path's
    /// members on every instance of the cluster.
    ///
    /// ```ignore
    /// app.websocket("/ws/room/{name}", room)
    ///     .presence(Presence::new().announce())
    ///     .on_presence(|change: &PresenceChange| {
    ///         tina4_guest::log::info(&format!("{} joined: {}", change.key, change.joined));
    ///     });
    /// ```
    pub fn presence(&mut self, presence: Presence) -> &mut Self {
        if let Some((route, _)) = self.routes.last_mut() {
            route.presence = Some(presence.into());
        }
        self
    }

    /// Hears when a key joins a path of the route registered last (its
    /// first connection there, on any instance) or leaves it (its last one
    /// went). Called once in the cluster, on the instance that made the
    /// change. Keeps presence on the route if [`Router::presence`] was not
    /// called.
    pub fn on_presence<R, F>(&mut self, handler: F) -> &mut Self
    where
        F: Fn(&PresenceChange) -> R + 'static,
        R: HandlerResult,
    {
        if let Some((route, _)) = self.routes.last_mut() {
            let presence = route.presence.get_or_insert_with(|| Presence::new().into());
            presence.events = true;
            let handler = Box::new(move |change: &PresenceChange| handler(change).into_error());
            self.on_presence.push((self.routes.len() - 1, handler));
        }
        self
    }

    /// Handles the timer `name` when it fires; `tick` counts its firings
    /// (see [`crate::timers::schedule`]).
    pub fn on_timer<R, F>(&mut self, name: &str, handler: F) -> &mut Self
    where
        F: Fn(u64) -> R + 'static,
        R: HandlerResult,
    {
        let handler = Box::new(move |tick: u64| handler(tick).into_error());
        self.on_timer.retain(|(named, _)| named != name);
        self.on_timer.push((name.to_string(), handler));
        self
    }

    /// Runs `handler` every `period`, from when the app loads (and, with
    /// `Every::PeriodOnceInCluster`, on one instance of the cluster per
    /// period). A refusal by the host (a period below its minimum, too
    /// many timers) is logged.
    ///
    /// ```ignore
    /// app.every("figure", Duration::from_secs(1), Every::Period, |_tick| {
    ///     push_to_websocket("/ws/dashboard", &read_figure()).map(drop)
    /// });
    /// ```
    pub fn every<R, F>(
        &mut self,
        name: &str,
        period: Duration,
        every: Every,
        handler: F,
    ) -> &mut Self
    where
        F: Fn(u64) -> R + 'static,
        R: HandlerResult,
    {
        if let Err(err) = crate::timers::schedule(name, period, every) {
            crate::log::error(&format!("timer {name}: {err}"));
        }
        self.on_timer(name, handler)
    }

    /// Runs `handler` once, `after` the app loads.
    pub fn after<R, F>(&mut self, name: &str, after: Duration, handler: F) -> &mut Self
    where
        F: Fn(u64) -> R + 'static,
        R: HandlerResult,
    {
        self.every(name, after, Every::Once, handler)
    }

    /// Marks the route registered last as secured: the host lets through
    /// only requests with a valid token (an HS256 JWT signed with the
    /// server's `TINA4_SECRET`, not expired) and answers the rest with 401.
    /// The token's claims reach the handler ([`Connection::claims`],
    /// [`Request::claims`]).
    ///
    /// ```ignore
    /// app.websocket("/ws/account", account).secured();
    /// ```
    pub fn secured(&mut self) -> &mut Self {
        if let Some((route, _)) = self.routes.last_mut() {
            route.secured = true;
        }
        self
    }
}
