//! The tenant wall, tried as a hostile tenant and a hostile client would:
//! a squatting app (`broad`, whose WebSocket pattern matches the chat
//! room's paths), links out of an app's folder, settings past their
//! ceilings, route and file squatters, statuses only the host may send,
//! encoded separators and unknown hosts. Each attack is contained, and a
//! bystander app answers throughout.

use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Client, Server, ServerOptions, component, http, still_answers, within};

/// Connects to `path` as a browser on `host` would (its `Host` header).
pub(crate) async fn connect_as(server: &Server, host: &str, path: &str) -> Client {
    let mut request = server.ws_url(path).into_client_request().unwrap();
    request.headers_mut().insert("host", host.parse().unwrap());
    let (ws, _) = within("the upgrade", tokio_tungstenite::connect_async(request))
        .await
        .unwrap_or_else(|e| panic!("connecting to {path} on {host}: {e}"));
    Client::from_stream(ws)
}

/// A server with the chat app on the server's names and the squatter
/// bound to `broad.test`.
async fn chat_and_squatter() -> Server {
    Server::start_with(ServerOptions {
        apps: vec!["chat", "broad"],
        files: vec![("broad.toml", b"hosts = [\"broad.test\"]\n".to_vec())],
        ..Default::default()
    })
    .await
}

/// The squatter, on a host of its own (its pattern would otherwise
/// overlap echo's), with echo as the bystander, serving `apps`.
async fn squatter_on_its_host(apps: std::path::PathBuf) -> Server {
    std::fs::write(apps.join("broad.toml"), "hosts = [\"broad.test\"]\n").unwrap();
    Server::start_with(ServerOptions {
        apps: vec!["broad", "echo"],
        apps_dir: Some(apps),
        ..Default::default()
    })
    .await
}

/// A GET of `path` as a browser on `host` would send it.
fn get_on(
    server: &Server,
    host: &str,
    path: &str,
) -> impl Future<Output = reqwest::Result<reqwest::Response>> + use<> {
    http().get(server.url(path)).header("host", host).send()
}

#[tokio::test]
async fn a_room_belongs_to_one_app_whatever_the_path() {
    let server = chat_and_squatter().await;
    let mut member = server.connect("/ws/room/lobby").await;
    assert_eq!(member.recv_json().await["online"], 1);

    // The squatter serves the same concrete path on its own host.
    let mut spy = connect_as(&server, "broad.test", "/ws/room/lobby").await;
    spy.send("path").await;
    assert_eq!(spy.recv().await, "/ws/room/lobby");
    // What it pushes, broadcasts and counts there is its own room's.
    spy.send("push /ws/room/lobby").await;
    assert_eq!(spy.recv().await, "intruder");
    assert_eq!(spy.recv().await, "Ok(1)");
    spy.send("count /ws/room/lobby").await;
    assert_eq!(spy.recv().await, "Ok(1)");
    spy.send("broadcast").await;
    assert_eq!(spy.recv().await, "intruder");
    assert_eq!(spy.recv().await, "Ok(())");
    // A path its routes do not serve is refused outright.
    spy.send("push /ws/echo").await;
    assert!(spy.recv().await.contains("NotPermitted"));

    // The chat member heard none of it: the next thing it gets is the
    // room's own traffic.
    member
        .send_json(json!({"type": "chat", "text": "anyone?"}))
        .await;
    let next = member.recv_json().await;
    assert_eq!(
        (next["type"].as_str(), next["text"].as_str()),
        (Some("chat"), Some("anyone?"))
    );
}

