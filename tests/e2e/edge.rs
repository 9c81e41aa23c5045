//! Hostile and broken clients: oversized and malformed frames, too many
//! connections, foreign origins, slowloris, silent and dead peers, and a
//! client that stops reading in a busy room.

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Client, Server, ServerOptions, still_answers, within};

fn with_args(apps: &[&'static str], args: &[&str]) -> ServerOptions {
    ServerOptions {
        apps: apps.to_vec(),
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

/// A WebSocket client that writes frames by hand, to send what a
/// well-behaved library never would.
struct RawSocket {
    stream: TcpStream,
}

impl RawSocket {
    /// Connects and completes the handshake for `path`.
    async fn connect(server: &Server, path: &str) -> Self {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            server.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            within("the handshake answer", stream.read_exact(&mut byte))
                .await
                .unwrap();
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        Self { stream }
    }

    /// Writes one frame: `first` is the FIN/RSV/opcode byte; the payload is
    /// masked (as a client must) unless `masked` is false.
    async fn frame(&mut self, first: u8, payload: &[u8], masked: bool) {
        let mut frame = vec![first];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => frame.push(mask_bit | n as u8),
            n if n < 65536 => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(mask_bit | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            let key = [0x12, 0x34, 0x56, 0x78];
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            frame.extend_from_slice(payload);
        }
        self.stream.write_all(&frame).await.unwrap();
    }

    /// Reads frames until a close frame; returns its code.
    async fn close_code(&mut self) -> u16 {
        within("a close frame", async {
            loop {
                let mut head = [0u8; 2];
                self.stream.read_exact(&mut head).await.expect("a frame");
                let len = match head[1] & 0x7f {
                    126 => u64::from(self.stream.read_u16().await.unwrap()),
                    127 => self.stream.read_u64().await.unwrap(),
                    n => u64::from(n),
                };
                let mut payload = vec![0u8; len as usize];
                self.stream.read_exact(&mut payload).await.unwrap();
                if head[0] & 0x0f == 0x8 {
                    return u16::from_be_bytes([payload[0], payload[1]]);
                }
            }
        })
        .await
    }
}

#[tokio::test]
async fn a_message_over_the_limit_is_closed_with_1009() {
    let server = Server::start_with(with_args(&["echo"], &["--max-message-bytes", "1000"])).await;
    let mut client = server.connect("/ws/echo").await;
    client.send(&"x".repeat(990)).await;
    assert_eq!(client.recv().await.len(), "Echo: ".len() + 990);
    client.send(&"x".repeat(1001)).await;
    assert_eq!(client.expect_close().await.0, 1009);
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_is_closed_with_1007() {
    let server = Server::start(&["echo"]).await;
    let mut raw = RawSocket::connect(&server, "/ws/echo").await;
    raw.frame(0x81, &[0x48, 0xff, 0xfe], true).await;
    assert_eq!(raw.close_code().await, 1007);
}

#[tokio::test]
async fn protocol_errors_are_closed_with_1002() {
    let server = Server::start(&["echo"]).await;
    // A reserved bit set with no extension negotiated.
    let mut raw = RawSocket::connect(&server, "/ws/echo").await;
    raw.frame(0x81 | 0x40, b"hi", true).await;
    assert_eq!(raw.close_code().await, 1002);
    // An unmasked frame from a client.
    let mut raw = RawSocket::connect(&server, "/ws/echo").await;
    raw.frame(0x81, b"hi", false).await;
    assert_eq!(raw.close_code().await, 1002);
    // An unknown opcode.
    let mut raw = RawSocket::connect(&server, "/ws/echo").await;
    raw.frame(0x83, b"hi", true).await;
    assert_eq!(raw.close_code().await, 1002);
}

#[tokio::test]
async fn too_many_connections_get_503_before_the_upgrade() {
    let server = Server::start_with(with_args(
        &["probe"],
        &["--max-connections", "3", "--max-connections-per-path", "2"],
    ))
    .await;
    let _a1 = server.connect("/ws/probe/a").await;
    let _a2 = server.connect("/ws/probe/a").await;
    assert_eq!(server.upgrade_status("/ws/probe/a", &[]).await, Some(503));
    let b1 = server.connect("/ws/probe/b").await;
    assert_eq!(server.upgrade_status("/ws/probe/c", &[]).await, Some(503));
    b1.close().await;
    // The slot is free again once the connection has gone.
    within("a slot to free up", async {
        while server.upgrade_status("/ws/probe/c", &[]).await.is_some() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn foreign_origins_get_403_unless_allowed() {
    let server = Server::start(&["echo"]).await;
    let own = format!("http://{}", server.addr);
    assert_eq!(
        server
            .upgrade_status("/ws/echo", &[("origin", "http://evil.test")])
            .await,
        Some(403)
    );
    assert_eq!(
        server.upgrade_status("/ws/echo", &[("origin", &own)]).await,
        None
    );
    assert_eq!(server.upgrade_status("/ws/echo", &[]).await, None);

    let listed = Server::start_with(with_args(
        &["echo"],
        &["--allowed-origins", "https://app.test,https://admin.test"],
    ))
    .await;
    assert_eq!(
        listed
            .upgrade_status("/ws/echo", &[("origin", "https://admin.test")])
            .await,
        None
    );
    assert_eq!(
        listed
            .upgrade_status("/ws/echo", &[("origin", "https://evil.test")])
            .await,
        Some(403)
    );
}

#[tokio::test]
async fn a_slowloris_request_head_is_cut_off() {
    let server = Server::start_with(with_args(&["echo"], &["--handshake-timeout-ms", "300"])).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /ws/echo HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Never finish the head: the server must hang up on its own.
    let mut rest = Vec::new();
    within("the server to hang up", stream.read_to_end(&mut rest))
        .await
        .unwrap();
    let mut client = server.connect("/ws/echo").await;
    still_answers(&mut client, "others are fine").await;
}

#[tokio::test]
async fn the_server_pings_and_a_silent_client_is_closed_when_idle() {
    let server = Server::start_with(with_args(
        &["echo"],
        &["--ping-interval-ms", "400", "--idle-timeout-secs", "1"],
    ))
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/ws/echo"))
        .await
        .unwrap();
    let first = within("a ping", ws.next()).await.unwrap().unwrap();
    assert!(matches!(first, Message::Ping(_)), "{first:?}");
    // Answering pings (the library does) is not activity: the idle timeout
    // counts messages.
    let close = within("the idle close", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    assert_eq!(u16::from(close.unwrap().code), 1001);
}

#[tokio::test]
async fn a_dead_peer_is_dropped_and_its_room_told() {
    let server = Server::start_with(with_args(&["chat"], &["--ping-interval-ms", "300"])).await;
    let mut watcher = server.connect("/ws/room/r").await;
    let _welcome = watcher.recv_json().await;
    // Joins, then never reads or answers again.
    let _dead = RawSocket::connect(&server, "/ws/room/r").await;
    assert_eq!(watcher.recv_json().await["online"], 2);
    let left = watcher.recv_json().await;
    assert_eq!(left["message"], "Anonymous left the room");
    assert_eq!(left["online"], 1);
}

#[tokio::test]
async fn a_stalled_client_is_closed_and_never_slows_its_room() {
    const ROOM: usize = 200;
    const MESSAGES: usize = 300;
    let server = Server::start_with(with_args(
        &["chat"],
        &["--outbox-capacity", "32", "--send-buffer-bytes", "32768"],
    ))
    .await;
    let text = "x".repeat(2000);

    // The stalled client: a tiny receive buffer, and it never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (_stalled, _) = tokio_tungstenite::client_async(server.ws_url("/ws/room/busy"), stream)
        .await
        .unwrap();

    // Readers add a permit for each message they receive: `notices` for
    // system messages, `chats` for chats. Everything runs in lockstep (the
    // next join or message only once every reader has the last one), so a
    // healthy reader is never more than one message behind: only a client
    // that stops reading can fill its outbox.
    let (notices, chats) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let mut readers = Vec::new();
    for joined in 0..ROOM - 2 {
        let mut client = server.connect("/ws/room/busy").await;
        let _welcome = client.recv_json().await;
        within(
            "the others to see the join",
            notices.acquire_many(joined as u32),
        )
        .await
        .unwrap()
        .forget();
        let (text, notices, chats) = (text.clone(), notices.clone(), chats.clone());
        readers.push(tokio::spawn(async move {
            read_all_chats(client, &text, MESSAGES, &notices, &chats).await
        }));
    }
    let mut sender = server.connect("/ws/room/busy").await;
    let _welcome = sender.recv_json().await;
    let started = Instant::now();
    for n in 0..MESSAGES {
        sender
            .send_json(json!({"type": "chat", "text": text}))
            .await;
        let everyone = (ROOM - 2) as u32;
        within(
            &format!("every reader to get message {n}"),
            chats.acquire_many(everyone),
        )
        .await
        .unwrap()
        .forget();
        while sender.recv_json().await["type"] != "chat" {}
    }
    let elapsed = started.elapsed();
    // Keep every reader connected until all are done: 198 clients leaving
    // at once would send each other 198² "left the room" notices, a burst
    // that a 32-message outbox is not meant to absorb.
    let mut still_connected = Vec::new();
    for reader in readers {
        still_connected.push(within("the readers to finish", reader).await.unwrap());
    }
    server
        .wait_for_log(&["closing connection", "code=1008", "slow consumer"])
        .await;
    assert_eq!(
        server.count_log(&["code=1008"]),
        1,
        "only the stalled client"
    );
    println!("{MESSAGES} messages to {} readers in {elapsed:?}", ROOM - 2);
}

async fn read_all_chats(
    mut client: Client,
    text: &str,
    count: usize,
    notices: &Semaphore,
    chats: &Semaphore,
) -> Client {
    let mut seen = 0;
    while seen < count {
        let msg = client.recv_json().await;
        if msg["type"] == "chat" {
            assert_eq!(msg["text"], text);
            seen += 1;
            chats.add_permits(1);
        } else {
            notices.add_permits(1);
        }
    }
    client
}
