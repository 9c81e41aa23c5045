//! Outbound HTTP: an app reaches a local upstream only where its
//! `<app>.toml` allows, each refusal and limit gives its own error, and a
//! guest waiting on a slow upstream stalls neither other apps nor its own
//! next event past its deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::support::{Server, ServerOptions, component, http, within};

/// A local upstream for apps to call. `GET /hello` answers a greeting,
/// `/size?n=N` N bytes with their length, `/stream?n=N` N bytes ending at
/// the close, `/hold` only once released; `POST /echo` its body back. It
/// keeps connections open between requests (but after `/stream`). The
/// test hears each request's line and body as it arrives.
pub struct Upstream {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Each request, as `METHOD /path body`.
    seen: mpsc::UnboundedReceiver<String>,
    /// Set to answer held requests.
    release: watch::Sender<bool>,
    /// Connections it has accepted.
    accepted: Arc<AtomicUsize>,
}

impl Upstream {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// An upstream speaking HTTPS with the certificate `ca` signed.
    async fn start_tls(ca: &TestCa) -> Self {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ca.leaf.clone()], ca.key.clone_key())
        .unwrap();
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tell, seen) = mpsc::unbounded_channel();
        let (release, released) = watch::channel(false);
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let (tell, released) = (tell.clone(), released.clone());
                match &tls {
                    None => drop(tokio::spawn(serve(socket, tell, released))),
                    Some(tls) => {
                        let handshake = tls.accept(socket);
                        tokio::spawn(async move {
                            if let Ok(socket) = handshake.await {
                                serve(socket, tell, released).await;
                            }
                        });
                    }
                }
            }
        });
        Self {
            port,
            seen,
            release,
            accepted,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The next request it got.
    pub async fn next(&mut self) -> String {
        within("a request to reach the upstream", self.seen.recv())
            .await
            .expect("the upstream runs")
    }

    /// Whether no request has reached it yet.
    pub fn untouched(&mut self) -> bool {
        self.seen.try_recv().is_err()
    }

    /// Connections accepted so far.
    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Lets held requests be answered.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}

/// Sends `GET path?url=<upstream>/hold` to the app, and while the
/// upstream holds it, asks the other app (`other.test`) many times over:
/// each answers, and the app is still waiting. Then releases it; the
/// app's answer.
pub async fn held_while_another_app_answers(
    server: &Server,
    upstream: &mut Upstream,
    path: &str,
) -> Value {
    let waiting = tokio::spawn(
        http()
            .get(server.url(path))
            .query(&[("url", upstream.url("/hold"))])
            .send(),
    );
    assert_eq!(upstream.next().await, "GET /hold ");
    for _ in 0..20 {
        let answer = http()
            .get(server.url("/probe/version"))
            .header("host", "other.test")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    assert!(
        !waiting.is_finished(),
        "the app is still waiting on its upstream"
    );
    upstream.release();
    let answer = within("the held request", waiting).await.unwrap().unwrap();
    answer.json().await.unwrap()
}

/// Answers requests on `socket` until the client closes it, or an answer
/// that ends at the close (`/stream`).
async fn serve(
    mut socket: impl AsyncRead + AsyncWrite + Unpin,
    tell: mpsc::UnboundedSender<String>,
    released: watch::Receiver<bool>,
) {
    while let Some((line, body)) = read_request(&mut socket).await {
        let mut words = line.split(' ');
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let _ = tell.send(format!(
            "{method} {target} {}",
            String::from_utf8_lossy(&body)
        ));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let n: usize = query
            .strip_prefix("n=")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let (keep, body) = match path {
            "/hello" => (true, b"hello from upstream".to_vec()),
            "/echo" => (true, body),
            "/size" => (true, vec![b'x'; n]),
            "/stream" => (false, vec![b'x'; n]),
            "/hold" => {
                let _ = released.clone().wait_for(|go| *go).await;
                (true, b"released".to_vec())
            }
            _ => (true, b"no such thing".to_vec()),
        };
        let head = if keep {
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len())
        } else {
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_string()
        };
        if socket.write_all(head.as_bytes()).await.is_err()
            || socket.write_all(&body).await.is_err()
            || !keep
        {
            break;
        }
    }
    let _ = socket.shutdown().await;
}

