//! History kept in Redis Streams: every instance on one Redis numbers a
//! path's messages alike, so a client recovers what it missed on any
//! instance, and after its own instance restarted.

use crate::backplane::instance;
use crate::history::{framed, next};
use crate::redis_server::RedisServer;
use crate::sse::push_to;
use crate::support::{Client, Server};

/// Pushes `text` to `path` through `server`.
async fn push(server: &Server, path: &str, text: &str) {
    push_to(server, path, text).await;
}

/// Pushes `texts` to `path` through `server`, and returns once Redis has
/// kept them all: a witness on `server` heard each one back.
async fn push_all(server: &Server, path: &str, texts: &[String]) {
    let mut witness = server.connect(path).await;
    witness.send("count").await;
    witness.recv().await;
    for text in texts {
        push(server, path, text).await;
    }
    for text in texts {
        assert_eq!(&witness.recv().await, text);
    }
}

/// A `tina4.v1` member of `path` on `server`, in its group once a round
/// trip says so.
async fn member(server: &Server, path: &str) -> Client {
    let mut client = framed(server, path).await;
    client.send("count").await;
    let (line, _) = next(&mut client).await;
    assert_eq!(line, "", "a reply to one connection has no position");
    client
}

/// Reads the next kept message: its position and text.
async fn kept(client: &mut Client) -> ((String, u64), String) {
    let (line, text) = next(client).await;
    let (epoch, offset) = line
        .rsplit_once('-')
        .unwrap_or_else(|| panic!("a position, not {line:?} ({text:?})"));
    ((epoch.to_string(), offset.parse().unwrap()), text)
}

/// Reads `n` recovered messages, then the marker, checking their order.
async fn recovered(client: &mut Client, epoch: &str, from: u64, texts: &[String]) -> bool {
    for (i, text) in texts.iter().enumerate() {
        let expected = ((epoch.to_string(), from + 1 + i as u64), text.clone());
        assert_eq!(kept(client).await, expected);
    }
    let (line, marker) = next(client).await;
    assert_eq!(line, "!recovered");
    let marker: serde_json::Value = serde_json::from_str(&marker).unwrap();
    marker["complete"].as_bool().unwrap()
}

