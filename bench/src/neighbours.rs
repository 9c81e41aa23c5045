//! Neighbours: what one flooding client does to the latency of another
//! client of the same app. A bystander pings every 2 ms (well within the
//! rate limit), first alone, then beside a flooder, on tina4-wasm and the native baseline in
//! the same run. Two floods:
//!
//! - **unlimited**: the server's message rate limit off, the flooder keeps
//!   a window of messages in flight. The app takes turns between
//!   connections, so the bystander waits behind at most one of the
//!   flooder's events; what is left is the two cores the flood shares.
//! - **rate-limited**: the server's default rate (1000 messages/s per
//!   connection) with the `drop` and `wait` policies, the flooder sending
//!   as fast as its socket takes. With `drop` the server still reads (and
//!   drops) everything; with `wait` it reads the flooder no faster than
//!   its rate, and TCP slows the flooder down. (With the default `close`
//!   policy the flooder is simply gone after its burst.) The native
//!   baseline has no limit.
//!
//! - **spinning guest**: another app on the same server (the hostile test
//!   app) whose every event spins until its CPU deadline kills it, one
//!   after another for the whole run. Its calls yield at every epoch tick,
//!   so it holds one worker for a tick at a time. tina4-wasm only: the
//!   native baseline runs no guests.
//!
//! The target: a bystander p99 within 2× of its idle p99.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::host::{Host, Pair};
use crate::load::{Socket, Spent, connect, source};
use crate::stats::{Summary, ms};

/// Options of the neighbours scenario.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Seconds the bystander pings, alone and beside each flood.
    #[arg(
        id = "neighbours-seconds",
        long = "neighbours-seconds",
        default_value_t = 5
    )]
    pub seconds: u64,
    /// Messages the unlimited flooder sends ahead of its replies.
    #[arg(
        id = "neighbours-window",
        long = "neighbours-window",
        default_value_t = 256
    )]
    pub window: usize,
}

/// How often the bystander pings: a client well within the rate limit.
const PING_EVERY: Duration = Duration::from_millis(2);

/// Round trips of the bystander, one every [`PING_EVERY`], until `deadline`.
async fn pings(ws: &mut Socket, deadline: Instant) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    let mut every = tokio::time::interval(PING_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        every.tick().await;
        let sent = Instant::now();
        ws.send(Message::text("ping")).await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(_))) => break,
                Some(Ok(_)) => continue,
                other => anyhow::bail!("bystander connection lost: {other:?}"),
            }
        }
        latencies.push(sent.elapsed());
    }
    Ok(latencies)
}

/// A client that sends until stopped, and counts its replies.
struct Flooder {
    /// Set to stop it.
    stop: Arc<AtomicBool>,
    /// Messages sent.
    sent: Arc<AtomicU64>,
    /// Replies received.
    replies: Arc<AtomicU64>,
    /// Its sending and reading halves.
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Flooder {
    /// Sends ahead of its replies by at most `window` messages, or (with
    /// `None`) as fast as the socket takes them.
    fn start(ws: Socket, window: Option<usize>) -> Self {
        let (mut sink, mut stream) = ws.split();
        let stop = Arc::new(AtomicBool::new(false));
        let (sent, replies) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let credit = Arc::new(Semaphore::new(window.unwrap_or(Semaphore::MAX_PERMITS)));
        let sender = {
            let (stop, sent, credit) = (stop.clone(), sent.clone(), credit.clone());
            tokio::spawn(async move {
                let payload = "flood ".repeat(16);
                while !stop.load(Ordering::Relaxed) {
                    if window.is_some() {
                        credit.acquire().await?.forget();
                    }
                    sink.send(Message::text(payload.clone())).await?;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(window) = window {
                    // Every message answered, then a clean close.
                    let _ = credit.acquire_many(window as u32).await?;
                }
                sink.close().await?;
                Ok(())
            })
        };
        let reader = {
            let (replies, stop) = (replies.clone(), stop.clone());
            tokio::spawn(async move {
                while let Some(message) = stream.next().await {
                    match message {
                        Ok(Message::Text(_)) => {
                            replies.fetch_add(1, Ordering::Relaxed);
                            if window.is_some() {
                                credit.add_permits(1);
                            }
                        }
                        Ok(_) => {}
                        // The native baseline skips the closing handshake.
                        Err(_) if stop.load(Ordering::Relaxed) => break,
                        Err(err) => return Err(err.into()),
                    }
                }
                Ok(())
            })
        };
        Self {
            stop,
            sent,
            replies,
            tasks: vec![sender, reader],
        }
    }

    /// (Messages handed to the socket, replies received) so far.
    fn counts(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.replies.load(Ordering::Relaxed),
        )
    }

    /// Stops it: with a window, once every message is answered; without,
    /// at once (what waits in the socket buffers is dropped with it).
    async fn stop(self, graceful: bool) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            if !graceful {
                task.abort();
                continue;
            }
            task.await??;
        }
        Ok(())
    }
}

