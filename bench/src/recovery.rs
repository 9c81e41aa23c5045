//! Recovery: how long a client that reconnects takes to get the messages
//! it missed. A member of a topic that keeps history (`/ws/replay/{topic}`
//! of the echo example) speaks `tina4.v1`, hears one message, leaves; a
//! sender says `missed` more; the member comes back with its position and
//! is timed from the start of its connect to the `!recovered` line after
//! the replay, which must hold every missed message, in order, once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::backplane::{Redis, wait_connected};
use crate::host::Pair;
use crate::load::{Socket, connect};
use crate::stats::{Summary, ms};

/// Options of the recovery scenario.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Messages missed before each reconnect (the topic keeps 1,000).
    #[arg(long = "recovery-missed", default_value_t = 1000)]
    pub missed: usize,
    /// Reconnects timed.
    #[arg(long = "recovery-rounds", default_value_t = 50)]
    pub rounds: usize,
    /// Two instances on a `redis-server`: the member hears on one and
    /// recovers on the other, which reads the topic's history from Redis.
    #[arg(long = "recovery-redis")]
    pub redis: bool,
}

/// A member speaking `tina4.v1`, on `path_and_query`.
async fn framed(
    addr: SocketAddr,
    path_and_query: &str,
) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut request = format!("ws://{addr}{path_and_query}").into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "tina4.v1".parse()?);
    let (ws, response) = tokio_tungstenite::client_async(request, stream).await?;
    anyhow::ensure!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .is_some_and(|p| p == "tina4.v1"),
        "the server did not select tina4.v1"
    );
    Ok(ws)
}

/// The next text message's line and body.
async fn next_line(ws: &mut WebSocketStream<TcpStream>) -> anyhow::Result<(String, String)> {
    loop {
        match ws.next().await.context("the member's connection ended")?? {
            Message::Text(text) => {
                let (line, body) = text
                    .split_once('\n')
                    .context("a message without its line")?;
                return Ok((line.to_string(), body.to_string()));
            }
            _ => continue,
        }
    }
}

/// Says `text` on the sender and waits for it to come back (so it is kept
/// before the next).
async fn say(sender: &mut Socket, text: String) -> anyhow::Result<()> {
    sender.send(Message::text(text.clone())).await?;
    loop {
        match sender
            .next()
            .await
            .context("the sender's connection ended")??
        {
            Message::Text(heard) if heard.as_str() == text => return Ok(()),
            _ => continue,
        }
    }
}

/// One round: the member hears at `hear_at` and leaves, misses `missed`
/// messages, and reconnects at `recover_at`; the time from reconnecting to
/// the end of the replay.
async fn round(
    (hear_at, recover_at): (SocketAddr, SocketAddr),
    topic: &str,
    sender: &mut Socket,
    missed: usize,
) -> anyhow::Result<Duration> {
    let mut member = framed(hear_at, topic).await?;
    // In the group once it hears what is said after it joined (the
    // handshake's answer can come before it joins).
    let position = loop {
        say(sender, "here?".to_string()).await?;
        if let Ok(heard) =
            tokio::time::timeout(Duration::from_millis(50), next_line(&mut member)).await
        {
            break heard?.0;
        }
    };
    member.close(None).await?;
    for i in 0..missed {
        say(sender, format!("m{i}")).await?;
    }
    let (epoch, offset) = position.rsplit_once('-').context("a position")?;
    let started = Instant::now();
    let mut member = framed(
        recover_at,
        &format!("{topic}?tina4_epoch={epoch}&tina4_offset={offset}"),
    )
    .await?;
    let mut heard = 0;
    loop {
        let (line, body) = next_line(&mut member).await?;
        if line == "!recovered" {
            anyhow::ensure!(body.contains("true"), "recovery incomplete: {body}");
            break;
        }
        if body.starts_with('m') {
            anyhow::ensure!(
                body == format!("m{heard}"),
                "m{heard} expected, {body} came"
            );
            heard += 1;
        }
    }
    let took = started.elapsed();
    anyhow::ensure!(
        heard == missed,
        "{heard} of {missed} missed messages recovered"
    );
    member.close(None).await?;
    Ok(took)
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    if options.redis {
        let redis = Redis::start().await?;
        let flags = ["--backplane", "redis", "--backplane-url", &redis.url];
        let (a, b) = (
            Pair::start_with(&["echo"], &flags).await?,
            Pair::start_with(&["echo"], &flags).await?,
        );
        for pair in [&a, &b] {
            wait_connected(&pair.tina4).await?;
        }
        let took = rounds(options, (a.tina4.addr, b.tina4.addr)).await?;
        return report(
            options,
            "on one instance and recovering on another, from Redis",
            took,
        );
    }
    let pair = Pair::start(&["echo"]).await?;
    let addr = pair.tina4.addr;
    let took = rounds(options, (addr, addr)).await?;
    report(options, "on one instance", took)
}

/// Times `options.rounds` rounds between `at`.
async fn rounds(options: &Options, at: (SocketAddr, SocketAddr)) -> anyhow::Result<Vec<Duration>> {
    let topic = format!("/ws/replay/recovery-{}", std::process::id());
    let mut sender = connect(at.0, &topic, std::net::IpAddr::from([127, 0, 0, 1])).await?;
    let mut times = Vec::with_capacity(options.rounds);
    for _ in 0..options.rounds {
        times.push(round(at, &topic, &mut sender, options.missed).await?);
    }
    Ok(times)
}

fn report(options: &Options, how: &str, times: Vec<Duration>) -> anyhow::Result<()> {
    let summary = Summary::of(times);
    println!(
        "Recovery: a tina4.v1 member reconnects after missing {} messages on a topic that keeps 1,000, hearing {how}; {} rounds",
        options.missed, options.rounds
    );
    println!();
    println!("| missed | p50 | p99 | max |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} |",
        options.missed,
        ms(summary.median),
        ms(summary.p99),
        ms(summary.max)
    );
    println!();
    Ok(())
}
