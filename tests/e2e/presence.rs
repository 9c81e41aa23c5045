//! Presence: who is on a path, by key, across the cluster. A key joins
//! with its first connection and leaves with its last; the path's clients
//! get notices where the route announces, and the app hears each change
//! once in the cluster.

use serde_json::Value;

use crate::backplane::instance;
use crate::redis_server::RedisServer;
use crate::support::{Client, Server, ServerOptions};

/// A member of `/who/{room}` on `server`, present as `key` (with `value`).
/// Notices it gets before its own answer are skipped.
async fn present(server: &Server, room: &str, key: &str, value: &str) -> Client {
    let mut client = server.connect(&format!("/who/{room}")).await;
    client.send(&format!("iam:{key} {value}")).await;
    loop {
        let text = client.recv().await;
        if text == "Ok(())" {
            return client;
        }
        assert!(text.starts_with("{\"presence\""), "{text}");
    }
}

/// The next notice `client` gets: (join or leave, key).
async fn notice(client: &mut Client) -> (String, String) {
    let notice: Value = client.recv_json().await;
    (
        notice["presence"].as_str().unwrap().to_string(),
        notice["key"].as_str().unwrap().to_string(),
    )
}

/// The members `client` sees on its path: (key, value), sorted. Notices
/// that come first are skipped.
async fn who(client: &mut Client) -> Vec<(String, String)> {
    client.send("who").await;
    let members = loop {
        let answer: Value = client.recv_json().await;
        if answer.is_array() {
            break answer;
        }
    };
    let members: Vec<(String, String, String)> = serde_json::from_value(members).unwrap();
    members
        .into_iter()
        .map(|(key, value, _)| (key, value))
        .collect()
}

/// Waits until `client`'s path lists exactly `keys`.
async fn until_who(client: &mut Client, keys: &[(&str, &str)]) {
    let expected: Vec<(String, String)> = keys
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for _ in 0..200 {
        if who(client).await == expected {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!(
        "the path never listed {expected:?}: {:?}",
        who(client).await
    );
}

/// A watcher of the app's own presence events.
async fn app_events(server: &Server) -> Client {
    let mut watcher = server.connect("/ws/probe/presence-events").await;
    watcher.send("count").await;
    watcher.recv().await;
    watcher
}

#[tokio::test]
async fn a_key_joins_once_for_many_tabs_and_leaves_with_the_last() {
    let server = Server::start(&["probe"]).await;
    let mut events = app_events(&server).await;
    let mut ann = present(&server, "a", "ann", "Ann").await;
    assert_eq!(events.recv().await, "/who/a joined ann Ann");
    let ann2 = present(&server, "a", "ann", "Ann again").await;
    let mut bob = present(&server, "a", "bob", "Bob").await;
    assert_eq!(notice(&mut ann).await, ("join".into(), "bob".into()));
    assert_eq!(events.recv().await, "/who/a joined bob Bob");
    assert_eq!(
        who(&mut bob).await,
        [
            ("ann".into(), "Ann".into()),
            ("ann".into(), "Ann again".into()),
            ("bob".into(), "Bob".into())
        ]
    );
    // One of Ann's tabs goes: she is still here.
    ann2.close().await;
    until_who(&mut bob, &[("ann", "Ann"), ("bob", "Bob")]).await;
    ann.close().await;
    assert_eq!(notice(&mut bob).await, ("leave".into(), "ann".into()));
    assert_eq!(events.recv().await, "/who/a left ann Ann");
    // Other paths of the route are other rooms.
    let mut elsewhere = present(&server, "b", "cy", "").await;
    assert_eq!(who(&mut elsewhere).await, [("cy".into(), "".into())]);
}

#[tokio::test]
async fn a_key_too_long_or_a_path_without_presence_is_refused() {
    let server = Server::start(&["probe"]).await;
    let mut client = server.connect("/who/x").await;
    client.send(&format!("iam:{} v", "k".repeat(129))).await;
    assert_eq!(client.recv().await, "Err(TooLarge(128))");
    client.send(&format!("iam:k {}", "v".repeat(1025))).await;
    assert_eq!(client.recv().await, "Err(TooLarge(1024))");
    let mut plain = server.connect("/ws/probe/x").await;
    plain.send("iam:k v").await;
    assert!(plain.recv().await.starts_with("Err(NotPermitted("));
    // Nothing was set, and the server carries on.
    assert_eq!(who(&mut client).await, []);
}

#[tokio::test]
async fn a_token_claim_is_the_key_before_open() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        env: vec![("TINA4_SECRET".to_string(), crate::auth::SECRET.to_string())],
        ..Default::default()
    })
    .await;
    let token = crate::auth::token("probe", crate::auth::SECRET, 60);
    let mut client = server
        .connect(&format!("/who-secure/s?token={token}"))
        .await;
    assert_eq!(who(&mut client).await, [("alice".into(), "".into())]);
}

