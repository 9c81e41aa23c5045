//! A Tina4 project as it is: `tina4-wasm build` on a folder laid out as
//! tina4-python or tina4-nodejs lay it out (`src/routes/`, `src/templates/`,
//! `src/public/`), with the route files importing Tina4's own module names,
//! then served and driven as the Tina4 WebSocket chapter describes. The
//! projects are `tests/fixtures/tina4-python` and `tests/fixtures/tina4-node`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::build::{assert_built, build};
use crate::support::{
    Client, Server, ServerOptions, examples_cache_dir, host_binary, http, repo_root,
};

/// Copies the fixture project `name` to `root/chatroom` (the app's name).
fn project(name: &str, root: &Path) -> PathBuf {
    let copy = root.join("chatroom");
    copy_tree(&repo_root().join("tests/fixtures").join(name), &copy);
    copy
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A server for the apps a test built (precompiled into the shared cache).
async fn serve(apps: PathBuf) -> Server {
    Server::start_with(ServerOptions {
        apps_dir: Some(apps),
        cache_dir: Some(examples_cache_dir()),
        ..Default::default()
    })
    .await
}

/// The next message of a client, as JSON.
async fn next(client: &mut Client) -> Value {
    client.recv_json().await
}

async fn behaves_as_the_chapter_says(fixture: &str) {
    let root = tempfile::tempdir().unwrap();
    let apps = root.path().join("apps");
    let output = build(&project(fixture, root.path()), &apps, &[]);
    assert_built(&output);
    let said = String::from_utf8_lossy(&output.stdout);
    for route in ["/ws/room/", "/room/", "/ws/livechat/{room}", "/api/notify/"] {
        assert!(said.contains(route), "{route} missing from:\n{said}");
    }
    // One file is the whole version: its templates and public files are
    // packed into the component.
    let files: Vec<_> = std::fs::read_dir(&apps)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(files, ["chatroom.wasm"]);
    let server = serve(apps).await;

    // The room page, rendered from src/templates (a template extending
    // another), and the project's public file.
    let page = http().get(server.url("/room/lobby")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("<title>Room: lobby</title>"), "{page}");
    assert!(page.contains("<h1>Room: lobby</h1>"), "{page}");
    let css = http().get(server.url("/style.css")).send().await.unwrap();
    assert!(css.text().await.unwrap().contains("teal"));

    // A welcome with the count; the others hear of the join.
    let mut alice = server.connect("/ws/room/lobby").await;
    let welcome = next(&mut alice).await;
    assert_eq!(welcome["type"], "system");
    assert_eq!(welcome["online"], 1);
    let mut bob = server.connect("/ws/room/lobby").await;
    assert_eq!(next(&mut bob).await["online"], 2);
    let joined = next(&mut alice).await;
    assert_eq!(
        joined,
        json!({"type": "system", "message": "Someone joined", "online": 2})
    );

    // set-name, then chat with the name and a timestamp, to everyone.
    alice
        .send_json(json!({"type": "set-name", "name": "Alice"}))
        .await;
    for client in [&mut alice, &mut bob] {
        assert_eq!(next(client).await["message"], "Anonymous is now Alice");
    }
    alice.send_json(json!({"type": "chat", "text": "hi"})).await;
    for client in [&mut alice, &mut bob] {
        let chat = next(client).await;
        assert_eq!(
            (&chat["from"], &chat["text"]),
            (&json!("Alice"), &json!("hi"))
        );
        let stamp = chat["timestamp"].as_str().unwrap();
        assert!(
            stamp.len() == 8 && stamp.as_bytes()[2] == b':' && stamp.as_bytes()[5] == b':',
            "{stamp}"
        );
    }

    // Leaving tells the rest, with the new count.
    bob.close().await;
    assert_eq!(
        next(&mut alice).await,
        json!({"type": "system", "message": "Anonymous left", "online": 1})
    );

    // set-username, and typing to the others only.
    let mut carol = server.connect("/ws/livechat/x").await;
    assert_eq!(next(&mut carol).await["type"], "welcome");
    let mut dave = server.connect("/ws/livechat/x").await;
    assert_eq!(next(&mut dave).await["online"], 2);
    carol
        .send_json(json!({"type": "set-username", "username": "Carol"}))
        .await;
    for client in [&mut carol, &mut dave] {
        assert_eq!(
            next(client).await["message"],
            "Anonymous is now known as Carol"
        );
    }
    carol.send_json(json!({"type": "typing"})).await;
    assert_eq!(
        next(&mut dave).await,
        json!({"type": "typing", "username": "Carol"})
    );
    // Carol's next message is the one after her typing: she never got it.
    carol
        .send_json(json!({"type": "set-username", "username": "C"}))
        .await;
    assert_eq!(next(&mut carol).await["message"], "Carol is now known as C");

    // An HTTP route pushes to one user's notifications path.
    let mut eve = server.connect("/ws/notifications/7").await;
    assert_eq!(
        next(&mut eve).await,
        json!({"type": "connected", "user": "7"})
    );
    let notify = |user: &str| {
        http()
            .post(server.url(&format!("/api/notify/{user}")))
            .json(&json!({"text": "shipped"}))
            .send()
    };
    let reached: Value = notify("7").await.unwrap().json().await.unwrap();
    assert_eq!(reached, json!({"reached": 1}));
    assert_eq!(
        next(&mut eve).await,
        json!({"type": "notification", "text": "shipped"})
    );
    let nobody: Value = notify("8").await.unwrap().json().await.unwrap();
    assert_eq!(nobody, json!({"reached": 0}));
}

#[tokio::test]
async fn a_tina4_python_project_builds_as_it_is_and_behaves_as_the_chapter_says() {
    behaves_as_the_chapter_says("tina4-python").await;
}

#[tokio::test]
async fn a_tina4_node_project_in_typescript_builds_as_it_is_and_behaves_as_the_chapter_says() {
    behaves_as_the_chapter_says("tina4-node").await;
}

/// `tina4-wasm new` in `language`, then build, serve, the page and the
/// room: what a new user does first.
async fn a_new_project_builds_and_serves(language: &str) {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join(format!("first-{language}"));
    let created = std::process::Command::new(host_binary())
        .arg("new")
        .arg(&project)
        .args(["--language", language])
        .output()
        .unwrap();
    assert_built(&created);
    let apps = root.path().join("apps");
    assert_built(&build(&project, &apps, &[]));
    let app = format!("first_{language}");
    let server = serve(apps).await;
    let page = http().get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains(&format!("<title>{app}</title>")), "{page}");
    assert!(page.contains(&format!("frond.ws(\"/ws/{app}\"")), "{page}");
    let css = http().get(server.url("/style.css")).send().await.unwrap();
    assert_eq!(css.status(), 200);
    let mut client = server.connect(&format!("/ws/{app}")).await;
    assert_eq!(next(&mut client).await, json!({"online": 1}));
    client.send("hello").await;
    assert_eq!(next(&mut client).await, json!({"text": "hello"}));
}

#[tokio::test]
async fn a_new_python_project_builds_and_serves() {
    a_new_project_builds_and_serves("python").await;
}

#[tokio::test]
async fn a_new_typescript_project_builds_and_serves() {
    a_new_project_builds_and_serves("typescript").await;
}

#[tokio::test]
async fn a_new_javascript_project_builds_and_serves() {
    a_new_project_builds_and_serves("javascript").await;
}

#[tokio::test]
async fn a_new_rust_project_builds_and_serves() {
    a_new_project_builds_and_serves("rust").await;
}
