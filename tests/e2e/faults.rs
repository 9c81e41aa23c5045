//! A guest that fails is contained: its request gets 500 or its connection
//! 1011, it is re-instantiated, and everything else keeps working.

use crate::support::{Server, http, still_answers};

#[tokio::test]
async fn a_panicking_http_handler_gets_500_and_a_fresh_instance() {
    let server = Server::start(&["probe", "echo"]).await;
    let mut bystander = server.connect("/ws/echo").await;
    let client = http();
    let count = |n: u32| serde_json::json!({ "served": n });
    let served = |r: reqwest::Response| async move { r.json::<serde_json::Value>().await.unwrap() };
    assert_eq!(
        served(client.get(server.url("/probe/count")).send().await.unwrap()).await,
        count(1)
    );
    assert_eq!(
        served(client.get(server.url("/probe/count")).send().await.unwrap()).await,
        count(2)
    );

    let status = server.get_status("/probe/panic").await;
    assert_eq!(status, 500);
    server
        .wait_for_log(&["guest failed", "probe", "/probe/panic"])
        .await;
    // Module state starts over: the instance is new.
    assert_eq!(
        served(client.get(server.url("/probe/count")).send().await.unwrap()).await,
        count(1)
    );

    still_answers(&mut bystander, "still there?").await;
}

#[tokio::test]
async fn an_invalid_status_from_the_app_is_a_500() {
    let server = Server::start(&["probe"]).await;
    let status = server.get_status("/probe/bad-status").await;
    assert_eq!(status, 500);
}

#[tokio::test]
async fn a_panicking_websocket_handler_closes_only_that_connection_with_1011() {
    let server = Server::start(&["probe", "echo"]).await;
    let mut bystander = server.connect("/ws/echo").await;
    let mut same_app = server.connect("/ws/probe/x").await;
    let mut victim = server.connect("/ws/probe/x").await;
    victim.send("panic").await;
    assert_eq!(victim.expect_close().await.0, 1011);
    server
        .wait_for_log(&["guest failed", "probe", "/ws/probe/x"])
        .await;

    same_app.send("after").await;
    assert_eq!(same_app.recv().await, "v1: after");
    still_answers(&mut bystander, "ping").await;
}

#[tokio::test]
async fn a_handler_stuck_in_a_loop_is_interrupted_at_its_deadline() {
    let server = Server::start_with(crate::support::ServerOptions {
        apps: vec!["probe", "echo"],
        args: vec!["--event-timeout-ms".into(), "200".into()],
        ..Default::default()
    })
    .await;
    let mut bystander = server.connect("/ws/echo").await;
    let mut victim = server.connect("/ws/probe/x").await;
    victim.send("loop").await;
    // Another app answers while this one spins.
    still_answers(&mut bystander, "meanwhile").await;
    assert_eq!(victim.expect_close().await.0, 1011);
    server.wait_for_log(&["CPU time limit", "probe"]).await;
    let mut again = server.connect("/ws/probe/x").await;
    again.send("alive").await;
    assert_eq!(again.recv().await, "v1: alive");
}
