//! Sending one app request: checked against the app's grant, on a kept
//! connection or a new one ([`super::connect`]), and bounded.
//!
//! Every step runs before one instant: the request's timeout from when it
//! was made, or the deadline of the guest call that made it if that comes
//! first. A guest that waits on a slow upstream therefore holds its app no
//! longer than any event may; the wait itself is a future on the async
//! runtime, so it holds no worker and other apps run meanwhile.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::timeout_at;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::OutboundGrant;
use super::connect::{Place, destination, open};
use super::failures::RecentFailures;
use super::pool::PoolKey;
use crate::telemetry;

/// What a sent request resolves to: the response, and work to run beside
/// its body (none: the body is read whole before it is handed over).
type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// Where a request's failure is told, for the app's developer: some
/// guest libraries (JavaScript's `fetch`) keep only that it failed.
pub(crate) type FailureLog = Arc<dyn Fn(&str) + Send + Sync>;

/// The outbound side of one instance: its app's grant, if any, and the
/// deadline of the call in progress (copied in before each use).
pub(crate) struct AppOutbound {
    /// The app, for its metrics and the debug log.
    pub(crate) app: Arc<str>,
    /// Where the app may send requests; `None`: nowhere.
    pub(crate) grant: Option<Arc<OutboundGrant>>,
    /// When the guest call in progress must end.
    pub(crate) deadline: Option<Instant>,
    /// Where failed requests are told (the app's rate-limited log).
    pub(crate) failures: Option<FailureLog>,
    /// The instance's recent failures, for the guest to ask about.
    pub(crate) recent: Arc<RecentFailures>,
}

impl WasiHttpHooks for AppOutbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _unused: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Result<Sent, Error>> + Send> {
        // Named without its query, which may carry secrets.
        let target = format!(
            "{} {}://{}{}",
            request.method(),
            request.uri().scheme_str().unwrap_or("?"),
            request.uri().authority().map_or("", |a| a.as_str()),
            request.uri().path()
        );
        let (method, url) = (request.method().to_string(), request.uri().to_string());
        let failures = self.failures.clone();
        let recent = self.recent.clone();
        let tell = move |err: &Error| {
            let reason = reason(err);
            if let Some(log) = &failures {
                log(&format!("request {target} failed: {reason}"));
            }
            recent.record(&method, &url, kind(err), reason);
        };
        let app = self.app.clone();
        let Some(grant) = self.grant.clone() else {
            return Box::new(async move {
                let err = Error::HttpRequestDenied;
                telemetry::outbound_request(&app, "denied");
                tell(&err);
                Err(err)
            });
        };
        let timeout = Instant::now() + grant.policy.limits.timeout;
        let until = self
            .deadline
            .map_or(timeout, |deadline| deadline.min(timeout));
        // Taken now, as the guest sends: requests sent together are counted
        // in the order sent, whatever order their tasks first run in. A
        // request goes out only with a place in flight and room for its
        // whole answer, so a refusal (`busy`) always means it was not sent.
        let permit = grant.in_flight.clone().try_acquire_owned();
        let room = grant.answers.clone().try_acquire_many_owned(
            u32::try_from(grant.policy.limits.max_response_bytes).unwrap_or(u32::MAX),
        );
        Box::new(async move {
            let sent = match (permit, room) {
                (Ok(permit), Ok(room)) => {
                    let until = tokio::time::Instant::from_std(until);
                    send(app.clone(), grant, (permit, room), request, until).await
                }
                _ => Err(Error::ConnectionLimitReached),
            };
            let outcome = sent.as_ref().map_or_else(kind, |_| "ok");
            telemetry::outbound_request(&app, outcome);
            if let Err(err) = &sent {
                tracing::debug!(%app, "outbound request failed: {err}");
                tell(err);
            }
            sent
        })
    }

    // A tenant can cause these at will: they go to the debug log, not the
    // operator's warnings.
    fn p2_error_from_hyper(&mut self, err: &hyper::Error) -> ErrorCode {
        tracing::debug!("outbound HTTP error: {err}");
        ErrorCode::HttpProtocolError
    }

    fn p2_error_from_connect(&mut self, err: &std::io::Error) -> ErrorCode {
        tracing::debug!("outbound connection error: {err}");
        match err.kind() {
            std::io::ErrorKind::ConnectionRefused => ErrorCode::ConnectionRefused,
            std::io::ErrorKind::TimedOut => ErrorCode::ConnectionTimeout,
            _ => ErrorCode::DestinationUnavailable,
        }
    }

    fn p2_error_from_tls(&mut self, err: &std::io::Error) -> ErrorCode {
        tracing::debug!("outbound TLS error: {err}");
        if err.to_string().contains("certificate") {
            ErrorCode::TlsCertificateError
        } else {
            ErrorCode::TlsProtocolError
        }
    }
}

