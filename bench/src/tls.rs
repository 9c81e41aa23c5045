//! TLS: what the handshake and the encryption of every frame cost. Two
//! tina4-wasm servers of the echo example in the same run, one plain and
//! one serving a certificate this benchmark makes:
//! - fresh connections, each one GET and closed (with its handshake on
//!   TLS): connections per second and server CPU per connection;
//! - wss:// echo against ws:// echo, closed loop: round trips per second
//!   and server CPU per round trip.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{StreamExt, stream};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::echo::ping_until;
use crate::host::{Host, component};
use crate::load::{Spent, micros_per, source};
use crate::stats::{Summary, ms};

/// Options of the TLS scenario.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Echo clients on each server.
    #[arg(long = "tls-clients", default_value_t = 100)]
    pub clients: usize,
    /// Connections being made at once in the connection-rate run.
    #[arg(long = "tls-connectors", default_value_t = 16)]
    pub connectors: usize,
    /// Seconds each run lasts.
    #[arg(id = "tls-seconds", long = "tls-seconds", default_value_t = 3)]
    pub seconds: u64,
}

/// Loopback source addresses the connections come from: each has its own
/// range of ephemeral ports, which a connection-rate run goes through fast.
const SOURCES: usize = 8;

/// A client side: plain, or TLS trusting the benchmark's certificate.
#[derive(Clone)]
enum Client {
    Plain,
    Tls(TlsConnector),
}

impl Client {
    /// A TCP connection to `addr` from the `i`th source address.
    async fn tcp(addr: SocketAddr, i: usize) -> anyhow::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source(1, i, SOURCES), 0))?;
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// One fresh connection, one GET, read to its end.
    async fn one_request(&self, addr: SocketAddr, i: usize) -> anyhow::Result<()> {
        let tcp = Self::tcp(addr, i).await?;
        match self {
            Self::Plain => get_and_close(tcp).await,
            Self::Tls(connector) => get_and_close(connector.connect(localhost(), tcp).await?).await,
        }
    }

    /// `n` echo clients on `/ws/echo`, measuring round trips for
    /// `seconds` once all are connected; their latencies.
    async fn echo(
        &self,
        addr: SocketAddr,
        n: usize,
        seconds: u64,
    ) -> anyhow::Result<Vec<Duration>> {
        let config = WebSocketConfig::default().read_buffer_size(2048);
        let scheme = if matches!(self, Self::Plain) {
            "ws"
        } else {
            "wss"
        };
        let url = format!("{scheme}://localhost:{}/ws/echo", addr.port());
        let (go, start) = watch::channel(None);
        let tasks: Vec<anyhow::Result<Pinger>> = stream::iter(0..n)
            .map(|i| {
                let (url, start) = (url.clone(), start.clone());
                async move {
                    let tcp = Self::tcp(addr, i).await?;
                    Ok(match self {
                        Self::Plain => {
                            let (ws, _) =
                                tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
                                    .await?;
                            pinger(ws, start)
                        }
                        Self::Tls(connector) => {
                            let tls = connector.connect(localhost(), tcp).await?;
                            let (ws, _) =
                                tokio_tungstenite::client_async_with_config(url, tls, Some(config))
                                    .await?;
                            pinger(ws, start)
                        }
                    })
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        go.send_replace(Some(Instant::now() + Duration::from_secs(seconds)));
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task?.await??);
        }
        Ok(latencies)
    }
}

/// An echo client's task: its latencies.
type Pinger = tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>>;

/// Starts an echo client on `ws` that pings until the deadline `start`
/// gives it.
fn pinger<S>(ws: WebSocketStream<S>, mut start: watch::Receiver<Option<Instant>>) -> Pinger
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let deadline = *start.wait_for(Option::is_some).await?;
        ping_until(ws, deadline.expect("a deadline")).await
    })
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a valid server name")
}

async fn get_and_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> anyhow::Result<()> {
    stream
        .write_all(b"GET /hello/bench HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::with_capacity(512);
    stream.read_to_end(&mut answer).await?;
    anyhow::ensure!(answer.starts_with(b"HTTP/1.1 200"), "unexpected answer");
    Ok(())
}

/// Connections made by `connectors` loops until `seconds` have passed.
async fn connections(
    client: &Client,
    addr: SocketAddr,
    connectors: usize,
    seconds: u64,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let loops: Vec<_> = (0..connectors)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut made = 0usize;
                while Instant::now() < deadline {
                    client.one_request(addr, i + made).await?;
                    made += 1;
                }
                anyhow::Ok(made)
            })
        })
        .collect();
    let mut made = 0;
    for handle in loops {
        made += handle.await??;
    }
    Ok(made)
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let (dir, cache) = (root.path().join("apps"), root.path().join("cache"));
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(component("echo")?, dir.join("echo.wasm"))?;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .context("making a certificate")?;
    let (cert, key) = (root.path().join("cert.pem"), root.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(made.cert.der().clone())?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls_client = Client::Tls(TlsConnector::from(Arc::new(config)));

    let caps = ["--max-connections", "1000000"];
    let plain = Host::start(&dir, &cache, &caps).await?;
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let tls = Host::start(
        &dir,
        &cache,
        &[&caps[..], &["--tls-cert", &cert, "--tls-key", &key]].concat(),
    )
    .await?;
    let servers: [(&str, &Host, Client); 2] =
        [("plain", &plain, Client::Plain), ("TLS", &tls, tls_client)];

    println!(
        "TLS: the echo example, plain and with a certificate, in one run ({} s each; rustls with aws-lc-rs, TLS 1.3, ECDSA P-256)",
        options.seconds
    );
    println!();
    println!("| measure | plain | TLS | TLS ÷ plain |");
    println!("|---|---|---|---|");
    let mut rates = Vec::new();
    for (_, server, client) in &servers {
        let spent = Spent::start(server)?;
        let n = connections(client, server.addr, options.connectors, options.seconds).await?;
        let (cpu, wall) = spent.stop(server)?;
        rates.push((n as f64 / wall.as_secs_f64(), micros_per(cpu, n)));
    }
    row(
        "new connections/s (one GET each)",
        rates[0].0,
        rates[1].0,
        0,
    );
    row("server CPU per connection, µs", rates[0].1, rates[1].1, 1);
    let mut echoes = Vec::new();
    for (_, server, client) in &servers {
        let spent = Spent::start(server)?;
        let latencies = client
            .echo(server.addr, options.clients, options.seconds)
            .await?;
        let (cpu, wall) = spent.stop(server)?;
        let n = latencies.len();
        echoes.push((
            n as f64 / wall.as_secs_f64(),
            micros_per(cpu, n),
            Summary::of(latencies),
        ));
    }
    let clients = options.clients;
    row(
        &format!("echo round trips/s, {clients} clients"),
        echoes[0].0,
        echoes[1].0,
        0,
    );
    row("server CPU per round trip, µs", echoes[0].1, echoes[1].1, 1);
    println!(
        "| echo p50 / p99 | {} / {} | {} / {} | |",
        ms(echoes[0].2.median),
        ms(echoes[0].2.p99),
        ms(echoes[1].2.median),
        ms(echoes[1].2.p99)
    );
    println!();
    Ok(())
}

/// One row of the table: both figures and their ratio.
fn row(measure: &str, plain: f64, tls: f64, decimals: usize) {
    println!(
        "| {measure} | {plain:.decimals$} | {tls:.decimals$} | {:.2} |",
        tls / plain
    );
}
