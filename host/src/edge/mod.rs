//! The edge: everything that speaks to clients. Accepting connections,
//! TLS, HTTP requests, statics, tokens, the admin listener, admission
//! caps, write deadlines, the development welcome page, the WebSocket
//! upgrade and connection tasks, and Server-Sent Events streams.
//!
//! The edge owns the sockets. It reads the published
//! [`Serving`](crate::runtime::Serving) snapshot to route, hands events to
//! apps through their [`RouteTarget`](crate::runtime::RouteTarget), and
//! admits connections into [`delivery`](crate::delivery); it never changes
//! which apps serve, and nothing below it imports it.

pub(crate) mod accept;
pub(crate) mod admin;
pub(crate) mod admission;
pub(crate) mod auth;
pub(crate) mod compress;
pub(crate) mod http;
pub(crate) mod http_conn;
pub(crate) mod join;
pub(crate) mod redirect;
pub(crate) mod response;
pub(crate) mod sse;
pub(crate) mod state;
pub(crate) mod statics;
pub(crate) mod tls;
pub(crate) mod welcome;
pub(crate) mod write_deadline;
pub(crate) mod ws;
