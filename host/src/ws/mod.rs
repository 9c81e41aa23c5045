//! WebSocket connections: the upgrade on the shared HTTP port, each
//! connection's task, and the registry that groups them by path.

pub mod connection;
mod rate;
pub mod registry;
pub mod upgrade;
