//! HTTP/2 for HTTP routes: by ALPN over TLS, with prior knowledge (h2c)
//! on a plain port when asked for, its stream limit, a WebSocket route
//! answered 426 (WebSockets stay on HTTP/1.1), and the rapid-reset attack
//! bounded.

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::support::{Server, ServerOptions, metric, within};
use crate::tls::{new_pair, start_tls, tls_with_alpn};

/// An HTTP/2 client on `io`, its connection driven on a task of its own;
/// the task's result says how the connection ended.
async fn h2_client<T>(
    io: T,
) -> (
    SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = within("the HTTP/2 handshake", h2::client::handshake(io))
        .await
        .expect("an HTTP/2 connection");
    (client, tokio::spawn(connection))
}

/// A server of `apps` that also takes HTTP/2 with prior knowledge, with
/// `extra` flags.
async fn h2c_server(apps: &[&'static str], extra: &[&str]) -> Server {
    let mut args = vec!["--h2c".to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    Server::start_with(ServerOptions {
        apps: apps.to_vec(),
        args,
        ..Default::default()
    })
    .await
}

/// A new HTTP/2 connection to `server` with prior knowledge.
async fn h2c_to(
    server: &Server,
) -> (
    SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    h2_client(tcp).await
}

/// GETs `path` and returns the status and the body.
async fn get(client: &mut SendRequest<Bytes>, path: &str) -> (u16, String) {
    let request = http::Request::get(format!("https://localhost{path}"))
        .body(())
        .unwrap();
    let (response, _) = client
        .clone()
        .ready()
        .await
        .expect("room for a stream")
        .send_request(request, true)
        .expect("send a request");
    let response = within("the answer", response).await.expect("an answer");
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = within("the body", body.data()).await {
        let chunk = chunk.expect("a body chunk");
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn http2_is_negotiated_over_tls_and_websocket_routes_say_426() {
    let dir = tempfile::tempdir().unwrap();
    let pair = new_pair();
    let server = start_tls(&pair, dir.path(), &["--h2-max-streams", "8"]).await;
    let tls = tls_with_alpn(&server, &pair, &[b"h2", b"http/1.1"])
        .await
        .expect("a TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut client, _connection) = h2_client(tls).await;
    let (status, body) = get(&mut client, "/hello/h2").await;
    assert_eq!(status, 200);
    assert!(body.contains("Hello, h2!"), "{body}");
    // The server's stream limit, as it told the client.
    assert_eq!(client.current_max_send_streams(), 8);
    // No WebSocket over HTTP/2: the route says to upgrade (over HTTP/1.1).
    let (status, _) = get(&mut client, "/ws/echo").await;
    assert_eq!(status, 426);
}

#[tokio::test]
async fn h2c_with_prior_knowledge_only_when_asked_for() {
    let server = h2c_server(&["echo"], &[]).await;
    let (mut client, _connection) = h2c_to(&server).await;
    let (status, body) = get(&mut client, "/hello/h2c").await;
    assert_eq!(status, 200);
    assert!(body.contains("Hello, h2c!"), "{body}");
    // HTTP/1.1 and its WebSocket upgrades stay on the same port.
    let mut ws = server.connect("/ws/echo").await;
    ws.send("still").await;
    assert_eq!(ws.recv().await, "Echo: still");

    // Without --h2c, a plain port speaks HTTP/1.1 only.
    let plain = Server::start(&["echo"]).await;
    let tcp = TcpStream::connect(plain.addr).await.unwrap();
    let refused = h2::client::handshake(tcp).await;
    let answered = match refused {
        Err(_) => false,
        Ok((client, connection)) => {
            tokio::spawn(connection);
            let request = http::Request::get("http://localhost/hello/x")
                .body(())
                .unwrap();
            match client.ready().await {
                Ok(mut client) => match client.send_request(request, true) {
                    Ok((response, _)) => within("a refusal", response).await.is_ok(),
                    Err(_) => false,
                },
                Err(_) => false,
            }
        }
    };
    assert!(!answered, "an h2c request was answered without --h2c");
}

/// Opens a stream for `path` on `client` and gives back its answer to
/// come (dropping it resets the stream); `None` once the connection
/// refuses streams.
async fn open(client: &mut SendRequest<Bytes>, path: &str) -> Option<h2::client::ResponseFuture> {
    let request = http::Request::get(format!("http://localhost{path}"))
        .body(())
        .unwrap();
    *client = client.clone().ready().await.ok()?;
    client
        .send_request(request, true)
        .ok()
        .map(|(answer, _)| answer)
}

/// Opens twenty requests on `path`, waits until the app has taken them up
/// (one runs, the others wait in its mailbox), then gives up on them all;
/// false if the connection refused a stream first.
async fn give_up_on_twenty(server: &Server, client: &mut SendRequest<Bytes>, path: &str) -> bool {
    let queued = || async {
        let text = server.metrics().await;
        metric(
            &text,
            "tina4_app_events_total",
            &[("app", "probe"), ("ran", "queued")],
        )
    };
    let before = queued().await;
    let mut answers = Vec::new();
    for _ in 0..20 {
        match open(client, path).await {
            Some(answer) => answers.push(answer),
            None => return false,
        }
    }
    crate::support::eventually("the requests to reach the app", || async {
        (queued().await >= before + 19.0).then_some(())
    })
    .await;
    drop(answers);
    true
}

#[tokio::test]
async fn a_rapid_reset_flood_ends_its_connection_and_nothing_else() {
    let server = h2c_server(
        &["probe", "echo"],
        &["--h2-max-streams", "20", "--event-timeout-ms", "5000"],
    )
    .await;
    let slow = "/probe/slow?ms=50";

    // Blind: streams opened and reset as fast as the client can, each
    // freeing its place among the twenty at once.
    let (mut client, connection) = h2c_to(&server).await;
    let mut sent = 0;
    while sent < 10_000 {
        let Some(answer) = open(&mut client, slow).await else {
            break;
        };
        drop(answer);
        sent += 1;
        tokio::task::yield_now().await;
    }
    assert!(sent < 10_000, "the server took all {sent} reset streams");
    let ended = within("the connection to end", connection).await.unwrap();
    assert!(
        ended.is_err(),
        "the server closed the connection: {ended:?}"
    );

    // Paced: requests the app has taken up, then given up on, twenty at a
    // time. The first twenty are within the budget; the next are not.
    let (mut client, connection) = h2c_to(&server).await;
    // The first holds the app for two seconds, so the rest queue behind it
    // however slowly a busy machine opens them.
    let slow = "/probe/slow?ms=2000";
    assert!(give_up_on_twenty(&server, &mut client, slow).await);
    assert_eq!(get(&mut client, "/hello/still").await.0, 200);
    give_up_on_twenty(&server, &mut client, slow).await;
    within("the connection to end", connection)
        .await
        .unwrap()
        .ok();
    let text = server.metrics().await;
    assert_eq!(
        metric(&text, "tina4_refused_total", &[("reason", "h2_resets")]),
        1.0
    );

    // Everyone else is served as ever.
    let (mut client, _connection) = h2c_to(&server).await;
    let (status, _) = get(&mut client, "/hello/after").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_idle_http2_connection_and_a_silent_one_are_closed() {
    let server = h2c_server(&["echo"], &["--handshake-timeout-ms", "1000"]).await;
    // Served, then quiet: the server says goodbye.
    let (mut client, connection) = h2c_to(&server).await;
    assert_eq!(get(&mut client, "/hello/idle").await.0, 200);
    let ended = within("the idle connection to be closed", connection).await;
    assert!(ended.is_ok(), "{ended:?}");
    // Connected and silent, before saying which HTTP it speaks.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = within(
        "the silent connection to be closed",
        tokio::io::AsyncReadExt::read(&mut silent, &mut byte),
    )
    .await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

/// Opens an event stream on `path` and reads its first event's data.
async fn open_stream(client: &mut SendRequest<Bytes>, path: &str) -> (h2::RecvStream, String) {
    let answer = open(client, path).await.expect("room for a stream");
    let response = within("the stream's head", answer)
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut text = String::new();
    while !text.contains("data: ") || !text.ends_with("\n\n") {
        let chunk = within("an event", body.data())
            .await
            .expect("more of the stream")
            .unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    (body, text)
}

#[tokio::test]
async fn event_streams_over_http2_share_a_connection_within_its_stream_limit() {
    let server = h2c_server(&["probe"], &["--h2-max-streams", "2"]).await;
    let (mut client, _connection) = h2c_to(&server).await;
    let (first, opened) = open_stream(&mut client, "/ws/probe/h2").await;
    assert!(opened.contains(r#""count":1"#), "{opened}");
    let (_second, opened) = open_stream(&mut client, "/ws/probe/h2").await;
    assert!(opened.contains(r#""count":2"#), "{opened}");
    assert_eq!(client.current_max_send_streams(), 2);

    // A third waits for a place while both are open (the client holds it
    // back, as the server's settings ask)...
    let third = open(&mut client, "/ws/probe/h2").await.expect("a request");
    tokio::pin!(third);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), &mut third)
            .await
            .is_err(),
        "a third stream was answered past the limit of two"
    );
    // ...and gets the place the first gives up.
    drop(first);
    let response = within("the third stream's head", third)
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
}
