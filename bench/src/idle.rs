//! Idle connections: how much resident memory each open WebSocket costs
//! the server, for tina4-wasm and the native baseline in the same run.
//!
//! One process may hold at most ~19,900 sockets on these machines (the
//! per-process file limit is 20,000 and cannot be raised), and the load
//! generator is one process too, so a run opens up to that many per server,
//! from several loopback source addresses.

use std::time::Duration;

use anyhow::Context;

use crate::host::{Host, Pair, component};
use crate::load::{connect_many, connect_many_from};

/// Options of the idle scenario.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Connections held open per server.
    #[arg(
        id = "idle-connections",
        long = "idle-connections",
        default_value_t = 19_000
    )]
    pub connections: usize,
    /// Loopback source addresses to spread them over (127.0.0.1, .2, …).
    #[arg(id = "idle-sources", long = "idle-sources", default_value_t = 4)]
    pub sources: usize,
    /// Then: this many tina4-wasm instances joined by the Redis backplane,
    /// each holding `--idle-per-instance` connections from its own client
    /// process (0: skip).
    #[arg(id = "idle-instances", long = "idle-instances", default_value_t = 6)]
    pub instances: usize,
    /// Connections per instance in the cluster run.
    #[arg(
        id = "idle-per-instance",
        long = "idle-per-instance",
        default_value_t = 17_000
    )]
    pub per_instance: usize,
}

/// `tina4-bench hold`: opens connections and holds them until killed (a
/// client process of the cluster run, so no process exceeds its file limit).
#[derive(clap::Args, Clone)]
pub struct Hold {
    /// The server.
    #[arg(long)]
    addr: std::net::SocketAddr,
    /// Connections to open.
    #[arg(long)]
    count: usize,
    /// First loopback source address (127.0.0.N); four are used from there.
    #[arg(long)]
    first_source: u8,
}

/// Runs a holder: prints `held N` once every connection is open.
pub async fn hold(options: &Hold) -> anyhow::Result<()> {
    let held = connect_many_from(
        options.addr,
        "/ws/echo",
        options.count,
        options.first_source,
        4,
    )
    .await?;
    println!("held {}", held.len());
    std::future::pending::<()>().await;
    Ok(())
}

/// The cluster run: instances on one Redis, each with its own holder.
async fn run_cluster(options: &Options) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let redis = crate::backplane::Redis::start().await?;
    let root = tempfile::tempdir()?;
    let (apps, cache) = (root.path().join("apps"), root.path().join("cache"));
    std::fs::create_dir_all(&apps)?;
    std::fs::copy(component("echo")?, apps.join("echo.wasm"))?;
    let flags = [
        "--backplane",
        "redis",
        "--backplane-url",
        redis.url.as_str(),
        "--max-connections",
        "1000000",
    ];
    let mut hosts = Vec::new();
    for _ in 0..options.instances {
        hosts.push(Host::start(&apps, &cache, &flags).await?);
    }
    let mut before = 0;
    for host in &hosts {
        before += settled_rss(host).await?;
    }
    let mut holders = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["hold", "--addr", &host.addr.to_string()])
            .args(["--count", &options.per_instance.to_string()])
            .args(["--first-source", &(10 + 4 * i).to_string()])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        holders.push((child, BufReader::new(stdout).lines()));
    }
    let mut total = 0;
    for (_, lines) in &mut holders {
        let line = lines.next_line().await?.context("a holder exited")?;
        total += line
            .strip_prefix("held ")
            .and_then(|n| n.parse::<usize>().ok())
            .context("a holder's report")?;
    }
    let mut after = 0;
    for host in &hosts {
        after += settled_rss(host).await?;
    }
    println!(
        "Idle across {} tina4-wasm instances joined by the Redis backplane, one client process each",
        options.instances
    );
    println!();
    println!(
        "| instances | connections held | RSS of all instances before | after | per connection |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {total} | {:.1} MiB | {:.1} MiB | {:.2} KiB |",
        options.instances,
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / total as f64 / 1024.0
    );
    println!();
    drop(holders);
    Ok(())
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
    if options.instances > 0 {
        run_cluster(options).await?;
    }
    Ok(())
}
