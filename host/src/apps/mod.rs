//! The apps: which component versions serve, and every change to them.
//!
//! This layer owns the decision of what serves: it loads, swaps and
//! unloads versions through the [`runtime`](crate::runtime), publishes the
//! [`Serving`](crate::runtime::Serving) snapshot, and closes connections a
//! change leaves without a route. It never touches a socket.
//!
//! - [`manager`]: the serving apps and the snapshot.
//! - [`reload`]: watches the apps folder and feeds changes to the manager.
//! - [`source_watch`]: `serve --watch`, rebuilding apps from their sources.

pub(crate) mod manager;
pub(crate) mod reload;
pub(crate) mod source_watch;

pub(crate) use manager::AppManager;

/// Where the host serves its built-in browser client; no app can take
/// this path.
pub(crate) const FROND_PATH: &str = "/js/frond.js";
