//! Loading the apps folder: bad files and conflicting apps are reported by
//! name and skipped; everything else still loads.

use crate::support::{Server, ServerOptions, component, still_answers};

#[tokio::test]
async fn bad_files_are_reported_by_name_and_the_rest_still_load() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["echo", "other-world"],
        files: vec![
            ("garbage.wasm", b"definitely not wasm".to_vec()),
            ("core.wasm", b"\0asm\x01\0\0\0".to_vec()),
            // A component's header, then nothing the compiler can read.
            ("broken.wasm", b"\0asm\x0d\0\x01\0broken".to_vec()),
            ("notes.txt", b"ignored: not a .wasm file".to_vec()),
        ],
        ..Default::default()
    })
    .await;
    server
        .wait_for_log(&["garbage.wasm", "not a WebAssembly file"])
        .await;
    server
        .wait_for_log(&["core.wasm", "core WebAssembly module, not a component"])
        .await;
    server
        .wait_for_log(&["broken.wasm", "not a valid WebAssembly component"])
        .await;
    server
        .wait_for_log(&[
            "other-world.wasm",
            "does not implement the tina4:wasm/handler world",
        ])
        .await;
    assert!(!server.log().contains("notes.txt"));

    let mut client = server.connect("/ws/echo").await;
    still_answers(&mut client, "hi").await;
}

#[tokio::test]
async fn two_apps_claiming_one_route_at_startup_are_both_refused_and_the_rest_serve() {
    // Whichever file name sorts first, neither gets the contested route:
    // a tenant cannot take a path by the name of its file.
    let chat = std::fs::read(component("chat")).unwrap();
    let server = Server::start_with(ServerOptions {
        apps: vec!["chat", "echo"],
        files: vec![("aaa.wasm", chat)],
        ..Default::default()
    })
    .await;
    for app in ["aaa.wasm", "chat.wasm"] {
        let line = server.wait_for_log(&[app, "app refused"]).await;
        assert!(
            line.contains("conflicts with WS /ws/room/{roomName} of app"),
            "{line}"
        );
    }
    assert_eq!(server.upgrade_status("/ws/room/x", &[]).await, Some(404));
    let mut client = server.connect("/ws/echo").await;
    still_answers(&mut client, "the others serve").await;
}

#[tokio::test]
async fn an_app_added_later_cannot_take_a_route_from_one_that_serves() {
    let server = Server::start(&["chat"]).await;
    let mut member = server.connect("/ws/room/x").await;
    assert_eq!(member.recv_json().await["online"], 1);
    std::fs::copy(component("chat"), server.apps_dir().join("aaa.wasm")).unwrap();
    let line = server.wait_for_log(&["aaa.wasm", "app refused"]).await;
    assert!(line.contains("of app \"chat\""), "{line}");
    let mut newcomer = server.connect("/ws/room/x").await;
    assert_eq!(newcomer.recv_json().await["online"], 2);
}

#[tokio::test]
async fn a_missing_apps_folder_is_a_clear_error() {
    let output = tokio::process::Command::new(crate::support::host_binary())
        .args(["serve", "/nonexistent/apps/folder", "--port", "0"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/apps/folder") && stderr.contains("does not exist"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_hidden_component_is_not_served() {
    // Editors and copy tools leave hidden files: `.echo.wasm` is not an
    // app, at startup as after a change (the watcher ignores it too).
    let echo = std::fs::read(component("echo")).unwrap();
    let server = Server::start_with(ServerOptions {
        apps: vec!["chat"],
        files: vec![(".echo.wasm", echo)],
        ..Default::default()
    })
    .await;
    assert_eq!(server.upgrade_status("/ws/echo", &[]).await, Some(404));
    assert!(!server.log().contains(".echo.wasm"));
}

#[tokio::test]
async fn a_component_built_against_contract_0_1_0_still_loads_and_serves() {
    // Built from a copy of the first contract, before `sse` routes.
    let server = Server::start(&["contract-0-1-0"]).await;
    let answer = crate::support::http()
        .get(server.url("/old/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.text().await.unwrap(),
        "0.1.0 says hello to /old/hello"
    );
    let mut client = server.connect("/old/ws").await;
    client.send("hi").await;
    assert_eq!(client.recv().await, "0.1.0 echo: hi");
}
