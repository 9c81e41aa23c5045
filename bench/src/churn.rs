//! Churn: connect, receive the welcome, disconnect, a million times, on
//! the chat example, with the server's resident memory sampled along the
//! way. Whatever a connection leaves behind (in the registry, the rooms,
//! the metrics, the guest) shows as growth over the warm baseline. Nobody
//! scrapes the server's metrics meanwhile, as on a server without a
//! Prometheus; the guest's memory is read from the server's own gauge at
//! the end, so host growth is told apart from guest growth.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::host::{Host, component};
use crate::load::{connect, source};

/// Options of the churn scenario.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Connect/welcome/disconnect cycles in all.
    #[arg(
        id = "churn-cycles",
        long = "churn-cycles",
        default_value_t = 1_000_000
    )]
    pub cycles: u64,
    /// Cycles before the warm baseline is taken.
    #[arg(id = "churn-warmup", long = "churn-warmup", default_value_t = 20_000)]
    pub warmup: u64,
    /// Clients cycling at once, each in a room of its own.
    #[arg(id = "churn-clients", long = "churn-clients", default_value_t = 8)]
    pub clients: usize,
    /// Resident memory is reported this many times along the way.
    #[arg(id = "churn-samples", long = "churn-samples", default_value_t = 10)]
    pub samples: u64,
}

/// Loopback source addresses the cycles are spread over, so that no
/// source runs out of ephemeral ports while closed ones wait out TIME_WAIT.
const SOURCES: usize = 32;

/// One cycle: open, read the welcome, close and read to the end.
async fn cycle(addr: SocketAddr, room: &str, n: u64) -> anyhow::Result<()> {
    let mut ws = connect(addr, room, source(1, n as usize, SOURCES)).await?;
    match ws.next().await {
        Some(Ok(Message::Text(_))) => {}
        other => anyhow::bail!("no welcome: {other:?}"),
    }
    ws.close(None).await?;
    while let Some(Ok(_)) = ws.next().await {}
    Ok(())
}

/// Runs cycles from `clients` tasks until `done` reaches `until`.
async fn run_until(
    addr: SocketAddr,
    clients: usize,
    done: &Arc<AtomicU64>,
    until: u64,
) -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let done = done.clone();
            tokio::spawn(async move {
                let room = format!("/ws/room/churn{client}");
                loop {
                    let n = done.fetch_add(1, Ordering::Relaxed);
                    if n >= until {
                        done.fetch_sub(1, Ordering::Relaxed);
                        return anyhow::Ok(());
                    }
                    cycle(addr, &room, n).await?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// The chat app's guest memory, from the admin listener's metrics.
async fn guest_memory(server: &Host) -> anyhow::Result<u64> {
    let admin = server.admin.context("no admin listener")?;
    let mut stream = tokio::net::TcpStream::connect(admin).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    text.lines()
        .find_map(|l| l.strip_prefix("tina4_app_memory_bytes{app=\"chat\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .context("no tina4_app_memory_bytes for chat")
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let (dir, cache) = (root.path().join("apps"), root.path().join("cache"));
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(component("chat")?, dir.join("chat.wasm"))?;
    let server = Host::start(&dir, &cache, &[]).await?;
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    run_until(server.addr, options.clients, &done, options.warmup).await?;
    let warm = server.rss()?;
    println!(
        "Churn: connect, welcome, disconnect on the chat example, {} clients at once, {} cycles",
        options.clients, options.cycles
    );
    println!();
    println!("| cycles | server RSS | over warm | cycles/s |");
    println!("|---|---|---|---|");
    println!("| {} (warm) | {} | | |", options.warmup, mib(warm));
    let step = (options.cycles.saturating_sub(options.warmup) / options.samples.max(1)).max(1);
    let mut at = options.warmup;
    let mut last = (Instant::now(), at);
    while at < options.cycles {
        at = (at + step).min(options.cycles);
        run_until(server.addr, options.clients, &done, at).await?;
        let rss = server.rss()?;
        let rate = (at - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), at);
        let over = (rss as f64 - warm as f64) / f64::from(1 << 20);
        println!("| {at} | {} | {over:+.2} MiB | {rate:.0} |", mib(rss));
    }
    println!();
    // Read only now: a scrape also folds the metrics' queued samples, and
    // the run is meant to show a server nobody scrapes.
    println!(
        "{} cycles in {:.0} s; guest memory at the end: {}",
        options.cycles,
        started.elapsed().as_secs_f64(),
        mib(guest_memory(&server).await?)
    );
    println!();
    Ok(())
}