/// What one server's run found.
struct Row {
    /// The bystander alone.
    idle: Summary,
    /// The bystander beside the flood.
    flooded: Summary,
    /// The flooder's messages handed to its socket per second (what the
    /// kernel's buffers still hold included).
    sent_rate: f64,
    /// The flooder's replies per second: messages its app handled.
    reply_rate: f64,
    /// Server CPU during the flood, in % of one core.
    cpu_percent: f64,
}

/// What disturbs the bystander.
#[derive(Clone, Copy)]
enum Flood {
    /// A client of the same app with this many messages in flight.
    Window(usize),
    /// A client of the same app sending as fast as its socket takes.
    Unbounded,
    /// A client of another app whose events spin to their deadline.
    Spin,
}

/// Spins queued on the hostile app: enough to keep it spinning through a
/// measurement of `seconds` under the server's default 1 s event deadline.
fn spins_for(seconds: Duration) -> usize {
    seconds.as_secs() as usize + 2
}

/// One server's run: the bystander alone, then beside a flood.
async fn measure(server: &Host, seconds: u64, flood: Flood) -> anyhow::Result<Row> {
    let seconds = Duration::from_secs(seconds);
    let mut bystander = connect(server.addr, "/ws/echo", source(1, 0, 1)).await?;
    // Warm up, then alone.
    pings(&mut bystander, Instant::now() + Duration::from_millis(500)).await?;
    let idle = Summary::of(pings(&mut bystander, Instant::now() + seconds).await?);
    let (flooder, mut spinner) = match flood {
        Flood::Spin => {
            let mut ws = connect(server.addr, "/ws/hostile", source(2, 0, 1)).await?;
            for _ in 0..spins_for(seconds) {
                ws.send(Message::text("spin")).await?;
            }
            (None, Some(ws))
        }
        Flood::Window(window) => {
            let ws = connect(server.addr, "/ws/echo", source(2, 0, 1)).await?;
            (Some(Flooder::start(ws, Some(window))), None)
        }
        Flood::Unbounded => {
            let ws = connect(server.addr, "/ws/echo", source(2, 0, 1)).await?;
            (Some(Flooder::start(ws, None)), None)
        }
    };
    let spent = Spent::start(server)?;
    let flooded = pings(&mut bystander, Instant::now() + seconds).await?;
    let (cpu, wall) = spent.stop(server)?;
    let (sent, replies) = match flooder {
        Some(flooder) => {
            let counts = flooder.counts();
            flooder.stop(matches!(flood, Flood::Window(_))).await?;
            counts
        }
        None => (spins_for(seconds) as u64, 0),
    };
    if let Some(ws) = spinner.as_mut() {
        // The spins still queued die with the server.
        let _ = ws.close(None).await;
    }
    Ok(Row {
        idle,
        cpu_percent: 100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        flooded: Summary::of(flooded),
        sent_rate: sent as f64 / wall.as_secs_f64(),
        reply_rate: replies as f64 / wall.as_secs_f64(),
    })
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    println!(
        "Neighbours: a bystander's round trips on `/ws/echo`, {} s alone, then {} s beside one \
         flooding client of the same app",
        options.seconds, options.seconds
    );
    println!();
    println!(
        "| flood | server | alone p50 | alone p99 | flooded p50 | flooded p99 | p99 ÷ alone | flood sent/s | flood answered/s | server CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let floods: [(&str, &[&str], Flood); 4] = [
        ("unlimited", &[], Flood::Window(options.window)),
        (
            "1000/s, drop",
            &["--ws-messages-per-second", "1000", "--ws-over-rate", "drop"],
            Flood::Unbounded,
        ),
        (
            "1000/s, wait",
            &["--ws-messages-per-second", "1000", "--ws-over-rate", "wait"],
            Flood::Unbounded,
        ),
        ("spinning guest", &[], Flood::Spin),
    ];
    for (name, flags, flood) in floods {
        let apps: &[&str] = match flood {
            Flood::Spin => &["echo", "hostile"],
            _ => &["echo"],
        };
        let pair = Pair::start_with(apps, flags).await?;
        for (server_name, server) in pair.each() {
            if matches!(flood, Flood::Spin) && server_name == "native" {
                continue;
            }
            let row = measure(server, options.seconds, flood).await?;
            println!(
                "| {name} | {server_name} | {} | {} | {} | {} | {:.2} | {:.0} | {:.0} | {:.0}% |",
                ms(row.idle.median),
                ms(row.idle.p99),
                ms(row.flooded.median),
                ms(row.flooded.p99),
                row.flooded.p99.as_secs_f64() / row.idle.p99.as_secs_f64(),
                row.sent_rate,
                row.reply_rate,
                row.cpu_percent,
            );
        }
    }
    println!();
    Ok(())
}