/// The next request on `socket`: its request line and body (read by its
/// length); `None` once the client is gone.
async fn read_request(socket: &mut (impl AsyncRead + Unpin)) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
        if socket.read(&mut byte).await.unwrap_or(0) == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    socket.read_exact(&mut body).await.ok()?;
    Some((head.lines().next().unwrap_or_default().to_string(), body))
}

/// A certificate authority of the test's own, and a certificate it signed
/// for `localhost` and 127.0.0.1.
struct TestCa {
    /// The authority's certificate, PEM: what a client is told to trust.
    pem: String,
    /// The signed certificate.
    leaf: CertificateDer<'static>,
    /// Its private key.
    key: PrivateKeyDer<'static>,
}

fn test_ca() -> TestCa {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &*ca)
        .unwrap();
    TestCa {
        pem: ca.pem(),
        leaf: leaf.der().clone(),
        key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    }
}

/// The probe with `settings` as its `probe.toml`, a second copy of it
/// (`other`, on `other.test`) with no grant, and the operator allowing
/// loopback (`--outbound-hosts`) plus `extra` flags.
async fn server(settings: String, extra: &[&str]) -> Server {
    let mut args = vec![
        "--outbound-hosts".to_string(),
        "*://*:*,*://127.0.0.1:*,http://localhost:*".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::start_with(ServerOptions {
        apps: vec!["probe"],
        files: vec![
            ("probe.toml", settings.into_bytes()),
            ("other.wasm", std::fs::read(component("probe")).unwrap()),
            ("other.toml", b"hosts = [\"other.test\"]\n".to_vec()),
        ],
        args,
        ..Default::default()
    })
    .await
}

/// The probe's outcome of fetching `url` (on `host`, if given): status and JSON.
async fn fetch(server: &Server, url: &str, host: Option<&str>) -> (u16, Value) {
    let mut request = http()
        .get(server.url("/probe/fetch"))
        .query(&[("url", url)]);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// The `error` a failed fetch answered with.
fn error_of(outcome: &(u16, Value)) -> String {
    assert_eq!(outcome.0, 502, "{outcome:?}");
    outcome.1["error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_listed_host_is_reached_and_anything_else_is_denied() {
    let mut upstream = Upstream::start().await;
    let settings = format!("allowed_outbound_hosts = [\"{}\"]\n", upstream.url(""));
    let server = server(settings, &[]).await;

    let reached = fetch(&server, &upstream.url("/hello"), None).await;
    assert_eq!(
        reached,
        (200, json!({"status": 200, "body": "hello from upstream"}))
    );
    assert_eq!(upstream.next().await, "GET /hello ");
    // A body goes out and comes back.
    let echoed = http()
        .post(server.url("/probe/fetch"))
        .query(&[("url", upstream.url("/echo"))])
        .body("ping ☃")
        .send()
        .await
        .unwrap();
    assert_eq!(
        echoed.json::<Value>().await.unwrap(),
        json!({"status": 200, "body": "ping ☃"})
    );
    assert_eq!(upstream.next().await, "POST /echo ping ☃");

    // Another address, another port, another scheme: not listed.
    let port = upstream.port;
    for url in [
        format!("http://127.0.0.2:{port}/hello"),
        format!("http://127.0.0.1:{}/hello", port.wrapping_add(1).max(1)),
        format!("https://127.0.0.1:{port}/hello"),
    ] {
        assert!(
            error_of(&fetch(&server, &url, None).await).contains("denied"),
            "{url}"
        );
    }
    // An app without a grant reaches nothing.
    let other = fetch(&server, &upstream.url("/hello"), Some("other.test")).await;
    assert!(error_of(&other).contains("denied"), "{other:?}");
    assert!(upstream.untouched(), "a denied request never left the host");
}

#[tokio::test]
async fn a_name_resolving_to_an_internal_address_is_prohibited_unless_the_address_is_listed() {
    let mut upstream = Upstream::start().await;
    // `localhost` is listed, but it resolves to loopback, which only an
    // entry naming the address reaches.
    let settings = format!(
        "allowed_outbound_hosts = [\"http://localhost:{}\"]\n",
        upstream.port
    );
    let server = server(settings, &[]).await;
    let outcome = fetch(
        &server,
        &format!("http://localhost:{}/hello", upstream.port),
        None,
    )
    .await;
    assert!(error_of(&outcome).contains("prohibited"), "{outcome:?}");
    assert!(
        upstream.untouched(),
        "nothing was sent to the internal address"
    );
}

#[tokio::test]
async fn an_entry_outside_the_operator_s_allowance_refuses_the_version() {
    // Loopback is not within the operator's default `*://*:*`.
    let settings = "allowed_outbound_hosts = [\"http://127.0.0.1:6379\"]\n".to_string();
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        files: vec![("probe.toml", settings.into_bytes())],
        ..Default::default()
    })
    .await;
    server
        .wait_for_log(&[
            "probe",
            "http://127.0.0.1:6379 is outside what the operator allows",
        ])
        .await;
    let answer = http()
        .get(server.url("/probe/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404, "the app is not served");
}

#[tokio::test]
async fn a_timeout_and_an_oversized_response_each_give_their_error() {
    let mut upstream = Upstream::start().await;
    let settings = format!(
        "allowed_outbound_hosts = [\"{}\"]\n[outbound]\ntimeout_ms = 300\nmax_response_bytes = 1000\n",
        upstream.url("")
    );
    let server = server(settings, &[]).await;

    let held = fetch(&server, &upstream.url("/hold"), None).await;
    assert!(error_of(&held).contains("timed out"), "{held:?}");
    assert_eq!(upstream.next().await, "GET /hold ");

    let fits = fetch(&server, &upstream.url("/size?n=1000"), None).await;
    assert_eq!(fits.0, 200, "{fits:?}");
    for path in ["/size?n=1001", "/stream?n=5000"] {
        let outcome = fetch(&server, &upstream.url(path), None).await;
        assert!(
            error_of(&outcome).contains("larger than 1000 bytes"),
            "{path}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn a_request_past_the_app_s_requests_in_flight_is_refused_at_once() {
    let upstream = Upstream::start().await;
    // Two in flight at most; the upstream holds both until their timeout,
    // so no permit is free when the guest sends the third.
    let settings = format!(
        "allowed_outbound_hosts = [\"{}\"]\nevent_timeout_ms = 5000\n\
         [outbound]\ntimeout_ms = 1000\nmax_concurrent = 2\n",
        upstream.url("")
    );
    let server = server(settings, &[]).await;
    let outcomes: Value = http()
        .get(server.url("/probe/fetch-all"))
        .query(&[("url", upstream.url("/hold")), ("n", "3".into())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        json!([
            "request timed out",
            "request timed out",
            "request too many requests in flight"
        ])
    );
}

#[tokio::test]
async fn a_guest_waiting_on_a_slow_upstream_stalls_no_other_app() {
    let mut upstream = Upstream::start().await;
    // A long deadline and timeout: the probe waits until released.
    let settings = format!(
        "allowed_outbound_hosts = [\"{}\"]\nevent_timeout_ms = 20000\n[outbound]\ntimeout_ms = 20000\n",
        upstream.url("")
    );
    let server = Arc::new(
        server(
            settings,
            &[
                "--event-timeout-ms-max",
                "20000",
                "--outbound-timeout-ms",
                "20000",
            ],
        )
        .await,
    );
    let outcome = held_while_another_app_answers(&server, &mut upstream, "/probe/fetch").await;
    assert_eq!(outcome, json!({"status": 200, "body": "released"}));
}

#[tokio::test]
async fn waiting_on_the_network_ends_by_the_event_deadline() {
    let mut upstream = Upstream::start().await;
    // The request's own timeout is far away; the event's deadline is not.
    let settings = format!(
        "allowed_outbound_hosts = [\"{}\"]\nevent_timeout_ms = 500\n[outbound]\ntimeout_ms = 30000\n",
        upstream.url("")
    );
    let server = server(settings, &["--outbound-timeout-ms", "30000"]).await;
    let started = Instant::now();
    let answer = http()
        .get(server.url("/probe/fetch"))
        .query(&[("url", upstream.url("/hold"))])
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    // The guest either saw the timeout (502) or was stopped at its
    // deadline (500); either way long before the request's own 30 s.
    assert!(
        matches!(answer.status().as_u16(), 500 | 502),
        "{}",
        answer.status()
    );
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    assert_eq!(upstream.next().await, "GET /hold ");
    // And the app serves its next event.
    let next = http()
        .get(server.url("/probe/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), 200);
}

#[tokio::test]
async fn a_connection_is_kept_for_the_app_s_next_request_to_the_same_place() {
    let mut upstream = Upstream::start().await;
    let grant = format!("allowed_outbound_hosts = [\"{}\"]\n", upstream.url(""));
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        files: vec![
            ("probe.toml", grant.clone().into_bytes()),
            ("other.wasm", std::fs::read(component("probe")).unwrap()),
            (
                "other.toml",
                format!("hosts = [\"other.test\"]\n{grant}").into_bytes(),
            ),
        ],
        args: vec!["--outbound-hosts".into(), "http://127.0.0.1:*".into()],
        ..Default::default()
    })
    .await;
    for _ in 0..3 {
        let reached = fetch(&server, &upstream.url("/hello"), None).await;
        assert_eq!(reached.0, 200, "{reached:?}");
        assert_eq!(upstream.next().await, "GET /hello ");
    }
    assert_eq!(
        upstream.connections(),
        1,
        "three requests on one connection"
    );
    // Another app gets a connection of its own.
    let other = fetch(&server, &upstream.url("/hello"), Some("other.test")).await;
    assert_eq!(other.0, 200, "{other:?}");
    assert_eq!(upstream.connections(), 2);
    // A connection its server closes is not used again.
    let streamed = fetch(&server, &upstream.url("/stream?n=10"), None).await;
    assert_eq!(streamed.0, 200, "{streamed:?}");
    let after = fetch(&server, &upstream.url("/hello"), None).await;
    assert_eq!(after.0, 200, "{after:?}");
    assert_eq!(upstream.connections(), 3);
}

#[tokio::test]
async fn an_https_upstream_is_reached_only_with_a_certificate_from_a_trusted_root() {
    let ca = test_ca();
    let mut upstream = Upstream::start_tls(&ca).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let url = format!("https://127.0.0.1:{}/hello", upstream.port);
    let settings = format!(
        "allowed_outbound_hosts = [\"https://127.0.0.1:{}\"]\n",
        upstream.port
    );

    // The operator trusts the test's authority: reached.
    let trusting = server(
        settings.clone(),
        &["--outbound-ca-file", &ca_file.display().to_string()],
    )
    .await;
    let reached = fetch(&trusting, &url, None).await;
    assert_eq!(
        reached,
        (200, json!({"status": 200, "body": "hello from upstream"}))
    );
    assert_eq!(upstream.next().await, "GET /hello ");
    drop(trusting);

    // Without it, the certificate is refused before any request is sent.
    let default = server(settings, &[]).await;
    let refused = fetch(&default, &url, None).await;
    assert!(
        error_of(&refused).contains("TlsCertificateError"),
        "{refused:?}"
    );
    assert!(upstream.untouched());
}
