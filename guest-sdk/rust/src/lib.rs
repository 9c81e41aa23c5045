//! Write [tina4-wasm](https://github.com/tina4stack) apps in Rust, the Tina4 way.
//!
//! An app is a function that registers routes, and a line that exports it:
//!
//! ```ignore
//! use tina4_guest::prelude::*;
//!
//! fn routes(app: &mut Router) {
//!     app.websocket("/ws/echo", |conn: &Connection, event: Event| match event {
//!         Event::Message(text) => conn.send(&format!("Echo: {text}")),
//!         _ => Ok(()),
//!     });
//!     app.get("/hello/{name}", |req: &Request| {
//!         Response::json(&json!({ "hello": req.param("name") }))
//!     });
//! }
//!
//! tina4_guest::app!(routes);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` and drop the
//! `.wasm` into the apps folder of `tina4-wasm serve`.
//!
//! # Modules
//!
//! - [`router`]: [`Router`], where routes and their handlers are registered.
//! - [`connection`]: [`Connection`] and [`Event`] for WebSocket handlers.
//! - [`http`]: [`Request`], [`Response`] and [`IntoResponse`] for HTTP handlers.
//! - [`error`]: the [`Error`] every fallible call returns.
//! - [`log`]: lines in the host's log, tagged with the app.
//! - [`presence`]: who is on a path, across the cluster.
//! - [`timers`]: timers the host keeps and fires.
//! - [`storage`]: key-value storage of the app's own.
//! - [`fetch`]: HTTP requests to the hosts the app is allowed to reach.
//!
//! Handlers never see the generated WIT bindings; they live in the hidden
//! `bindings` module for the [`app!`] macro.

pub mod connection;
pub mod error;
pub mod fetch;
pub mod http;
pub mod log;
pub mod presence;
pub mod router;
pub mod storage;
pub mod timers;

#[doc(hidden)]
pub mod dispatch;

#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        // The handler world with outgoing HTTP: a component imports only
        // what it uses, so an app that never fetches does not import it.
        world: "handler-http",
        path: "../../wit",
        // The WASI interfaces outgoing HTTP uses (streams, pollables).
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export_handler",
        default_bindings_module: "tina4_guest::bindings",
    });
}

pub use connection::{
    Connection, Event, KeptMessage, Params, close_connection, history, push_to_websocket,
    send_to_connection,
};
pub use error::Error;
pub use http::{IntoResponse, Method, Request, Response, render};
pub use presence::{Member, Presence, PresenceChange, presence};
pub use router::Router;
pub use timers::Every;

/// Everything a handler file usually needs, plus `serde_json`'s `json!`.
pub mod prelude {
    pub use crate::{
        Connection, Error, Event, Every, IntoResponse, KeptMessage, Member, Method, Params,
        Presence, PresenceChange, Request, Response, Router, close_connection, history, presence,
        push_to_websocket, render, send_to_connection,
    };
    pub use serde_json::{Value, json};
}

/// Exports an app whose routes are registered by `$routes: fn(&mut Router)`.
///
/// Use it once per app crate, at the top level.
#[macro_export]
macro_rules! app {
    ($routes:path) => {
        struct Tina4App;

        impl $crate::bindings::Guest for Tina4App {
            fn routes() -> ::std::vec::Vec<$crate::bindings::Route> {
                $crate::dispatch::routes($routes)
            }

            fn handle_http(
                route: u32,
                request: $crate::bindings::HttpRequest,
            ) -> $crate::bindings::HttpResponse {
                $crate::dispatch::handle_http($routes, route, request)
            }

            fn on_websocket(
                route: u32,
                conn: $crate::bindings::Connection,
                event: $crate::bindings::WsEvent,
            ) {
                $crate::dispatch::on_websocket($routes, route, conn, event)
            }

            fn on_presence(route: u32, change: $crate::bindings::PresenceChange) {
                $crate::dispatch::on_presence($routes, route, change)
            }

            fn on_timer(name: ::std::string::String, tick: u64) {
                $crate::dispatch::on_timer($routes, &name, tick)
            }
        }

        $crate::bindings::export_handler!(Tina4App with_types_in $crate::bindings);
    };
}
