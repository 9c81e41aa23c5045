//! Fan-out: one room (`/ws/broadcast/{topic}` of the echo example) of N
//! clients; one of them sends bursts of messages, everyone (the sender
//! included) receives every one. Deliveries per second, end-to-end latency
//! from send to receipt, and the server's CPU time per delivery, against
//! the native baseline in the same run.
//!
//! Bursts are smaller than a connection's outbox (1024), and the next
//! burst waits for every delivery of the last, so no client is ever evicted
//! as a slow consumer: this measures the server, not the client's backlog.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::net::{IpAddr, SocketAddr};

use futures_util::stream::{self, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::backplane::{Redis, wait_connected};
use crate::host::Pair;
use crate::load::{Socket, Spent, connect_many, micros_per, source};
use crate::plot::{self, Point};
use crate::stats::{Summary, ms};

/// Options of the fan-out scenario.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Room sizes (receivers, the sender included), one run each.
    #[arg(
        long = "fanout-sizes",
        value_delimiter = ',',
        default_value = "100,1000,3000,10000"
    )]
    pub sizes: Vec<usize>,
    /// Messages per burst (below the outbox capacity of 1024).
    #[arg(id = "fanout-burst", long = "fanout-burst", default_value_t = 32)]
    pub burst: usize,
    /// Bursts per run.
    #[arg(id = "fanout-bursts", long = "fanout-bursts", default_value_t = 20)]
    pub bursts: usize,
    /// Where to write the plot of latency and deliveries/s against room size.
    #[arg(
        id = "fanout-plot",
        long = "fanout-plot",
        default_value = "docs/fanout.svg"
    )]
    pub plot: PathBuf,
    /// A/B comparisons (`sse`, `history`) on a server with a Redis
    /// backplane (a `redis-server` of their own).
    #[arg(id = "fanout-redis", long = "fanout-redis")]
    pub redis: bool,
}

/// One run's figures.
pub struct Run {
    /// Room size.
    pub size: usize,
    /// Deliveries per second.
    pub rate: f64,
    /// Latency percentiles.
    pub summary: Summary,
    /// Server CPU per delivery, µs.
    pub cpu: f64,
    /// Deliveries that never arrived.
    pub lost: usize,
}

impl Run {
    /// What the plot draws of it.
    fn point(&self) -> Point {
        Point {
            size: self.size,
            median: self.summary.median,
            p99: self.summary.p99,
            rate: self.rate,
        }
    }
}

/// Shared by the receivers of one run.
struct Tally {
    /// When each message was sent, in ns after `epoch`.
    sent: Vec<AtomicU64>,
    /// The reference instant.
    epoch: Instant,
    /// Deliveries so far.
    delivered: AtomicUsize,
    /// Members that have heard a `sync` message: they are in the room.
    joined: AtomicUsize,
    /// Woken on every delivery that completes a burst.
    progress: Notify,
}

/// What one member has heard.
struct Member {
    /// The run's tally.
    tally: Arc<Tally>,
    /// Latency of each message heard.
    latencies: Vec<Duration>,
    /// Whether it has heard a `sync` (it is in the room).
    joined: bool,
}

impl Member {
    fn new(tally: Arc<Tally>, expected: usize) -> Self {
        Self {
            tally,
            latencies: Vec::with_capacity(expected),
            joined: false,
        }
    }

    /// Counts one message heard now.
    fn heard(&mut self, text: &str) {
        let now = Instant::now();
        let tally = &self.tally;
        if text == "sync" {
            if !self.joined {
                self.joined = true;
                tally.joined.fetch_add(1, Ordering::AcqRel);
                tally.progress.notify_one();
            }
            return;
        }
        let Some(seq) = text.strip_prefix("m").and_then(|n| n.parse::<usize>().ok()) else {
            return;
        };
        let sent = tally.epoch + Duration::from_nanos(tally.sent[seq].load(Ordering::Acquire));
        self.latencies.push(now.saturating_duration_since(sent));
        tally.delivered.fetch_add(1, Ordering::AcqRel);
        tally.progress.notify_one();
    }
}

/// A WebSocket member.
async fn receive(
    mut stream: SplitStream<Socket>,
    tally: Arc<Tally>,
    expected: usize,
) -> Vec<Duration> {
    let mut member = Member::new(tally, expected);
    while member.latencies.len() < expected {
        let Some(Ok(message)) = stream.next().await else {
            break;
        };
        if let Message::Text(text) = message {
            member.heard(text.as_str());
        }
    }
    member.latencies
}

/// An event-stream member: each `data:` line is one message (the chunked
/// framing between events is lines of its own, and ignored).
async fn receive_events(
    mut stream: BufReader<TcpStream>,
    tally: Arc<Tally>,
    expected: usize,
) -> Vec<Duration> {
    let mut member = Member::new(tally, expected);
    let mut line = String::new();
    while member.latencies.len() < expected {
        line.clear();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Some(text) = line.strip_prefix("data: ") {
            member.heard(text.trim_end());
        }
    }
    member.latencies
}

