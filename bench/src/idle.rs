//! Idle connections: how much resident memory each open WebSocket costs
//! the server, for tina4-wasm and the native baseline in the same run.
//!
//! One process may hold at most ~19,900 sockets on these machines (the
//! per-process file limit is 20,000 and cannot be raised), and the load
//! generator is one process too, so a run opens up to that many per server,
//! from several loopback source addresses.

use std::time::Duration;

use crate::host::{Host, Pair};
use crate::load::connect_many;

/// Options of the idle scenario.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Connections held open per server.
    #[arg(long = "idle-connections", default_value_t = 19_000)]
    pub connections: usize,
    /// Loopback source addresses to spread them over (127.0.0.1, .2, …).
    #[arg(long = "idle-sources", default_value_t = 4)]
    pub sources: usize,
}

/// Resident memory once it has settled (two equal readings 200 ms apart).
async fn settled_rss(server: &Host) -> anyhow::Result<u64> {
    let mut last = server.rss()?;
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = server.rss()?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(last)
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let pair = Pair::start(&["echo"]).await?;
    println!(
        "Idle: {} WebSocket connections held open on `/ws/echo` from {} source addresses; server RSS (VmRSS) before and after",
        options.connections, options.sources
    );
    println!();
    println!(
        "| server | RSS before | RSS with connections | per connection | ÷ native (per connection) |"
    );
    println!("|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (name, server) in pair.each() {
        // A few connections first, so the allocator and runtime are warm.
        let warm = connect_many(server.addr, "/ws/echo", 100, 1).await?;
        let before = settled_rss(server).await?;
        let held = connect_many(
            server.addr,
            "/ws/echo",
            options.connections,
            options.sources,
        )
        .await?;
        let after = settled_rss(server).await?;
        let per = (after.saturating_sub(before)) as f64 / options.connections as f64;
        rows.push((name, before, after, per));
        drop(held);
        drop(warm);
    }
    let native = rows[1].3;
    for (name, before, after, per) in rows {
        println!(
            "| {name} | {:.1} MiB | {:.1} MiB | {:.2} KiB | {:.2} |",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            per / 1024.0,
            per / native
        );
    }
    println!();
    Ok(())
}
