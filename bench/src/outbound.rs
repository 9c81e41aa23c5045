//! Outbound HTTP through a guest against a native client, in one run. The
//! native baseline server (its own process) is the upstream. One request
//! in flight at a time:
//!
//! 1. a native client (hyper), `GET /hello/bench`, on a new connection
//!    per request and on one kept; this process's CPU;
//! 2. a plain route through the probe app (`GET /probe/version`), on a
//!    kept-alive connection; the server's CPU;
//! 3. the probe fetching the upstream (`GET /probe/fetch?url=…`), the
//!    same way; the server's CPU: on a server that keeps idle outbound
//!    connections (the default), and on one that keeps none
//!    (`--outbound-idle-connections 0`).
//!
//! What an outbound request costs through the guest is (3) less (2),
//! to compare with (1).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::host::{Host, component, cpu_time};
use crate::stats::{Summary, ms};

/// Options of the outbound scenario.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Requests of each kind.
    #[arg(long = "outbound-requests", default_value_t = 2000)]
    pub requests: usize,
}

/// A client connection to `addr`.
async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// `GET path` on `sender`; the body, checked for status 200.
async fn get(
    sender: &mut SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
) -> anyhow::Result<Bytes> {
    sender.ready().await?;
    let request = hyper::Request::get(path)
        .header("host", host)
        .body(Empty::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(status == 200, "{path}: {status} {body:?}");
    Ok(body)
}

/// One kind's latencies, and the CPU `process` used over them.
struct Measured {
    latencies: Vec<Duration>,
    cpu: Duration,
}

/// Runs `one` `n` times in a row, with the CPU of `pid` over them.
async fn measure(
    n: usize,
    pid: u32,
    mut one: impl AsyncFnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Measured> {
    for _ in 0..n / 20 {
        one().await?;
    }
    let cpu = cpu_time(pid)?;
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        one().await?;
        latencies.push(started.elapsed());
    }
    Ok(Measured {
        latencies,
        cpu: cpu_time(pid)?.saturating_sub(cpu),
    })
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let upstream = Host::native().await?;
    let root = tempfile::tempdir()?;
    let apps = root.path().join("apps");
    std::fs::create_dir_all(&apps)?;
    std::fs::copy(component("probe")?, apps.join("probe.wasm"))?;
    std::fs::write(
        apps.join("probe.toml"),
        format!("allowed_outbound_hosts = [\"http://{}\"]\n", upstream.addr),
    )?;
    let cache = root.path().join("cache");
    let outbound = ["--outbound-hosts", "http://127.0.0.1:*"];
    let host = Host::start(&apps, &cache, &outbound).await?;
    let unkept = [&outbound[..], &["--outbound-idle-connections", "0"]].concat();
    let unkept = Host::start(&apps, &cache, &unkept).await?;
    let n = options.requests;
    let upstream_name = upstream.addr.to_string();

    let native = measure(n, std::process::id(), async || {
        let mut sender = connect(upstream.addr).await?;
        get(&mut sender, &upstream_name, "/hello/bench")
            .await
            .map(drop)
    })
    .await
    .context("the native client")?;
    let mut native_sender = connect(upstream.addr).await?;
    let native_kept = measure(n, std::process::id(), async || {
        get(&mut native_sender, &upstream_name, "/hello/bench")
            .await
            .map(drop)
    })
    .await
    .context("the native client, its connection kept")?;

    let host_name = host.addr.to_string();
    let mut plain_sender = connect(host.addr).await?;
    let plain = measure(n, host.pid()?, async || {
        get(&mut plain_sender, &host_name, "/probe/version")
            .await
            .map(drop)
    })
    .await
    .context("the plain route")?;

    let fetch_path = format!("/probe/fetch?url=http://{}/hello/bench", upstream.addr);
    let kept = fetch_through(&host, n, &fetch_path).await?;
    // A second server, which keeps no idle connections.
    let fresh = fetch_through(&unkept, n, &fetch_path).await?;

    println!(
        "Outbound HTTP: {n} requests of each kind, one in flight; the upstream is the native baseline server"
    );
    println!();
    println!("| request | p50 | p99 | CPU per request |");
    println!("|---|---|---|---|");
    let row = |name: &str, measured: &Measured, whose: &str| {
        let cpu = measured.cpu.as_secs_f64() * 1e6 / n as f64;
        let summary = Summary::of(measured.latencies.clone());
        println!(
            "| {name} | {} | {} | {cpu:.1} µs ({whose}) |",
            ms(summary.median),
            ms(summary.p99)
        );
        (summary.median, cpu)
    };
    let native_fresh = row("native client, new connection", &native, "client");
    let native_kept = row("native client, connection kept", &native_kept, "client");
    let (plain_p50, plain_cpu) = row("plain route through the app", &plain, "server");
    let kept = row("route that fetches, connection kept", &kept, "server");
    let fresh = row("route that fetches, new connection", &fresh, "server");
    println!();
    for (how, (fetch_p50, fetch_cpu), (native_p50, native_cpu)) in [
        ("a kept", kept, native_kept),
        ("a new", fresh, native_fresh),
    ] {
        let extra_p50 = fetch_p50.saturating_sub(plain_p50);
        let extra_cpu = fetch_cpu - plain_cpu;
        println!(
            "An outbound request through the guest on {how} connection: +{} at p50 and \
             +{extra_cpu:.1} µs of server CPU over the plain route; {:.2}× the native \
             client's latency, {:.2}× its CPU.",
            ms(extra_p50),
            extra_p50.as_secs_f64() / native_p50.as_secs_f64(),
            extra_cpu / native_cpu
        );
    }
    println!();
    Ok(())
}

/// `n` fetches of `path` through `host`'s probe, on one kept-alive
/// connection to it.
async fn fetch_through(host: &Host, n: usize, path: &str) -> anyhow::Result<Measured> {
    let name = host.addr.to_string();
    let mut sender = connect(host.addr).await?;
    measure(n, host.pid()?, async || {
        let body = get(&mut sender, &name, path).await?;
        anyhow::ensure!(
            body.starts_with(b"{\"body\":"),
            "unexpected answer: {body:?}"
        );
        Ok(())
    })
    .await
    .context("the fetching route")
}