#[tokio::test]
async fn presence_spans_two_instances_and_a_killed_one_leaves_within_the_ttl() {
    let redis = RedisServer::start().await;
    let (a, b) = tokio::join!(instance(&redis, &["probe"]), instance(&redis, &["probe"]));
    let mut events = app_events(&a).await;
    // One client on A hears the notices, another asks who is here.
    let mut ann_a = present(&a, "c", "ann", "Ann").await;
    let mut asker = a.connect("/who/c").await;
    assert_eq!(events.recv().await, "/who/c joined ann Ann");
    // Ann's second tab comes to B once B knows of her first: presence is
    // shared as it spreads, so a tab at the same moment on two instances
    // could join twice.
    let mut asker_b = b.connect("/who/c").await;
    until_who(&mut asker_b, &[("ann", "Ann")]).await;
    let _ann_b = present(&b, "c", "ann", "Ann").await;
    let mut bob_b = present(&b, "c", "bob", "Bob").await;
    let everyone = [("ann", "Ann"), ("ann", "Ann"), ("bob", "Bob")];
    until_who(&mut asker, &everyone).await;
    assert_eq!(notice(&mut ann_a).await, ("join".into(), "bob".into()));
    // The app heard of Bob once, from the instance he came to; of Ann's
    // second tab, not at all.
    assert_eq!(events.recv().await, "/who/c joined bob Bob");
    until_who(&mut bob_b, &everyone).await;

    let killed = std::time::Instant::now();
    b.kill().await;
    // Bob had no other connection: he leaves; Ann stays, by her tab on A.
    assert_eq!(notice(&mut ann_a).await, ("leave".into(), "bob".into()));
    // Within the peer TTL (3 s) and the next check (each second), with
    // room for a busy machine.
    let took = killed.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "left after {took:?}"
    );
    assert_eq!(events.recv().await, "/who/c left bob Bob");
    assert_eq!(who(&mut asker).await, [("ann".into(), "Ann".into())]);
}

#[tokio::test]
async fn notices_reach_a_tina4_v1_websocket_and_an_event_stream_in_their_own_form() {
    let server = Server::start(&["probe"]).await;
    let mut stream = crate::sse::EventStream::open(&server, "/who/n", &[]).await;
    stream.json().await; // its greeting, as it opened
    // `tina4.v1` is taken on a path that announces presence.
    let mut framed = crate::history::framed(&server, "/who/n").await;
    framed.send("iam:ann Ann").await;
    let notice = r#"{"presence":"join","key":"ann","value":"Ann"}"#;
    assert_eq!(
        crate::history::next(&mut framed).await,
        ("!presence".to_string(), notice.to_string())
    );
    assert_eq!(
        crate::history::next(&mut framed).await,
        (String::new(), "Ok(())".to_string())
    );
    assert_eq!(
        stream.next().await,
        Some(("presence".to_string(), notice.to_string()))
    );
}
