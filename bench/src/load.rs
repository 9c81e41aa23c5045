//! The load generator's side: opening many WebSocket connections (from
//! several loopback source addresses), and what a server spent meanwhile.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{StreamExt, stream};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::host::Host;

/// A client connection.
pub type Socket = WebSocketStream<TcpStream>;

/// Handshakes in flight at once while opening many connections.
const CONNECTING_AT_ONCE: usize = 256;

/// The `i`th of `count` loopback source addresses from 127.0.0.`first`:
/// each has its own range of ephemeral ports.
pub fn source(first: u8, i: usize, count: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, first + (i % count.max(1)) as u8))
}

/// Opens one WebSocket to `addr` + `path` from `from`.
pub async fn connect(addr: SocketAddr, path: &str, from: IpAddr) -> anyhow::Result<Socket> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{addr}{path}");
    // A small read buffer: thousands of clients live in this one process.
    let config = WebSocketConfig::default().read_buffer_size(2048);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .with_context(|| format!("WebSocket handshake with {addr}{path}"))?;
    Ok(ws)
}

/// Opens `n` connections to `path`, spread over `sources` source addresses
/// from 127.0.0.1.
pub async fn connect_many(
    addr: SocketAddr,
    path: &str,
    n: usize,
    sources: usize,
) -> anyhow::Result<Vec<Socket>> {
    connect_many_from(addr, path, n, 1, sources).await
}

/// [`connect_many`] from 127.0.0.`first` on.
pub async fn connect_many_from(
    addr: SocketAddr,
    path: &str,
    n: usize,
    first: u8,
    sources: usize,
) -> anyhow::Result<Vec<Socket>> {
    stream::iter(0..n)
        .map(|i| connect(addr, path, source(first, i, sources)))
        .buffer_unordered(CONNECTING_AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// CPU time a server used between [`Spent::start`] and [`Spent::stop`],
/// and the wall time.
pub struct Spent {
    /// The server's CPU time at the start.
    cpu: Duration,
    /// The start.
    at: Instant,
}

impl Spent {
    pub fn start(server: &Host) -> anyhow::Result<Self> {
        Ok(Self {
            cpu: server.cpu_time()?,
            at: Instant::now(),
        })
    }

    /// (CPU time, wall time) since the start.
    pub fn stop(self, server: &Host) -> anyhow::Result<(Duration, Duration)> {
        Ok((server.cpu_time()? - self.cpu, self.at.elapsed()))
    }
}

/// `cpu` per `n` operations, in microseconds.
pub fn micros_per(cpu: Duration, n: usize) -> f64 {
    cpu.as_secs_f64() * 1e6 / n.max(1) as f64
}