/// Opens an event stream on `path` from `from`, its response head read.
async fn open_stream(
    addr: SocketAddr,
    path: &str,
    from: IpAddr,
) -> anyhow::Result<BufReader<TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let mut stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut stream = BufReader::with_capacity(2048, stream);
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    anyhow::ensure!(
        line.starts_with("HTTP/1.1 200"),
        "opening the stream {path}: {line}"
    );
    while line != "\r\n" {
        line.clear();
        anyhow::ensure!(
            stream.read_line(&mut line).await? > 0,
            "the stream {path} ended in its head"
        );
    }
    Ok(stream)
}

/// The echo example's feed: every message to everyone on the topic.
const BROADCAST: &str = "/ws/broadcast";

/// The same feed, keeping each topic's last 1,000 messages.
const REPLAY: &str = "/ws/replay";

/// Who listens in a room besides the sender.
#[derive(Clone, Copy, PartialEq)]
enum Listeners {
    /// WebSocket connections.
    WebSockets,
    /// Event streams (Server-Sent Events) on the same path.
    EventStreams,
}

async fn run_one(
    server: &crate::host::Host,
    size: usize,
    options: &Options,
    listeners: Listeners,
    feed: &str,
) -> anyhow::Result<Run> {
    let topic = format!("{feed}/fanout-{size}-{}", std::process::id());
    let sockets = if listeners == Listeners::WebSockets {
        size
    } else {
        1
    };
    let mut sockets = connect_many(server.addr, &topic, sockets, 4).await?;
    let streams: Vec<_> = if listeners == Listeners::EventStreams {
        stream::iter(0..size - 1)
            .map(|i| open_stream(server.addr, &topic, source(1, i, 4)))
            .buffer_unordered(256)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?
    } else {
        Vec::new()
    };
    let total = options.burst * options.bursts;
    let tally = Arc::new(Tally {
        sent: (0..total).map(|_| AtomicU64::new(0)).collect(),
        epoch: Instant::now(),
        delivered: AtomicUsize::new(0),
        joined: AtomicUsize::new(0),
        progress: Notify::new(),
    });
    let sender = sockets.pop().expect("a room of at least one");
    let (mut sink, own) = sender.split();
    let mut tasks = vec![tokio::spawn(receive(own, tally.clone(), total))];
    for socket in sockets {
        let (_, stream) = socket.split();
        tasks.push(tokio::spawn(receive(stream, tally.clone(), total)));
    }
    for stream in streams {
        tasks.push(tokio::spawn(receive_events(stream, tally.clone(), total)));
    }
    // A handshake's answer can come before the member joins the room (on
    // tina4-wasm, at its `open` event): sync until everyone hears.
    // At most one sync per 50 ms: each goes to every member already in,
    // and one per member that joins would flood their outboxes.
    let all_joined = || tally.joined.load(Ordering::Acquire) >= size;
    let joining = tokio::time::timeout(Duration::from_secs(30), async {
        while !all_joined() {
            sink.send(Message::text("sync")).await?;
            let next = tokio::time::Instant::now() + Duration::from_millis(50);
            let _ = tokio::time::timeout_at(next, async {
                while !all_joined() {
                    tally.progress.notified().await;
                }
            })
            .await;
        }
        anyhow::Ok(())
    })
    .await;
    anyhow::ensure!(
        matches!(joining, Ok(Ok(()))),
        "not every client joined the room"
    );
    let spent = Spent::start(server)?;
    let mut lost = 0;
    for burst in 0..options.bursts {
        for i in 0..options.burst {
            let seq = burst * options.burst + i;
            let at = tally.epoch.elapsed().as_nanos() as u64;
            tally.sent[seq].store(at, Ordering::Release);
            sink.feed(Message::text(format!("m{seq}"))).await?;
        }
        sink.flush().await?;
        let target = (burst + 1) * options.burst * size;
        let arrived = tokio::time::timeout(Duration::from_secs(20), async {
            while tally.delivered.load(Ordering::Acquire) < target {
                tally.progress.notified().await;
            }
        })
        .await;
        if arrived.is_err() {
            lost = target - tally.delivered.load(Ordering::Acquire);
            break;
        }
    }
    let (cpu, wall) = spent.stop(server)?;
    drop(sink);
    // Every member returns once it has all its messages; only after a
    // loss do some wait for ever. (Aborting the rest at once would cancel
    // members that counted their last delivery but had not yet returned.)
    let mut latencies = Vec::new();
    for task in tasks {
        if lost > 0 {
            task.abort();
        }
        if let Ok(samples) = task.await {
            latencies.extend(samples);
        }
    }
    anyhow::ensure!(
        !latencies.is_empty(),
        "no member of the room of {size} heard a message ({lost} lost)"
    );
    let delivered = tally.delivered.load(Ordering::Acquire);
    Ok(Run {
        size,
        rate: delivered as f64 / wall.as_secs_f64(),
        summary: Summary::of(latencies),
        cpu: micros_per(cpu, delivered),
        lost,
    })
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let pair = Pair::start(&["echo"]).await?;
    println!(
        "Fan-out: one room, one sender, {} bursts of {} messages; every member (the sender included) receives every message",
        options.bursts, options.burst
    );
    println!();
    println!(
        "| room size | server | deliveries/s | p50 | p99 | server CPU per delivery | lost | ÷ native (deliveries/s) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut runs: Vec<(&str, Vec<Point>)> =
        vec![("tina4-wasm", Vec::new()), ("native", Vec::new())];
    for &size in &options.sizes {
        let tina4 = run_one(&pair.tina4, size, options, Listeners::WebSockets, BROADCAST).await?;
        let native = run_one(
            &pair.native,
            size,
            options,
            Listeners::WebSockets,
            BROADCAST,
        )
        .await?;
        for (name, run) in [("tina4-wasm", &tina4), ("native", &native)] {
            println!(
                "| {size} | {name} | {:.0} | {} | {} | {:.2} µs | {} | {:.2} |",
                run.rate,
                ms(run.summary.median),
                ms(run.summary.p99),
                run.cpu,
                run.lost,
                run.rate / native.rate
            );
        }
        runs[0].1.push(tina4.point());
        runs[1].1.push(native.point());
    }
    println!();
    plot::fanout(&options.plot, &runs)?;
    println!("(plot: {})", options.plot.display());
    println!();
    Ok(())
}

/// One side of an A/B fan-out comparison on one server.
struct Side {
    /// Its name in the table.
    name: &'static str,
    /// Who listens besides the sender.
    listeners: Listeners,
    /// The echo example's feed it uses.
    feed: &'static str,
}

/// Runs rooms of every size on `base` then `other`, on one tina4-wasm
/// serving the echo example, and prints their figures with `other`'s CPU
/// per delivery as a ratio to `base`'s.
async fn compare(options: &Options, column: &str, base: Side, other: Side) -> anyhow::Result<()> {
    let redis = match options.redis {
        true => Some(Redis::start().await?),
        false => None,
    };
    let pair = match &redis {
        Some(redis) => {
            let flags = ["--backplane", "redis", "--backplane-url", &redis.url];
            let pair = Pair::start_with(&["echo"], &flags).await?;
            wait_connected(&pair.tina4).await?;
            println!("(with a Redis backplane)");
            pair
        }
        None => Pair::start(&["echo"]).await?,
    };
    let host = &pair.tina4;
    println!(
        "| room size | {column} | deliveries/s | p50 | p99 | server CPU per delivery | lost | ÷ {} (CPU per delivery) |",
        base.name
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &size in &options.sizes {
        let first = run_one(host, size, options, base.listeners, base.feed).await?;
        let second = run_one(host, size, options, other.listeners, other.feed).await?;
        for (name, run) in [(base.name, &first), (other.name, &second)] {
            println!(
                "| {size} | {name} | {:.0} | {} | {} | {:.2} µs | {} | {:.2} |",
                run.rate,
                ms(run.summary.median),
                ms(run.summary.p99),
                run.cpu,
                run.lost,
                run.cpu / first.cpu
            );
        }
    }
    println!();
    Ok(())
}

/// Event-stream listeners against WebSocket members, in rooms of the same
/// size on the same server: the cost of a delivery to each.
pub async fn run_streams(options: &Options) -> anyhow::Result<()> {
    println!(
        "SSE fan-out: one room, one WebSocket sender, {} bursts of {} messages; the other members are event streams, or WebSockets, on one tina4-wasm",
        options.bursts, options.burst
    );
    println!();
    let sockets = Side {
        name: "WebSocket",
        listeners: Listeners::WebSockets,
        feed: BROADCAST,
    };
    let streams = Side {
        name: "SSE",
        listeners: Listeners::EventStreams,
        feed: BROADCAST,
    };
    compare(options, "listeners", sockets, streams).await
}

/// Fan-out to WebSocket members of a topic that keeps history against one
/// that keeps none, on the same server: what numbering and keeping each
/// message costs per delivery.
pub async fn run_history(options: &Options) -> anyhow::Result<()> {
    println!(
        "History on fan-out: one room, one sender, {} bursts of {} messages, on a topic that keeps none and one that keeps its last 1,000",
        options.bursts, options.burst
    );
    println!();
    let plain = Side {
        name: "no history",
        listeners: Listeners::WebSockets,
        feed: BROADCAST,
    };
    let kept = Side {
        name: "history",
        listeners: Listeners::WebSockets,
        feed: REPLAY,
    };
    compare(options, "topic", plain, kept).await
}
