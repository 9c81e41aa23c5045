//! HTTP routing: methods, `{name}` and `{name:int}` parameters, query
//! strings, bodies, and the host's own answers (404, 405, 413, 400).

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Server, ServerOptions, http, within};

#[tokio::test]
async fn every_method_reaches_the_handler_with_params_query_and_body() {
    let server = Server::start(&["probe"]).await;
    let client = http();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        let response = client
            .request(
                method.parse().unwrap(),
                server.url("/probe/echo/caf%C3%A9%20au%20lait/-12?q=a%26b&q=second"),
            )
            .header("content-type", "text/plain")
            .body(format!("body of {method}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{method}");
        assert_eq!(response.headers()["x-probe"], "yes");
        let got: Value = response.json().await.unwrap();
        let expected_method = format!("{}{}", &method[..1], method[1..].to_lowercase());
        assert_eq!(got["method"], expected_method);
        assert_eq!(got["path"], "/probe/echo/café au lait/-12");
        assert_eq!(got["name"], "café au lait");
        assert_eq!(got["n"], "-12");
        assert_eq!(got["query"], "a&b", "first value of a repeated query name");
        assert_eq!(got["content_type"], "text/plain");
        assert_eq!(got["body"], format!("body of {method}"));
    }
}

#[tokio::test]
async fn an_int_param_that_is_not_an_integer_is_404() {
    let server = Server::start(&["notifications", "probe"]).await;
    let client = http();
    for path in [
        "/api/orders/abc/ship",
        "/api/orders/4x/ship",
        "/api/orders/1.5/ship",
    ] {
        let status = client
            .post(server.url(path))
            .json(&json!({"user_id": 1}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "{path}");
    }
    let status = server.get_status("/probe/echo/x/seven").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let server = Server::start(&["notifications"]).await;
    let client = http();
    assert_eq!(server.get_status("/nowhere").await, 404);
    assert_eq!(server.get_status("/").await, 404);
    let response = client
        .get(server.url("/api/orders/1/ship"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    // A WebSocket route is not an HTTP route: plain HTTP there is told to upgrade.
    let response = client
        .get(server.url("/ws/notifications/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 426);
    assert_eq!(response.headers()["upgrade"], "websocket");
}

#[tokio::test]
async fn head_is_answered_by_the_get_route_without_a_body() {
    let server = Server::start(&["probe"]).await;
    let response = http()
        .head(server.url("/probe/count"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_the_server_goes_on() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        args: vec!["--max-body-bytes".into(), "1000".into()],
        ..Default::default()
    })
    .await;
    let client = http();
    let url = server.url("/probe/echo/big/1");
    let status = client
        .post(&url)
        .body(vec![b'x'; 1001])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 413);
    // Chunked, so the size is only known while reading.
    let chunks =
        futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 100])));
    let status = client
        .post(&url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 413);
    let status = client
        .post(&url)
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
}

/// Sends raw bytes and returns the status line of the answer.
async fn raw_request(server: &Server, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    within(
        "an answer to a raw request",
        stream.read_to_end(&mut answer),
    )
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_server_stays_up() {
    let mut server = Server::start(&["probe"]).await;
    for garbage in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET /probe/count HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        b"GET /probe/count HTTP/9.9\r\n\r\n",
        b"GET /probe/%ff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let status = raw_request(&server, garbage).await;
        assert!(
            status.starts_with("HTTP/1.1 400") || status.starts_with("HTTP/1.1 505"),
            "{status:?} for {garbage:?}"
        );
    }
    assert!(server.is_running());
    let status = server.get_status("/probe/count").await;
    assert_eq!(status, 200);
}
