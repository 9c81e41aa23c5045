//! Glue between the exported world and the app's [`Router`]; used by
//! [`app!`](crate::app), not by handlers.

use std::cell::OnceCell;

use crate::bindings::tina4::wasm::logging::{Level, log};
use crate::bindings::tina4::wasm::types::{
    Connection as WitConnection, HttpRequest, HttpResponse, PresenceChange as WitChange, Route,
    WsEvent,
};
use crate::connection::Connection;
use crate::http::{IntoResponse, Request};
use crate::presence::PresenceChange;
use crate::router::{Handler, Router};

thread_local! {
    /// The app's routes, built on first use and kept for the instance's life.
    static ROUTER: OnceCell<Router> = const { OnceCell::new() };
}

fn with_router<R>(build: fn(&mut Router), f: impl FnOnce(&Router) -> R) -> R {
    ROUTER.with(|cell| {
        let router = cell.get_or_init(|| {
            let mut router = Router::default();
            build(&mut router);
            router
        });
        f(router)
    })
}

/// The exported `routes`.
pub fn routes(build: fn(&mut Router)) -> Vec<Route> {
    with_router(build, |r| {
        r.routes.iter().map(|(route, _)| route.clone()).collect()
    })
}

/// The exported `handle-http`.
pub fn handle_http(build: fn(&mut Router), route: u32, request: HttpRequest) -> HttpResponse {
    with_router(build, |r| match r.routes.get(route as usize) {
        Some((_, Handler::Http(handler))) => handler(&Request::from(request)).into(),
        _ => {
            log(Level::Error, &format!("no HTTP route {route}"));
            crate::Error::Invalid(format!("no HTTP route {route}"))
                .into_response()
                .into()
        }
    })
}

/// The exported `on-websocket`.
pub fn on_websocket(build: fn(&mut Router), route: u32, conn: WitConnection, event: WsEvent) {
    with_router(build, |r| match r.routes.get(route as usize) {
        Some((spec, Handler::Connection(handler))) => {
            if let Some(err) = handler(&Connection::from(conn), event.into()) {
                log(Level::Error, &format!("{}: {err}", spec.path));
            }
        }
        _ => log(Level::Error, &format!("no WebSocket route {route}")),
    })
}

/// The exported `on-presence`.
pub fn on_presence(build: fn(&mut Router), route: u32, change: WitChange) {
    with_router(build, |r| {
        let Some((_, handler)) = r.on_presence.iter().find(|(at, _)| *at == route as usize) else {
            return;
        };
        let change = PresenceChange {
            path: change.path,
            key: change.key,
            value: change.value,
            joined: change.joined,
        };
        if let Some(err) = handler(&change) {
            log(Level::Error, &format!("{}: {err}", change.path));
        }
    })
}

/// The exported `on-timer`.
pub fn on_timer(build: fn(&mut Router), name: &str, tick: u64) {
    with_router(build, |r| {
        match r.on_timer.iter().find(|(named, _)| named == name) {
            Some((_, handler)) => {
                if let Some(err) = handler(tick) {
                    log(Level::Error, &format!("timer {name}: {err}"));
                }
            }
            None => log(
                Level::Warn,
                &format!("timer {name} fired, and nothing handles it"),
            ),
        }
    })
}
