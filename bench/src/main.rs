//! `tina4-bench`: measures tina4-wasm on loopback against the real binary
//! and real components, beside a native baseline server in the same run.
//! Every scenario is bounded in count and time; see BENCHMARKS.md for the
//! results and the commands that produce them.
//!
//! - [`host`]: starting tina4-wasm and the native baseline; CPU and RSS.
//! - [`native`]: the native baseline server (hyper + tokio-tungstenite).
//! - [`load`]: opening many client connections; CPU spent meanwhile.
//! - [`stats`]: percentiles and summaries.
//! - [`echo`], [`fanout`], [`idle`], [`http_load`], [`startup`]: the
//!   scenarios run by `all`; [`plot`] draws the fan-out plot.
//! - [`swap`]: hot-swap latency, cold and from the compile cache.
//! - [`neighbours`]: a bystander's latency while another client of the
//!   same app floods it.
//! - [`churn`]: a million connect/disconnect cycles; resident memory
//!   against the warm baseline.
//! - [`backplane`]: delivery across instances through Redis, beside
//!   delivery within one.
//! - [`languages`]: what an app costs in each guest language (size,
//!   compile, cached load, instantiate, CPU per event).
//! - [`density`]: thousands of hibernated apps in one process: memory per
//!   idle app, threads, time to wake.
//! - [`recovery`]: a client that missed 1,000 messages reconnects; the
//!   time to recover them. `fanout` also holds `sse` (event streams
//!   against WebSockets) and `history` (fan-out with and without it).

mod backplane;
mod churn;
mod density;
mod echo;
mod fanout;
mod host;
mod http_load;
mod idle;
mod languages;
mod load;
mod native;
mod neighbours;
mod outbound;
mod plot;
mod presence;
mod recovery;
mod startup;
mod stats;
mod storage;
mod swap;
mod tls;

use clap::{Parser, Subcommand};

/// Benchmarks of tina4-wasm (build first: `scripts/bench.sh` does).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// Every scenario's options, for `all`.
#[derive(clap::Args)]
struct All {
    #[command(flatten)]
    echo: echo::Options,
    #[command(flatten)]
    fanout: fanout::Options,
    #[command(flatten)]
    idle: idle::Options,
    #[command(flatten)]
    http: http_load::Options,
    #[command(flatten)]
    startup: startup::Options,
    #[command(flatten)]
    neighbours: neighbours::Options,
}

#[derive(Subcommand)]
enum Scenario {
    /// Every scenario below against the native baseline (echo, fan-out,
    /// idle, HTTP, startup, neighbours), with sizes as flags.
    All(All),
    /// Echo round trips at several client counts.
    Echo(echo::Options),
    /// One room, one sender: deliveries/s and latency by room size; draws the plot.
    Fanout(fanout::Options),
    /// Resident memory per idle connection.
    Idle(idle::Options),
    /// Requests/s and latency of a JSON route.
    Http(http_load::Options),
    /// Time to start with a warm compile cache.
    Startup(startup::Options),
    /// A bystander's latency while another client of the same app floods.
    Neighbours(neighbours::Options),
    /// A million connect/welcome/disconnect cycles: RSS against the warm baseline.
    Churn(churn::Options),
    /// Hot-swap latency: from a component file's close-after-write to the
    /// first reply from the new version, cold (compiled) and cached.
    Swap(swap::Options),
    /// Cross-instance delivery through the Redis backplane: latency,
    /// throughput and CPU per message, beside a single instance.
    Backplane(backplane::Options),
    /// The echo example in each guest language: build, size, compile,
    /// cached load, instantiate, restart, CPU per event.
    Languages(languages::Options),
    /// Thousands of idle apps in one process, hibernated: RSS per idle
    /// app, threads, and time to wake.
    Density(density::Options),
    /// TLS against plain: new connections per second with their
    /// handshakes, and wss:// echo against ws:// echo.
    Tls(tls::Options),
    /// One room, one WebSocket sender: event-stream listeners against
    /// WebSocket members, server CPU per delivery.
    Sse(fanout::Options),
    /// One room, one sender: a topic that keeps history against one that
    /// keeps none, server CPU per delivery.
    History(fanout::Options),
    /// A member that missed 1,000 messages reconnects: time to recover them.
    Recovery(recovery::Options),
    /// 10,000 members present on two instances: time to list them all,
    /// CPU per change, memory per member, and leaving when one dies.
    Presence(presence::Options),
    /// Key-value storage through an app: set, get and increment against a
    /// plain round trip, latency and CPU per call.
    Storage(storage::Options),
    /// Outbound HTTP through a guest against a native client: latency and
    /// CPU per request.
    Outbound(outbound::Options),
    /// Holds idle connections open (a client process of `idle`).
    #[command(hide = true)]
    Hold(idle::Hold),
    /// Runs the native baseline server (used by the scenarios).
    #[command(hide = true)]
    Native {
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The native baseline gets both cores' worth of workers, like the host.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.scenario {
            Scenario::All(all) => {
                echo::run(&all.echo).await?;
                fanout::run(&all.fanout).await?;
                idle::run(&all.idle).await?;
                http_load::run(&all.http).await?;
                startup::run(&all.startup).await?;
                neighbours::run(&all.neighbours).await
            }
            Scenario::Echo(options) => echo::run(&options).await,
            Scenario::Fanout(options) => fanout::run(&options).await,
            Scenario::Idle(options) => idle::run(&options).await,
            Scenario::Http(options) => http_load::run(&options).await,
            Scenario::Startup(options) => startup::run(&options).await,
            Scenario::Neighbours(options) => neighbours::run(&options).await,
            Scenario::Churn(options) => churn::run(&options).await,
            Scenario::Swap(options) => swap::run(options).await,
            Scenario::Backplane(options) => backplane::run(options).await,
            Scenario::Languages(options) => languages::run(&options).await,
            Scenario::Density(options) => density::run(&options).await,
            Scenario::Tls(options) => tls::run(&options).await,
            Scenario::Sse(options) => fanout::run_streams(&options).await,
            Scenario::History(options) => fanout::run_history(&options).await,
            Scenario::Recovery(options) => recovery::run(&options).await,
            Scenario::Presence(options) => presence::run(&options).await,
            Scenario::Storage(options) => storage::run(&options).await,
            Scenario::Outbound(options) => outbound::run(&options).await,
            Scenario::Native { port } => native::serve(port).await,
            Scenario::Hold(options) => idle::hold(&options).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_parses_with_its_defaults() {
        for scenario in [
            "all",
            "echo",
            "fanout",
            "idle",
            "http",
            "startup",
            "swap",
            "backplane",
            "languages",
            "neighbours",
            "churn",
            "density",
            "tls",
            "sse",
            "history",
            "recovery",
            "presence",
            "storage",
            "outbound",
        ] {
            if let Err(err) = Cli::try_parse_from(["tina4-bench", scenario]) {
                panic!("{scenario}: {err}");
            }
        }
    }
}
