//! TLS on the public port: HTTPS and wss:// with a certificate from PEM
//! files, a renewed certificate taken without dropping a connection, a
//! broken renewal refused, and a handshake that never comes bounded.

use std::path::Path;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Server, ServerOptions, metric, within};

/// A self-signed certificate for `localhost`, and its key, as PEM.
pub struct Pair {
    /// The certificate, for a client to trust.
    der: CertificateDer<'static>,
    /// The certificate in PEM.
    cert: String,
    /// The private key in PEM.
    key: String,
}

pub fn new_pair() -> Pair {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("a test certificate");
    Pair {
        der: made.cert.der().clone(),
        cert: made.cert.pem(),
        key: made.signing_key.serialize_pem(),
    }
}

/// Writes `pair` where the server reads it: each file written aside and
/// renamed into place, as a renewal tool does.
fn install(pair: &Pair, dir: &Path) {
    for (name, text) in [("key.pem", &pair.key), ("cert.pem", &pair.cert)] {
        let aside = dir.join(format!(".{name}.new"));
        std::fs::write(&aside, text).expect("write a PEM file");
        std::fs::rename(&aside, dir.join(name)).expect("rename it into place");
    }
}

/// A server of the echo app on TLS with `pair`, its files in `dir`.
pub async fn start_tls(pair: &Pair, dir: &Path, extra: &[&str]) -> Server {
    start_tls_serving(pair, dir, &["echo"], extra).await
}

