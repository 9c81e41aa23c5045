//! The edge never holds what it cannot account for, tried as a hostile or
//! broken client would: a socket that stops reading, a ping flood that
//! never reads the pongs, a frame too big, bodies that trickle or never
//! end, more connections from one address than its share. Each test
//! provokes one limit.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{Client, Server, ServerOptions, eventually, http, still_answers, within};

fn with_args(apps: &[&'static str], args: &[&str]) -> ServerOptions {
    ServerOptions {
        apps: apps.to_vec(),
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

/// A TCP connection to `server` from `from`, with a small receive buffer
/// (so a client that does not read fills it soon).
async fn tcp_from(server: &Server, from: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    within("connecting", socket.connect(server.addr))
        .await
        .unwrap()
}

/// Completes a WebSocket handshake for `path` by hand and returns the
/// socket, to then misbehave on.
async fn upgraded(server: &Server, from: [u8; 4], path: &str) -> TcpStream {
    let mut stream = tcp_from(server, from).await;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// Reads an HTTP response head.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        match within("a response head", stream.read(&mut byte)).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8, 1, 2, 3, 4];
    out.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
    );
    out
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_its_slot_reused() {
    let server = Server::start_with(with_args(
        &["echo"],
        &[
            "--max-connections",
            "2",
            "--outbox-capacity",
            "16",
            "--send-buffer-bytes",
            "4096",
            "--write-timeout-ms",
            "2000",
        ],
    ))
    .await;
    let _stuck = upgraded(&server, [127, 0, 0, 1], "/ws/broadcast/t").await;
    let mut flooder = server.connect("/ws/broadcast/t").await;
    assert_eq!(server.upgrade_status("/ws/echo", &[]).await, Some(503));
    // Far more than the stuck client's socket and outbox can hold.
    let big = "x".repeat(60_000);
    for _ in 0..64 {
        flooder.send(&big).await;
        assert_eq!(flooder.recv().await.len(), big.len());
    }
    server
        .wait_for_log(&["closing connection", "code=1008", "slow consumer"])
        .await;
    // Its close frame cannot reach it either: it is dropped and its slot
    // is free again, while it still holds its end open.
    eventually("the stuck client's slot", || async {
        server
            .upgrade_status("/ws/echo", &[])
            .await
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_ping_flood_that_never_reads_is_bounded_by_the_write_buffer() {
    let server = Server::start(&["echo"]).await;
    let before = server.peak_rss();
    let mut flood = upgraded(&server, [127, 0, 0, 1], "/ws/echo").await;
    let ping = frame(0x9, &[7; 125]);
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 512)
        .collect();
    // Up to 256 MiB of pings, or until the server lets go of us.
    let mut sent = 0usize;
    while sent < 256 << 20 {
        match tokio::time::timeout(Duration::from_secs(5), flood.write_all(&burst)).await {
            Ok(Ok(())) => sent += burst.len(),
            _ => break,
        }
    }
    let grew = server.peak_rss().saturating_sub(before);
    assert!(grew < 64 << 20, "the server grew by {} MiB", grew >> 20);
    let mut bystander = server.connect("/ws/echo").await;
    still_answers(&mut bystander, "after the flood").await;
}

#[tokio::test]
async fn a_frame_too_big_gets_its_1009_not_a_reset() {
    let server = Server::start_with(with_args(&["echo"], &["--max-message-bytes", "65536"])).await;
    for _ in 0..10 {
        let mut client = server.connect("/ws/echo").await;
        client.send(&"y".repeat(3 << 20)).await;
        assert_eq!(client.expect_close().await.0, 1009);
    }
}

#[tokio::test]
async fn bodies_that_stall_or_trickle_get_408_in_time() {
    let server = Server::start_with(with_args(
        &["probe"],
        &[
            "--body-idle-timeout-ms",
            "1000",
            "--body-timeout-ms",
            "3000",
        ],
    ))
    .await;
    let head = "POST /probe/echo/a/1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n";
    // One byte, then nothing.
    let mut stalled = tcp_from(&server, [127, 0, 0, 1]).await;
    stalled
        .write_all(format!("{head}x").as_bytes())
        .await
        .unwrap();
    assert!(read_head(&mut stalled).await.starts_with("HTTP/1.1 408"));
    // A byte every 300 ms: never idle for long, but never done.
    let mut trickle = tcp_from(&server, [127, 0, 0, 1]).await;
    trickle.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = trickle.split();
    let answer = async {
        let mut answer = [0u8; 12];
        loop {
            tokio::select! {
                read = reader.read(&mut answer) => {
                    break read.map(|n| String::from_utf8_lossy(&answer[..n]).into_owned());
                }
                () = tokio::time::sleep(Duration::from_millis(300)) => {
                    // The server may have answered and closed meanwhile.
                    let _ = writer.write_all(b"x").await;
                }
            }
        }
    };
    assert!(
        within("the 408", answer)
            .await
            .unwrap()
            .starts_with("HTTP/1.1 408")
    );
    assert_eq!(server.get_status("/probe/count").await, 200);
}

#[tokio::test]
async fn bodies_in_flight_share_one_budget() {
    let server = Server::start_with(with_args(
        &["probe"],
        &["--max-inflight-body-bytes", "100000"],
    ))
    .await;
    let head = |len: usize| {
        format!("POST /probe/echo/a/1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\n\r\n")
    };
    // Alone it would never fit.
    let mut alone = tcp_from(&server, [127, 0, 0, 1]).await;
    alone.write_all(head(200_000).as_bytes()).await.unwrap();
    assert!(read_head(&mut alone).await.starts_with("HTTP/1.1 503"));
    // Two bodies of 60,000 bytes announced, neither sent yet: whichever
    // the server reads second does not fit beside the first.
    let mut a = tcp_from(&server, [127, 0, 0, 1]).await;
    let mut b = tcp_from(&server, [127, 0, 0, 1]).await;
    a.write_all(head(60_000).as_bytes()).await.unwrap();
    b.write_all(head(60_000).as_bytes()).await.unwrap();
    let (refused, mut admitted) = tokio::select! {
        answer = read_head(&mut a) => (answer, b),
        answer = read_head(&mut b) => (answer, a),
    };
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    // The one admitted still gets its answer, and gives its share back.
    admitted.write_all(&[b'a'; 60_000]).await.unwrap();
    assert!(read_head(&mut admitted).await.starts_with("HTTP/1.1 201"));
    drop(admitted);
    let body = "b".repeat(60_000);
    let response = eventually("the budget to come back", || async {
        let r = http()
            .post(server.url("/probe/echo/a/1"))
            .body(body.clone())
            .send()
            .await
            .ok()?;
        (r.status() == 201).then_some(r)
    })
    .await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn one_address_gets_its_share_and_no_more() {
    let server = Server::start_with(with_args(&["echo"], &["--max-connections-per-ip", "2"])).await;
    // WebSockets: two from 127.0.0.1, then 503 before the upgrade.
    let _a = upgraded(&server, [127, 0, 0, 1], "/ws/echo").await;
    let _b = upgraded(&server, [127, 0, 0, 1], "/ws/echo").await;
    let mut third = tcp_from(&server, [127, 0, 0, 1]).await;
    third
        .write_all(
            b"GET /ws/echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    assert!(read_head(&mut third).await.starts_with("HTTP/1.1 503"));
    // Another address has a share of its own.
    let _c = upgraded(&server, [127, 0, 0, 2], "/ws/echo").await;
    // Plain HTTP connections are counted apart: two idle ones, then 503.
    let _idle = (
        tcp_from(&server, [127, 0, 0, 3]).await,
        tcp_from(&server, [127, 0, 0, 3]).await,
    );
    let mut refused = tcp_from(&server, [127, 0, 0, 3]).await;
    assert!(read_head(&mut refused).await.starts_with("HTTP/1.1 503"));
    let metrics = server.metrics().await;
    for reason in ["ws_connections_per_ip", "http_connections_per_ip"] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "{reason}: {metrics}"
        );
    }
}

#[tokio::test]
async fn an_exempt_address_has_no_per_address_cap() {
    let server = Server::start_with(with_args(
        &["echo"],
        &[
            "--max-connections-per-ip",
            "1",
            "--ip-limit-exempt",
            "127.0.0.1",
        ],
    ))
    .await;
    let _a = upgraded(&server, [127, 0, 0, 1], "/ws/echo").await;
    let mut b = server.connect("/ws/echo").await;
    still_answers(&mut b, "exempt").await;
}

#[tokio::test]
async fn a_flood_of_big_messages_waits_for_its_app_instead_of_filling_memory() {
    let server = Server::start(&["hostile", "echo"]).await;
    let before = server.peak_rss();
    // The app is busy for a second (until its CPU deadline)...
    let mut spinner = server.connect("/ws/hostile").await;
    spinner.send("spin").await;
    // ...while another of its clients sends 300 MiB. Once that connection
    // has 32 messages queued, the server stops reading it, and the flood
    // waits in the sockets, not in the server's memory.
    let mut flooder = server.connect("/ws/hostile").await;
    let message = format!("flood {}", "x".repeat((1 << 20) - 6));
    for _ in 0..300 {
        if !flooder.send_within(&message, Duration::from_secs(2)).await {
            break;
        }
    }
    let grew = server.peak_rss().saturating_sub(before);
    assert!(grew < 128 << 20, "the server grew by {} MiB", grew >> 20);
    let mut bystander = server.connect("/ws/echo").await;
    still_answers(&mut bystander, "after the flood").await;
}

#[tokio::test]
async fn a_slow_consumer_of_big_frames_is_bounded_in_bytes() {
    // Frames are far under the frame bound (1024); bytes are what fill up.
    let server = Server::start_with(with_args(
        &["echo"],
        &[
            "--outbox-bytes",
            "262144",
            "--send-buffer-bytes",
            "4096",
            "--max-message-bytes",
            "65536",
        ],
    ))
    .await;
    let _stuck = upgraded(&server, [127, 0, 0, 1], "/ws/broadcast/b").await;
    let mut flooder = server.connect("/ws/broadcast/b").await;
    // 64 frames of 60 kB: 3.8 MB, past the socket, the write buffer
    // (64 KiB + 128 KiB) and a 256 KiB outbox.
    let big = "x".repeat(60_000);
    for _ in 0..64 {
        flooder.send(&big).await;
        assert_eq!(flooder.recv().await.len(), big.len());
    }
    server
        .wait_for_log(&["closing connection", "code=1008", "slow consumer"])
        .await;
}

#[tokio::test]
async fn a_connection_over_its_message_rate_is_closed_with_1008() {
    let server = Server::start_with(with_args(
        &["echo"],
        &["--ws-messages-per-second", "5", "--ws-message-burst", "10"],
    ))
    .await;
    let mut client = server.connect("/ws/echo").await;
    // Forty at once: ten fit the burst, and a few more the rate refills
    // while they travel; the rest are over.
    for n in 0..40 {
        client.send(&format!("m{n}")).await;
    }
    let (code, reason) = client.close_after_messages().await;
    assert_eq!((code, reason.as_str()), (1008, "message rate exceeded"));
    let mut bystander = server.connect("/ws/echo").await;
    still_answers(&mut bystander, "unaffected").await;
}

/// The echo app at one message a second per connection, with `burst` and
/// the `policy` for messages over it, and a client that has sent `count`
/// messages (`m0`, `m1`, …) at once.
async fn echo_at_one_per_second(burst: u32, policy: &str, count: usize) -> (Server, Client) {
    let settings = format!(
        "messages_per_second = 1\nmessage_burst = {burst}\nover_message_rate = \"{policy}\"\n"
    );
    let server = Server::start_with(ServerOptions {
        apps: vec!["echo"],
        files: vec![("echo.toml", settings.into_bytes())],
        ..Default::default()
    })
    .await;
    let mut client = server.connect("/ws/echo").await;
    for n in 0..count {
        client.send(&format!("m{n}")).await;
    }
    (server, client)
}

#[tokio::test]
async fn an_app_can_choose_to_drop_messages_over_its_rate() {
    let (server, mut client) = echo_at_one_per_second(3, "drop", 10).await;
    // The burst gets through, in order...
    for n in 0..3 {
        assert_eq!(client.recv().await, format!("Echo: m{n}"));
    }
    // ...the rest are dropped and counted (one may have been refilled
    // while they travelled), and the connection stays.
    let dropped = eventually("the drops to be counted", || async {
        let metrics = server.metrics().await;
        let line = metrics
            .lines()
            .find(|l| l.starts_with("tina4_ws_rate_limited_total{app=\"echo\"}"))?
            .to_string();
        let n: u64 = line.rsplit(' ').next()?.parse().ok()?;
        (n >= 6).then_some(n)
    })
    .await;
    assert!(dropped <= 7, "{dropped} dropped");
    client.pong().await;
    assert_eq!(server.count_log(&["message rate exceeded"]), 0);
}

/// Opens `path` with a tiny receive buffer, reads the response head and
/// then stops reading; the socket, for later.
async fn request_and_stop_reading(server: &Server, path: &str) -> TcpStream {
    let mut stream = tcp_from(server, [127, 0, 0, 1]).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
}

#[tokio::test]
async fn a_large_file_nobody_reads_costs_a_chunk_and_ends_at_the_write_timeout() {
    const FILE: usize = 30 << 20;
    const CLIENTS: usize = 20;
    let server = Server::start_with(with_args(
        &["chat"],
        &[
            "--write-timeout-ms",
            "1000",
            "--send-buffer-bytes",
            "4096",
            "--max-http-connections",
            "20",
        ],
    ))
    .await;
    std::fs::write(
        server.apps_dir().join("chat/public/big.bin"),
        vec![7u8; FILE],
    )
    .unwrap();
    let before = server.peak_rss();
    let mut stuck = Vec::new();
    for _ in 0..CLIENTS {
        stuck.push(request_and_stop_reading(&server, "/big.bin").await);
    }
    // Every HTTP slot is taken by a client that does not read, until the
    // server gives up on them at the write timeout: then all twenty slots
    // can be held again (by keep-alive connections that did read).
    let mut held = Vec::new();
    within("the stuck clients' slots", async {
        while held.len() < CLIENTS {
            let mut probe = tcp_from(&server, [127, 0, 0, 1]).await;
            let request = "GET /css/chat.css HTTP/1.1\r\nHost: localhost\r\n\r\n";
            probe.write_all(request.as_bytes()).await.unwrap();
            if read_head(&mut probe).await.starts_with("HTTP/1.1 200") {
                held.push(probe);
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
    .await;
    for mut stream in stuck {
        let got = within("what the server had sent", async {
            let mut scratch = vec![0u8; 64 * 1024];
            let mut got = 0;
            loop {
                match stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got += n,
                }
            }
        })
        .await;
        assert!(got < FILE, "all {got} bytes arrived");
    }
    // Nor did it ever hold the file in memory for any of them.
    let grew = server.peak_rss().saturating_sub(before);
    assert!(grew < 48 << 20, "the server grew by {} MiB", grew >> 20);
}

#[tokio::test]
async fn an_app_can_choose_to_slow_a_fast_sender_down_and_lose_nothing() {
    let (server, mut client) = echo_at_one_per_second(2, "wait", 4).await;
    // Two at once, then one a second: every one of them, in order.
    for n in 0..4 {
        assert_eq!(client.recv().await, format!("Echo: m{n}"));
    }
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("tina4_ws_rate_limited_total{app=\"echo\"}"),
        "the waits are counted"
    );
    let mut bystander = server.connect("/ws/echo").await;
    still_answers(&mut bystander, "unaffected").await;
}
