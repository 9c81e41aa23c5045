//! WebSocket semantics of the connection registry: send, broadcast,
//! exclude-self, path isolation, counts, server close, ids.

use std::collections::HashSet;

use serde_json::Value;

use crate::support::{Client, Server, within};

#[tokio::test]
async fn an_upgrade_to_a_path_without_a_websocket_route_is_refused() {
    let server = Server::start(&["echo", "chat"]).await;
    for path in ["/ws/nothing", "/room/lobby", "/ws/echo/extra"] {
        let err = tokio_tungstenite::connect_async(server.ws_url(path))
            .await
            .unwrap_err();
        match err {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status(), 404, "{path}");
            }
            other => panic!("{path}: expected an HTTP refusal, got {other}"),
        }
    }
}

#[tokio::test]
async fn connection_ids_are_unique_and_carry_params_query_and_headers() {
    let server = Server::start(&["probe"]).await;
    let mut ids = HashSet::new();
    for _ in 0..20 {
        let mut client = server.connect("/ws/probe/a").await;
        client.send("id").await;
        assert!(ids.insert(client.recv().await));
    }
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            server.ws_url("/ws/probe/r%20one?q=hello%20there"),
        )
        .unwrap();
    let own_origin = format!("http://{}", server.addr);
    request
        .headers_mut()
        .insert("origin", own_origin.parse().unwrap());
    let (ws, _) = within("connect", tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    let mut client = Client::from_stream(ws);
    client.send("whoami").await;
    let me: Value = client.recv_json().await;
    assert_eq!(me["path"], "/ws/probe/r one");
    assert_eq!(me["name"], "r one");
    assert_eq!(me["query"], "hello there");
    assert_eq!(me["origin"], own_origin);
}

#[tokio::test]
async fn count_is_per_concrete_path() {
    let server = Server::start(&["probe"]).await;
    let mut a1 = server.connect("/ws/probe/a").await;
    let mut a2 = server.connect("/ws/probe/a").await;
    // A connection counts once its `open` has run; its own events run in
    // order, so an answer to it means its `open` ran. (The handshake's
    // answer alone does not: on a busy machine, a1's message can reach the
    // app before a2's `open`.)
    a2.send("count").await;
    a2.recv().await;
    let mut b1 = server.connect("/ws/probe/b").await;
    a1.send("count").await;
    assert_eq!(a1.recv().await, "2");
    b1.send("count").await;
    assert_eq!(b1.recv().await, "1");
}

#[tokio::test]
async fn close_from_the_app_reaches_the_client_with_its_code_and_reason() {
    let server = Server::start(&["probe"]).await;
    let mut client = server.connect("/ws/probe/a").await;
    client.send("close").await;
    assert_eq!(
        client.expect_close().await,
        (4001, "closed by app".to_string())
    );
}

#[tokio::test]
async fn an_app_cannot_reach_paths_of_other_apps() {
    let server = Server::start(&["probe", "chat"]).await;
    let mut victim = server.connect("/ws/room/lobby").await;
    let _welcome = victim.recv_json().await;
    let mut intruder = server.connect("/ws/probe/x").await;
    intruder.send("reach-out").await;
    let outcome = intruder.recv().await;
    assert!(outcome.contains("NotPermitted"), "{outcome}");
    // The victim's next message is its own chat, not "intruder".
    victim
        .send_json(serde_json::json!({"type": "chat", "text": "mine"}))
        .await;
    assert_eq!(victim.recv_json().await["text"], "mine");
}
