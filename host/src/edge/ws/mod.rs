//! WebSocket connections at the edge: the upgrade on the shared HTTP port,
//! each connection's task, and its message rate.

pub(crate) mod connection;
pub(crate) mod rate;
pub(crate) mod upgrade;
