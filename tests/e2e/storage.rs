//! Key-value storage: an app with a grant keeps values that outlive the
//! server, within its quotas, in a namespace no other app can name.

use std::path::Path;

use crate::support::{Client, Server, ServerOptions, component};
use crate::tenancy::connect_as;

/// The probe with a storage grant (`grant` is its `[storage]` table),
/// keeping its store under `data`.
async fn server(data: &Path, grant: &str) -> Server {
    let mut files = vec![("probe.toml", format!("[storage]\n{grant}").into_bytes())];
    // A second copy of the probe, bound to `other.test`, with a grant too.
    files.push(("other.wasm", std::fs::read(component("probe")).unwrap()));
    files.push((
        "other.toml",
        b"hosts = [\"other.test\"]\n[storage]\n".to_vec(),
    ));
    Server::start_with(ServerOptions {
        apps: vec!["probe"],
        files,
        args: vec!["--data-dir".into(), data.display().to_string()],
        ..Default::default()
    })
    .await
}

/// Waits until `key` has no value any more (it was set for a while).
async fn until_gone(client: &mut Client, key: &str) {
    crate::support::within("the value to expire", async {
        while kv(client, &format!("get:{key}")).await != "Ok(None)" {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Sends a `kv-` command and returns the outcome.
async fn kv(client: &mut Client, command: &str) -> String {
    client.send(&format!("kv-{command}")).await;
    client.recv().await
}

#[tokio::test]
async fn values_persist_across_a_restart_of_the_server() {
    let data = tempfile::tempdir().unwrap();
    let first = server(data.path(), "").await;
    let mut client = first.connect("/ws/probe/kv").await;
    assert_eq!(kv(&mut client, "set:greeting hello").await, "Ok(())");
    assert_eq!(kv(&mut client, "set:room:a one").await, "Ok(())");
    assert_eq!(kv(&mut client, "set:room:b two").await, "Ok(())");
    assert_eq!(kv(&mut client, "incr:visits 5").await, "Ok(5)");
    assert_eq!(kv(&mut client, "incr:visits -2").await, "Ok(3)");
    assert_eq!(
        kv(&mut client, "keys:room:").await,
        r#"Ok(["room:a", "room:b"])"#
    );
    assert_eq!(kv(&mut client, "del:room:a").await, "Ok(true)");
    assert_eq!(kv(&mut client, "del:room:a").await, "Ok(false)");
    drop(client);
    first.terminate().await;

    let second = server(data.path(), "").await;
    let mut client = second.connect("/ws/probe/kv").await;
    assert_eq!(
        kv(&mut client, "get:greeting").await,
        r#"Ok(Some("hello"))"#
    );
    assert_eq!(kv(&mut client, "incr:visits 1").await, "Ok(4)");
    assert_eq!(
        kv(&mut client, "keys:").await,
        r#"Ok(["greeting", "room:b", "visits"])"#
    );
}

#[tokio::test]
async fn an_app_cannot_read_or_list_another_app_s_keys() {
    let data = tempfile::tempdir().unwrap();
    let server = server(data.path(), "").await;
    let mut probe = server.connect("/ws/probe/kv").await;
    let mut other = connect_as(&server, "other.test", "/ws/probe/kv").await;
    assert_eq!(kv(&mut probe, "set:secret mine").await, "Ok(())");
    assert_eq!(kv(&mut other, "get:secret").await, "Ok(None)");
    assert_eq!(kv(&mut other, "keys:").await, "Ok([])");
    // Nor through a key spelled to reach into another namespace.
    assert_eq!(kv(&mut other, "get:\0probe\0secret").await, "Ok(None)");
    assert_eq!(kv(&mut other, "set:secret theirs").await, "Ok(())");
    assert_eq!(kv(&mut probe, "get:secret").await, r#"Ok(Some("mine"))"#);
}

#[tokio::test]
async fn quotas_and_bad_keys_are_refused_with_their_reason_and_change_nothing() {
    let data = tempfile::tempdir().unwrap();
    let server = server(
        data.path(),
        "max_keys = 2\nmax_value_bytes = 8\nmax_bytes = 40\n",
    )
    .await;
    let mut client = server.connect("/ws/probe/kv").await;
    assert_eq!(kv(&mut client, "set:a abcdefgh").await, "Ok(())");
    assert_eq!(
        kv(&mut client, "set:b 123456789").await,
        r#"Err(Quota("a value may have at most 8 bytes"))"#
    );
    assert_eq!(kv(&mut client, "set:b x").await, "Ok(())");
    assert_eq!(
        kv(&mut client, "set:c x").await,
        r#"Err(Quota("the app may keep at most 2 keys"))"#
    );
    // Replacing a value is not one more key.
    assert_eq!(kv(&mut client, "set:b xy").await, "Ok(())");
    assert_eq!(kv(&mut client, "get:b").await, r#"Ok(Some("xy"))"#);
    assert_eq!(
        kv(&mut client, "incr:a 1").await,
        r#"Err(Invalid("the key does not hold an integer"))"#
    );
    assert!(kv(&mut client, "get:").await.starts_with("Err(Invalid("));
    assert!(
        kv(&mut client, &format!("set:{} x", "k".repeat(257)))
            .await
            .starts_with("Err(Invalid(")
    );
    assert_eq!(kv(&mut client, "keys:").await, r#"Ok(["a", "b"])"#);

    // Without a grant, nothing.
    let plain = Server::start(&["probe"]).await;
    let mut client = plain.connect("/ws/probe/kv").await;
    assert!(
        kv(&mut client, "get:a")
            .await
            .starts_with("Err(NotPermitted(")
    );
}

#[tokio::test]
async fn a_value_set_for_a_while_is_gone_after_it_and_frees_its_place() {
    let data = tempfile::tempdir().unwrap();
    let server = server(data.path(), "max_keys = 1\n").await;
    let mut client = server.connect("/ws/probe/kv").await;
    assert_eq!(kv(&mut client, "ttl:brief 1500 here").await, "Ok(())");
    assert_eq!(kv(&mut client, "get:brief").await, r#"Ok(Some("here"))"#);
    until_gone(&mut client, "brief").await;
    // Its place is free again.
    assert_eq!(kv(&mut client, "set:next x").await, "Ok(())");
}

#[tokio::test]
async fn a_grant_above_the_operator_s_ceiling_refuses_the_app() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe", "chat"],
        files: vec![("probe.toml", b"[storage]\nmax_keys = 20000\n".to_vec())],
        args: vec!["--data-dir".into(), data.path().display().to_string()],
        ..Default::default()
    })
    .await;
    server
        .wait_for_log(&["storage.max_keys = 20000 is above the operator's ceiling of 10000"])
        .await;
}

/// The probe with a storage grant on `--store redis` at `redis`.
async fn on_redis(redis: &crate::redis_server::RedisServer, grant: &str) -> Server {
    Server::start_with(ServerOptions {
        apps: vec!["probe"],
        files: vec![("probe.toml", format!("[storage]\n{grant}").into_bytes())],
        args: ["--store", "redis", "--store-url", &redis.url()]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    })
    .await
}

/// Connects to the probe's storage on `a` and on `b`, and shows that what
/// one writes the other reads and that their increments add up.
async fn share_a_value_and_a_count(a: &Server, b: &Server) -> (Client, Client) {
    let mut on_a = a.connect("/ws/probe/kv").await;
    let mut on_b = b.connect("/ws/probe/kv").await;
    assert_eq!(kv(&mut on_a, "set:greeting hello").await, "Ok(())");
    assert_eq!(kv(&mut on_b, "get:greeting").await, r#"Ok(Some("hello"))"#);
    assert_eq!(kv(&mut on_a, "incr:visits 2").await, "Ok(2)");
    assert_eq!(kv(&mut on_b, "incr:visits 3").await, "Ok(5)");
    (on_a, on_b)
}

#[tokio::test]
async fn with_the_store_on_redis_two_instances_share_an_app_s_values_within_its_quota() {
    let redis = crate::redis_server::RedisServer::start().await;
    let grant = "max_keys = 3\nmax_value_bytes = 8\n";
    let (a, b) = tokio::join!(on_redis(&redis, grant), on_redis(&redis, grant));
    let (mut on_a, mut on_b) = share_a_value_and_a_count(&a, &b).await;
    assert_eq!(
        kv(&mut on_b, "keys:").await,
        r#"Ok(["greeting", "visits"])"#
    );
    assert_eq!(
        kv(&mut on_b, "set:long 123456789").await,
        r#"Err(Quota("a value may have at most 8 bytes"))"#
    );
    assert_eq!(kv(&mut on_a, "ttl:brief 1500 here").await, "Ok(())");
    // The quota counts across the instances: a fourth key is one too many
    // until the brief one has expired, which frees its place.
    assert_eq!(
        kv(&mut on_b, "set:fourth x").await,
        r#"Err(Quota("the app may keep at most 3 keys"))"#
    );
    until_gone(&mut on_b, "brief").await;
    assert_eq!(kv(&mut on_b, "set:fourth x").await, "Ok(())");
    assert_eq!(kv(&mut on_a, "del:greeting").await, "Ok(true)");
    assert_eq!(kv(&mut on_b, "get:greeting").await, "Ok(None)");
    assert_eq!(
        kv(&mut on_a, "incr:fourth 1").await,
        r#"Err(Invalid("the key does not hold an integer"))"#
    );
    // Redis gone: a clear refusal, and the server carries on.
    redis.kill().await;
    assert!(
        kv(&mut on_a, "get:visits")
            .await
            .starts_with("Err(Unavailable(")
    );
    assert!(kv(&mut on_a, "get:").await.starts_with("Err(Invalid("));
}

#[tokio::test]
async fn on_a_redis_cluster_two_instances_share_an_app_s_values_kept_on_one_shard() {
    let cluster = crate::redis_server::RedisCluster::start(3).await;
    let start = |node: &crate::redis_server::RedisServer| {
        let url = node.url();
        Server::start_with(ServerOptions {
            apps: vec!["probe"],
            files: vec![
                ("probe.toml", b"[storage]\nmax_keys = 3\n".to_vec()),
                ("other.wasm", std::fs::read(component("probe")).unwrap()),
                (
                    "other.toml",
                    b"hosts = [\"other.test\"]\n[storage]\n".to_vec(),
                ),
            ],
            args: ["--store", "redis-cluster", "--store-url", &url]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        })
    };
    // Each instance knows the cluster by a different node.
    let (a, b) = tokio::join!(start(&cluster.nodes[0]), start(&cluster.nodes[1]));
    let (mut on_a, mut on_b) = share_a_value_and_a_count(&a, &b).await;
    assert_eq!(kv(&mut on_b, "set:third x").await, "Ok(())");
    assert_eq!(
        kv(&mut on_a, "set:fourth x").await,
        r#"Err(Quota("the app may keep at most 3 keys"))"#
    );
    assert_eq!(
        kv(&mut on_a, "keys:").await,
        r#"Ok(["greeting", "third", "visits"])"#
    );
    // Another app, whatever shard it lands on, has its own values.
    let mut other = connect_as(&b, "other.test", "/ws/probe/kv").await;
    assert_eq!(kv(&mut other, "get:greeting").await, "Ok(None)");
    assert_eq!(kv(&mut other, "set:greeting hi").await, "Ok(())");
    assert_eq!(kv(&mut on_a, "get:greeting").await, r#"Ok(Some("hello"))"#);
    // All of an app's keys live on one shard.
    let mut holders = 0;
    for node in &cluster.nodes {
        let keys = node.cli(&["KEYS", "tina4:kv:{probe}:*"]).await;
        if !keys.trim().is_empty() {
            holders += 1;
        }
    }
    assert_eq!(holders, 1, "the app's keys are on one shard");
}
