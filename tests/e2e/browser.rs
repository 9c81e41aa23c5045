//! The chat page in a real browser: Debian's Chromium, headless, driven by
//! `tests/browser/chat.mjs` through playwright-core (`scripts/test.sh`
//! installs both). This test owns the server: it stops and restarts it when
//! the script asks, so the page sees the server drop every connection.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::support::{Server, ServerOptions, free_port, repo_root};

async fn chat_server(port: u16) -> Server {
    Server::start_with(ServerOptions {
        apps: vec!["chat"],
        port: Some(port),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn two_pages_chat_and_frond_js_delivers_what_was_sent_while_the_server_was_away() {
    let port = free_port();
    let mut server = Some(chat_server(port).await);
    let script = repo_root().join("tests/browser/chat.mjs");
    let mut node = Command::new("node")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running node (scripts/test.sh installs it)");
    let mut stdin = node.stdin.take().unwrap();
    let mut stderr = node.stderr.take().unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut passed = false;
    let run = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            match line.as_str() {
                "STEP stop" => {
                    server.take().expect("a running server").terminate().await;
                }
                "STEP start" => server = Some(chat_server(port).await),
                "PASS" => passed = true,
                other => eprintln!("chat.mjs: {other}"),
            }
            if line.starts_with("STEP ") {
                stdin.write_all(b"ok\n").await.unwrap();
            }
        }
        node.wait().await.unwrap()
    };
    let status = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser test finished in time");
    let mut errors = String::new();
    stderr.read_to_string(&mut errors).await.unwrap();
    assert!(status.success() && passed, "chat.mjs failed:\n{errors}");
}
