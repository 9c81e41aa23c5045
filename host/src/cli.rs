//! The command line.

use clap::{Parser, Subcommand};

use crate::config::ServeConfig;

/// Serve HTTP and WebSocket routes from sandboxed WebAssembly components.
///
/// Each `.wasm` file in the apps folder is one app: a component built
/// against the `tina4:wasm/handler` world that declares its own routes.
/// Settings also come from `TINA4_*` environment variables and from a
/// `.env` file in the working directory; flags win over both.
#[derive(Debug, Parser)]
#[command(name = "tina4-wasm", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load every app in a folder and serve its routes on one port.
    Serve(ServeConfig),
}
