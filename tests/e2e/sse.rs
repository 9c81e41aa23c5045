//! Server-Sent Events: streams in the same path groups as WebSockets,
//! their events, their ends, and their bounds.

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::auth::token;
use crate::support::{Client, Server, ServerOptions, each_language, http, within};

/// An event-stream client, reading events as a browser's `EventSource` does.
pub struct EventStream {
    /// The streaming response.
    response: reqwest::Response,
    /// Bytes read and not yet parsed into events.
    pending: Vec<u8>,
    /// Comment lines seen (the server's heartbeats).
    pub comments: usize,
    /// The last event id seen, as an `EventSource` keeps it.
    pub last_id: Option<String>,
}

impl EventStream {
    /// Opens `path` with `Accept: text/event-stream` and `headers`.
    pub async fn open(server: &Server, path: &str, headers: &[(&str, &str)]) -> Self {
        let response = Self::request(server, path, headers).await;
        assert_eq!(response.status(), 200, "opening {path}");
        let kind = response.headers()["content-type"].to_str().unwrap();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        Self {
            response,
            pending: Vec::new(),
            comments: 0,
            last_id: None,
        }
    }

    /// The answer to a request for a stream, whatever its status.
    pub async fn request(
        server: &Server,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        // No overall timeout: a stream lasts; each read is bounded instead.
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut request = client
            .get(server.url(path))
            .header("accept", "text/event-stream");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        within("the stream's response head", request.send())
            .await
            .unwrap()
    }

    /// The next block of lines (an event, or comments), without its
    /// blank line; `None` once the stream has ended.
    async fn block(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                return Some(self.pending.drain(..end + 2).take(end + 1).collect());
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.pending.extend_from_slice(&bytes),
                _ => return None,
            }
        }
    }

    /// The next event, as (type, data); `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<(String, String)> {
        within("an event", async {
            loop {
                let block = self.block().await?;
                if let Some(event) = self.parse(&block) {
                    return Some(event);
                }
            }
        })
        .await
    }

    /// Waits for the next heartbeat (a comment), with no event before it.
    pub async fn heartbeat(&mut self) {
        let before = self.comments;
        within("a heartbeat", async {
            while self.comments == before {
                let block = self.block().await.expect("the stream ended");
                if let Some(event) = self.parse(&block) {
                    panic!("an event instead of a heartbeat: {event:?}");
                }
            }
        })
        .await
    }

    /// The next event's data, which must be of the default type.
    pub async fn message(&mut self) -> String {
        let (kind, data) = self.next().await.expect("the stream ended");
        assert_eq!(kind, "message", "{data}");
        data
    }

    /// The next event's data as JSON.
    pub async fn json(&mut self) -> Value {
        serde_json::from_str(&self.message().await).unwrap()
    }

    fn parse(&mut self, block: &[u8]) -> Option<(String, String)> {
        let text = std::str::from_utf8(block).unwrap();
        let (mut kind, mut data): (String, Option<String>) = ("message".into(), None);
        for line in text.lines() {
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => kind = value.to_string(),
                "id" => self.last_id = Some(value.to_string()),
                "data" => match &mut data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                },
                _ => {}
            }
        }
        data.map(|data| (kind, data))
    }
}

/// A probe WebSocket on `path` (its first), once it is in the path's
/// group: the answer to a message comes after its `open` has run.
async fn joined(server: &Server, path: &str) -> Client {
    let mut socket = server.connect(path).await;
    socket.send("count").await;
    assert_eq!(socket.recv().await, "1");
    socket
}

