//! The WebSocket handshake (RFC 6455 §4.2) on the shared HTTP port: validate
//! the request, route it, answer 101, and hand the upgraded socket to a
//! [`ConnectionTask`].

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::connection::ConnectionTask;
use super::registry::{ConnectionHandle, OutboxBounds, Room};
use crate::auth::TokenSource;
use crate::http::{Body, authenticate, full, plain, query_pairs, unauthorized};
use crate::router::RequestPath;
use crate::runtime::bindings::Connection;
use crate::server::{PeerAddr, ServerState};
use crate::telemetry;
use std::net::IpAddr;

/// Upgrade-request headers an app gets to see on its connections.
const SHARED_HEADERS: [&str; 7] = [
    "origin",
    "user-agent",
    "cookie",
    "authorization",
    "accept-language",
    "x-forwarded-for",
    "sec-websocket-protocol",
];

/// Bytes read from a client's socket at a time. tungstenite's default
/// (128 KiB) would be allocated, and touched, for every connection: an idle
/// connection would cost that much memory. Larger messages still arrive
/// whole (the buffer grows to fit a frame announced as larger).
const READ_BUFFER_BYTES: usize = 2048;

/// Bytes of frames gathered before they are written to the socket.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// 503, try again later.
fn busy(what: &str) -> Response<Body> {
    let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, what);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// A 503 if another connection (in all, from this client, or on this
/// path) would exceed its cap.
fn over_capacity(state: &ServerState, room: &Room, from: IpAddr) -> Option<Response<Body>> {
    let refuse = |reason, what| {
        telemetry::refused(reason);
        Some(busy(what))
    };
    if state.registry.admitted() >= state.edge.max_connections.get() {
        return refuse("ws_connections", "too many WebSocket connections");
    }
    let per_ip = state.edge.per_address().cap_for(from);
    if per_ip.is_some_and(|cap| state.registry.admitted_from(from) >= cap) {
        return refuse(
            "ws_connections_per_ip",
            "too many WebSocket connections from this address",
        );
    }
    let per_path = state.edge.max_connections_per_path?;
    if state.registry.admitted_in(room) >= per_path.get() {
        return refuse(
            "ws_connections_per_path",
            "too many WebSocket connections on this path",
        );
    }
    None
}

/// Whether the request asks to switch to WebSocket.
pub fn is_upgrade_request(request: &Request<Incoming>) -> bool {
    let headers = request.headers();
    header_has_token(headers, header::UPGRADE, "websocket")
        && header_has_token(headers, header::CONNECTION, "upgrade")
}

/// Answers an upgrade request: 101 and a connection task, or a refusal
/// without upgrading.
pub fn accept(
    state: &Arc<ServerState>,
    mut request: Request<Incoming>,
    host: &str,
    path: &RequestPath,
) -> Response<Body> {
    if request.method() != hyper::Method::GET {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "WebSocket upgrades must use GET",
        );
    }
    let headers = request.headers();
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut response = plain(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported WebSocket version",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let origin = headers.get(header::ORIGIN).map(HeaderValue::as_bytes);
    let host_header = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !state.edge.origin_allowed(origin, host_header) {
        telemetry::refused("origin");
        return plain(StatusCode::FORBIDDEN, "origin not allowed");
    }
    let routes = state.routes.load();
    let Some(found) = routes.match_websocket(host, path) else {
        return plain(StatusCode::NOT_FOUND, "no WebSocket route for this path");
    };
    let target = found.entry.target.clone();
    let from = request
        .extensions()
        .get::<PeerAddr>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |peer| peer.0.ip());
    let room = Room::new(&target.app.name, &path.decoded);
    if let Some(refusal) = over_capacity(state, &room, from) {
        return refusal;
    }
    if target
        .app
        .max_connections()
        .is_some_and(|max| state.registry.admitted_by(&target.app.name) >= max)
    {
        telemetry::refused("ws_connections_per_app");
        return busy("this app holds all the WebSocket connections it may");
    }
    let query = query_pairs(request.uri().query());
    let (claims, subprotocol, expires_in) = match authenticate(state, &target, headers, &query) {
        Ok(Some(verified)) => (
            Some(verified.claims),
            verified.source == TokenSource::Subprotocol,
            Some(verified.expires_in),
        ),
        Ok(None) => (None, false, None),
        Err(err) => return unauthorized(&err),
    };
    let id = state.registry.next_id();
    let info = Arc::new(Connection {
        id: id.to_string(),
        path: path.decoded.clone(),
        params: found.params,
        query,
        claims,
        headers: SHARED_HEADERS
            .iter()
            .filter_map(|name| {
                let value = headers.get(*name)?;
                Some((
                    name.to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                ))
            })
            .collect(),
    });
    drop(routes);

    let (handle, outbox) = ConnectionHandle::new(
        id,
        target.app.name.clone(),
        &path.decoded,
        from,
        OutboxBounds {
            frames: state.limits.outbox_capacity.get(),
            bytes: state.limits.outbox_bytes.get(),
        },
    );
    let max = state.limits.max_message_bytes.get();
    // The write buffer is bounded: a peer that sends pings (or anything
    // that asks for an answer) but never reads gets an error, not memory.
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(max + 2 * WRITE_BUFFER_BYTES);
    let task = ConnectionTask {
        handle,
        outbox,
        info,
        target,
        backplane: state.backplane.clone(),
        ping_interval: state.edge.ping_interval(),
        write_timeout: state.edge.write_timeout(),
        token_expires: expires_in.map(|left| tokio::time::Instant::now() + left),
        idle_timeout: state.edge.idle_timeout(),
    };
    // Admitted now, before answering, so the cap is exact; it joins its
    // path group when the app handles its `open` event.
    state.registry.admit(task.handle.clone());
    let registry = state.registry.clone();
    let on_upgrade = hyper::upgrade::on(&mut request);
    state.tasks.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                task.run(ws).await;
            }
            Err(err) => {
                tracing::debug!("WebSocket upgrade failed: {err}");
                registry.forget(&task.handle.id);
            }
        }
    });

    let mut response = Response::new(full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept_key) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    if subprotocol {
        // The client offered `bearer, <jwt>`; a handshake must select one.
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("bearer"),
        );
    }
    response
}
