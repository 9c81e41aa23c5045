//! Cross-instance delivery through the Redis backplane, beside delivery
//! within one instance, in the same run.
//!
//! One sender in a chat room (the chat example) sends at a steady rate;
//! receivers in the room measure each message's latency from the moment it
//! was sent. First on a single instance without a backplane (sender and
//! receiver on it), then on three instances sharing a `redis-server`: the
//! sender and one receiver on A, one receiver on B, and on C a connection in
//! another room only, to show what an uninvolved instance pays. Each
//! host's CPU time (from /proc) is divided by the messages sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::host::{Host, component, cpu_time};
use crate::stats::{Summary, ms};

/// Options of the backplane scenario.
#[derive(clap::Args)]
pub struct Options {
    /// Messages per second the sender offers (comma-separated for several runs).
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    rates: Vec<u32>,
    /// Seconds each run sends for.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// When each message was sent, in nanoseconds after `epoch`.
struct SendTimes {
    /// The reference instant.
    epoch: Instant,
    /// One slot per message sequence number.
    sent: Vec<AtomicU64>,
}

/// What one receiver saw.
struct Receipt {
    /// Latency of each message it received.
    latencies: Vec<Duration>,
    /// When it received its last message.
    last: Option<Instant>,
}

/// A `redis-server` on a free loopback port, killed when dropped.
pub struct Redis {
    /// The process.
    child: Child,
    /// `redis://127.0.0.1:<port>`.
    pub url: String,
}

impl Redis {
    pub async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (scripts/bench.sh installs it)")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        while let Some(line) = lines.next_line().await? {
            if line.contains("Ready to accept connections") {
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return Ok(Self {
                    child,
                    url: format!("redis://127.0.0.1:{port}"),
                });
            }
        }
        bail!("redis-server exited before it was ready")
    }

    fn cpu_time(&self) -> anyhow::Result<Duration> {
        cpu_time(self.child.id().context("redis-server has exited")?)
    }
}

/// Waits until the host's `/ready` says its backplane is connected.
pub async fn wait_connected(host: &Host) -> anyhow::Result<()> {
    let admin = host.admin.context("no admin listener")?;
    let started = Instant::now();
    loop {
        let mut stream = TcpStream::connect(admin).await?;
        stream
            .write_all(b"GET /ready HTTP/1.0\r\nHost: bench\r\n\r\n")
            .await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        if answer.contains("redis: connected") {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("the backplane did not connect: {answer}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Joins chat room `room` on `host`; returns the socket after its welcome.
async fn join(host: &Host, room: &str) -> anyhow::Result<Socket> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws/room/{room}", host.addr)).await?;
    // The welcome: the room is joined (and, with a backplane, subscribed).
    ws.next().await.context("no welcome")??;
    Ok(ws)
}

/// Reads chat messages until `expected` arrived or `deadline`.
async fn receive(
    mut stream: SplitStream<Socket>,
    expected: usize,
    times: Arc<SendTimes>,
    deadline: Instant,
) -> Receipt {
    let mut receipt = Receipt {
        latencies: Vec::with_capacity(expected),
        last: None,
    };
    while receipt.latencies.len() < expected {
        let next = tokio::time::timeout_at(deadline.into(), stream.next()).await;
        let Ok(Some(Ok(Message::Text(text)))) = next else {
            if matches!(next, Ok(Some(Ok(_)))) {
                continue;
            }
            break;
        };
        let now = Instant::now();
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let Some(seq) = message["text"]
            .as_str()
            .and_then(|t| t.parse::<usize>().ok())
        else {
            continue; // a join notice
        };
        let sent = times.sent[seq].load(Ordering::Acquire);
        let sent_at = times.epoch + Duration::from_nanos(sent);
        receipt
            .latencies
            .push(now.saturating_duration_since(sent_at));
        receipt.last = Some(now);
    }
    receipt
}

/// Sends `total` chat messages at `rate` per second, in 1 ms steps.
async fn send_paced(
    sender: &mut futures_util::stream::SplitSink<Socket, Message>,
    total: usize,
    rate: u32,
    times: &SendTimes,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * f64::from(rate)) as usize).min(total);
        while sent < due {
            let text = json!({"type": "chat", "text": sent.to_string()}).to_string();
            let at = times.epoch.elapsed().as_nanos() as u64;
            times.sent[sent].store(at, Ordering::Release);
            sender.feed(Message::text(text)).await?;
            sent += 1;
        }
        sender.flush().await?;
    }
    Ok(())
}

