//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::ServeConfig;

/// Serve HTTP and WebSocket routes from sandboxed WebAssembly components.
///
/// Each `.wasm` file in the apps folder is one app: a component built
/// against the `tina4:wasm/handler` world that declares its own routes.
/// Settings also come from `TINA4_*` environment variables and from a
/// `.env` file in the working directory; flags win over both. Exit codes:
/// 0 success, 1 a `check` or `routes` that found problems, 2 bad
/// configuration or a failure to start.
#[derive(Debug, Parser)]
#[command(name = "tina4-wasm", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TINA4_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Log level or filter (e.g. `debug`, `info,tina4_wasm=debug`); default:
    /// RUST_LOG, else `info`.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load every app in a folder and serve its routes on one port.
    Serve(Box<ServeConfig>),
    /// List the apps in a folder and their routes, and any conflicts,
    /// without serving.
    Routes {
        /// The apps folder.
        #[arg(default_value = "apps")]
        dir: PathBuf,
    },
    /// Build an app's source folder (Rust, JavaScript or Python) into a
    /// component in the apps folder, installing the language's toolchain
    /// on first use, and precompile it for `serve`.
    Build(Box<crate::build::command::BuildArgs>),
    /// Check that a file is a component the host can serve, and say why
    /// not if it is not; with what loading it costs.
    Check {
        /// The component file.
        file: PathBuf,
        /// The compile cache to load from and store into
        /// [default: ~/.cache/tina4-wasm/components].
        #[arg(long, env = "TINA4_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
}
