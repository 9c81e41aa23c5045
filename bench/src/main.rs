//! `tina4-bench`: measures tina4-wasm on loopback against the real binary
//! and real components. Every scenario is bounded in count and time; see
//! BENCHMARKS.md for the results and the commands that produce them.
//!
//! - [`host`]: starting the host binary with a chosen set of apps.
//! - [`stats`]: percentiles and the result table.
//! - [`swap`]: hot-swap latency, cold and from the compile cache.
//! - [`backplane`]: delivery across instances through Redis, beside
//!   delivery within one.

mod backplane;
mod host;
mod stats;
mod swap;

use clap::{Parser, Subcommand};

/// Benchmarks of tina4-wasm (build first: `scripts/bench.sh` does).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Hot-swap latency: from a component file's close-after-write to the
    /// first reply from the new version, cold (compiled) and cached.
    Swap(swap::Options),
    /// Cross-instance delivery through the Redis backplane: latency,
    /// throughput and CPU per message, beside a single instance.
    Backplane(backplane::Options),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::Swap(options) => swap::run(options).await,
        Scenario::Backplane(options) => backplane::run(options).await,
    }
}