/// Pushes `text` to `path` through the probe's HTTP route; how many
/// connections it reached.
pub async fn push_to(server: &Server, path: &str, text: &str) -> u32 {
    let response = http()
        .post(server.url("/probe/push"))
        .query(&[("path", path)])
        .body(text.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap().parse().unwrap()
}

/// Pushes `text` to `/ws/probe/{name}`.
async fn push(server: &Server, name: &str, text: &str) -> u32 {
    push_to(server, &format!("/ws/probe/{name}"), text).await
}

#[tokio::test]
async fn a_stream_joins_the_path_group_beside_websockets_and_no_other() {
    let server = Server::start(&["probe"]).await;
    let mut socket = joined(&server, "/ws/probe/x").await;
    let mut stream = EventStream::open(&server, "/ws/probe/x", &[]).await;
    let open = stream.json().await;
    assert_eq!(open["open"], "/ws/probe/x");
    assert_eq!(open["name"], "x");
    assert_eq!(open["count"], 2, "{open}");
    let mut elsewhere = EventStream::open(&server, "/ws/probe/y", &[]).await;
    assert_eq!(elsewhere.json().await["count"], 1);

    // A WebSocket member's broadcast reaches the stream.
    socket.send("shout").await;
    assert!(stream.message().await.ends_with(" shouts"));
    socket.send("count").await;
    assert_eq!(socket.recv().await, "2");

    // An HTTP route's push reaches both kinds, and only on its path.
    assert_eq!(push(&server, "x", "for x").await, 2);
    assert_eq!(stream.message().await, "for x");
    assert_eq!(socket.recv().await, "for x");
    assert_eq!(push(&server, "y", "for y").await, 1);
    assert_eq!(elsewhere.message().await, "for y");
}

#[tokio::test]
async fn lines_of_a_message_arrive_as_one_event() {
    let server = Server::start(&["probe"]).await;
    let mut stream = EventStream::open(&server, "/ws/probe/lines", &[]).await;
    stream.json().await;
    push(&server, "lines", "one\ntwo\r\nthree\rfour").await;
    assert_eq!(stream.message().await, "one\ntwo\nthree\nfour");
    push(&server, "lines", "data: not a field\n\nevent: nor this").await;
    assert_eq!(
        stream.message().await,
        "data: not a field\n\nevent: nor this"
    );
}

#[tokio::test]
async fn the_app_gets_open_with_last_event_id_and_close_when_the_client_goes() {
    let server = Server::start(&["probe"]).await;
    let mut socket = joined(&server, "/ws/probe/z").await;
    let mut stream = EventStream::open(&server, "/ws/probe/z", &[("last-event-id", "41")]).await;
    assert_eq!(stream.json().await["last_event_id"], "41");
    drop(stream);
    assert_eq!(
        socket.recv().await,
        "stream closed 1001 the client went away"
    );
    socket.send("count").await;
    assert_eq!(socket.recv().await, "1");
}

#[tokio::test]
async fn a_stream_the_app_closes_is_told_why_and_ends() {
    let server = Server::start(&["probe"]).await;
    let mut socket = server.connect("/ws/probe/c").await;
    let mut stream = EventStream::open(&server, "/ws/probe/c", &[]).await;
    let id = stream.json().await["id"].as_str().unwrap().to_string();
    socket.send(&format!("close-id:{id}")).await;
    assert_eq!(socket.recv().await, "Ok(())");
    let (kind, data) = stream.next().await.unwrap();
    assert_eq!(kind, "close");
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap(),
        json!({"code": 4002, "reason": "closed by a peer"})
    );
    assert_eq!(stream.next().await, None, "the stream ends");
    assert_eq!(socket.recv().await, "stream closed 4002 closed by a peer");
}

#[tokio::test]
async fn a_quiet_stream_gets_heartbeats() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        args: vec!["--ping-interval-ms".into(), "200".into()],
        ..Default::default()
    })
    .await;
    let mut stream = EventStream::open(&server, "/ws/probe/quiet", &[]).await;
    stream.json().await;
    stream.heartbeat().await;
    stream.heartbeat().await;
    // Still open and delivering after them.
    push(&server, "quiet", "still here").await;
    assert_eq!(stream.message().await, "still here");
}

#[tokio::test]
async fn secured_streams_need_a_token_and_see_its_claims() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        env: vec![(
            "TINA4_SECRET".into(),
            "an-sse-test-secret-of-32-bytes-at-least".into(),
        )],
        ..Default::default()
    })
    .await;
    let refused = EventStream::request(&server, "/sse/secure/a", &[]).await;
    assert_eq!(refused.status(), 401);
    let token = token("probe", "an-sse-test-secret-of-32-bytes-at-least", 60);
    let mut stream = EventStream::open(&server, &format!("/sse/secure/a?token={token}"), &[]).await;
    assert_eq!(stream.json().await["claims"]["sub"], "alice");
}

