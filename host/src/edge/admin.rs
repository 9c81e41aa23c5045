//! The admin listener, apart from the public port (loopback by default):
//! `/metrics` (Prometheus text), `/health` (the process is up) and
//! `/ready` (the apps are loaded and serving).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::edge::response::{Body, full, plain};
use crate::edge::state::ServerState;

/// What the admin endpoints report on.
pub(crate) struct AdminState {
    /// Renders `/metrics`.
    pub(crate) metrics: PrometheusHandle,
    /// The server, whose readiness and backplane `/ready` reports.
    pub(crate) server: Arc<ServerState>,
}

/// Serves the admin endpoints on `listener` until the process ends.
pub(crate) fn spawn(listener: TcpListener, state: Arc<AdminState>) {
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
pub(crate) async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
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
            let ready = state.server.serving.load().ready;
            let body =
                serde_json::json!({ "ready": ready, "backplane": state.server.delivery.status() });
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
