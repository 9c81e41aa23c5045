//! HTTP requests: route them, read the body within its limit, ask the app,
//! and turn its answer (or its failure) into a response.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::auth::{authenticate, unauthorized};
use super::compress::{self, Encoding};
use super::response::{Body, full, plain};
use super::state::ServerState;
use super::{sse, statics, welcome, ws};
use crate::router::{HttpMatch, Method, RequestPath, host_name, query_pairs};
use crate::runtime::bindings::{HttpRequest, HttpResponse};
use crate::runtime::{AppCallError, Serving};
use crate::telemetry;

/// Handles one request on the shared port: WebSocket upgrades go to
/// [`ws::upgrade`], everything else to an app's HTTP route.
pub(crate) async fn handle(
    state: Arc<ServerState>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = match RequestPath::parse(request.uri().path()) {
        Ok(path) => path,
        Err(err) => {
            telemetry::refused("bad_path");
            return Ok(plain(StatusCode::BAD_REQUEST, &format!("bad path: {err}")));
        }
    };
    // One view of what is serving for the whole request.
    let serving = state.serving.load_full();
    let host = match known_host(&state, &serving, &request) {
        Ok(host) => host,
        Err((status, why)) => {
            telemetry::refused(if status == StatusCode::BAD_REQUEST {
                "host_header"
            } else {
                "unknown_host"
            });
            return Ok(plain(status, why));
        }
    };
    if ws::upgrade::is_upgrade_request(&request) {
        return Ok(ws::upgrade::accept(&state, &serving, request, &host, &path));
    }
    // A client asking for an event stream gets the SSE route before an
    // HTTP route on the same path.
    if request.method() == hyper::Method::GET
        && sse::is_stream_request(request.headers())
        && let Some(response) = sse::accept(&state, &serving, &request, &host, &path)
    {
        return Ok(response);
    }
    Ok(route(&state, &serving, request, &host, &path).await)
}

/// The request's host name, if the server answers for it: one of the
/// server's names, or one an app claims. Anything else is refused before
/// any app is involved, so a page on an attacker's domain that resolves
/// here (DNS rebinding) reaches nothing.
fn known_host(
    state: &ServerState,
    serving: &Serving,
    request: &Request<Incoming>,
) -> Result<String, (StatusCode, &'static str)> {
    let header = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    let Some(host) = header.and_then(host_name) else {
        return Err((StatusCode::BAD_REQUEST, "missing or malformed Host header"));
    };
    if state.names.matches(&host) || serving.routes.claims(&host) {
        Ok(host)
    } else {
        Err((
            StatusCode::MISDIRECTED_REQUEST,
            "this server does not answer for that host name (see --server-names)",
        ))
    }
}

async fn route(
    state: &ServerState,
    serving: &Serving,
    request: Request<Incoming>,
    host: &str,
    path: &RequestPath,
) -> Response<Body> {
    let Some(method) = Method::from_http(request.method()) else {
        return plain(StatusCode::NOT_IMPLEMENTED, "method not supported");
    };
    let (target, params) = match serving.routes.match_http(method, host, path) {
        HttpMatch::Found(found) => (found.entry.target.clone(), found.params),
        HttpMatch::MethodNotAllowed(allowed) => {
            let allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            return response;
        }
        HttpMatch::NotFound if serving.routes.match_sse(host, path).is_some() => {
            if method == Method::Get
                && let Some(response) = sse::accept(state, serving, &request, host, path)
            {
                return response;
            }
            return sse::wrong_method();
        }
        HttpMatch::NotFound if serving.routes.match_websocket(host, path).is_some() => {
            let mut response = plain(
                StatusCode::UPGRADE_REQUIRED,
                "this is a WebSocket route: connect with a WebSocket client",
            );
            response
                .headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            return response;
        }
        HttpMatch::NotFound => {
            if matches!(method, Method::Get | Method::Head)
                && let Some(file) = statics::find(serving, host, path).await
            {
                return file.respond(request.headers(), method == Method::Head);
            }
            if state.dev && method == Method::Get && path.decoded == "/" {
                return welcome::page(serving, host);
            }
            return plain(StatusCode::NOT_FOUND, "not found");
        }
    };

    let (parts, body) = request.into_parts();
    let encoding = compress::negotiate(&parts.headers);
    let query = query_pairs(parts.uri.query());
    let claims = match authenticate(&state.auth, &target, &parts.headers, &query) {
        Ok(verified) => verified.map(|verified| verified.claims),
        Err(err) => return unauthorized(&err),
    };
    let body = match read_body(state, body, &parts.headers).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let app_request = HttpRequest {
        method: method.into(),
        path: path.decoded.clone(),
        params,
        query,
        claims,
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect(),
        body: body.bytes.to_vec(),
    };

    let answer = tokio::time::timeout(
        state.limits.http_timeout(),
        target.app.http(target.route(), app_request),
    )
    .await;
    let response = match answer {
        Ok(Ok(response)) => {
            let head = method == Method::Head;
            let secure = state.tls.is_some();
            to_response(response, head, encoding, secure, &target.app.name)
        }
        Ok(Err(AppCallError::GuestFailed)) => {
            plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
        }
        Ok(Err(AppCallError::RouteGone)) => plain(StatusCode::NOT_FOUND, "not found"),
        Ok(Err(AppCallError::Unavailable)) => {
            plain(StatusCode::SERVICE_UNAVAILABLE, "app unavailable")
        }
        Err(_) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "app did not answer in time",
        ),
    };
    target.app.metrics.http_request(response.status().as_u16());
    response
}