/// One measured run: `sender` sends, every socket in `receivers` listens.
async fn run_once(
    sender: Socket,
    receivers: Vec<(&'static str, Socket)>,
    rate: u32,
    seconds: u32,
) -> anyhow::Result<Vec<(&'static str, Receipt, Duration)>> {
    let total = (rate * seconds) as usize;
    let times = Arc::new(SendTimes {
        epoch: Instant::now(),
        sent: (0..total).map(|_| AtomicU64::new(0)).collect(),
    });
    let deadline = Instant::now() + Duration::from_secs(u64::from(seconds) + 10);
    let (mut sink, own_copies) = sender.split();
    // The sender hears its own messages too; drain them.
    let drain = tokio::spawn(receive(own_copies, total, times.clone(), deadline));
    let mut tasks = Vec::new();
    for (name, socket) in receivers {
        let (_, stream) = socket.split();
        tasks.push((
            name,
            tokio::spawn(receive(stream, total, times.clone(), deadline)),
        ));
    }
    let started = Instant::now();
    send_paced(&mut sink, total, rate, &times).await?;
    let mut out = Vec::new();
    for (name, task) in tasks {
        let receipt = task.await?;
        let span = receipt.last.map_or(Duration::ZERO, |last| last - started);
        out.push((name, receipt, span));
    }
    drain.await?;
    Ok(out)
}

fn report(setup: &str, rate: u32, total: usize, results: &[(&'static str, Receipt, Duration)]) {
    for (name, receipt, span) in results {
        let delivered = receipt.latencies.len();
        let per_second = delivered as f64 / span.as_secs_f64().max(f64::MIN_POSITIVE);
        let summary = Summary::of(receipt.latencies.clone());
        println!(
            "| {setup} | {name} | {rate} | {delivered}/{total} | {per_second:.0} | {} | {} | {} |",
            ms(summary.median),
            ms(summary.p99),
            ms(summary.max)
        );
    }
}

fn cpu_line(setup: &str, rate: u32, name: &str, used: Duration, messages: usize) {
    println!(
        "| {setup} | {rate} | {name} | {:.0} ms | {:.1} µs |",
        used.as_secs_f64() * 1000.0,
        used.as_secs_f64() * 1e6 / messages as f64
    );
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let (apps, cache) = (root.path().join("apps"), root.path().join("cache"));
    std::fs::create_dir_all(&apps)?;
    std::fs::copy(component("chat")?, apps.join("chat.wasm"))?;
    let redis = Redis::start().await?;
    let cluster = [
        "--backplane",
        "redis",
        "--backplane-url",
        redis.url.as_str(),
    ];

    let mut latency = Vec::new();
    let mut cpu = Vec::new();
    for &rate in &options.rates {
        let total = (rate * options.seconds) as usize;
        let room = format!("bench{rate}");

        // One instance, no backplane.
        let single = Host::start(&apps, &cache, &[]).await?;
        let sender = join(&single, &room).await?;
        let receiver = join(&single, &room).await?;
        let before = single.cpu_time()?;
        let results = run_once(
            sender,
            vec![("same instance", receiver)],
            rate,
            options.seconds,
        )
        .await?;
        cpu.push((
            "single instance",
            rate,
            "host",
            single.cpu_time()? - before,
            total,
        ));
        latency.push(("single instance, no backplane", rate, total, results));
        drop(single);

        // Three instances on Redis.
        let (a, b, c) = tokio::try_join!(
            Host::start(&apps, &cache, &cluster),
            Host::start(&apps, &cache, &cluster),
            Host::start(&apps, &cache, &cluster),
        )?;
        tokio::try_join!(wait_connected(&a), wait_connected(&b), wait_connected(&c))?;
        let sender = join(&a, &room).await?;
        let near = join(&a, &room).await?;
        let far = join(&b, &room).await?;
        let _elsewhere = join(&c, "elsewhere").await?;
        let before = [
            a.cpu_time()?,
            b.cpu_time()?,
            c.cpu_time()?,
            redis.cpu_time()?,
        ];
        let results = run_once(
            sender,
            vec![("A (sender's instance)", near), ("B (other instance)", far)],
            rate,
            options.seconds,
        )
        .await?;
        let after = [
            a.cpu_time()?,
            b.cpu_time()?,
            c.cpu_time()?,
            redis.cpu_time()?,
        ];
        for (i, name) in [
            "A (sender, 1 listener)",
            "B (1 listener)",
            "C (no listener in the room)",
            "redis-server",
        ]
        .into_iter()
        .enumerate()
        {
            cpu.push((
                "3 instances + Redis",
                rate,
                name,
                after[i] - before[i],
                total,
            ));
        }
        latency.push(("3 instances + Redis", rate, total, results));
    }

    println!(
        "Chat room, one sender at a steady rate for {} s; latency from send to receipt",
        options.seconds
    );
    println!();
    println!(
        "| setup | receiver | offered msg/s | delivered | delivered msg/s | p50 | p99 | max |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (setup, rate, total, results) in &latency {
        report(setup, *rate, *total, results);
    }
    println!();
    println!("| setup | offered msg/s | process | CPU time | per message sent |");
    println!("|---|---|---|---|---|");
    for (setup, rate, name, used, messages) in cpu {
        cpu_line(setup, rate, name, used, messages);
    }
    Ok(())
}