/// The kind of a failure: what the SDKs' errors and the metric's label
/// call it.
fn kind(err: &Error) -> &'static str {
    match err {
        Error::HttpRequestDenied => "denied",
        Error::DestinationIpProhibited => "prohibited",
        Error::ConnectionLimitReached => "busy",
        Error::HttpResponseBodySize(_) => "too-large",
        Error::HttpRequestUriInvalid => "invalid-url",
        Error::DnsTimeout
        | Error::ConnectionTimeout
        | Error::HttpResponseTimeout
        | Error::ConnectionReadTimeout => "timeout",
        _ => "failed",
    }
}

/// Why a request failed, in the words of the app's settings.
fn reason(err: &Error) -> String {
    match err {
        Error::HttpRequestDenied => "denied: not in allowed_outbound_hosts".to_string(),
        Error::DestinationIpProhibited => {
            "prohibited: it resolves to an internal address no entry names".to_string()
        }
        Error::ConnectionLimitReached => {
            "too many requests in flight (outbound.max_concurrent), or no room \
             for another answer beside those kept unread \
             (max_concurrent × max_response_bytes in all)"
                .to_string()
        }
        Error::HttpResponseBodySize(Some(max)) => {
            format!("response larger than {max} bytes (outbound.max_response_bytes)")
        }
        Error::DnsTimeout
        | Error::ConnectionTimeout
        | Error::HttpResponseTimeout
        | Error::ConnectionReadTimeout => {
            "timed out (outbound.timeout_ms, or the event's deadline)".to_string()
        }
        other => other.to_string(),
    }
}

/// Sends `request` for `app` under `grant`, everything done by `until`.
/// It holds its place in flight until the answer is read (and a name
/// lookup it started until that ends), and room for the whole answer, of
/// which the answer keeps what it takes until the guest has read it.
async fn send(
    app: Arc<str>,
    grant: Arc<OutboundGrant>,
    (place, mut room): (OwnedSemaphorePermit, OwnedSemaphorePermit),
    mut request: http::Request<WasiBody>,
    until: tokio::time::Instant,
) -> Result<Sent, Error> {
    let place: Place = Arc::new(place);
    let to = destination(request.uri())?;
    let entry = grant
        .policy
        .hosts
        .iter()
        .find(|entry| entry.allows(&to))
        .ok_or(Error::HttpRequestDenied)?;
    // A HEAD answer declares a length it does not send.
    let head_only = request.method() == http::Method::HEAD;
    // The request line names the path only; the host went in `Host`.
    let path = request
        .uri()
        .path_and_query()
        .and_then(|p| p.as_str().parse().ok())
        .unwrap_or_else(|| http::Uri::from_static("/"));
    *request.uri_mut() = path;
    let key = PoolKey {
        app,
        tls: to.tls,
        host: to.host.clone(),
        port: to.port,
    };
    let exchange = async {
        let kept = match grant.pool.take(&key) {
            Some(mut kept) => kept.ready().await.is_ok().then_some(kept),
            None => None,
        };
        let (mut sender, mut connection) = match kept {
            Some(kept) => (kept, None),
            None => open(&to, entry, &grant.tls, &place)
                .await
                .map(|(s, c)| (s, Some(c)))?,
        };
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut failed) => match failed.take_message() {
                // Not sent: the kept connection had closed. On a new one.
                Some(request) if connection.is_none() => {
                    let (fresh, task) = open(&to, entry, &grant.tls, &place).await?;
                    (sender, connection) = (fresh, Some(task));
                    sender.send_request(request).await.map_err(Error::Hyper)?
                }
                _ => return Err(Error::Hyper(failed.into_error())),
            },
        };
        // The whole body is read here, within the limit and the time, so
        // that either refusal reaches the guest as its own error code.
        let max = grant.policy.limits.max_response_bytes;
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if !head_only && declared.is_some_and(|length| length > max) {
            return Err(Error::HttpResponseBodySize(Some(max)));
        }
        let (head, body) = response.into_parts();
        let body = read_within(body, max).await?;
        if let Some(task) = connection {
            task.keep();
        }
        grant.pool.put(key, sender, grant.policy.limits.concurrency);
        Ok((head, body))
    };
    let (head, body) = timeout_at(until, exchange)
        .await
        .map_err(|_| Error::HttpResponseTimeout)??;
    // The body keeps its own bytes of the room until the guest has read it
    // to the end or let it go; the rest is free again now.
    let held = room
        .split(body.len())
        .ok_or(Error::HttpResponseBodySize(Some(room.num_permits() as u64)))?;
    drop(room);
    let body = Full::new(body)
        .map_err(|never| match never {})
        .map_frame(move |frame| {
            let _held = &held;
            frame
        })
        .boxed_unsync();
    let done: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async { Ok(()) });
    Ok((http::Response::from_parts(head, body), done))
}

/// The body whole, or an error once it passes `max` bytes.
async fn read_within(mut body: Incoming, max: u64) -> Result<Bytes, Error> {
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(Error::Hyper)?.into_data() {
            if (read.len() + data.len()) as u64 > max {
                return Err(Error::HttpResponseBodySize(Some(max)));
            }
            read.extend_from_slice(&data);
        }
    }
    Ok(read.freeze())
}
