//! The server: load the apps, bind one port for HTTP and WebSocket, accept
//! connections, and shut down cleanly on SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::ConnectionCaps;
use crate::apps::AppManager;
use crate::auth::Authenticator;
use crate::backplane::Backplane;
use crate::config::{EdgePolicy, Limits, ServeConfig, ServerNames};
use crate::router::RouteTable;
use crate::runtime::{Runtime, SharedRoutes};
use crate::write_deadline::{Stall, Watched};
use crate::ws::registry::ConnectionRegistry;
use crate::{admin, reload, source_watch, telemetry};

/// How long shutdown waits for in-flight requests and close handshakes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What every request handler shares.
pub struct ServerState {
    /// Every route of every app; replaced whole, never edited in place, so a
    /// request sees one consistent table.
    pub routes: SharedRoutes,
    /// Every open WebSocket connection.
    pub registry: Arc<ConnectionRegistry>,
    /// Delivery across instances (and `count` across them).
    pub backplane: Arc<Backplane>,
    /// Size, time and queue limits.
    pub limits: Limits,
    /// WebSocket admission (origins, connection caps) and liveness.
    pub edge: EdgePolicy,
    /// The host names answered for apps that claim none.
    pub names: ServerNames,
    /// Verifies tokens on secured routes.
    pub auth: Authenticator,
    /// Every connection task (HTTP and WebSocket), so shutdown can wait for
    /// in-flight requests and close handshakes.
    pub tasks: TaskTracker,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// True once the initial load is done while at least one app serves.
    pub ready: std::sync::atomic::AtomicBool,
    /// Open HTTP connections against their caps.
    pub http_connections: Arc<ConnectionCaps>,
    /// Request body bytes in flight, in KiB: the budget all requests share.
    pub body_budget: Arc<tokio::sync::Semaphore>,
}

