//! Per-app limits and grants from `<app>.toml`: they override the server's
//! defaults for that app only, bad files refuse the app with a reason, and
//! a changed file reloads the app.

use crate::support::{Install, Server, ServerOptions, still_answers};

#[tokio::test]
async fn settings_apply_to_their_app_only() {
    let root = tempfile::tempdir().unwrap();
    let apps = root.path().join("apps");
    // The granted folder is inside the app's own.
    std::fs::create_dir_all(apps.join("hostile/data")).unwrap();
    std::fs::write(apps.join("hostile/data/hello.txt"), "hello").unwrap();
    let server = Server::start_with(ServerOptions {
        apps_dir: Some(apps),
        apps: vec!["probe", "hostile", "echo"],
        files: vec![
            (
                "probe.toml",
                b"max_connections = 2\nmax_message_bytes = 10\n".to_vec(),
            ),
            (
                "hostile.toml",
                b"fuel = 1_000_000\ndata_dir = \"data\"\n".to_vec(),
            ),
        ],
        args: vec!["--fuel-per-event".into(), "100000000000".into()],
        ..Default::default()
    })
    .await;

    // Connections: two for the probe app, then 503; other apps unaffected.
    let mut first = server.connect("/ws/probe/a").await;
    let _second = server.connect("/ws/probe/b").await;
    assert_eq!(server.upgrade_status("/ws/probe/c", &[]).await, Some(503));
    let mut echo = server.connect("/ws/echo").await;
    still_answers(&mut echo, "a message well over ten bytes").await;

    // Messages: the probe app may send at most 10 bytes.
    first.send("tiny").await;
    assert_eq!(first.recv().await, "v1: tiny");
    first.send("0123456789").await;
    server
        .wait_for_log(&["probe", "larger than the 10-byte limit"])
        .await;

    // Fuel: the hostile app's loop runs dry long before its deadline.
    let mut hostile = server.connect("/ws/hostile").await;
    hostile.send("spin").await;
    assert_eq!(hostile.expect_close().await.0, 1011);
    server
        .wait_for_log(&["guest failed", "ran out of fuel", "hostile"])
        .await;

    // Files: the granted folder is readable as /data, nothing else is.
    let mut hostile = server.connect("/ws/hostile").await;
    hostile.send("file /data/hello.txt").await;
    assert_eq!(hostile.recv().await, "Ok(5)");
    hostile.send("file /etc/passwd").await;
    assert!(hostile.recv().await.starts_with("Err("));
}

#[tokio::test]
async fn a_bad_settings_file_refuses_the_app_with_a_reason() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe", "echo"],
        files: vec![("probe.toml", b"colour = \"blue\"\n".to_vec())],
        ..Default::default()
    })
    .await;
    let line = server
        .wait_for_log(&["probe.toml", "cannot load app"])
        .await;
    assert!(line.contains("unknown field"), "{line}");
    let status = server.get_status("/probe/count").await;
    assert_eq!(status, 404);
    let mut echo = server.connect("/ws/echo").await;
    still_answers(&mut echo, "fine").await;
}

#[tokio::test]
async fn changing_the_settings_file_reloads_the_app() {
    let server = Server::start(&["probe"]).await;
    let _one = server.connect("/ws/probe/a").await;
    let _two = server.connect("/ws/probe/a").await;
    Install::CopyOver.put(server.apps_dir(), "probe.toml", b"max_connections = 2\n");
    server
        .wait_for_log(&["app swapped to a new version", "probe"])
        .await;
    assert_eq!(server.upgrade_status("/ws/probe/b", &[]).await, Some(503));
}
