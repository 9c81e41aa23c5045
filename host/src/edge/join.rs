//! A client joining one of an app's path groups, by WebSocket upgrade or
//! by opening an event stream: the checks both make before answering (the
//! page's origin, the connection caps, the route's token), and the
//! connection record its app will see.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::Request;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::delivery::{Caps, ConnectionHandle, Membership, OutboxBounds, Outgoing, Position};
use crate::edge::auth::{TokenSource, authenticate, unauthorized};
use crate::edge::response::{Body, busy, plain};
use crate::edge::state::{PeerAddr, ServerState};
use crate::router::{RequestPath, RouteEntry, RouteMatch, query_pairs};
use crate::runtime::bindings::Connection;
use crate::runtime::{AppHandle, RouteTarget};
use crate::telemetry;

/// The answer to a client that may not join.
pub(crate) type Refusal = Box<Response<Body>>;

/// A connection admitted into delivery, its app not yet told.
pub(crate) struct Joined {
    /// Its place in delivery; it joins its path group at `open`.
    pub(crate) member: Arc<Membership>,
    /// The outbox the registry fills, for the connection's task.
    pub(crate) outbox: mpsc::Receiver<Outgoing>,
    /// The connection as the app sees it.
    pub(crate) info: Arc<Connection>,
    /// The app and route that serve it.
    pub(crate) target: RouteTarget,
    /// On a secured route: when the client's token expires.
    pub(crate) token_expires: Option<Instant>,
    /// The token came as the `bearer` WebSocket subprotocol, which the
    /// handshake must then select.
    pub(crate) bearer_subprotocol: bool,
    /// Where a reconnecting client had got to in its path's history
    /// (`tina4_epoch` and `tina4_offset` in the query), to recover from.
    pub(crate) position: Option<Position>,
}

/// Request headers an app gets to see on its connections, WebSocket or
/// event stream; a WebSocket's also `sec-websocket-protocol`, a stream's
/// `last-event-id`.
const SHARED_HEADERS: [&str; 6] = [
    "origin",
    "user-agent",
    "cookie",
    "authorization",
    "accept-language",
    "x-forwarded-for",
];

/// Query parameters the host reads and the app never sees.
const HOST_PARAMETERS: &str = "tina4_";

/// The position a client's query names, if it names one whole.
fn position_in(query: &[(String, String)]) -> Option<Position> {
    let value = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    Position::parse(&format!(
        "{}-{}",
        value("tina4_epoch")?,
        value("tina4_offset")?
    ))
}

/// The caps a connection of `app` is admitted under.
fn caps(state: &ServerState, app: &AppHandle, from: IpAddr) -> Caps {
    Caps {
        total: state.edge.max_connections.get(),
        per_address: state.edge.per_address().cap_for(from),
        per_path: state.edge.max_connections_per_path.map(|cap| cap.get()),
        per_app: app.max_connections(),
    }
}

/// Refuses a request made by a page of another origin (cross-site
/// WebSocket or event-stream hijacking), before any route is looked at.
pub(crate) fn check_origin(state: &ServerState, headers: &HeaderMap) -> Result<(), Refusal> {
    let origin = headers.get(header::ORIGIN).map(HeaderValue::as_bytes);
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if state.edge.origin_allowed(origin, host, state.tls.is_some()) {
        Ok(())
    } else {
        telemetry::refused("origin");
        Err(Box::new(plain(StatusCode::FORBIDDEN, "origin not allowed")))
    }
}

/// Admits the client of `request` to the route `found` (within the caps,
/// with a valid token if the route is secured), or answers why not. The
/// app sees [`SHARED_HEADERS`] of the request, and the one of its kind,
/// those present. A `one_way` client is an event stream's.
pub(crate) fn join(
    state: &ServerState,
    request: &Request<Incoming>,
    path: &RequestPath,
    found: RouteMatch<'_, RouteTarget>,
    one_way: bool,
) -> Result<Joined, Refusal> {
    let RouteMatch { entry, params } = found;
    let RouteEntry { target, .. } = entry;
    let target = target.clone();
    let from = request
        .extensions()
        .get::<PeerAddr>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |peer| peer.0.ip());
    let registry = state.delivery.registry();
    let id = registry.next_id();
    let (handle, outbox) = ConnectionHandle::new(
        id.clone(),
        target.app.name.clone(),
        target.app.metrics.clone(),
        &path.decoded,
        from,
        one_way,
        OutboxBounds {
            frames: state.limits.outbox_capacity.get(),
            bytes: state.limits.outbox_bytes.get(),
        },
    );
    // Admitted now, before answering, so the caps are exact; it joins its
    // path group when the app handles its `open` event, and is forgotten
    // when its task (or a refusal below, or a failed upgrade) drops it.
    let member = match registry.admit(handle, &caps(state, &target.app, from)) {
        Ok(member) => member,
        Err(refusal) => {
            telemetry::refused(refusal.as_str());
            return Err(Box::new(busy(&refusal.to_string())));
        }
    };
    let headers = request.headers();
    let mut query = query_pairs(request.uri().query());
    let position = position_in(&query);
    query.retain(|(name, _)| !name.starts_with(HOST_PARAMETERS));
    let (claims, bearer_subprotocol, expires_in) =
        match authenticate(&state.auth, &target, headers, &query) {
            Ok(Some(verified)) => (
                Some(verified.claims),
                verified.source == TokenSource::Subprotocol,
                Some(verified.expires_in),
            ),
            Ok(None) => (None, false, None),
            Err(err) => return Err(Box::new(unauthorized(&err))),
        };
    let info = Arc::new(Connection {
        id: id.to_string(),
        path: path.decoded.clone(),
        params,
        query,
        claims,
        headers: SHARED_HEADERS
            .iter()
            .chain([if one_way {
                &"last-event-id"
            } else {
                &"sec-websocket-protocol"
            }])
            .filter_map(|name| {
                let value = headers.get(*name)?;
                Some((
                    name.to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                ))
            })
            .collect(),
    });
    // A route that keys presence by a token claim: present before `open`.
    let registry = state.delivery.registry();
    if let Some(claims) = &info.claims
        && let Some(claim) = registry
            .presence()
            .policy(&member.handle().room)
            .and_then(|p| p.claim)
        && let Some(key) = claim_value(claims, &claim)
    {
        // A key too long for presence leaves the connection absent.
        let _ = registry.set_presence(member.handle(), &key, "");
    }
    Ok(Joined {
        member,
        outbox,
        info,
        target,
        token_expires: expires_in.map(|left| Instant::now() + left),
        bearer_subprotocol,
        position,
    })
}

/// The value of `claim` in a token's `claims` (JSON), as a presence key:
/// a string as it is, a number written out; `None` otherwise.
fn claim_value(claims: &str, claim: &str) -> Option<String> {
    let claims: serde_json::Value = serde_json::from_str(claims).ok()?;
    match claims.get(claim)? {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