#[tokio::test]
async fn encoded_separators_and_unknown_hosts_are_refused_before_any_app() {
    let server = chat_and_squatter().await;
    for path in [
        "/ws/room%2Flobby",
        "/ws/room/lobby%2F",
        "/ws/room/lob%5Cby",
        "/ws/room/a%0Ab",
    ] {
        assert_eq!(server.upgrade_status(path, &[]).await, Some(400), "{path}");
    }
    assert_eq!(server.get_status("/room/a%2Fb").await, 400);
    // A page on a name this server does not answer for (DNS rebinding).
    let rebound = [("host", "evil.example:7146")];
    assert_eq!(
        server.upgrade_status("/ws/room/lobby", &rebound).await,
        Some(421)
    );
    let response = get_on(&server, "evil.example", "/room/lobby")
        .await
        .unwrap();
    assert_eq!(response.status(), 421);
    // A claimed host reaches only its app: the chat page is not there.
    let response = get_on(&server, "broad.test", "/room/lobby").await.unwrap();
    assert_eq!(response.status(), 404);
    // A malformed Origin is a refusal, not a missing one.
    let mut request = server
        .ws_url("/ws/room/lobby")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "origin",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_bytes(b"http://l\xffcalhost")
            .unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a malformed origin was let in: {:?}", other.map(|_| ())),
    }
    let mut member = server.connect("/ws/room/lobby").await;
    assert_eq!(member.recv_json().await["online"], 1);
}

#[tokio::test]
async fn a_broad_pattern_cannot_squat_beside_an_app_that_serves() {
    let server = Server::start(&["chat", "echo"]).await;
    let mut bystander = server.connect("/ws/echo").await;
    std::fs::copy(component("broad"), server.apps_dir().join("broad.wasm")).unwrap();
    let line = server.wait_for_log(&["broad.wasm", "app refused"]).await;
    assert!(
        line.contains("/{a}/{b}/{c}") && line.contains("/ws/room/{roomName} of app \"chat\""),
        "{line}"
    );
    let mut member = server.connect("/ws/room/lobby").await;
    assert_eq!(member.recv_json().await["online"], 1);
    still_answers(&mut bystander, "after the squat").await;
}

#[tokio::test]
async fn links_out_of_an_apps_folder_reach_nothing() {
    let root = tempfile::tempdir().unwrap();
    let apps = root.path().join("apps");
    std::fs::create_dir_all(apps.join("broad/templates")).unwrap();
    std::fs::write(apps.join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink("/etc", apps.join("broad/public")).unwrap();
    std::os::unix::fs::symlink(
        apps.join("secret.txt"),
        apps.join("broad/templates/leak.txt"),
    )
    .unwrap();
    std::fs::write(apps.join("broad/templates/ok.txt"), "fine").unwrap();
    let server = squatter_on_its_host(apps).await;
    let get = |path: &str| get_on(&server, "broad.test", path);
    for file in ["/passwd", "/hostname", "/os-release"] {
        assert_eq!(get(file).await.unwrap().status(), 404, "{file}");
    }
    let ok = get("/broad/render/ok.txt").await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "fine");
    let leak = get("/broad/render/leak.txt").await.unwrap();
    assert_eq!(leak.status(), 500);
    assert!(!leak.text().await.unwrap().contains("top secret"));
    let mut bystander = server.connect("/ws/echo").await;
    still_answers(&mut bystander, "after the links").await;
}

#[tokio::test]
async fn settings_past_their_ceilings_refuse_the_version_by_file_and_key() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["broad", "echo"],
        files: vec![("broad.toml", b"event_timeout_ms = 3600000\n".to_vec())],
        ..Default::default()
    })
    .await;
    let line = server
        .wait_for_log(&["cannot load app", "broad.toml"])
        .await;
    assert!(
        line.contains("event_timeout_ms") && line.contains("ceiling"),
        "{line}"
    );
    std::fs::write(
        server.apps_dir().join("broad.toml"),
        "data_dir = \"/etc\"\n",
    )
    .unwrap();
    let line = server
        .wait_for_log(&["cannot load app", "broad.toml", "data_dir"])
        .await;
    assert!(
        line.contains("relative path inside the app's folder"),
        "{line}"
    );
    std::fs::write(server.apps_dir().join("broad.toml"), "memory_mb = 100000\n").unwrap();
    server
        .wait_for_log(&["cannot load app", "broad.toml", "memory_mb", "ceiling"])
        .await;
    assert_eq!(server.get_status("/broad/hop").await, 404);
    let mut bystander = server.connect("/ws/echo").await;
    still_answers(&mut bystander, "after the settings").await;
}

