//! Key-value storage through an app: clients of the probe test app (with a
//! storage grant) each set and get keys over their WebSocket, one request
//! at a time; beside them, the same clients making a plain round trip
//! through the app (`id`), in the same run. Latency per call as the
//! client sees it, calls per second, and server CPU per call.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::SinkExt;
use futures_util::stream::{self, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::backplane::Redis;
use crate::host::{Host, component};
use crate::load::{Socket, connect_many};
use crate::stats::{Summary, ms};

/// Options of the storage scenario.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Clients, each with one call in flight.
    #[arg(long = "storage-clients", default_value_t = 32)]
    pub clients: usize,
    /// Calls each client makes per kind.
    #[arg(long = "storage-calls", default_value_t = 200)]
    pub calls: usize,
    /// The store on a `redis-server` of its own (`--store redis`) instead
    /// of the embedded one.
    #[arg(long = "storage-redis")]
    pub redis: bool,
}

/// Spells the call client `c` makes the `i`th time.
type Spell<'a> = &'a dyn Fn(usize, usize) -> String;

/// Says `text` and waits for the answer; its latency.
async fn call(ws: &mut Socket, text: String) -> anyhow::Result<Duration> {
    let started = Instant::now();
    ws.send(Message::text(text)).await?;
    loop {
        match ws.next().await.context("the connection ended")?? {
            Message::Text(answer) => {
                anyhow::ensure!(!answer.starts_with("Err("), "refused: {answer}");
                return Ok(started.elapsed());
            }
            _ => continue,
        }
    }
}

/// Every client makes `calls` calls that `make(client, i)` spells; the
/// latencies, the wall time, and the server's CPU over them.
async fn run_kind(
    host: &Host,
    clients: &mut [Socket],
    calls: usize,
    make: impl Fn(usize, usize) -> String + Copy,
) -> anyhow::Result<(Vec<Duration>, Duration, Duration)> {
    let cpu = host.cpu_time()?;
    let started = Instant::now();
    let all = stream::iter(clients.iter_mut().enumerate())
        .map(|(c, ws)| async move {
            let mut took = Vec::with_capacity(calls);
            for i in 0..calls {
                took.push(call(ws, make(c, i)).await?);
            }
            anyhow::Ok(took)
        })
        .buffer_unordered(usize::MAX)
        .collect::<Vec<_>>()
        .await;
    let wall = started.elapsed();
    let cpu = host.cpu_time()?.saturating_sub(cpu);
    let mut latencies = Vec::new();
    for took in all {
        latencies.extend(took?);
    }
    Ok((latencies, wall, cpu))
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let apps = root.path().join("apps");
    std::fs::create_dir_all(&apps)?;
    std::fs::copy(component("probe")?, apps.join("probe.wasm"))?;
    std::fs::write(apps.join("probe.toml"), "[storage]\n")?;
    let data = root.path().join("data");
    let data = data.display().to_string();
    let redis = match options.redis {
        true => Some(Redis::start().await?),
        false => None,
    };
    let mut flags = vec!["--data-dir", &data, "--storage-max-keys", "1000000"];
    if let Some(redis) = &redis {
        flags.extend(["--store", "redis", "--store-url", &redis.url]);
    }
    let host = Host::start(&apps, &root.path().join("cache"), &flags).await?;
    let mut clients = connect_many(host.addr, "/ws/probe/storage", options.clients, 16).await?;
    let value = "v".repeat(100);
    println!(
        "Storage: {} clients, one call in flight each, {} calls each per kind; {}",
        options.clients,
        options.calls,
        if options.redis {
            "the store on Redis"
        } else {
            "embedded store (redb)"
        }
    );
    println!();
    println!("| call | calls/s | p50 | p99 | server CPU per call |");
    println!("|---|---|---|---|---|");
    let kinds: [(&str, Spell<'_>); 4] = [
        ("plain round trip (`id`)", &|_, _| "id".to_string()),
        ("set (100-byte value)", &|c, i| {
            format!("kv-set:k{c}:{i} {value}")
        }),
        ("get", &|c, i| format!("kv-get:k{c}:{i}")),
        ("increment", &|c, _| format!("kv-incr:n{c} 1")),
    ];
    for (name, make) in kinds {
        let (latencies, wall, cpu) = run_kind(&host, &mut clients, options.calls, make).await?;
        let n = latencies.len();
        let summary = Summary::of(latencies);
        println!(
            "| {name} | {:.0} | {} | {} | {:.1} µs |",
            n as f64 / wall.as_secs_f64(),
            ms(summary.median),
            ms(summary.p99),
            cpu.as_secs_f64() * 1e6 / n as f64
        );
    }
    println!();
    Ok(())
}
