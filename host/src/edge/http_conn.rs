//! One accepted HTTP connection: which HTTP it speaks, its per-protocol
//! limits, and serving it until it ends, its peer stops taking writes, or
//! the server shuts down.
//!
//! HTTP/1.1 may upgrade to a WebSocket (RFC 6455 upgrades are HTTP/1.1
//! only). HTTP/2 carries HTTP routes: negotiated by ALPN over TLS, or, on
//! a plain port with `--h2c`, spoken by a client with prior knowledge.
//! The server does not offer WebSockets over HTTP/2 (no extended CONNECT,
//! RFC 8441), so a browser opens its WebSockets on an HTTP/1.1 connection
//! of their own, and an HTTP/2 request for a WebSocket route gets 426.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::state::{PeerAddr, ServerState};
use super::write_deadline::Stall;
use super::ws::rate::TokenBucket;
use crate::config::OverRate;
use crate::runtime::policy::MessageRate;
use crate::telemetry;

/// The most bytes of one HTTP/2 request's header list (names, values and
/// 32 bytes each, as RFC 9113 counts them).
const H2_MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// Streams a client may reset before the server has taken them up: past
/// it the connection is closed (GOAWAY, ENHANCE_YOUR_CALM). This bounds
/// the rapid-reset attack (CVE-2023-44487).
const H2_MAX_PENDING_RESETS: usize = 20;

/// Streams the server may reset for the client's errors on one
/// connection before it closes it.
const H2_MAX_ERROR_RESETS: usize = 256;

/// HTTP/1.1's settings, on hyper's builder or the sniffing one (their
/// setters share names): the request head within the slowloris bound.
macro_rules! http1_settings {
    ($builder:expr, $state:expr) => {
        $builder
            .timer(TokioTimer::new())
            .header_read_timeout($state.edge.handshake_timeout())
    };
}

/// HTTP/2's settings, on hyper's builder or the sniffing one: its
/// per-stream and per-connection bounds, and pings that drop a peer gone
/// silent.
macro_rules! http2_settings {
    ($builder:expr, $state:expr) => {
        $builder
            .timer(TokioTimer::new())
            .max_concurrent_streams($state.edge.h2_max_streams.get())
            .max_header_list_size(H2_MAX_HEADER_LIST_BYTES)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
            .max_local_error_reset_streams(H2_MAX_ERROR_RESETS)
            .keep_alive_interval($state.edge.ping_interval())
            .keep_alive_timeout($state.edge.write_timeout())
    };
}

/// What a connection's requests are answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The apps' routes and files: the public port.
    Apps,
    /// A redirect to the same path on HTTPS at `port`: the plain port of
    /// a server that serves HTTPS.
    RedirectToHttps { port: u16 },
}

/// Which HTTP a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.1, which may upgrade to a WebSocket.
    Http1,
    /// HTTP/2, as ALPN agreed.
    Http2,
    /// Whichever the client's first bytes show: HTTP/2's preface, or
    /// HTTP/1.1 (a plain port with `--h2c`).
    Either,
}

impl Protocol {
    /// The protocol a TLS handshake agreed on by ALPN.
    pub(crate) fn from_alpn(alpn: Option<&[u8]>) -> Self {
        match alpn {
            Some(b"h2") => Self::Http2,
            _ => Self::Http1,
        }
    }
}

/// Serves one connection speaking `protocol` until it ends.
pub(crate) async fn serve<S>(
    state: Arc<ServerState>,
    peer: SocketAddr,
    stream: S,
    stall: Arc<Stall>,
    protocol: Protocol,
    answer: Answer,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let requests = Arc::new(Requests::new(state.edge.h2_max_streams.get()));
    let service = {
        let (state, requests) = (state.clone(), requests.clone());
        service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(PeerAddr(peer));
            let state = state.clone();
            let running = Running::start(&requests);
            async move {
                let response = match answer {
                    Answer::Apps => super::http::handle(state, request).await,
                    Answer::RedirectToHttps { port } => {
                        Ok(super::redirect::to_https(&request, port))
                    }
                };
                running.finished();
                response
            }
        })
    };
    // HTTP/1.1 has its request-head bound for idle connections; HTTP/2
    // (and a connection that has not said which yet) gets the same bound
    // for a connection with no request in flight.
    let idle = (protocol != Protocol::Http1).then(|| state.edge.handshake_timeout());
    match protocol {
        Protocol::Http1 => {
            let mut builder = http1::Builder::new();
            http1_settings!(builder, state);
            let connection = builder.serve_connection(io, service).with_upgrades();
            drive(&state, peer, &stall, &requests, idle, connection, |c| {
                c.graceful_shutdown()
            })
            .await;
        }
        Protocol::Http2 => {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            http2_settings!(builder, state);
            let connection = builder.serve_connection(io, service);
            drive(&state, peer, &stall, &requests, idle, connection, |c| {
                c.graceful_shutdown()
            })
            .await;
        }
        Protocol::Either => {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            http1_settings!(builder.http1(), state);
            http2_settings!(builder.http2(), state);
            let connection = builder.serve_connection_with_upgrades(io, service);
            drive(&state, peer, &stall, &requests, idle, connection, |c| {
                c.graceful_shutdown()
            })
            .await;
        }
    }
}