/// A cookie the app sets over HTTPS, marked `Secure` if it is not yet:
/// a browser then never sends it over plain HTTP, where anyone on the way
/// could read it.
fn secure_cookie(cookie: String) -> String {
    let marked = cookie
        .split(';')
        .skip(1)
        .any(|attribute| attribute.trim().eq_ignore_ascii_case("secure"));
    if marked { cookie } else { cookie + "; Secure" }
}

/// A body read whole, with its share of the in-flight budget (given back
/// when dropped, once the app has answered).
struct ReadBody {
    /// The bytes.
    bytes: Bytes,
    /// Its KiB of [`ServerState::body_budget`].
    _budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Reads the body within its byte limit (413), its share of the in-flight
/// budget (503), and its time: a body that pauses too long, or takes too
/// long in all, gets 408. Each refusal closes the connection, since the
/// rest of the body is never read.
async fn read_body(
    state: &ServerState,
    body: Incoming,
    headers: &hyper::HeaderMap,
) -> Result<ReadBody, Response<Body>> {
    let limit = state.limits.max_body_bytes.get();
    let (total, idle) = state.limits.body_timeouts();
    let refuse = |status, reason: &'static str, message: &str| {
        telemetry::refused(reason);
        let mut response = plain(status, message);
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    };
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body too large",
        )
    };
    let busy = || {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "body_budget",
            "too many request bodies in flight",
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let mut budget: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let mut held_kib = 0u32;
    let mut take = |bytes: usize| -> bool {
        let wanted = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        if wanted <= held_kib {
            return true;
        }
        match state
            .body_budget
            .clone()
            .try_acquire_many_owned(wanted - held_kib)
        {
            Ok(more) => {
                held_kib = wanted;
                match &mut budget {
                    Some(permit) => permit.merge(more),
                    None => budget = Some(more),
                }
                true
            }
            Err(_) => false,
        }
    };
    if let Some(len) = declared
        && !take(len as usize)
    {
        return Err(busy());
    }
    let mut body = body;
    let mut bytes = bytes::BytesMut::new();
    let started = tokio::time::Instant::now();
    loop {
        let left = total.saturating_sub(started.elapsed());
        let frame = match tokio::time::timeout(idle.min(left), body.frame()).await {
            Err(_) => {
                return Err(refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "request body too slow",
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return Err(plain(
                    StatusCode::BAD_REQUEST,
                    "could not read the request body",
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if bytes.len() + data.len() > limit {
            return Err(too_large());
        }
        if !take(bytes.len() + data.len()) {
            return Err(busy());
        }
        bytes.extend_from_slice(&data);
    }
    Ok(ReadBody {
        bytes: bytes.freeze(),
        _budget: budget,
    })
}

/// Headers the host sets itself, and hop-by-hop headers (RFC 9110 §7.6.1),
/// which describe this connection rather than the answer: an app's values
/// for them are dropped, so it can neither frame nor repurpose the
/// connection.
fn host_managed(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ]
    .contains(name)
        || ["keep-alive", "proxy-connection"].contains(&name.as_str())
}

/// Converts an app's answer, refusing what HTTP cannot carry and what only
/// the host may say: an informational (1xx) status, 101 included, would
/// claim the connection for another protocol or leave the request
/// unanswered. A text body is compressed with `encoding`, the one the
/// client prefers, unless the app encoded it itself.
fn to_response(
    answer: HttpResponse,
    head: bool,
    encoding: Option<Encoding>,
    secure: bool,
    app: &str,
) -> Response<Body> {
    let status = StatusCode::from_u16(answer.status)
        .ok()
        .filter(|_| (200..=599).contains(&answer.status));
    let Some(status) = status else {
        tracing::error!(
            app,
            status = answer.status,
            "app answered with a status it may not send (200 to 599 only)"
        );
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error");
    };
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    for (name, mut value) in answer.headers {
        if secure && name.eq_ignore_ascii_case("set-cookie") {
            value = secure_cookie(value);
        }
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(name), Ok(value)) if !host_managed(&name) => {
                response.headers_mut().append(name, value);
            }
            (Ok(_), Ok(_)) => {}
            _ => tracing::warn!(app, header = ?name, "app sent an invalid header; dropped"),
        }
    }
    // HEAD gets the headers GET would, and no body.
    let body = compress::answer(response.headers_mut(), status, answer.body, encoding);
    if !head {
        *response.body_mut() = full(body);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::secure_cookie;

    #[test]
    fn cookies_set_over_https_are_marked_secure_once() {
        assert_eq!(secure_cookie("a=1".into()), "a=1; Secure");
        assert_eq!(
            secure_cookie("a=1; Path=/; HttpOnly".into()),
            "a=1; Path=/; HttpOnly; Secure"
        );
        assert_eq!(
            secure_cookie("a=1; secure; Path=/".into()),
            "a=1; secure; Path=/"
        );
        // A value that merely contains the word is not the attribute.
        assert_eq!(secure_cookie("secure=1".into()), "secure=1; Secure");
    }
}
