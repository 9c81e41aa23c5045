//! Sending one app request: checked against the app's grant, resolved,
//! checked again at the address, connected, and bounded.
//!
//! Every step runs before one instant: the request's timeout from when it
//! was made, or the deadline of the guest call that made it if that comes
//! first. A guest that waits on a slow upstream therefore holds its app no
//! longer than any event may; the wait itself is a future on the async
//! runtime, so it holds no worker and other apps run meanwhile.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Sleep, timeout_at};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::OutboundGrant;
use super::address::is_internal;
use super::allow::{Destination, HostPattern};

/// Largest response head (status line and headers) read, in bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What a sent request resolves to: the response, and the connection's
/// remaining work (wasmtime runs it beside the body).
type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// The outbound side of one instance: its app's grant, if any, and the
/// deadline of the call in progress (copied in before each use).
#[derive(Debug, Default)]
pub(crate) struct AppOutbound {
    /// Where the app may send requests; `None`: nowhere.
    pub(crate) grant: Option<Arc<OutboundGrant>>,
    /// When the guest call in progress must end.
    pub(crate) deadline: Option<Instant>,
}

impl WasiHttpHooks for AppOutbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _unused: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Result<Sent, Error>> + Send> {
        let grant = self.grant.clone();
        let until = grant.as_ref().map(|grant| {
            let timeout = Instant::now() + grant.policy.limits.timeout;
            self.deadline
                .map_or(timeout, |deadline| deadline.min(timeout))
        });
        Box::new(async move {
            let (Some(grant), Some(until)) = (grant, until) else {
                return Err(Error::HttpRequestDenied);
            };
            let app = grant.app.clone();
            let sent = send(grant, request, tokio::time::Instant::from_std(until)).await;
            if let Err(err) = &sent {
                tracing::debug!(%app, "outbound request failed: {err}");
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

/// Sends `request` for the app of `grant`, everything done by `until`.
async fn send(
    grant: Arc<OutboundGrant>,
    mut request: http::Request<WasiBody>,
    until: tokio::time::Instant,
) -> Result<Sent, Error> {
    let to = destination(request.uri())?;
    let entry = grant
        .policy
        .hosts
        .iter()
        .find(|entry| entry.allows(&to))
        .ok_or(Error::HttpRequestDenied)?;
    let permit = grant
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| Error::ConnectionLimitReached)?;
    let addresses = timeout_at(until, resolve(&to, entry))
        .await
        .map_err(|_| Error::DnsTimeout)??;
    let stream = timeout_at(until, connect(&addresses))
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
    let stream: Box<dyn Stream> = if to.tls {
        let tls = tls_connector().connect(server_name(&to)?, stream);
        Box::new(
            timeout_at(until, tls)
                .await
                .map_err(|_| Error::ConnectionTimeout)?
                .map_err(Error::Tls)?,
        )
    } else {
        Box::new(stream)
    };
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .handshake::<_, WasiBody>(TokioIo::new(stream))
        .await
        .map_err(Error::Hyper)?;
    // The request line names the path only; the host went in `Host`.
    *request.uri_mut() = request.uri().path_and_query().map_or_else(
        || http::Uri::from_static("/"),
        |p| {
            p.as_str()
                .parse()
                .unwrap_or_else(|_| http::Uri::from_static("/"))
        },
    );

    let mut conn = Box::pin(conn);
    let mut response = std::pin::pin!(sender.send_request(request));
    let waited = timeout_at(until, async {
        tokio::select! {
            response = &mut response => (response, false),
            ended = &mut conn => match ended {
                // The connection ended first: the response is ready or lost.
                Ok(()) => ((&mut response).await, true),
                Err(err) => (Err(err), true),
            },
        }
    })
    .await
    .map_err(|_| Error::HttpResponseTimeout)?;
    let (response, conn_done) = waited;
    let response = response.map_err(Error::Hyper)?;

    let max = grant.policy.limits.max_response_bytes;
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(Error::HttpResponseBodySize(Some(max)));
    }
    let response = response.map(|body| {
        BoundedBody {
            inner: body,
            received: 0,
            max,
            ends: Box::pin(tokio::time::sleep_until(until)),
        }
        .boxed_unsync()
    });
    // The connection runs until the response is read, or the time is up;
    // the app's permit is held until then.
    let io = async move {
        let _permit: OwnedSemaphorePermit = permit;
        if conn_done {
            return Ok(());
        }
        match timeout_at(until, conn).await {
            Ok(ended) => ended.map_err(Error::Hyper),
            Err(_) => Err(Error::HttpResponseTimeout),
        }
    };
    Ok((response, Box::new(io)))
}

/// The scheme, host and port the guest addressed.
fn destination(uri: &http::Uri) -> Result<Destination, Error> {
    let tls = match uri.scheme() {
        Some(scheme) if *scheme == Scheme::HTTPS => true,
        Some(scheme) if *scheme == Scheme::HTTP => false,
        _ => return Err(Error::HttpRequestUriInvalid),
    };
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(Error::HttpRequestUriInvalid);
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok(Destination { tls, host, port })
}

/// The addresses `to` may be sent to: its name resolved, less any
/// internal address `entry` does not name.
async fn resolve(to: &Destination, entry: &HostPattern) -> Result<Vec<SocketAddr>, Error> {
    let found: Vec<SocketAddr> = match to.address() {
        Some(ip) => vec![SocketAddr::new(ip, to.port)],
        None => tokio::net::lookup_host((to.host.as_str(), to.port))
            .await
            .map_err(|err| Error::DnsError {
                rcode: Some(err.to_string()),
                info_code: None,
            })?
            .collect(),
    };
    if found.is_empty() {
        return Err(Error::DestinationNotFound);
    }
    let allowed: Vec<SocketAddr> = found
        .into_iter()
        .map(|addr| SocketAddr::new(addr.ip().to_canonical(), addr.port()))
        .filter(|addr| permitted(addr.ip(), entry))
        .collect();
    if allowed.is_empty() {
        return Err(Error::DestinationIpProhibited);
    }
    Ok(allowed)
}

/// A public address, or an internal one the entry names itself.
fn permitted(ip: IpAddr, entry: &HostPattern) -> bool {
    !is_internal(ip) || entry.names_address(ip)
}

/// A connection to the first of `addresses` that answers.
async fn connect(addresses: &[SocketAddr]) -> Result<TcpStream, Error> {
    let mut last = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(err) => last = Some(err),
        }
    }
    Err(last.map_or(Error::DestinationNotFound, Error::Connect))
}

