//! Opening a connection for an app's request: where the guest addressed
//! it, the addresses its name resolves to less the internal ones its entry
//! does not name, TCP to the first that answers, TLS against the web's
//! public roots (and the operator's), and HTTP/1.1 over it.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::{future::Future, io};

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use http::uri::Scheme;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime_wasi_http::{Error, WasiBody};

use super::address::is_internal;
use super::allow::{Destination, HostPattern};

/// A request's place among its app's requests in flight, shared with
/// work of the request's that may outlive it.
pub(super) type Place = Arc<OwnedSemaphorePermit>;

/// Largest response head (status line and headers) read, in bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A new connection to `to` (an address `entry` permits), ready for a
/// request that holds `place`; its task stops when the guard is dropped,
/// unless kept.
pub(super) async fn open(
    to: &Destination,
    entry: &HostPattern,
    tls: &Arc<rustls::ClientConfig>,
    place: &Place,
) -> Result<(SendRequest<WasiBody>, Abort), Error> {
    let addresses = resolve(to, entry, place).await?;
    let stream = connect(&addresses).await?;
    let stream: Box<dyn Stream> = if to.tls {
        let tls = tokio_rustls::TlsConnector::from(tls.clone()).connect(server_name(to)?, stream);
        Box::new(tls.await.map_err(Error::Tls)?)
    } else {
        Box::new(stream)
    };
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .handshake::<_, WasiBody>(TokioIo::new(stream))
        .await
        .map_err(Error::Hyper)?;
    // Runs until the connection ends: when its sender is dropped (kept
    // idle a while first) or its server closes it.
    let task = tokio::spawn(async move {
        if let Err(err) = conn.await {
            tracing::debug!("outbound connection ended: {err}");
        }
    });
    Ok((sender, Abort(Some(task))))
}

/// A task stopped when this is dropped, unless kept.
pub(super) struct Abort(Option<tokio::task::JoinHandle<()>>);

impl Abort {
    /// Lets the task run to its own end.
    pub(super) fn keep(mut self) {
        self.0.take();
    }
}

impl Drop for Abort {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// The scheme, host and port the guest addressed.
pub(super) fn destination(uri: &http::Uri) -> Result<Destination, Error> {
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
async fn resolve(
    to: &Destination,
    entry: &HostPattern,
    place: &Place,
) -> Result<Vec<SocketAddr>, Error> {
    let found: Vec<SocketAddr> = match to.address() {
        Some(ip) => vec![SocketAddr::new(ip, to.port)],
        None => {
            let (host, port) = (to.host.clone(), to.port);
            let lookup = async move {
                tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map(Iterator::collect)
            };
            held_until_done(place.clone(), lookup)
                .await
                .map_err(|err| Error::DnsError {
                    rcode: Some(err.to_string()),
                    info_code: None,
                })?
        }
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

/// Runs `work` in a task of its own that holds `place` until `work` ends,
/// whether its answer is still awaited or not.
///
/// The system resolver cannot be stopped once asked: a name whose servers
/// never answer keeps one of the runtime's blocking threads through the
/// resolver's own timeouts, long after the request gave up. Holding the
/// request's place meanwhile means an app never has more lookups running
/// than requests it may have in flight.
async fn held_until_done<T: Send + 'static>(
    place: Place,
    work: impl Future<Output = io::Result<T>> + Send + 'static,
) -> io::Result<T> {
    tokio::spawn(async move {
        let done = work.await;
        drop(place);
        done
    })
    .await
    .map_err(io::Error::other)?
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

/// The TLS client configuration of every app's requests: the web's
/// public roots, and the operator's own (`--outbound-ca-file`) if given.
pub(crate) fn tls_config(extra_roots: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(file) = extra_roots {
        let certificates = CertificateDer::pem_file_iter(file)
            .and_then(|all| all.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("reading {}", file.display()))?;
        anyhow::ensure!(
            !certificates.is_empty(),
            "{} holds no certificate",
            file.display()
        );
        for certificate in certificates {
            roots
                .add(certificate)
                .with_context(|| format!("a certificate in {}", file.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS 1.2 and 1.3")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A plain or TLS connection, as hyper sees it.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lookup_given_up_on_keeps_its_place_until_it_ends() {
        let places = Arc::new(tokio::sync::Semaphore::new(1));
        let place = Arc::new(places.clone().try_acquire_owned().unwrap());
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let mut lookup = Box::pin(held_until_done(place, async move {
            answered.await.map_err(io::Error::other)
        }));
        // Asked once, then given up on.
        tokio::select! {
            biased;
            _ = &mut lookup => panic!("the lookup has no answer yet"),
            () = std::future::ready(()) => drop(lookup),
        }
        assert_eq!(places.available_permits(), 0, "its place is still held");
        // The resolver answers at last: the place is free.
        answer.send(()).unwrap();
        drop(places.acquire().await.unwrap());
    }

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

    #[test]
    fn extra_roots_that_cannot_be_read_are_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = format!("{:#}", tls_config(Some(&missing)).unwrap_err());
        assert!(err.contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = format!("{:#}", tls_config(Some(&empty)).unwrap_err());
        assert!(err.contains("holds no certificate"), "{err}");
        assert!(tls_config(None).is_ok());
    }
}
