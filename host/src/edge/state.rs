//! What every request handler of the edge shares.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admission::ConnectionCaps;
use super::auth::Authenticator;
use crate::config::{EdgePolicy, Limits, ServerNames};
use crate::delivery::Delivery;
use crate::runtime::SharedServing;

/// What every request handler shares.
pub(crate) struct ServerState {
    /// What is serving: every route of every app, and readiness; loaded
    /// once per request, so a request sees one consistent view.
    pub(crate) serving: SharedServing,
    /// Every open WebSocket connection, here and across instances.
    pub(crate) delivery: Arc<Delivery>,
    /// Size, time and queue limits.
    pub(crate) limits: Limits,
    /// WebSocket admission (origins, connection caps) and liveness.
    pub(crate) edge: EdgePolicy,
    /// The host names answered for apps that claim none.
    pub(crate) names: ServerNames,
    /// TLS on the public port, if it serves HTTPS.
    pub(crate) tls: Option<super::tls::Tls>,
    /// Development mode: `/` unserved shows the welcome page.
    pub(crate) dev: bool,
    /// Verifies tokens on secured routes.
    pub(crate) auth: Authenticator,
    /// Every connection task (HTTP and WebSocket), so shutdown can wait for
    /// in-flight requests and close handshakes.
    pub(crate) tasks: TaskTracker,
    /// Cancelled when the server starts shutting down.
    pub(crate) shutdown: CancellationToken,
    /// Open HTTP connections against their caps.
    pub(crate) http_connections: Arc<ConnectionCaps>,
    /// Request body bytes in flight, in KiB: the budget all requests share.
    pub(crate) body_budget: Arc<tokio::sync::Semaphore>,
}

/// The client address of a request, put in its extensions at accept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub std::net::SocketAddr);
