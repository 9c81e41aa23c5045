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

use crate::apps;
use crate::config::{Limits, ServeConfig};
use crate::router::RouteTable;
use crate::runtime::{RouteTarget, Runtime};
use crate::ws::registry::ConnectionRegistry;

/// Time a client has to send a complete request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for WebSocket close handshakes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What every request handler shares.
pub struct ServerState {
    /// Every route of every app; replaced whole, never edited in place, so a
    /// request sees one consistent table.
    pub routes: ArcSwap<RouteTable<RouteTarget>>,
    /// Every open WebSocket connection.
    pub registry: Arc<ConnectionRegistry>,
    /// Size, time and queue limits.
    pub limits: Limits,
}

/// `tina4-wasm serve`: runs until SIGINT or SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    if !config.apps_dir.is_dir() {
        anyhow::bail!(
            "the apps folder {} does not exist",
            config.apps_dir.display()
        );
    }
    let registry = Arc::new(ConnectionRegistry::new());
    let runtime = Runtime::new(registry.clone(), config.limits.clone())?;
    let loaded = apps::load_all(&runtime, &config.apps_dir)?;

    let listener = TcpListener::bind((config.host, config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    let address = listener.local_addr()?;
    print!("{}", apps::banner(&loaded.apps));
    println!("listening on http://{address}");

    let state = Arc::new(ServerState {
        routes: ArcSwap::from_pointee(loaded.routes),
        registry,
        limits: config.limits,
    });
    accept_until_shutdown(listener, state.clone()).await;
    close_all(&state.registry).await;
    Ok(())
}

async fn accept_until_shutdown(listener: TcpListener, state: Arc<ServerState>) {
    let shutdown = shutdown_signal();
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
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| crate::http::handle(state.clone(), request));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(err) = connection.await {
                tracing::debug!(%peer, "HTTP connection ended: {err}");
            }
        });
    }
}

/// Closes every WebSocket with 1001 and waits (bounded) for them to finish.
async fn close_all(registry: &ConnectionRegistry) {
    let open = registry.all();
    tracing::info!(connections = open.len(), "shutting down");
    for handle in &open {
        handle.evict(1001, "server shutting down");
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while !registry.all().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