fn texts(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

/// Two probe instances on `redis`.
async fn pair(redis: &RedisServer) -> (Server, Server) {
    tokio::join!(instance(redis, &["probe"]), instance(redis, &["probe"]))
}

/// A member of `path` on `on` hears `m0` pushed through `by` (offset 1)
/// and leaves; the epoch it heard it in.
async fn heard_first(on: &Server, by: &Server, path: &str) -> String {
    let mut client = member(on, path).await;
    push(by, path, "m0").await;
    let ((epoch, offset), text) = kept(&mut client).await;
    assert_eq!((offset, text.as_str()), (1, "m0"));
    client.close().await;
    epoch
}

/// A `tina4.v1` client of `path` on `server`, back from offset 1 of `epoch`.
async fn back(server: &Server, path: &str, epoch: &str) -> Client {
    framed(
        server,
        &format!("{path}?tina4_epoch={epoch}&tina4_offset=1"),
    )
    .await
}

#[tokio::test]
async fn a_client_that_missed_100_messages_recovers_them_on_another_instance() {
    let redis = RedisServer::start().await;
    let (a, b) = pair(&redis).await;
    let epoch = heard_first(&a, &b, "/log/a").await;
    push_all(&a, "/log/a", &texts(1..=100)).await;
    let mut again = back(&b, "/log/a", &epoch).await;
    assert!(recovered(&mut again, &epoch, 1, &texts(1..=100)).await);
    push(&a, "/log/a", "live").await;
    assert_eq!(
        kept(&mut again).await,
        ((epoch.clone(), 102), "live".into())
    );
}

#[tokio::test]
async fn a_client_recovers_after_its_instance_is_killed_and_restarted() {
    let redis = RedisServer::start().await;
    let (a, b) = pair(&redis).await;
    let epoch = heard_first(&a, &a, "/log/r").await;
    a.kill().await;
    push_all(&b, "/log/r", &texts(1..=100)).await;
    let restarted = instance(&redis, &["probe"]).await;
    let mut again = back(&restarted, "/log/r", &epoch).await;
    assert!(recovered(&mut again, &epoch, 1, &texts(1..=100)).await);
    push(&b, "/log/r", "live").await;
    assert_eq!(kept(&mut again).await, ((epoch, 102), "live".into()));
}

#[tokio::test]
async fn beyond_retention_a_client_gets_what_is_kept_and_complete_false() {
    let redis = RedisServer::start().await;
    let (a, b) = pair(&redis).await;
    // `/kept/{name}` keeps its last 5 messages.
    let epoch = heard_first(&a, &a, "/kept/x").await;
    push_all(&b, "/kept/x", &texts(1..=10)).await;
    let mut again = back(&a, "/kept/x", &epoch).await;
    assert!(!recovered(&mut again, &epoch, 6, &texts(6..=10)).await);
    // An epoch Redis never gave is another history altogether.
    let mut stranger = framed(&b, "/kept/x?tina4_epoch=0123456789abcdef&tina4_offset=3").await;
    let (line, marker) = next(&mut stranger).await;
    assert_eq!(
        (line.as_str(), marker.as_str()),
        ("!recovered", r#"{"complete":false}"#)
    );
}

#[tokio::test]
async fn members_on_two_instances_see_one_order_when_both_push_at_once() {
    let redis = RedisServer::start().await;
    let (a, b) = pair(&redis).await;
    let mut on_a = member(&a, "/log/both").await;
    let mut on_b = member(&b, "/log/both").await;
    let from = |server: &Server, tag: &'static str| {
        let server = server.url("");
        async move {
            let client = crate::support::http();
            for i in 0..40 {
                let response = client
                    .post(format!("{server}/probe/push"))
                    .query(&[("path", "/log/both")])
                    .body(format!("{tag}{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        }
    };
    tokio::join!(from(&a, "a"), from(&b, "b"));
    let mut seen_on_a = Vec::new();
    let mut seen_on_b = Vec::new();
    for offset in 1..=80 {
        let (at_a, text_a) = kept(&mut on_a).await;
        let (at_b, text_b) = kept(&mut on_b).await;
        assert_eq!(
            (at_a.1, at_b.1),
            (offset, offset),
            "offsets arrive in order"
        );
        seen_on_a.push(text_a);
        seen_on_b.push(text_b);
    }
    assert_eq!(seen_on_a, seen_on_b, "one order for every member");
    for tag in ["a", "b"] {
        let own: Vec<&String> = seen_on_a.iter().filter(|t| t.starts_with(tag)).collect();
        let expected: Vec<String> = (0..40).map(|i| format!("{tag}{i}")).collect();
        assert_eq!(
            own,
            expected.iter().collect::<Vec<_>>(),
            "each sender's order kept"
        );
    }
}

#[tokio::test]
async fn on_a_redis_cluster_a_path_s_history_lives_on_its_shard_and_recovers_anywhere() {
    let cluster = crate::redis_server::RedisCluster::start(3).await;
    let start = |node: &RedisServer| {
        let url = node.url();
        Server::start_with(crate::support::ServerOptions {
            apps: vec!["probe"],
            args: ["--backplane", "redis-cluster", "--backplane-url", &url]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        })
    };
    let (a, b) = tokio::join!(start(&cluster.nodes[0]), start(&cluster.nodes[1]));
    for server in [&a, &b] {
        server
            .wait_for_log(&["backplane: connected to Redis"])
            .await;
    }
    for name in ["c0", "c1", "c2"] {
        let path = format!("/log/{name}");
        let epoch = heard_first(&a, &b, &path).await;
        push_all(&a, &path, &texts(1..=3)).await;
        let mut again = back(&b, &path, &epoch).await;
        assert!(recovered(&mut again, &epoch, 1, &texts(1..=3)).await);
    }
}