/// The client address of a request, put in its extensions at accept.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// `tina4-wasm serve`: runs until SIGINT or SIGTERM.
pub async fn serve(mut config: ServeConfig) -> anyhow::Result<bool> {
    if !config.apps_dir.is_dir() {
        anyhow::bail!(
            "the apps folder {} does not exist",
            config.apps_dir.display()
        );
    }
    // Every configuration error before anything starts or logs.
    let admin_address = config.admin_address()?;
    let auth = Authenticator::new(config.secret.as_deref())?;
    let names = config.edge.names()?;
    config.backplane.check()?;
    // One spelling of every path: the watcher reports absolute paths.
    config.apps_dir = config
        .apps_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", config.apps_dir.display()))?;
    let shutdown = shutdown_signal()?;
    let registry = Arc::new(ConnectionRegistry::new());
    let backplane = Arc::new(Backplane::start(&config.backplane, registry.clone())?);
    let routes: SharedRoutes = Arc::new(ArcSwap::from_pointee(RouteTable::default()));
    let runtime = Arc::new(Runtime::new(
        backplane.clone(),
        routes.clone(),
        config.limits.clone(),
        config.cache_dir(),
        config.fast_compile,
    )?);
    match runtime.cache().dir() {
        Some(dir) => tracing::info!(dir = %dir.display(), "compile cache"),
        None => tracing::info!("compile cache off"),
    }
    let state = Arc::new(ServerState {
        routes,
        registry,
        backplane,
        limits: config.limits.clone(),
        edge: config.edge.clone(),
        names,
        auth,
        tasks: TaskTracker::new(),
        shutdown: CancellationToken::new(),
        ready: Default::default(),
        body_budget: Arc::new(tokio::sync::Semaphore::new(
            config.limits.max_inflight_body_bytes.get().div_ceil(1024),
        )),
        http_connections: ConnectionCaps::new(
            config.edge.max_http_connections.get(),
            config.edge.per_address(),
        ),
    });
    let admin = match admin_address {
        Some(address) => {
            let listener = admin::bind(address).await?;
            let state = Arc::new(admin::AdminState {
                metrics: telemetry::install()?,
                server: state.clone(),
            });
            let bound = listener.local_addr()?;
            admin::spawn(listener, state);
            Some(bound)
        }
        None => None,
    };

    // Watch first, so a change during the initial load is not missed.
    let watch = reload::watch(&config.apps_dir)?;
    let mut apps = AppManager::new(runtime.clone(), state.clone());
    apps.load_dir(&config.apps_dir).await?;

    let listener = TcpListener::bind((config.host, config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    let address = listener.local_addr()?;
    print!("{}", apps.banner());
    if let Some(admin) = admin {
        println!("admin on http://{admin}");
        tracing::info!(%admin, "admin endpoints: /metrics /health /ready");
    }
    println!("listening on http://{address}");
    tracing::info!(%address, "listening");
    if address.ip().is_unspecified() {
        println!("  (on this machine: http://localhost:{})", address.port());
    }
    if let Some(sources) = config.watch_sources() {
        let apps_dir = config.apps_dir.clone();
        let watched =
            tokio::task::spawn_blocking(move || source_watch::discover(&sources, &apps_dir))
                .await??;
        if watched.is_empty() {
            tracing::warn!("--watch: found no sources of any of the served apps");
        }
        let toolchains = crate::build::toolchain::Toolchains::default_location()?
            .with_js_engine(config.js_engine);
        tokio::spawn(async move {
            if let Err(err) = source_watch::run(watched, toolchains).await {
                tracing::error!("--watch stopped: {err:#}");
            }
        });
    }
    tokio::spawn(watch.run(apps));

    accept_until_shutdown(listener, state.clone(), shutdown).await;
    shut_down(&state).await;
    tokio::task::spawn_blocking(move || runtime.cache().finish_writes()).await?;
    Ok(true)
}

async fn accept_until_shutdown(
    listener: TcpListener,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let socket = socket2::SockRef::from(&stream);
        let _ = socket.set_send_buffer_size(state.edge.send_buffer_bytes.get());
        // Data the peer leaves unacknowledged this long ends the connection
        // in the kernel too, so an orphaned socket cannot linger.
        let _ = socket.set_tcp_user_timeout(Some(state.edge.write_timeout()));
        let slot = match state.http_connections.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                telemetry::refused(refusal.as_str());
                state
                    .tasks
                    .spawn(refuse(stream, state.edge.write_timeout()));
                continue;
            }
        };
        let task_state = state.clone();
        state.tasks.spawn(async move {
            let state = task_state;
            // Held while the connection speaks HTTP; an upgrade lets it go.
            let _slot = slot;
            let shutdown = state.shutdown.clone();
            let handshake_timeout = state.edge.handshake_timeout();
            let write_timeout = state.edge.write_timeout();
            let stall = Stall::new();
            let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                crate::http::handle(state.clone(), request)
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(handshake_timeout)
                .serve_connection(TokioIo::new(Watched::new(stream, stall.clone())), service)
                .with_upgrades();
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                // A peer that takes none of a response: let it go.
                () = stall.deadline(write_timeout) => {
                    tracing::debug!(%peer, "peer took no write for {write_timeout:?}; dropping it");
                    return;
                }
                () = shutdown.cancelled() => {
                    // Finish the request in flight, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = ended {
                tracing::debug!(%peer, "HTTP connection ended: {err}");
            }
        });
    }
}

/// Answers a connection over its caps with 503 and closes it, without
/// reading it (bounded by the write timeout).
async fn refuse(mut stream: tokio::net::TcpStream, timeout: Duration) {
    use tokio::io::AsyncWriteExt;
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\
        Content-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\nConnection: close\r\n\r\n\
        too many connections\n";
    let _ = tokio::time::timeout(timeout, async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await
    })
    .await;
}

/// Stops cleanly: every WebSocket is closed with 1001, in-flight HTTP
/// requests finish, idle keep-alive connections close; all within
/// [`SHUTDOWN_GRACE`].
async fn shut_down(state: &ServerState) {
    let open = state.registry.all();
    tracing::info!(websockets = open.len(), "shutting down");
    state.shutdown.cancel();
    for handle in &open {
        handle.evict(1001, "server shutting down");
    }
    state.tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time; closing them");
    }
    state.backplane.leave().await;
}

/// SIGINT or SIGTERM. The handlers are installed when this is created, so
/// a signal that arrives while apps are still loading is not missed.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
