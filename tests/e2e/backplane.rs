//! Several real instances on one real `redis-server`: broadcasts, pushes,
//! sends, closes and counts span them; subscriptions follow connections;
//! Redis can be missing at start or die mid-run without local delivery
//! stopping.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::redis_server::{RedisCluster, RedisServer};
use crate::support::{
    Client, Language, Server, ServerOptions, eventually, free_port, http, within,
};

/// The log line of an instance whose backplane is up.
const CONNECTED: &str = "backplane: connected to Redis";

/// An instance serving `apps` with the Redis backplane at `url`.
async fn start_instance(url: &str, apps: &[&'static str]) -> Server {
    Server::start_with(ServerOptions {
        apps: apps.to_vec(),
        args: ["--backplane", "redis", "--backplane-url", url]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    })
    .await
}

/// [`start_instance`], once its backplane is connected.
pub(crate) async fn instance(redis: &RedisServer, apps: &[&'static str]) -> Server {
    let server = start_instance(&redis.url(), apps).await;
    server.wait_for_log(&[CONNECTED]).await;
    server
}

/// A Redis and two chat instances on it.
async fn chat_cluster() -> (RedisServer, Server, Server) {
    let redis = RedisServer::start().await;
    let (a, b) = tokio::join!(instance(&redis, &["chat"]), instance(&redis, &["chat"]));
    (redis, a, b)
}

/// Joins a chat room and reads the welcome. A join notice another
/// instance sent just before this connection opened may come first (see
/// the README's delivery guarantees); it is skipped.
async fn join(server: &Server, room: &str) -> Client {
    let mut client = server.connect(&format!("/ws/room/{room}")).await;
    let mut welcome = client.recv_json().await;
    while welcome["message"] == "A new user joined" {
        welcome = client.recv_json().await;
    }
    assert!(
        welcome["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Welcome")),
        "{welcome}"
    );
    client
}

async fn chat(client: &mut Client, text: &str) {
    client
        .send_json(json!({"type": "chat", "text": text}))
        .await;
}

/// The next chat message's text. Join notices in between are skipped: one
/// that another instance sent just before a connection opened may still be
/// in flight and arrive after it (see the README's delivery guarantees).
async fn chat_text(client: &mut Client) -> String {
    loop {
        let message = client.recv_json().await;
        if message["type"] == "system" && message["message"] == "A new user joined" {
            continue;
        }
        assert_eq!(message["type"], "chat", "{message}");
        return message["text"].as_str().unwrap().to_string();
    }
}

async fn expect_system(client: &mut Client, says: &str) {
    let message = client.recv_json().await;
    assert_eq!(
        (message["type"].as_str(), message["message"].as_str()),
        (Some("system"), Some(says)),
        "{message}"
    );
}

/// A probe connection and its id.
async fn probe(server: &Server, path: &str) -> (Client, String) {
    let mut client = server.connect(path).await;
    client.send("id").await;
    let id = client.recv().await;
    (client, id)
}

/// Asks `client` for its path's count until it is `expected`; returns how
/// long that took.
async fn wait_for_count(client: &mut Client, expected: u32) -> Duration {
    let started = Instant::now();
    within(&format!("the count to reach {expected}"), async {
        loop {
            client.send("count").await;
            if client.recv().await == expected.to_string() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

async fn ready(server: &Server) -> Value {
    http()
        .get(server.admin_url("/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn one_room_spans_instances_running_the_chat_in_different_languages() {
    let redis = RedisServer::start().await;
    let in_language = |language| {
        let url = redis.url();
        async move {
            let server = Server::start_with(ServerOptions {
                apps: vec!["chat"],
                language,
                args: ["--backplane", "redis", "--backplane-url", &url]
                    .map(String::from)
                    .to_vec(),
                ..Default::default()
            })
            .await;
            server.wait_for_log(&[CONNECTED]).await;
            server
        }
    };
    let (python, javascript) = tokio::join!(
        in_language(Language::Python),
        in_language(Language::Javascript)
    );
    let mut alice = join(&python, "mixed").await;
    let mut bob = join(&javascript, "mixed").await;
    expect_system(&mut alice, "A new user joined").await;
    // Names are kept by each instance's host; the room is shared.
    alice
        .send_json(json!({"type": "set-name", "name": "Alice"}))
        .await;
    expect_system(&mut alice, "Anonymous changed their name to Alice").await;
    // Alice's own join notice may still have been in flight when Bob came (see
    // `chat_text`); past it, Bob hears the rename.
    let rename = loop {
        let message = bob.recv_json().await;
        if message["message"] != "A new user joined" {
            break message;
        }
    };
    assert_eq!(rename["message"], "Anonymous changed their name to Alice");
    chat(&mut bob, "hello from JavaScript").await;
    chat(&mut alice, "hello from Python").await;
    for client in [&mut alice, &mut bob] {
        let mut got = [chat_text(client).await, chat_text(client).await];
        got.sort();
        assert_eq!(got, ["hello from JavaScript", "hello from Python"]);
    }
    bob.close().await;
    expect_system(&mut alice, "Anonymous left the room").await;
}

#[tokio::test]
async fn a_chat_room_spans_instances_exactly_once_with_exclude_self() {
    let (_redis, a, b) = chat_cluster().await;
    let mut alice = join(&a, "lobby").await;
    let mut carol = join(&b, "elsewhere").await;
    let mut bob = join(&b, "lobby").await;
    // Bob's arrival (broadcast except self, on B) reaches Alice on A.
    expect_system(&mut alice, "A new user joined").await;
    let mut dave = join(&a, "lobby").await;
    // Bob's first message is Dave's arrival: he did not hear his own.
    expect_system(&mut bob, "A new user joined").await;
    expect_system(&mut alice, "A new user joined").await;

    chat(&mut alice, "hello from A").await;
    chat(&mut bob, "hello from B").await;
    for client in [&mut alice, &mut bob, &mut dave] {
        // Each message once, in each sender's order.
        let first = chat_text(client).await;
        let second = chat_text(client).await;
        let mut got = [first, second];
        got.sort();
        assert_eq!(got, ["hello from A", "hello from B"]);
    }
    chat(&mut dave, "last").await;
    for client in [&mut alice, &mut bob, &mut dave] {
        assert_eq!(chat_text(client).await, "last", "no duplicates before it");
    }
    // Another room on the same instance heard none of it.
    chat(&mut carol, "anyone?").await;
    assert_eq!(chat_text(&mut carol).await, "anyone?");
}

#[tokio::test]
async fn a_push_from_http_on_one_instance_reaches_a_listener_on_another() {
    let redis = RedisServer::start().await;
    let (a, b) = tokio::join!(
        instance(&redis, &["notifications"]),
        instance(&redis, &["notifications"])
    );
    // B's only connection has broadcast nothing; A has no connection at all.
    let mut listener = b.connect("/ws/notifications/42").await;
    assert_eq!(listener.recv_json().await["type"], "connected");
    let response = http()
        .post(a.url("/api/orders/7/ship"))
        .json(&json!({"user_id": 42}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let notification = listener.recv_json().await;
    assert_eq!(notification["type"], "notification");
    assert_eq!(notification["message"], "Your order #7 has been shipped!");
}

#[tokio::test]
async fn send_close_and_binary_reach_connections_on_other_instances_of_the_same_app() {
    let redis = RedisServer::start().await;
    let (a, b, c) = tokio::join!(
        instance(&redis, &["probe"]),
        instance(&redis, &["probe"]),
        // Another app at the same paths: apps stay fenced in across instances.
        instance(&redis, &["probe-v2"])
    );
    let (mut x, x_id) = probe(&b, "/ws/probe/p").await;
    let (mut y, _) = probe(&a, "/ws/probe/p").await;
    let (mut stranger, stranger_id) = probe(&c, "/ws/probe/p").await;
    assert_ne!(x_id.split('-').next(), stranger_id.split('-').next());

    y.send(&format!("send-to:{x_id} hello over there")).await;
    assert_eq!(y.recv().await, "Ok(())");
    assert_eq!(x.recv().await, "hello over there");

    // Binary, byte for byte, to everyone on the path, the sender included.
    let bytes = vec![0u8, 159, 255, 10];
    y.send_binary(&bytes).await;
    assert_eq!(y.next_message().await, Message::binary(bytes.clone()));
    assert_eq!(x.next_message().await, Message::binary(bytes));

    // Except-self from B: A hears it, B's sender does not.
    x.send("shout").await;
    assert_eq!(y.recv().await, format!("{x_id} shouts"));
    x.send("id").await;
    assert_eq!(x.recv().await, x_id);

    // The other app's connection got none of it, not even a direct send.
    y.send(&format!("send-to:{stranger_id} intrusion")).await;
    assert_eq!(y.recv().await, "Ok(())");
    stranger.send("id").await;
    assert_eq!(stranger.recv().await, stranger_id);

    // No instance has this prefix: the app is told, as for a local id.
    y.send("send-to:000000000000-1 hi").await;
    assert_eq!(y.recv().await, "Err(UnknownConnection(\"000000000000-1\"))");

    y.send(&format!("close-id:{x_id}")).await;
    assert_eq!(y.recv().await, "Ok(())");
    assert_eq!(
        x.expect_close().await,
        (4002, "closed by a peer".to_string())
    );
}

#[tokio::test]
async fn count_is_cluster_wide_and_a_killed_instance_drops_out() {
    let redis = RedisServer::start().await;
    let (a, b, c) = tokio::join!(
        instance(&redis, &["probe"]),
        instance(&redis, &["probe"]),
        instance(&redis, &["probe"])
    );
    let path = "/ws/probe/room";
    let (mut a1, _) = probe(&a, path).await;
    let (mut b1, _) = probe(&b, path).await;
    let (b2, _) = probe(&b, path).await;
    let (_c1, _) = probe(&c, path).await;
    let (_c2, _) = probe(&c, path).await;
    wait_for_count(&mut a1, 5).await;
    wait_for_count(&mut b1, 5).await;

    b2.close().await;
    wait_for_count(&mut a1, 4).await;

    // kill -9: no goodbye; its counts expire with its heartbeats.
    c.kill().await;
    let took = wait_for_count(&mut a1, 2).await;
    assert!(took < Duration::from_secs(6), "took {took:?}");
    wait_for_count(&mut b1, 2).await;
}

#[tokio::test]
async fn counts_expire_in_a_long_outage_and_come_back_with_redis() {
    let redis = RedisServer::start().await;
    let (a, b) = tokio::join!(instance(&redis, &["probe"]), instance(&redis, &["probe"]));
    let path = "/ws/probe/outage";
    let (mut a1, _) = probe(&a, path).await;
    let (_b1, _) = probe(&b, path).await;
    wait_for_count(&mut a1, 2).await;

    let port = redis.kill().await;
    // B is silent for longer than the TTL: it drops out of A's count.
    wait_for_count(&mut a1, 1).await;
    // What A publishes meanwhile is dropped, and counted.
    a1.send("shout").await;
    a1.send("id").await;
    a1.recv().await;
    let dropped = eventually("a dropped message to be counted", || async {
        a.metrics()
            .await
            .lines()
            .any(|line| line.starts_with("tina4_backplane_dropped_total{"))
            .then_some(())
    });
    dropped.await;

    let _redis = RedisServer::start_on(port).await;
    // On reconnecting, the instances ask each other for their counts: A
    // learns B's at once, not at B's next periodic snapshot (every 5 s).
    let took = wait_for_count(&mut a1, 2).await;
    assert!(took < Duration::from_millis(2500), "took {took:?}");
}

#[tokio::test]
async fn an_instance_subscribes_only_to_paths_it_has_connections_on() {
    let (redis, a, b) = chat_cluster().await;
    let lobby = "tina4:room:{chat/ws/room/lobby}";
    assert_eq!(redis.subscribers("tina4:cluster").await, 2);
    assert_eq!(redis.subscribers(lobby).await, 0);
    // Subscribed before the welcome (the `open` event) is sent.
    let mut alice = join(&a, "lobby").await;
    assert_eq!(redis.subscribers(lobby).await, 1);
    let bob = join(&b, "lobby").await;
    assert_eq!(redis.subscribers(lobby).await, 2);
    expect_system(&mut alice, "A new user joined").await;

    bob.close().await;
    eventually("B to unsubscribe", || async {
        (redis.subscribers(lobby).await == 1).then_some(())
    })
    .await;
    alice.close().await;
    eventually("A to unsubscribe", || async {
        (redis.subscribers(lobby).await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn redis_dying_mid_conversation_stops_only_cross_instance_delivery() {
    let (redis, a, b) = chat_cluster().await;
    let mut alice = join(&a, "lobby").await;
    let mut alice2 = join(&a, "lobby").await;
    expect_system(&mut alice, "A new user joined").await;
    let mut bob = join(&b, "lobby").await;
    expect_system(&mut alice, "A new user joined").await;
    expect_system(&mut alice2, "A new user joined").await;

    let port = redis.kill().await;
    a.wait_for_log(&["backplane: lost Redis"]).await;

    // Local delivery goes on; what was meant for B is dropped and counted.
    chat(&mut alice, "during the outage").await;
    assert_eq!(chat_text(&mut alice).await, "during the outage");
    assert_eq!(chat_text(&mut alice2).await, "during the outage");
    a.wait_for_log(&["dropping cross-instance messages"]).await;

    let _redis = RedisServer::start_on(port).await;
    let back = Instant::now();
    // Keep talking until B hears A again.
    let heard = within("cross-instance delivery to resume", async {
        for n in 0.. {
            chat(&mut alice, &format!("after {n}")).await;
            if let Ok(text) =
                tokio::time::timeout(Duration::from_millis(50), chat_text(&mut bob)).await
            {
                return text;
            }
        }
        unreachable!()
    })
    .await;
    let resumed = back.elapsed();
    assert!(heard.starts_with("after "), "B got {heard:?}");
    assert!(
        resumed < Duration::from_secs(2),
        "resumed after {resumed:?}"
    );
    a.wait_for_log(&["cross-instance messages were dropped"])
        .await;
}

#[tokio::test]
async fn without_redis_at_start_an_instance_serves_locally_and_joins_later() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let a = start_instance(&url, &["chat"]).await;
    a.wait_for_log(&[
        "cannot reach Redis",
        "serving this instance's connections only",
    ])
    .await;
    let status = ready(&a).await;
    assert_eq!(
        status,
        json!({"ready": true, "backplane": "redis: unreachable"})
    );
    let mut alice = join(&a, "lobby").await;
    let mut alice2 = join(&a, "lobby").await;
    expect_system(&mut alice, "A new user joined").await;
    chat(&mut alice2, "local only").await;
    assert_eq!(chat_text(&mut alice).await, "local only");

    let redis = RedisServer::start_on(port).await;
    a.wait_for_log(&[CONNECTED]).await;
    assert_eq!(ready(&a).await["backplane"], "redis: connected");
    let b = instance(&redis, &["chat"]).await;
    let _bob = join(&b, "lobby").await;
    expect_system(&mut alice, "A new user joined").await;
}

#[tokio::test]
async fn on_a_redis_cluster_rooms_travel_on_their_own_shards() {
    let cluster = RedisCluster::start(3).await;
    // Each instance knows one seed node; it discovers the rest.
    let start = |node: &RedisServer| {
        let url = node.url();
        Server::start_with(ServerOptions {
            apps: vec!["chat", "probe"],
            args: ["--backplane", "redis-cluster", "--backplane-url", &url]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        })
    };
    let (a, b) = tokio::join!(start(&cluster.nodes[0]), start(&cluster.nodes[1]));
    a.wait_for_log(&[CONNECTED]).await;
    b.wait_for_log(&[CONNECTED]).await;

    let mut owners = std::collections::HashSet::new();
    for room in ["r0", "r1", "r2", "r3", "r4", "r5"] {
        let mut alice = join(&a, room).await;
        let mut bob = join(&b, room).await;
        expect_system(&mut alice, "A new user joined").await;
        chat(&mut alice, &format!("hello {room}")).await;
        assert_eq!(chat_text(&mut bob).await, format!("hello {room}"));
        assert_eq!(chat_text(&mut alice).await, format!("hello {room}"));
        // Both instances listen on the room's shard, not on classic pub/sub.
        let channel = format!("tina4:room:{{chat/ws/room/{room}}}");
        let (listeners, owner) = cluster.shard_subscribers(&channel).await;
        assert_eq!(listeners, 2, "{channel}");
        owners.insert(owner);
        assert_eq!(cluster.nodes[0].subscribers(&channel).await, 0);
    }
    assert!(owners.len() > 1, "six rooms all on one shard: {owners:?}");

    let (mut a1, _) = probe(&a, "/ws/probe/c").await;
    let (_b1, _) = probe(&b, "/ws/probe/c").await;
    wait_for_count(&mut a1, 2).await;
    // One session throughout: no reconnection churn on the cluster.
    assert_eq!(
        a.count_log(&["lost Redis"]) + b.count_log(&["lost Redis"]),
        0
    );
}

/// A broadcast to `room` as an instance would publish it, forged by hand
/// (postcard: the format byte, the variant, then each field).
fn forged_broadcast(room: &str, text: &str) -> Vec<u8> {
    let field = |bytes: &[u8]| {
        assert!(bytes.len() < 128, "one-byte lengths only");
        [&[bytes.len() as u8][..], bytes].concat()
    };
    [
        &[1u8, 0][..],       // format 1, Envelope::Broadcast
        &field(b"intruder"), // origin
        &field(room.as_bytes()),
        &[0], // exclude: None
        &[0], // Payload::Text
        &field(text.as_bytes()),
    ]
    .concat()
}

/// An instance of a cluster sharing `secret`, on `prefix`.
async fn sealed_instance(redis: &RedisServer, prefix: &str, secret: Option<&str>) -> Server {
    let mut args: Vec<String> = ["--backplane", "redis", "--backplane-url"]
        .map(String::from)
        .to_vec();
    args.extend([redis.url(), "--backplane-prefix".into(), prefix.into()]);
    let server = Server::start_with(ServerOptions {
        apps: vec!["chat"],
        args,
        env: secret
            .map(|s| vec![("TINA4_WS_BACKPLANE_SECRET".to_string(), s.to_string())])
            .unwrap_or_default(),
        ..Default::default()
    })
    .await;
    server.wait_for_log(&[CONNECTED]).await;
    server
}

#[tokio::test]
async fn with_a_shared_secret_a_forged_envelope_is_refused() {
    let redis = RedisServer::start().await;
    // Without a secret, whoever can publish to Redis reaches clients.
    let open = sealed_instance(&redis, "open", None).await;
    let mut exposed = join(&open, "lobby").await;
    let channel = "open:room:{chat/ws/room/lobby}";
    assert_eq!(
        redis
            .publish(channel, &forged_broadcast("chat/ws/room/lobby", "forged"))
            .await,
        1
    );
    assert_eq!(exposed.recv().await, "forged");

    let secret = "a secret the instances share, 32+ bytes";
    let (a, b) = tokio::join!(
        sealed_instance(&redis, "sealed", Some(secret)),
        sealed_instance(&redis, "sealed", Some(secret))
    );
    let mut member = join(&a, "lobby").await;
    let channel = "sealed:room:{chat/ws/room/lobby}";
    redis
        .publish(channel, &forged_broadcast("chat/ws/room/lobby", "forged"))
        .await;
    eventually("the forgery to be refused", || async {
        a.metrics()
            .await
            .lines()
            .any(|l| l.starts_with("tina4_backplane_refused_total{reason=\"unsealed\"}"))
            .then_some(())
    })
    .await;
    // What the instances seal still crosses; the forgery never arrived.
    let mut other = join(&b, "lobby").await;
    chat(&mut other, "sealed and delivered").await;
    assert_eq!(chat_text(&mut member).await, "sealed and delivered");
}

#[tokio::test]
async fn a_message_from_another_instance_is_kept_in_this_ones_history() {
    let redis = RedisServer::start().await;
    let (a, b) = tokio::join!(instance(&redis, &["probe"]), instance(&redis, &["probe"]));
    // A member on B, in its path's group (and B listening to it) once a
    // round trip says so.
    let mut member = b.connect("/log/x").await;
    member.send("count").await;
    member.recv().await;
    crate::sse::push_to(&a, "/log/x", "from a").await;
    assert_eq!(member.recv().await, "from a");
    // B kept it: an app on B reads it.
    let mut reader = b.connect("/log/x").await;
    reader.send("history:5").await;
    assert_eq!(reader.recv_json().await, json!([[1, "from a"]]));
}
