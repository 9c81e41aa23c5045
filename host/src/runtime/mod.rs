//! The WebAssembly side: the wasmtime engine, loading app components,
//! instantiating them in a sandbox, and the actor that runs each app.
//!
//! The runtime sits below the apps layer and above delivery: it may reach
//! connections through [`Delivery`](crate::delivery::Delivery), and it
//! defines the [`Serving`] snapshot the apps layer publishes, but it never
//! touches a socket, and it never decides which apps serve.
//!
//! - [`engine`]: the shared engine and linker; starting a version.
//! - [`load`]: one version from its file, compiled and instantiated.
//! - [`sandbox`]: a fresh instance with the app's limits.
//! - [`exports`]: the app's exports, in any version of the contract.
//! - [`routes`]: route identity, targets, and the serving snapshot.
//! - [`actor`]: each app's mailbox and task, hot swap and hibernation.
//! - [`app_core`]: an app's instance, and running one event on it.
//! - [`run_to_end`]: a call that finishes even if its caller leaves.
//! - [`host`]: the host imports apps call.
//! - [`policy`]: an app's limits and grants, from its `<app>.toml`.
//! - [`cache`]: compiled components on disk.
//! - [`compiler`]: compiling components, in a child process for the server.
//! - [`templates`]: the template engine apps render through.
//! - [`timers`]: each app's timers, which outlive its instances.

pub(crate) mod actor;
mod app_core;
pub(crate) mod bindings;
pub(crate) mod cache;
pub(crate) mod compiler;
mod engine;
mod exports;
mod guest_output;
mod host;
mod limiter;
mod load;
pub(crate) mod policy;
mod routes;
mod run_to_end;
mod sandbox;
mod sleeps;
pub(crate) mod templates;
mod timers;
mod turns;

pub(crate) use self::actor::{AppHandle, EdgeSettings};
pub(crate) use self::app_core::AppCallError;
pub(crate) use self::engine::{Runtime, describe_guest_error};
pub(crate) use self::host::HostState;
pub(crate) use self::load::{LoadTimings, PreparedApp};
pub(crate) use self::routes::{
    DeclaredRoute, RouteKey, RouteTarget, Serving, SharedServing, history_rule, presence_app,
};