/// The name the server's certificate must bear.
fn server_name(to: &Destination) -> Result<rustls::pki_types::ServerName<'static>, Error> {
    match to.address() {
        Some(ip) => Ok(ip.into()),
        None => rustls::pki_types::ServerName::try_from(to.host.clone())
            .map_err(|_| Error::HttpRequestUriInvalid),
    }
}

/// One TLS client configuration for every app: the web's public roots.
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the provider supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    });
    tokio_rustls::TlsConnector::from(config.clone())
}

/// A plain or TLS connection, as hyper sees it.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A response body cut off past the app's size limit or its time.
struct BoundedBody {
    /// The body as it arrives.
    inner: Incoming,
    /// Bytes passed on so far.
    received: u64,
    /// The app's limit.
    max: u64,
    /// When the request's time is up.
    ends: Pin<Box<Sleep>>,
}

impl Body for BoundedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.received > this.max {
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(this.max)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(Error::Hyper(err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.ends.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::HttpResponseTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_is_read_from_the_request_uri() {
        let uri: http::Uri = "https://API.Example.com./v1?x=1".parse().unwrap();
        let to = destination(&uri).unwrap();
        assert_eq!(
            (to.tls, to.host.as_str(), to.port),
            (true, "api.example.com", 443)
        );
        let uri: http::Uri = "http://[::1]:8080/".parse().unwrap();
        let to = destination(&uri).unwrap();
        assert_eq!(
            (to.tls, to.address(), to.port),
            (false, Some("::1".parse().unwrap()), 8080)
        );
    }

    #[test]
    fn an_internal_address_is_permitted_only_by_an_entry_naming_it() {
        let named: HostPattern = "http://127.0.0.1:*".parse().unwrap();
        let any: HostPattern = "*://*:*".parse().unwrap();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(permitted(loopback, &named));
        assert!(!permitted(loopback, &any));
        assert!(!permitted("10.0.0.1".parse().unwrap(), &named));
        assert!(permitted("93.184.216.34".parse().unwrap(), &any));
    }
}
