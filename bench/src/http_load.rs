//! HTTP: keep-alive connections each sending `GET /hello/bench` and waiting
//! for the answer before the next, against the echo example's JSON route
//! (a wasm guest call per request) and the native baseline's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::host::Pair;
use crate::load::{Spent, micros_per};
use crate::stats::{Summary, ms};

/// Options of the HTTP scenario.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Keep-alive connections sending requests.
    #[arg(
        id = "http-connections",
        long = "http-connections",
        default_value_t = 32
    )]
    pub connections: usize,
    /// Seconds the run lasts.
    #[arg(id = "http-seconds", long = "http-seconds", default_value_t = 5)]
    pub seconds: u64,
}

/// Requests on one connection until `deadline`; their latencies.
async fn request_until(addr: SocketAddr, deadline: Instant) -> anyhow::Result<Vec<Duration>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let request = Request::get("/hello/bench")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())?;
        let sent = Instant::now();
        let response = sender.send_request(request).await?;
        anyhow::ensure!(response.status() == 200, "status {}", response.status());
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::ensure!(body.starts_with(b"{"), "not JSON");
        latencies.push(sent.elapsed());
    }
    Ok(latencies)
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let pair = Pair::start(&["echo"]).await?;
    println!(
        "HTTP: `GET /hello/bench` (JSON), {} keep-alive connections in closed loop, {} s",
        options.connections, options.seconds
    );
    println!();
    println!(
        "| server | requests/s | p50 | p99 | server CPU per request | ÷ native (requests/s) |"
    );
    println!("|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (name, server) in pair.each() {
        let spent = Spent::start(server)?;
        let deadline = Instant::now() + Duration::from_secs(options.seconds);
        let tasks: Vec<_> = (0..options.connections)
            .map(|_| tokio::spawn(request_until(server.addr, deadline)))
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await?.context("an HTTP client")?);
        }
        let (cpu, wall) = spent.stop(server)?;
        let n = latencies.len();
        rows.push((
            name,
            n as f64 / wall.as_secs_f64(),
            Summary::of(latencies),
            micros_per(cpu, n),
        ));
    }
    let native = rows[1].1;
    for (name, rate, summary, cpu) in rows {
        println!(
            "| {name} | {rate:.0} | {} | {} | {cpu:.1} µs | {:.2} |",
            ms(summary.median),
            ms(summary.p99),
            rate / native
        );
    }
    println!();
    Ok(())
}
