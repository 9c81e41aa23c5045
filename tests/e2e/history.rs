//! Message history over WebSockets: the `tina4.v1` subprotocol, in which
//! each message says its position, and recovery after a reconnect.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Client, Server, ServerOptions, metric, within};

/// A WebSocket on `path` (with `query`) that speaks `tina4.v1`.
pub(crate) async fn framed(server: &Server, path_and_query: &str) -> Client {
    let mut request = server.ws_url(path_and_query).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "tina4.v1".parse().unwrap());
    let (ws, response) = within("the upgrade", tokio_tungstenite::connect_async(request))
        .await
        .expect("a WebSocket");
    assert_eq!(response.headers()["sec-websocket-protocol"], "tina4.v1");
    Client::from_stream(ws)
}

/// The next message, split into the line that says what it is and the text.
pub(crate) async fn next(client: &mut Client) -> (String, String) {
    let text = client.recv().await;
    let (line, body) = text
        .split_once('\n')
        .expect("a tina4.v1 message has its line");
    (line.to_string(), body.to_string())
}

/// Pushes `text` to `/log/{name}`, which keeps its last 200 messages.
async fn log(server: &Server, name: &str, text: &str) {
    crate::sse::push_to(server, &format!("/log/{name}"), text).await;
}

#[tokio::test]
async fn a_websocket_that_missed_100_messages_gets_them_in_order_once_then_live_ones() {
    let server = Server::start(&["probe"]).await;
    let mut first = framed(&server, "/log/a").await;
    // Replies to one connection say no position; they are not kept.
    first.send("count").await;
    assert_eq!(next(&mut first).await, (String::new(), "1".to_string()));
    log(&server, "a", "m0").await;
    let (position, text) = next(&mut first).await;
    assert_eq!(text, "m0");
    let (epoch, offset) = position.rsplit_once('-').unwrap();
    assert_eq!(offset, "1");
    first.close().await;

    for i in 1..=100 {
        log(&server, "a", &format!("m{i}")).await;
    }
    let mut again = framed(
        &server,
        &format!("/log/a?tina4_epoch={epoch}&tina4_offset=1"),
    )
    .await;
    for i in 1..=100 {
        let (line, text) = next(&mut again).await;
        assert_eq!(
            (line, text),
            (format!("{epoch}-{}", i + 1), format!("m{i}"))
        );
    }
    assert_eq!(
        next(&mut again).await,
        ("!recovered".to_string(), r#"{"complete":true}"#.to_string())
    );
    log(&server, "a", "live").await;
    assert_eq!(
        next(&mut again).await,
        (format!("{epoch}-102"), "live".to_string())
    );
    let metrics = server.metrics().await;
    let labels = [("app", "probe"), ("complete", "true")];
    assert_eq!(metric(&metrics, "tina4_recoveries_total", &labels), 1.0);
    assert_eq!(
        metric(
            &metrics,
            "tina4_recovered_messages_total",
            &[("app", "probe")]
        ),
        100.0
    );
    // The app never sees the host's parameters.
    again.send("whoami").await;
    let (_, whoami) = next(&mut again).await;
    let whoami: serde_json::Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(whoami["host_parameter"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_plain_websocket_on_a_path_with_history_gets_plain_messages() {
    let server = Server::start(&["probe"]).await;
    let mut plain = server.connect("/log/p?tina4_epoch=x&tina4_offset=1").await;
    plain.send("count").await;
    assert_eq!(plain.recv().await, "1");
    log(&server, "p", "as it was sent").await;
    assert_eq!(plain.recv().await, "as it was sent");
}

#[tokio::test]
async fn tina4_v1_is_taken_only_on_a_path_that_keeps_history() {
    let server = Server::start(&["probe"]).await;
    // Offered alone, where history is not kept: no subprotocol.
    let head = handshake(&server, "tina4.v1").await;
    assert!(!head.contains("sec-websocket-protocol"), "{head}");
    // Offered with `tina4.plain`, as frond.js does (a browser fails a
    // handshake that selects none of those it offered): that one.
    let head = handshake(&server, "tina4.v1, tina4.plain").await;
    assert!(
        head.contains("sec-websocket-protocol: tina4.plain"),
        "{head}"
    );
}

/// The head of the answer to an upgrade of `/ws/probe/plain` offering
/// `protocols`, by hand (a strict client refuses an answer that selects
/// none of the subprotocols it offered), lower-case.
async fn handshake(server: &Server, protocols: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /ws/probe/plain HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocols}\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        within("the answer", tcp.read_exact(&mut byte))
            .await
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    head
}

#[tokio::test]
async fn recovering_from_another_epoch_or_past_what_is_kept_is_incomplete() {
    let server = Server::start(&["probe"]).await;
    log(&server, "b", "kept").await;
    let mut stranger = framed(&server, "/log/b?tina4_epoch=0a0b.9&tina4_offset=1").await;
    assert_eq!(
        next(&mut stranger).await,
        (
            "!recovered".to_string(),
            r#"{"complete":false}"#.to_string()
        )
    );
}

#[tokio::test]
async fn an_app_reads_what_its_path_keeps_to_give_a_late_joiner() {
    let server = Server::start(&["probe"]).await;
    for text in ["first", "second", "third"] {
        log(&server, "late", text).await;
    }
    let mut late = server.connect("/log/late").await;
    late.send("history:2").await;
    assert_eq!(
        late.recv_json().await,
        serde_json::json!([[2, "second"], [3, "third"]])
    );
    // A path that keeps nothing has nothing to read.
    let mut plain = server.connect("/ws/probe/nothing").await;
    plain.send("history:10").await;
    assert_eq!(plain.recv_json().await, serde_json::json!([]));
}

#[tokio::test]
async fn history_outlives_a_hot_swap_of_its_app() {
    let server = Server::start(&["probe"]).await;
    let mut member = framed(&server, "/log/swap").await;
    log(&server, "swap", "before").await;
    let (position, _) = next(&mut member).await;
    member.close().await;
    log(&server, "swap", "missed").await;
    let v2 = std::fs::read(crate::support::component("probe-v2")).unwrap();
    crate::support::Install::WriteThenRename.put(server.apps_dir(), "probe.wasm", &v2);
    server
        .wait_for_log(&["app swapped to a new version", "probe"])
        .await;
    log(&server, "swap", "after").await;
    let (epoch, offset) = position.rsplit_once('-').unwrap();
    let mut back = framed(
        &server,
        &format!("/log/swap?tina4_epoch={epoch}&tina4_offset={offset}"),
    )
    .await;
    assert_eq!(next(&mut back).await.1, "missed");
    assert_eq!(next(&mut back).await.1, "after");
    assert_eq!(next(&mut back).await.0, "!recovered");
    back.send("x").await;
    assert_eq!(next(&mut back).await.1, "v2: x");
}

#[tokio::test]
async fn the_operator_caps_what_a_path_and_an_app_keep() {
    // The probe's /log route asks for 200 messages; the operator allows 3,
    // and 1 KiB in all (64 bytes counted per message beyond its payload).
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        args: [
            "--history-max-messages",
            "3",
            "--history-bytes-per-app",
            "1024",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
        ..Default::default()
    })
    .await;
    for i in 1..=5 {
        log(&server, "cap", &format!("m{i}")).await;
    }
    let mut reader = server.connect("/log/cap").await;
    reader.send("history:10").await;
    assert_eq!(
        reader.recv_json().await,
        serde_json::json!([[3, "m3"], [4, "m4"], [5, "m5"]])
    );
    // 300 bytes: two such messages overflow the app's budget, which keeps
    // the newest.
    let big = "x".repeat(300);
    log(&server, "cap", &format!("a{big}")).await;
    log(&server, "cap", &format!("b{big}")).await;
    log(&server, "cap", &format!("c{big}")).await;
    for _ in 0..3 {
        // The reader is in the path's group: it hears them live too.
        reader.recv().await;
    }
    reader.send("history:10").await;
    let kept = reader.recv_json().await;
    let texts: Vec<_> = kept
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[1].as_str().unwrap().chars().next().unwrap())
        .collect();
    assert_eq!(texts, ['b', 'c'], "{kept}");
}
