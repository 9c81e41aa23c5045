//! The admin listener, apart from the public port (loopback by default):
//! `/metrics` (Prometheus text), `/health` (the process is up) and
//! `/ready` (the apps are loaded and serving).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::http::{Body, full, plain};
use crate::server::ServerState;

/// What the admin endpoints report on.
pub struct AdminState {
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The server, whose `ready` flag and backplane `/ready` reports.
    pub server: Arc<ServerState>,
}

/// Serves the admin endpoints on `listener` until the process ends.
pub fn spawn(listener: TcpListener, state: Arc<AdminState>) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| answer(state.clone(), request));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// Binds the admin address.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(address).await.with_context(|| {
        format!("cannot listen on the admin address {address} (see --admin-listen)")
    })
}

async fn answer(
    state: Arc<AdminState>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    Ok(match request.uri().path() {
        "/metrics" => {
            let mut response = Response::new(full(state.metrics.render()));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/health" => plain(StatusCode::OK, "ok"),
        "/ready" => {
            let ready = state.server.ready.load(Ordering::Acquire);
            let body =
                serde_json::json!({ "ready": ready, "backplane": state.server.backplane.status() });
            let mut response = Response::new(full(body.to_string()));
            *response.status_mut() = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    })
}
