//! tina4-wasm: serve HTTP and WebSocket routes from sandboxed WebAssembly
//! components.
//!
//! The host owns the sockets and the registry of WebSocket connections; apps
//! are components built against the `tina4:wasm/handler` world (see `wit/`)
//! that declare their routes, answer HTTP requests, and react to WebSocket
//! events by calling back into the host (`send`, `broadcast`, `close`,
//! `count`, `push`).
//!
//! # Layers
//!
//! Imports flow one way, from the edge down to delivery; each layer may use
//! the ones below it and the leaves, never one above:
//!
//! ```text
//!   server        wires the layers; `serve`
//!     │
//!   edge/         sockets and clients: accept, HTTP, statics, tokens,
//!     │           admin, the WebSocket upgrade and connection tasks
//!   apps/         which versions serve: load, swap, unload, reload, watch
//!     │
//!   runtime/      wasmtime: engine, load, sandbox, actor, host imports
//!     │
//!   delivery/     connections, rooms, their lifecycle, close codes, and
//!                 the Redis backplane
//!
//!   leaves        config, router, telemetry, app_files, bundle, hex,
//!                 storage, outbound
//! ```
//!
//! The commands beside `serve` sit on top: [`cli`] parses and dispatches,
//! [`inspect`] loads apps without serving (`routes`, `check`), and
//! [`build`] turns an app's sources into a component.
//!
//! # Map of the crate
//!
//! - [`server`]: builds every layer from the configuration, loads the
//!   apps, serves a listener until shutdown.
//! - [`edge`]: [`accept`](edge::accept) (caps, socket options, shutdown),
//!   [`tls`](edge::tls) (certificates, reloaded),
//!   [`http_conn`](edge::http_conn) (HTTP/1.1 or HTTP/2 on a connection,
//!   its limits), [`redirect`](edge::redirect) (the plain port to HTTPS),
//!   [`http`](edge::http) (request → route → app → response),
//!   [`compress`](edge::compress) (brotli, gzip),
//!   [`statics`](edge::statics), [`auth`](edge::auth) (JWT),
//!   [`admin`](edge::admin) (`/metrics`, `/health`, `/ready`),
//!   [`admission`](edge::admission) (HTTP connection caps),
//!   [`write_deadline`](edge::write_deadline),
//!   [`join`](edge::join) (a client joining a path group),
//!   [`sse`](edge::sse) (event streams), and [`ws`](edge::ws): the
//!   upgrade, each connection's task and its message rate.
//! - [`apps`]: the [`AppManager`](apps::AppManager), the only writer of
//!   the published [`Serving`](runtime::Serving) snapshot;
//!   [`reload`](apps::reload) (the apps folder) and
//!   [`source_watch`](apps::source_watch) (`serve --watch`).
//! - [`runtime`]: the engine, the compile cache, loading a version, the
//!   sandbox, the host imports, and the actor that runs each app.
//! - [`delivery`]: the [`ConnectionRegistry`](delivery::ConnectionRegistry)
//!   and each connection's [`Membership`](delivery::Membership), and the
//!   [`Delivery`](delivery::Delivery) that reaches other instances.
//! - [`config`]: settings for `serve`, from flags, `TINA4_*` env and `.env`.
//! - [`router`]: route patterns (`{name}`, `{name:int}`) and the route table.
//! - [`telemetry`]: the metrics the host records.
//! - [`app_files`]: where an app's files live, and the rule that they stay
//!   inside its folder.
//! - [`bundle`]: an app's templates and public files packed into its
//!   component (one file per version).
//!
//! # Life of a WebSocket message
//!
//! A client's frame is read by its connection task ([`edge::ws`]), which
//! puts an event in its app's bounded mailbox. The app's actor calls the
//! guest's `on-websocket`; the guest calls `broadcast`, which builds the
//! frame once and queues it (by reference) on each recipient's bounded
//! outbox ([`delivery`]); each recipient's task writes it out.

mod app_files;
mod apps;
mod build;
mod bundle;
mod cli;
mod config;
mod delivery;
mod edge;
mod hex;
mod inspect;
mod outbound;
mod router;
mod runtime;
mod server;
mod storage;
mod telemetry;

pub use cli::run;
