//! WebSocket connections at the edge: the upgrade on the shared HTTP port,
//! each connection's task, how it ends, and its message rate.

pub(crate) mod connection;
mod ending;
pub(crate) mod rate;
pub(crate) mod upgrade;
