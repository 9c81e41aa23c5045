//! Starting and stopping: a clean shutdown closes every WebSocket with 1001
//! and lets in-flight requests finish.

use crate::support::{Server, still_answers};

#[tokio::test]
async fn sigterm_closes_websockets_with_1001_and_exits_cleanly() {
    let server = Server::start(&["echo", "chat"]).await;
    let mut echo = server.connect("/ws/echo").await;
    let mut chat = server.connect("/ws/room/lobby").await;
    let _welcome = chat.recv_json().await;
    still_answers(&mut echo, "before").await;

    let stopping = tokio::spawn(server.terminate());
    assert_eq!(echo.expect_close().await.0, 1001);
    assert_eq!(chat.expect_close().await.0, 1001);
    assert_eq!(stopping.await.unwrap(), Some(0));
}

#[tokio::test]
async fn an_http_request_in_flight_at_sigterm_still_gets_its_answer() {
    let server = Server::start(&["probe"]).await;
    let url = server.url("/probe/slow?ms=500");
    let request = tokio::spawn(async move { crate::support::http().get(url).send().await });
    server.wait_for_log(&["slow request started"]).await;
    let stopping = tokio::spawn(server.terminate());
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");
    assert_eq!(stopping.await.unwrap(), Some(0));
}
