//! Timers: the host keeps an app's timers and calls its `on-timer` when one
//! fires. They fire, repeat, cancel, survive a hot swap, are bounded by
//! the operator, and, marked cluster-once, fire each period on one
//! instance of a cluster.

use crate::backplane::instance;
use crate::redis_server::RedisServer;
use crate::support::{Client, Install, Server, ServerOptions, component, metric};

/// A watcher of the probe's timer firings (`<version> <name> <tick>`).
async fn firings(server: &Server) -> Client {
    let mut watcher = server.connect("/ws/probe/timers").await;
    watcher.send("count").await;
    watcher.recv().await;
    watcher
}

/// Asks the probe, through `client`, to schedule a timer; its answer.
async fn schedule(client: &mut Client, what: &str) -> String {
    client.send(&format!("timer:{what}")).await;
    client.recv().await
}

#[tokio::test]
async fn a_timer_fires_once_and_a_repeating_one_until_cancelled() {
    let server = Server::start(&["probe"]).await;
    let mut watcher = firings(&server).await;
    let mut client = server.connect("/ws/probe/t").await;
    assert_eq!(schedule(&mut client, "once 150").await, "Ok(())");
    assert_eq!(watcher.recv().await, "v1 once 1");

    assert_eq!(schedule(&mut client, "often 100 repeat").await, "Ok(())");
    for tick in 1..=3 {
        assert_eq!(watcher.recv().await, format!("v1 often {tick}"));
    }
    client.send("cancel-timer:often").await;
    assert_eq!(client.recv().await, "true");
    client.send("cancel-timer:often").await;
    assert_eq!(client.recv().await, "false");
    // A firing already on its way when the timer was cancelled may still
    // arrive; none after it.
    assert_eq!(schedule(&mut client, "again 100").await, "Ok(())");
    let mut late = 0;
    loop {
        let firing = watcher.recv().await;
        if firing == "v1 again 1" {
            break;
        }
        assert!(firing.starts_with("v1 often "), "{firing}");
        late += 1;
    }
    assert!(late <= 1, "{late} firings after the cancel");
}

#[tokio::test]
async fn a_timer_outlives_a_hot_swap_and_fires_into_the_new_version() {
    let server = Server::start(&["probe"]).await;
    let mut watcher = firings(&server).await;
    let mut client = server.connect("/ws/probe/t").await;
    assert_eq!(schedule(&mut client, "often 100 repeat").await, "Ok(())");
    assert_eq!(watcher.recv().await, "v1 often 1");
    let v2 = std::fs::read(component("probe-v2")).unwrap();
    Install::WriteThenRename.put(server.apps_dir(), "probe.wasm", &v2);
    // The same timer, still counting, now in the new version.
    let mut last = 1;
    loop {
        let firing = watcher.recv().await;
        let (version, tick) = firing.rsplit_once(' ').unwrap();
        let tick: u64 = tick.parse().unwrap();
        assert!(tick > last, "ticks go on counting: {firing}");
        last = tick;
        if version == "v2 often" {
            break;
        }
        assert_eq!(version, "v1 often");
    }
}

#[tokio::test]
async fn timers_are_bounded_by_the_operator() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        args: ["--timers-per-app", "2", "--timer-min-interval-ms", "100"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    })
    .await;
    let mut client = server.connect("/ws/probe/t").await;
    assert_eq!(schedule(&mut client, "once 60000").await, "Ok(())");
    assert_eq!(schedule(&mut client, "again 60000").await, "Ok(())");
    assert_eq!(
        schedule(&mut client, "spare 60000").await,
        "Err(TooLarge(2))"
    );
    // Replacing one is not one more.
    assert_eq!(schedule(&mut client, "once 50000").await, "Ok(())");
    client.send("cancel-timer:again").await;
    assert_eq!(client.recv().await, "true");
    assert_eq!(
        schedule(&mut client, "spare 50").await,
        "Err(Invalid(\"a timer may fire at most every 100 ms\"))"
    );
    assert_eq!(
        schedule(&mut client, "spare 500 cluster").await,
        "Err(Invalid(\"only a repeating timer can fire once in the cluster\"))"
    );
    let no_timers = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        args: ["--timers-per-app", "0"].map(String::from).to_vec(),
        ..Default::default()
    })
    .await;
    let mut client = no_timers.connect("/ws/probe/t").await;
    assert!(
        schedule(&mut client, "once 1000")
            .await
            .starts_with("Err(NotPermitted(")
    );
}

#[tokio::test]
async fn a_cluster_once_timer_fires_each_period_on_one_instance() {
    let redis = RedisServer::start().await;
    let (a, b) = tokio::join!(instance(&redis, &["probe"]), instance(&redis, &["probe"]));
    let mut watcher = firings(&a).await;
    for server in [&a, &b] {
        let mut client = server.connect("/ws/probe/t").await;
        assert_eq!(
            schedule(&mut client, "cluster 200 repeat cluster").await,
            "Ok(())"
        );
    }
    let mut periods = Vec::new();
    while periods.len() < 8 {
        let firing = watcher.recv().await;
        let period: u64 = firing
            .strip_prefix("v1 cluster ")
            .expect("a cluster firing")
            .parse()
            .unwrap();
        periods.push(period);
    }
    let mut distinct = periods.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        periods.len(),
        "a period fired twice: {periods:?}"
    );
}

#[tokio::test]
async fn a_timer_wakes_a_hibernated_app() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        args: ["--hibernate-after-ms", "200"].map(String::from).to_vec(),
        ..Default::default()
    })
    .await;
    let mut watcher = firings(&server).await;
    let mut client = server.connect("/ws/probe/t").await;
    assert_eq!(schedule(&mut client, "often 1000 repeat").await, "Ok(())");
    // Between firings the app has no event for longer than it may stay
    // resident: it hibernates, and the next firing is the only event that
    // can wake it.
    let app = [("app", "probe")];
    crate::support::eventually("the app to hibernate", || async {
        let text = server.metrics().await;
        (metric(&text, "tina4_app_hibernations_total", &app) >= 1.0).then_some(())
    })
    .await;
    crate::support::eventually("a firing to wake it", || async {
        let text = server.metrics().await;
        (metric(&text, "tina4_app_wake_seconds_count", &app) >= 1.0).then_some(())
    })
    .await;
    // And the timer goes on.
    let mut firing = watcher.recv().await;
    while firing == "v1 often 1" {
        firing = watcher.recv().await;
    }
    assert!(firing.starts_with("v1 often "), "{firing}");
}
