//! WebSocket connections at the edge: the upgrade on the shared HTTP port,
//! each connection's task, and its message rate.

pub(crate) mod connection;
mod rate;
pub(crate) mod upgrade;