/// One connection's requests: those in flight, when the last one ended,
/// and the budget of those its client gave up on while they ran (an
/// HTTP/2 stream reset mid-request). A reset stream frees its place among
/// the concurrent ones at once, so without a budget a client could start
/// work faster than the stream limit allows (the rapid-reset attack,
/// CVE-2023-44487): past it the connection is closed.
struct Requests {
    /// Cancels allowed now: the stream limit at once, refilled by a tenth
    /// of it a second.
    bucket: Mutex<TokenBucket>,
    /// The budget's size and refill.
    rate: MessageRate,
    /// Cancelled once the budget is spent.
    exceeded: CancellationToken,
    /// Requests being answered now.
    in_flight: AtomicUsize,
    /// When the last request ended (or the connection began).
    last_ended: Mutex<Instant>,
}

impl Requests {
    fn new(max_streams: u32) -> Self {
        let rate = MessageRate {
            per_second: (max_streams / 10).max(1),
            burst: max_streams,
            over: OverRate::Close,
        };
        Self {
            bucket: Mutex::new(TokenBucket::new(rate.burst, Instant::now())),
            rate,
            exceeded: CancellationToken::new(),
            in_flight: AtomicUsize::new(0),
            last_ended: Mutex::new(Instant::now()),
        }
    }

    /// A request ended; `cancelled` if its client gave up on it.
    fn ended(&self, cancelled: bool) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        *self.last_ended.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        if cancelled && !bucket.take(&self.rate, Instant::now()) {
            self.exceeded.cancel();
        }
    }

    /// When the last request ended.
    fn quiet_since(&self) -> Instant {
        *self.last_ended.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves, saying why, once the connection must be closed: its
    /// client cancelled more requests than its budget (counted), or it
    /// has had no request in flight for `idle`.
    async fn must_close(&self, idle: Option<Duration>) -> &'static str {
        tokio::select! {
            () = self.exceeded.cancelled() => {
                telemetry::refused("h2_resets");
                "client cancelled too many requests"
            }
            () = self.idle(idle) => "no request for the idle bound",
        }
    }

    /// Resolves once the connection has had no request in flight for
    /// `after`; never without `after`.
    async fn idle(&self, after: Option<Duration>) {
        let Some(after) = after else {
            return std::future::pending().await;
        };
        loop {
            let busy = self.in_flight.load(Ordering::SeqCst) > 0;
            let check = if busy {
                Instant::now()
            } else {
                self.quiet_since()
            } + after;
            tokio::time::sleep_until(check.into()).await;
            if self.in_flight.load(Ordering::SeqCst) == 0 && self.quiet_since().elapsed() >= after {
                return;
            }
        }
    }
}

/// A request's handler while it runs: dropped unfinished, it counts as a
/// cancel.
struct Running(Option<Arc<Requests>>);

impl Running {
    fn start(requests: &Arc<Requests>) -> Self {
        requests.in_flight.fetch_add(1, Ordering::SeqCst);
        Self(Some(requests.clone()))
    }

    fn finished(mut self) {
        if let Some(requests) = self.0.take() {
            requests.ended(false);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(requests) = self.0.take() {
            requests.ended(true);
        }
    }
}

/// Runs `connection` until it ends; drops it if its peer takes none of
/// its writes within the write timeout; closes it if its client cancels
/// more requests than its budget, or if it has had no request in flight
/// for `idle`; on shutdown, lets it finish what is in flight (`drain`)
/// and close.
async fn drive<C, E>(
    state: &ServerState,
    peer: SocketAddr,
    stall: &Stall,
    requests: &Requests,
    idle: Option<Duration>,
    connection: C,
    drain: fn(Pin<&mut C>),
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let write_timeout = state.edge.write_timeout();
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = stall.deadline(write_timeout) => {
            tracing::debug!(%peer, "peer took no write for {write_timeout:?}; dropping it");
            return;
        }
        why = requests.must_close(idle) => {
            tracing::debug!(%peer, "{why}; closing the connection");
            // GOAWAY, then what is in flight may finish, within bounds.
            drain(connection.as_mut());
            let _ = tokio::time::timeout(write_timeout, connection).await;
            return;
        }
        () = state.shutdown.cancelled() => {
            drain(connection.as_mut());
            connection.await
        }
    };
    if let Err(err) = ended {
        tracing::debug!(%peer, "HTTP connection ended: {err}");
    }
}