#[tokio::test]
async fn streams_are_opened_with_get_only() {
    let server = Server::start(&["probe"]).await;
    let response = http().post(server.url("/ws/probe/x")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    // A page from another origin cannot open one.
    let refused =
        EventStream::request(&server, "/ws/probe/x", &[("origin", "http://evil.example")]).await;
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn a_stream_that_is_not_read_is_a_slow_consumer() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        // The write timeout far away: only the outbox's bound can end it.
        args: [
            "--outbox-bytes",
            "262144",
            "--send-buffer-bytes",
            "4096",
            "--write-timeout-ms",
            "120000",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
        ..Default::default()
    })
    .await;
    let mut socket = server.connect("/ws/probe/slow").await;
    // Asks for the stream and never reads a byte of it.
    let address = server.url("").trim_start_matches("http://").to_string();
    let mut stuck = TcpStream::connect(address).await.unwrap();
    stuck
        .write_all(
            b"GET /ws/probe/slow HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .unwrap();
    within("the stream to join", async {
        loop {
            socket.send("count").await;
            if socket.recv().await == "2" {
                break;
            }
        }
    })
    .await;
    // 128 messages of 60 kB: 7.7 MB, past the sockets, the response's
    // buffer and a 256 KiB outbox. The WebSocket member reads each.
    let big = "x".repeat(60_000);
    let mut told = None;
    for _ in 0..128 {
        push(&server, "slow", &big).await;
        let reply = socket.recv().await;
        if reply != big {
            told = Some(reply);
            break;
        }
    }
    server
        .wait_for_log(&["closing connection", "code=1008", "slow consumer"])
        .await;
    // The app hears of it; the member that reads is unaffected.
    let told = match told {
        Some(told) => told,
        None => socket.recv().await,
    };
    assert!(
        told.starts_with("stream closed 1008 slow consumer"),
        "{told}"
    );
    // The push whose delivery overflowed the outbox may still be on its
    // way to the reader after the notice; anything else is the count.
    socket.send("count").await;
    let count = loop {
        let reply = socket.recv().await;
        if reply != big {
            break reply;
        }
    };
    assert_eq!(count, "1");
}

/// Pushes `text` to `/kept/{name}`, which keeps its last five messages.
async fn keep(server: &Server, name: &str, text: &str) {
    push_to(server, &format!("/kept/{name}"), text).await;
}

/// Reads `n` messages and returns their texts.
async fn messages(stream: &mut EventStream, n: usize) -> Vec<String> {
    let mut texts = Vec::new();
    for _ in 0..n {
        texts.push(stream.message().await);
    }
    texts
}

/// Reads the `recovered` event; whether recovery was complete.
async fn recovered(stream: &mut EventStream) -> bool {
    let (kind, data) = stream.next().await.expect("a recovered event");
    assert_eq!(kind, "recovered", "{data}");
    serde_json::from_str::<Value>(&data).unwrap()["complete"]
        .as_bool()
        .unwrap()
}

#[tokio::test]
async fn a_stream_that_reconnects_with_last_event_id_gets_what_it_missed_once_then_live() {
    let server = Server::start(&["probe"]).await;
    // A WebSocket member of the same path hears it all, live.
    let mut member = joined(&server, "/kept/r").await;
    let mut first = EventStream::open(&server, "/kept/r", &[]).await;
    first.json().await;
    keep(&server, "r", "one").await;
    keep(&server, "r", "two").await;
    assert_eq!(messages(&mut first, 2).await, ["one", "two"]);
    let position = first.last_id.clone().expect("kept messages carry ids");
    drop(first);
    // The app tells the path the stream went (a message kept like any).
    let gone = "stream closed 1001 the client went away";
    for expected in ["one", "two", gone] {
        assert_eq!(member.recv().await, expected);
    }

    // Missed while away.
    keep(&server, "r", "three\nlines").await;
    keep(&server, "r", "four").await;
    let mut again = EventStream::open(&server, "/kept/r", &[("last-event-id", &position)]).await;
    assert_eq!(
        messages(&mut again, 3).await,
        [gone, "three\nlines", "four"]
    );
    assert!(recovered(&mut again).await, "nothing was dropped");
    let open = again.json().await;
    assert_eq!(open["last_event_id"], position.as_str());
    // Live from here, and nothing twice.
    keep(&server, "r", "five").await;
    assert_eq!(again.message().await, "five");
    let now = again.last_id.clone().unwrap();
    assert!(now.ends_with("-6"), "{now}");

    // The same position in the query, as frond.sse sends it; the app does
    // not see the host's parameters.
    let (epoch, _) = position.rsplit_once('-').unwrap();
    let query = format!("/kept/r?tina4_epoch={epoch}&tina4_offset=5");
    let mut by_query = EventStream::open(&server, &query, &[]).await;
    assert_eq!(by_query.message().await, "five");
    assert!(recovered(&mut by_query).await);
    assert_eq!(by_query.json().await["host_parameter"], Value::Null);
}

#[tokio::test]
async fn a_gap_beyond_what_is_kept_or_another_epoch_is_an_incomplete_recovery() {
    let server = Server::start(&["probe"]).await;
    let mut member = joined(&server, "/kept/g").await;
    let mut stream = EventStream::open(&server, "/kept/g", &[]).await;
    stream.json().await;
    keep(&server, "g", "m1").await;
    stream.message().await;
    let first = stream.last_id.clone().unwrap();
    drop(stream);
    assert_eq!(member.recv().await, "m1");
    assert_eq!(
        member.recv().await,
        "stream closed 1001 the client went away"
    );
    // The route keeps five: the close notice, m2 and m3 fall out.
    for i in 2..=8 {
        keep(&server, "g", &format!("m{i}")).await;
    }
    let mut late = EventStream::open(&server, "/kept/g", &[("last-event-id", &first)]).await;
    assert_eq!(messages(&mut late, 5).await, ["m4", "m5", "m6", "m7", "m8"]);
    assert!(!recovered(&mut late).await, "m2 and m3 were lost");

    let mut stranger =
        EventStream::open(&server, "/kept/g", &[("last-event-id", "0a0b.7-3")]).await;
    assert!(!recovered(&mut stranger).await);
    assert!(
        stranger.json().await["open"].is_string(),
        "nothing replayed"
    );

    // A restarted server has a new epoch: nothing survives it locally.
    let restarted = Server::start(&["probe"]).await;
    keep(&restarted, "g", "after").await;
    let mut after = EventStream::open(&restarted, "/kept/g", &[("last-event-id", &first)]).await;
    assert!(!recovered(&mut after).await);
}

each_language! {
    async fn a_chat_room_with_one_member_on_a_stream_and_one_on_a_websocket(language) {
        let server = Server::start_in(language, &["chat"]).await;
        let mut listener = EventStream::open(&server, "/ws/room/mixed", &[]).await;
        let welcome = listener.json().await;
        assert_eq!(welcome["type"], "system");
        assert_eq!(welcome["online"], 1);

        let mut alice = server.connect("/ws/room/mixed").await;
        assert_eq!(alice.recv_json().await["online"], 2);
        assert_eq!(
            listener.json().await,
            json!({"type": "system", "message": "A new user joined", "online": 2})
        );
        alice.send_json(json!({"type": "set-name", "name": "Alice"})).await;
        alice.recv_json().await;
        listener.json().await;
        alice.send_json(json!({"type": "chat", "text": "hello, listener"})).await;
        let heard = listener.json().await;
        assert_eq!(heard["type"], "chat");
        assert_eq!(heard["from"], "Alice");
        assert_eq!(heard["text"], "hello, listener");
        assert_eq!(alice.recv_json().await["text"], "hello, listener");

        let position = listener.last_id.clone().expect("the room keeps history");
        drop(listener);
        let left = alice.recv_json().await;
        assert_eq!(left["message"], "Anonymous left the room");
        assert_eq!(left["online"], 1);

        // The room keeps its history: a listener back with its last event
        // id hears what it missed, once, before its welcome.
        alice.send_json(json!({"type": "chat", "text": "while you were out"})).await;
        alice.recv_json().await;
        let mut back = EventStream::open(&server, "/ws/room/mixed", &[("last-event-id", &position)]).await;
        assert_eq!(back.json().await["message"], "Anonymous left the room");
        assert_eq!(back.json().await["text"], "while you were out");
        assert!(recovered(&mut back).await);
        assert_eq!(back.json().await["type"], "system");
    }
}

#[tokio::test]
async fn a_swap_that_drops_the_stream_route_ends_its_streams_and_keeps_the_websockets() {
    let server = Server::start(&["probe"]).await;
    let mut socket = joined(&server, "/ws/probe/o").await;
    let mut stream = EventStream::open(&server, "/ws/probe/o", &[]).await;
    stream.json().await;
    // The second version serves the path to WebSockets only.
    let v2 = std::fs::read(crate::support::component("probe-v2")).unwrap();
    crate::support::Install::WriteThenRename.put(server.apps_dir(), "probe.wasm", &v2);
    server
        .wait_for_log(&["app swapped to a new version", "probe"])
        .await;
    let (kind, data) = stream.next().await.expect("a last event");
    assert_eq!(kind, "close");
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap(),
        json!({"code": 1001, "reason": "route removed by an update of the app"})
    );
    assert_eq!(stream.next().await, None);
    socket.send("x").await;
    let mut reply = socket.recv().await;
    if reply.starts_with("stream closed") {
        reply = socket.recv().await;
    }
    assert_eq!(reply, "v2: x");
}