#[tokio::test]
async fn an_apps_files_cannot_shadow_another_apps_or_the_client() {
    let server = Server::start(&["chat"]).await;
    let apps = server.apps_dir();
    std::fs::create_dir_all(apps.join("echo/public/css")).unwrap();
    std::fs::create_dir_all(apps.join("echo/public/js")).unwrap();
    std::fs::write(apps.join("echo/public/css/chat.css"), "hijacked").unwrap();
    std::fs::write(apps.join("echo/public/js/frond.js"), "evil()").unwrap();
    std::fs::copy(component("echo"), apps.join("echo.wasm")).unwrap();
    let line = server.wait_for_log(&["echo.wasm", "app refused"]).await;
    assert!(line.contains("FILE /css/chat.css"), "{line}");
    let css = http()
        .get(server.url("/css/chat.css"))
        .send()
        .await
        .unwrap();
    assert_ne!(css.text().await.unwrap(), "hijacked");

    // Without the contested file it loads; the built-in client still wins.
    std::fs::remove_file(apps.join("echo/public/css/chat.css")).unwrap();
    std::fs::copy(component("echo"), apps.join("echo.wasm")).unwrap();
    server.wait_for_log(&["app loaded", "echo"]).await;
    let client = http().get(server.url("/js/frond.js")).send().await.unwrap();
    let client = client.text().await.unwrap();
    assert!(client.contains("WebSocket") && !client.contains("evil()"));
}

#[tokio::test]
async fn statuses_and_headers_only_the_host_may_send_are_refused() {
    let server = Server::start(&["broad"]).await;
    assert_eq!(server.get_status("/broad/switch").await, 500);
    server
        .wait_for_log(&["status it may not send", "status=101"])
        .await;
    let hop = http().get(server.url("/broad/hop")).send().await.unwrap();
    assert_eq!(hop.status(), 200);
    for dropped in ["keep-alive", "transfer-encoding"] {
        assert!(hop.headers().get(dropped).is_none(), "{dropped}");
    }
    assert_ne!(
        hop.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    assert_eq!(hop.headers()["x-broad"], "kept");
    assert_eq!(hop.text().await.unwrap(), "framed by the host");
}

#[tokio::test]
async fn template_bombs_meet_their_limits_and_the_host_keeps_its_memory() {
    let root = tempfile::tempdir().unwrap();
    let apps = root.path().join("apps");
    let templates = apps.join("broad/templates");
    std::fs::create_dir_all(&templates).unwrap();
    // Doubling a string 40 times: a terabyte, if nothing stops it.
    std::fs::write(
        templates.join("bomb.txt"),
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    )
    .unwrap();
    std::fs::write(
        templates.join("spin.txt"),
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    )
    .unwrap();
    std::fs::write(templates.join("ok.txt"), "still {{ 6 * 7 }}").unwrap();
    let server = squatter_on_its_host(apps).await;
    let mut bystander = server.connect("/ws/echo").await;
    let get = |path: &str| get_on(&server, "broad.test", path);
    let bomb = get("/broad/render/bomb.txt").await.unwrap();
    assert_eq!(bomb.status(), 500);
    server
        .wait_for_log(&["template", "ran out of memory"])
        .await;
    still_answers(&mut bystander, "after the bomb").await;
    let spin = get("/broad/render/spin.txt").await.unwrap();
    assert_eq!(spin.status(), 500);
    server
        .wait_for_log(&["template", "past its deadline"])
        .await;
    still_answers(&mut bystander, "after the spin").await;
    let ok = get("/broad/render/ok.txt").await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "still 42");
    let peak = server.peak_rss();
    assert!(
        peak < 256 << 20,
        "the server's memory peaked at {} MiB",
        peak >> 20
    );
}
