//! tina4-wasm: serve HTTP and WebSocket routes from sandboxed WebAssembly
//! components.
//!
//! The host owns the sockets and the registry of WebSocket connections; apps
//! are components built against the `tina4:wasm/handler` world (see `wit/`)
//! that declare their routes, answer HTTP requests, and react to WebSocket
//! events by calling back into the host (`send`, `broadcast`, `close`,
//! `count`, `push`).
//!
//! # Map of the crate
//!
//! - [`cli`]: the command line (clap).
//! - [`inspect`]: `routes` and `check`, which load apps without serving.
//! - [`build`]: `build`, which turns an app's Rust, JavaScript or Python
//!   sources into a component, installing the language's toolchain.
//! - [`config`]: settings for `serve`, from flags, `TINA4_*` env and `.env`.
//! - [`server`]: binds the port, accepts connections, shuts down cleanly.
//! - [`admission`]: caps on open HTTP connections, in all and per client.
//! - [`write_deadline`]: ends an HTTP connection whose peer stops taking
//!   our writes.
//! - [`http`]: one HTTP request → route → app → response.
//! - [`auth`]: JWT verification for secured routes.
//! - [`router`]: route patterns (`{name}`, `{name:int}`) and the route table.
//! - [`ws`]: the WebSocket upgrade, each connection's task, and the
//!   [`ConnectionRegistry`](ws::registry::ConnectionRegistry) that groups
//!   connections by concrete path.
//! - [`backplane`]: delivery across instances (Redis pub/sub), and
//!   cluster-wide `count`.
//! - [`runtime`]: wasmtime engine, the compile cache, loading components,
//!   host imports, and the app actor that runs each app's instance on its
//!   own thread.
//! - [`templates`]: pages apps render from their templates folder (minijinja).
//! - [`statics`]: each app's public folder, and the built-in `/js/frond.js`.
//! - [`layout`]: where an app's files live, and the rule that they stay
//!   inside its folder.
//! - [`apps`]: the serving apps and every change to them (load, swap,
//!   unload); the only writer of the route table; the startup banner.
//! - [`reload`]: watches the apps folder and feeds changed files to [`apps`].
//! - [`telemetry`]: the metrics the host records.
//! - [`admin`]: the admin listener: `/metrics`, `/health`, `/ready`.
//! - [`source_watch`]: `serve --watch`; rebuilds apps when their sources change.
//!
//! # Life of a WebSocket message
//!
//! A client's frame is read by its connection task ([`ws::connection`]),
//! which puts an event in its app's bounded mailbox. The app's actor thread
//! calls the guest's `on-websocket`; the guest calls `broadcast`, which
//! builds the frame once and queues it (by reference) on each recipient's
//! bounded outbox ([`ws::registry`]); each recipient's task writes it out.

pub mod admin;
pub mod admission;
pub mod apps;
pub mod auth;
pub mod backplane;
pub mod build;
pub mod cli;
pub mod config;
pub mod http;
pub mod inspect;
pub mod layout;
pub mod reload;
pub mod router;
pub mod runtime;
pub mod server;
pub mod source_watch;
pub mod statics;
pub mod telemetry;
pub mod templates;
pub mod write_deadline;
pub mod ws;
