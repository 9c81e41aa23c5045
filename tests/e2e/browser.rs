//! The chat page in a real browser: Debian's Chromium, headless, driven by
//! scripts in `tests/browser/` through playwright-core (`scripts/test.sh`
//! installs both). These tests own the servers: they stop and restart one
//! when the script asks, so the page sees the server drop every connection.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::redis_server::RedisServer;
use crate::support::{Server, ServerOptions, free_port, repo_root};

async fn chat_server(port: u16, args: &[String]) -> Server {
    Server::start_with(ServerOptions {
        apps: vec!["chat"],
        port: Some(port),
        args: args.to_vec(),
        ..Default::default()
    })
    .await
}

/// Runs `tests/browser/<script>` with `urls`, doing each `STEP <name>` it
/// asks for with `on_step`, until it says `PASS` (or fails).
async fn run_script(script: &str, urls: &[String], mut on_step: impl AsyncFnMut(&str)) {
    let mut node = Command::new("node")
        .arg(repo_root().join("tests/browser").join(script))
        .args(urls)
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
            if let Some(step) = line.strip_prefix("STEP ") {
                on_step(step).await;
                stdin.write_all(b"ok\n").await.unwrap();
            } else if line == "PASS" {
                passed = true;
            } else {
                eprintln!("{script}: {line}");
            }
        }
        node.wait().await.unwrap()
    };
    let status = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser test finished in time");
    let mut errors = String::new();
    stderr.read_to_string(&mut errors).await.unwrap();
    assert!(status.success() && passed, "{script} failed:\n{errors}");
}

#[tokio::test]
async fn two_pages_chat_and_frond_js_delivers_what_was_sent_while_the_server_was_away() {
    let port = free_port();
    // The app's storage outlives the server's restart.
    let data = tempfile::tempdir().unwrap();
    let args = vec!["--data-dir".to_string(), data.path().display().to_string()];
    let mut server = Some(chat_server(port, &args).await);
    let url = format!("http://127.0.0.1:{port}");
    run_script("chat.mjs", &[url], async |step| match step {
        "stop" => {
            server.take().expect("a running server").terminate().await;
        }
        "start" => server = Some(chat_server(port, &args).await),
        other => panic!("no step {other}"),
    })
    .await;
}

#[tokio::test]
async fn with_redis_a_page_recovers_what_was_said_while_its_server_restarted_once_each() {
    let redis = RedisServer::start().await;
    let args: Vec<String> = ["--backplane", "redis", "--backplane-url", &redis.url()]
        .map(String::from)
        .to_vec();
    let connected = ["backplane: connected to Redis"];
    let (first, second) = (free_port(), free_port());
    let mut a = Some(chat_server(first, &args).await);
    let b = chat_server(second, &args).await;
    for server in [a.as_ref().unwrap(), &b] {
        server.wait_for_log(&connected).await;
    }
    let urls = [first, second].map(|port| format!("http://127.0.0.1:{port}"));
    run_script("recovery.mjs", &urls, async |step| match step {
        "stop" => {
            a.take().expect("a running server").terminate().await;
        }
        "start" => {
            let restarted = chat_server(first, &args).await;
            restarted.wait_for_log(&connected).await;
            a = Some(restarted);
        }
        other => panic!("no step {other}"),
    })
    .await;
}

#[tokio::test]
async fn the_dashboard_page_shows_the_figure_the_timer_pushes_and_sets_it() {
    let server = Server::start(&["dashboard"]).await;
    let url = format!("http://{}", server.addr);
    run_script("dashboard.mjs", &[url], async |step| {
        panic!("no step {step}")
    })
    .await;
}

#[tokio::test]
async fn frond_js_raises_presence_events_on_a_websocket_and_an_event_stream() {
    let server = Server::start(&["probe"]).await;
    let url = format!("http://{}", server.addr);
    run_script("presence.mjs", &[url], async |step| {
        panic!("no step {step}")
    })
    .await;
}