/// [`start_tls`], serving `apps`.
async fn start_tls_serving(
    pair: &Pair,
    dir: &Path,
    apps: &[&'static str],
    extra: &[&str],
) -> Server {
    install(pair, dir);
    let mut args = vec![
        "--tls-cert".to_string(),
        dir.join("cert.pem").display().to_string(),
        "--tls-key".to_string(),
        dir.join("key.pem").display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    Server::start_with(ServerOptions {
        apps: apps.to_vec(),
        args,
        ..Default::default()
    })
    .await
}

/// A TLS connection to `server` that trusts `pair` alone.
async fn tls_to(server: &Server, pair: &Pair) -> std::io::Result<TlsStream<TcpStream>> {
    tls_with_alpn(server, pair, &[]).await
}

/// A TLS connection to `server` that trusts `pair` alone and offers the
/// `alpn` protocols.
pub async fn tls_with_alpn(
    server: &Server,
    pair: &Pair,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pair.der.clone()).expect("a trusted root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(server.addr).await?;
    let name = ServerName::try_from("localhost").expect("a server name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// The whole answer, head and body, to `GET path` over HTTPS.
async fn https_get(server: &Server, pair: &Pair, path: &str) -> String {
    let mut https = tls_to(server, pair).await.expect("a TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    https.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    within("the HTTPS answer", https.read_to_string(&mut answer))
        .await
        .unwrap();
    answer
}

/// A wss:// connection to the echo route, trusting `pair`.
async fn wss(server: &Server, pair: &Pair) -> WebSocketStream<TlsStream<TcpStream>> {
    let tls = tls_to(server, pair).await.expect("a TLS handshake");
    let url = format!("wss://localhost:{}/ws/echo", server.addr.port());
    let (ws, _) = within("the wss upgrade", tokio_tungstenite::client_async(url, tls))
        .await
        .expect("a WebSocket over TLS");
    ws
}

/// Sends `text` on `ws` and returns the answer.
async fn echo(ws: &mut WebSocketStream<TlsStream<TcpStream>>, text: &str) -> String {
    ws.send(Message::text(text)).await.expect("send");
    match within("the echo", ws.next()).await {
        Some(Ok(Message::Text(answer))) => answer.to_string(),
        other => panic!("expected an echo, got {other:?}"),
    }
}

#[tokio::test]
async fn https_and_wss_are_served_with_a_certificate_from_pem_files() {
    let dir = tempfile::tempdir().unwrap();
    let pair = new_pair();
    let server = start_tls(&pair, dir.path(), &[]).await;

    let mut ws = wss(&server, &pair).await;
    assert_eq!(echo(&mut ws, "over TLS").await, "Echo: over TLS");

    let answer = https_get(&server, &pair, "/hello/tls").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("Hello, tls!"), "{answer}");

    // Plain HTTP on the TLS port gets no answer from any app.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET /hello/plain HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut bytes = Vec::new();
    let _ = within("the plain connection to end", plain.read_to_end(&mut bytes)).await;
    assert!(!String::from_utf8_lossy(&bytes).contains("Hello"));
}

#[tokio::test]
async fn cookies_set_over_https_are_marked_secure() {
    let dir = tempfile::tempdir().unwrap();
    let pair = new_pair();
    let server = start_tls_serving(&pair, dir.path(), &["probe"], &[]).await;
    let answer = https_get(&server, &pair, "/probe/cookie").await;
    assert!(
        answer.contains("\r\nset-cookie: session=abc; Path=/; HttpOnly; Secure\r\n"),
        "{answer}"
    );
    // Served plain (a proxy in front may end TLS), the app's cookie is its own.
    let plain = Server::start(&["probe"]).await;
    let response = crate::support::http()
        .get(plain.url("/probe/cookie"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["set-cookie"],
        "session=abc; Path=/; HttpOnly"
    );
}

#[tokio::test]
async fn a_renewed_certificate_serves_new_handshakes_and_open_connections_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (first, renewed) = (new_pair(), new_pair());
    let server = start_tls(&first, dir.path(), &[]).await;
    let mut open = wss(&server, &first).await;
    assert_eq!(echo(&mut open, "before").await, "Echo: before");

    install(&renewed, dir.path());
    server.wait_for_log(&["TLS certificate reloaded"]).await;
    // New handshakes get the renewed certificate: a client that trusts
    // only the first one is turned away, one that trusts the new one is in.
    assert!(tls_to(&server, &first).await.is_err());
    let mut fresh = wss(&server, &renewed).await;
    assert_eq!(echo(&mut fresh, "renewed").await, "Echo: renewed");
    // The connection made before the renewal never noticed.
    assert_eq!(echo(&mut open, "after").await, "Echo: after");
}

#[tokio::test]
async fn a_broken_renewal_is_refused_and_the_certificate_in_use_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, other) = (new_pair(), new_pair());
    let server = start_tls(&pair, dir.path(), &[]).await;
    // The key of another certificate: the pair does not go together.
    std::fs::write(dir.path().join(".key.pem.new"), &other.key).unwrap();
    std::fs::rename(dir.path().join(".key.pem.new"), dir.path().join("key.pem")).unwrap();
    server
        .wait_for_log(&["TLS certificate not reloaded", "does not go with"])
        .await;
    let mut ws = wss(&server, &pair).await;
    assert_eq!(echo(&mut ws, "still").await, "Echo: still");
}

#[tokio::test]
async fn a_handshake_that_never_comes_is_dropped_at_the_head_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pair = new_pair();
    let server = start_tls(&pair, dir.path(), &["--handshake-timeout-ms", "1000"]).await;
    // Connected, and silent: the server gives up on it.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = within("the server to drop a silent client", silent.read(&mut byte)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let text = server.metrics().await;
    assert_eq!(
        metric(&text, "tina4_refused_total", &[("reason", "tls_handshake")]),
        1.0
    );
    // A client that does shake hands is served as ever.
    let mut ws = wss(&server, &pair).await;
    assert_eq!(echo(&mut ws, "next").await, "Echo: next");
}

#[tokio::test]
async fn the_plain_port_sends_every_request_to_https() {
    let dir = tempfile::tempdir().unwrap();
    let pair = new_pair();
    let port = crate::support::free_port();
    let server = start_tls(
        &pair,
        dir.path(),
        &["--redirect-http-port", &port.to_string()],
    )
    .await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = plain
        .post(format!("http://127.0.0.1:{port}/hello/x?q=1"))
        .header("host", "localhost:80")
        .body("kept by a 308")
        .send()
        .await
        .expect("an answer on the plain port");
    assert_eq!(response.status().as_u16(), 308);
    assert_eq!(
        response.headers()["location"],
        format!("https://localhost:{}/hello/x?q=1", server.addr.port()).as_str()
    );
    // Nothing is served plain, not even a WebSocket upgrade.
    let upgrade = plain
        .get(format!("http://127.0.0.1:{port}/ws/echo"))
        .header("host", "localhost")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(upgrade.status().as_u16(), 308);
}

/// Runs `serve` with `args` on an empty apps folder, expecting it to
/// refuse to start; returns what it said.
async fn refused_start(args: &[&std::ffi::OsStr]) -> String {
    let apps = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(crate::support::host_binary())
        .args(["serve", "--port", "0", "--admin-listen", "off"])
        .args(args)
        .arg(apps.path())
        .kill_on_drop(true)
        .output();
    let output = within("the server to refuse to start", output)
        .await
        .expect("run tina4-wasm");
    assert_eq!(output.status.code(), Some(2));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_certificate_without_its_key_or_with_the_wrong_one_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, other) = (new_pair(), new_pair());
    install(&pair, dir.path());
    let cert = dir.path().join("cert.pem");
    let said = refused_start(&["--tls-cert".as_ref(), cert.as_os_str()]).await;
    assert!(said.contains("--tls-key"), "{said}");

    let wrong = dir.path().join("other-key.pem");
    std::fs::write(&wrong, &other.key).unwrap();
    let said = refused_start(&[
        "--tls-cert".as_ref(),
        cert.as_os_str(),
        "--tls-key".as_ref(),
        wrong.as_os_str(),
    ])
    .await;
    assert!(said.contains("does not go with the certificate"), "{said}");
}
