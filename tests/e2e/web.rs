//! The browser side over HTTP: the built-in frond.js, each app's public
//! folder (content types, ETags, no way out of the folder), and pages
//! rendered from templates that reload when edited.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Server, ServerOptions, content_type, http};

/// The status line and body of a raw `GET target`, sent byte for byte (an
/// HTTP client library would normalize `..` away before sending).
async fn raw_get(server: &Server, target: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {answer}"));
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test]
async fn frond_js_is_served_to_every_page() {
    let server = Server::start(&["echo"]).await;
    let response = http().get(server.url("/js/frond.js")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(content_type(&response), "text/javascript; charset=utf-8");
    let script = response.text().await.unwrap();
    assert!(script.contains("frond.ws = function"));
}

#[tokio::test]
async fn public_files_have_types_and_etags_and_answer_304_when_unchanged() {
    let server = Server::start(&["chat"]).await;
    let response = http()
        .get(server.url("/css/chat.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(content_type(&response), "text/css; charset=utf-8");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let css = response.text().await.unwrap();
    assert_eq!(
        css,
        std::fs::read_to_string(server.apps_dir().join("chat/public/css/chat.css")).unwrap()
    );

    let again = http()
        .get(server.url("/css/chat.css"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());

    let head = http()
        .head(server.url("/css/chat.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], css.len().to_string());

    // A change makes a new ETag.
    std::fs::write(server.apps_dir().join("chat/public/css/chat.css"), "body{}").unwrap();
    let changed = http()
        .get(server.url("/css/chat.css"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.text().await.unwrap(), "body{}");
    assert_eq!(server.get_status("/css/missing.css").await, 404);
}

#[tokio::test]
async fn no_path_leaves_the_public_folder() {
    let server = Server::start(&["chat"]).await;
    let apps = server.apps_dir();
    std::fs::write(apps.join("secret.txt"), "top secret").unwrap();
    std::fs::write(apps.join("chat/public/.env"), "TOKEN=1").unwrap();
    std::os::unix::fs::symlink(apps.join("secret.txt"), apps.join("chat/public/link.txt")).unwrap();
    for target in [
        "/../secret.txt",
        "/css/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/%2e%2e/secret.txt",
        "/css/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/..%2fsecret.txt",
        "/%252e%252e/secret.txt",
        "/%252e%252e%252fsecret.txt",
        "/css/..%5c..%5csecret.txt",
        "/.env",
        "/link.txt",
        "/chat.wasm",
        "/templates/room.html",
    ] {
        let (status, body) = raw_get(&server, target).await;
        assert!(
            matches!(status, 400 | 404),
            "{target} answered {status}: {body}"
        );
        assert!(
            !body.contains("top secret") && !body.contains("TOKEN"),
            "{target}"
        );
    }
    // The server is fine and still serves what it should.
    assert_eq!(raw_get(&server, "/css/chat.css").await.0, 200);
}

#[tokio::test]
async fn an_edited_template_shows_on_the_next_request_and_a_missing_one_is_a_500() {
    let server = Server::start(&["chat"]).await;
    let page = http().get(server.url("/room/lobby")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Room: <span id=\"room-name\">lobby</span>")
    );

    let template = server
        .apps_dir()
        .join("chat/templates/partials/name-form.html");
    std::fs::write(&template, "<p id=\"edited\">{{ room | upper }} edited</p>").unwrap();
    let page = http().get(server.url("/room/lobby")).send().await.unwrap();
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<p id=\"edited\">LOBBY edited</p>")
    );

    std::fs::remove_dir_all(server.apps_dir().join("chat/templates")).unwrap();
    assert_eq!(server.get_status("/room/lobby").await, 500);
    server.wait_for_log(&["template", "room.html"]).await;
    // The app is unharmed.
    let mut client = server.connect("/ws/room/lobby").await;
    assert_eq!(client.recv_json().await["type"], "system");
}

#[tokio::test]
async fn in_development_mode_an_unserved_root_lists_the_apps_and_their_routes() {
    let dev = Server::start_with(ServerOptions {
        apps: vec!["echo", "chat"],
        args: vec!["--dev".into()],
        ..Default::default()
    })
    .await;
    let welcome = http().get(dev.url("/")).send().await.unwrap();
    assert_eq!(welcome.status(), 200);
    assert_eq!(content_type(&welcome), "text/html; charset=utf-8");
    let page = welcome.text().await.unwrap();
    for shown in [
        "<h2>echo</h2>",
        "WS      /ws/echo",
        "GET     /hello/{name}",
        "<h2>chat</h2>",
    ] {
        assert!(page.contains(shown), "{shown} missing from:\n{page}");
    }
    // Only `/`: any other unserved path is a 404 still.
    let elsewhere = http().get(dev.url("/nothing-here")).send().await.unwrap();
    assert_eq!(elsewhere.status(), 404);

    // Without development mode, `/` unserved is a 404 like any path.
    let production = Server::start(&["echo"]).await;
    let root = http().get(production.url("/")).send().await.unwrap();
    assert_eq!(root.status(), 404);
}
