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
use crate::edge::join::{check_origin, join};
use crate::edge::response::{Body, full, plain};
use crate::edge::state::ServerState;
use crate::router::RequestPath;
use crate::runtime::Serving;

/// The subprotocol in which every message the host sends starts with a
/// line saying what it is: its position when its path keeps history
/// (`<epoch>-<offset>`), nothing for other messages, `!recovered` before
/// the outcome of a recovery. See the README's "Message history and
/// recovery".
pub(crate) const POSITIONS: &str = "tina4.v1";
/// What a client that offered [`POSITIONS`] beside this one gets where the
/// host does not frame: a browser fails a handshake that selects none of
/// the subprotocols it offered, so frond.js offers both.
pub(crate) const PLAIN: &str = "tina4.plain";

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

/// Whether the request asks to switch to WebSocket.
pub(crate) fn is_upgrade_request(request: &Request<Incoming>) -> bool {
    let headers = request.headers();
    header_has_token(headers, header::UPGRADE, "websocket")
        && header_has_token(headers, header::CONNECTION, "upgrade")
}

/// Answers an upgrade request: 101 and a connection task, or a refusal
/// without upgrading.
pub(crate) fn accept(
    state: &Arc<ServerState>,
    serving: &Serving,
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
    if let Err(refused) = check_origin(state, headers) {
        return *refused;
    }
    let Some(found) = serving.routes.match_websocket(host, path) else {
        return plain(StatusCode::NOT_FOUND, "no WebSocket route for this path");
    };
    let joined = match join(state, &request, path, found, false) {
        Ok(joined) => joined,
        Err(refused) => return *refused,
    };
    // A client that speaks `tina4.v1`, on a path that keeps history or
    // announces presence, learns each kept message's position and may
    // recover from one, and tells presence notices from messages;
    // elsewhere it gets messages as they were sent.
    let room = &joined.member.handle().room;
    let registry = state.delivery.registry();
    let framed = header_has_token(request.headers(), header::SEC_WEBSOCKET_PROTOCOL, POSITIONS)
        && (registry.history().keeps(room)
            || registry.presence().policy(room).is_some_and(|p| p.announce));
    if framed && let Some(from) = joined.position.clone() {
        joined.member.recover_from(from);
    }

    let max = state.limits.max_message_bytes.get();
    // The write buffer is bounded: a peer that sends pings (or anything
    // that asks for an answer) but never reads gets an error, not memory.
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(max + 2 * WRITE_BUFFER_BYTES);
    let subprotocol = joined.bearer_subprotocol;
    let plain = header_has_token(request.headers(), header::SEC_WEBSOCKET_PROTOCOL, PLAIN);
    let task = ConnectionTask {
        member: joined.member,
        outbox: joined.outbox,
        info: joined.info,
        target: joined.target,
        delivery: state.delivery.clone(),
        ping_interval: state.edge.ping_interval(),
        write_timeout: state.edge.write_timeout(),
        token_expires: joined.token_expires,
        idle_timeout: state.edge.idle_timeout(),
        framed,
    };
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
            Err(err) => tracing::debug!("WebSocket upgrade failed: {err}"),
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
    if framed {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(POSITIONS),
        );
    } else if subprotocol {
        // The client offered `bearer, <jwt>`; a handshake must select one.
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("bearer"),
        );
    } else if plain {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(PLAIN),
        );
    }
    response
}
