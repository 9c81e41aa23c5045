//! Echo: many clients, each sending a message and waiting for the reply
//! before the next (closed loop), against tina4-wasm's echo example and the
//! native baseline in the same run.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::host::Pair;
use crate::load::{Spent, connect_many, micros_per};
use crate::stats::{Summary, ms};

/// Options of the echo scenario.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Client counts, one run each (comma-separated).
    #[arg(
        long = "echo-clients",
        value_delimiter = ',',
        default_value = "100,1000"
    )]
    pub clients: Vec<usize>,
    /// Seconds each run lasts.
    #[arg(id = "echo-seconds", long = "echo-seconds", default_value_t = 5)]
    pub seconds: u64,
}

/// Round trips until `deadline`; their latencies.
pub async fn ping_until<S>(
    mut ws: WebSocketStream<S>,
    deadline: Instant,
) -> anyhow::Result<Vec<Duration>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut latencies = Vec::new();
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let sent = Instant::now();
        ws.send(Message::text(format!("ping {n}"))).await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(_))) => break,
                Some(Ok(_)) => continue,
                other => anyhow::bail!("echo connection lost: {other:?}"),
            }
        }
        latencies.push(sent.elapsed());
    }
    Ok(latencies)
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let pair = Pair::start(&["echo"]).await?;
    println!(
        "Echo: closed-loop round trips on `/ws/echo`, {} s per run",
        options.seconds
    );
    println!();
    println!(
        "| clients | server | round trips/s | p50 | p99 | server CPU per round trip | ÷ native (round trips/s) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &clients in &options.clients {
        let mut native_rate = None;
        let mut rows = Vec::new();
        for (name, server) in pair.each() {
            let sockets = connect_many(server.addr, "/ws/echo", clients, 4).await?;
            let spent = Spent::start(server)?;
            let deadline = Instant::now() + Duration::from_secs(options.seconds);
            let tasks: Vec<_> = sockets
                .into_iter()
                .map(|ws| tokio::spawn(ping_until(ws, deadline)))
                .collect();
            let mut latencies = Vec::new();
            for task in tasks {
                latencies.extend(task.await??);
            }
            let (cpu, wall) = spent.stop(server)?;
            let rate = latencies.len() as f64 / wall.as_secs_f64();
            if name == "native" {
                native_rate = Some(rate);
            }
            let n = latencies.len();
            rows.push((name, rate, Summary::of(latencies), micros_per(cpu, n)));
        }
        for (name, rate, summary, cpu) in rows {
            let ratio = native_rate.map_or(String::new(), |native| format!("{:.2}", rate / native));
            println!(
                "| {clients} | {name} | {rate:.0} | {} | {} | {cpu:.1} µs | {ratio} |",
                ms(summary.median),
                ms(summary.p99)
            );
        }
    }
    println!();
    Ok(())
}
