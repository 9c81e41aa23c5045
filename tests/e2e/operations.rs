//! Operating the server: metrics that move by the right amounts, health and
//! readiness, JSON logs, `routes` and `check`, configuration errors.

use std::process::Output;

use serde_json::{Value, json};

use crate::support::{Server, ServerOptions, component, host_binary, http, metric};

#[tokio::test]
async fn metrics_count_connections_messages_failures_and_requests() {
    let server = Server::start(&["chat", "probe"]).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = server.connect("/ws/room/m").await;
        let _welcome = client.recv_json().await;
        clients.push(client);
    }
    // Everyone sees every join notice before the chats start.
    for (i, client) in clients.iter_mut().enumerate() {
        for _ in 0..(2 - i) {
            client.recv_json().await;
        }
    }
    for client in clients.iter_mut() {
        for _ in 0..2 {
            client
                .send_json(json!({"type": "chat", "text": "hi"}))
                .await;
        }
    }
    for client in clients.iter_mut() {
        for _ in 0..6 {
            assert_eq!(client.recv_json().await["type"], "chat");
        }
    }
    // Two leave, one after the other: the third hears each leave before
    // the next, so the first notice reached both who were still there.
    let mut last = clients.pop().unwrap();
    for client in clients {
        client.close().await;
        assert!(
            last.recv_json().await["message"]
                .as_str()
                .unwrap()
                .ends_with("left the room")
        );
    }
    // One more chat: the app handles events in order, so once its answer is
    // back every earlier handler (and what it counted) has finished.
    last.send_json(json!({"type": "chat", "text": "last"}))
        .await;
    assert_eq!(last.recv_json().await["text"], "last");
    assert_eq!(
        http()
            .get(server.url("/probe/panic"))
            .send()
            .await
            .unwrap()
            .status(),
        500
    );

    let text = server.metrics().await;
    let chat = [("app", "chat")];
    assert_eq!(
        metric(&text, "tina4_ws_connections_opened_total", &chat),
        3.0
    );
    assert_eq!(
        metric(
            &text,
            "tina4_ws_connections_closed_total",
            &[("app", "chat"), ("code", "1000")]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            "tina4_ws_connections",
            &[("app", "chat"), ("route", "/ws/room/{}")]
        ),
        1.0
    );
    assert_eq!(metric(&text, "tina4_ws_messages_in_total", &chat), 7.0);
    // Welcomes 3, join notices 0+1+2, chats 6×3, leave notices 2+1, last chat 1.
    assert_eq!(
        metric(&text, "tina4_ws_messages_out_total", &chat),
        3.0 + 3.0 + 18.0 + 3.0 + 1.0
    );
    assert_eq!(
        metric(&text, "tina4_ws_broadcast_fanout_count", &chat),
        3.0 + 6.0 + 2.0 + 1.0
    );
    assert_eq!(
        metric(
            &text,
            "tina4_handler_seconds_count",
            &[("app", "chat"), ("event", "message")]
        ),
        7.0
    );
    assert_eq!(
        metric(
            &text,
            "tina4_guest_failures_total",
            &[("app", "probe"), ("reason", "trap")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "tina4_app_reinstantiations_total",
            &[("app", "probe")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "tina4_http_requests_total",
            &[("app", "probe"), ("status", "5xx")]
        ),
        1.0
    );
    // Concrete paths never become labels.
    assert!(!text.contains("/ws/room/m\""));
}

#[tokio::test]
async fn ready_flips_when_an_app_loads_and_health_is_always_up() {
    let server = Server::start(&[]).await;
    let health = http()
        .get(server.admin_url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = http().get(server.admin_url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body, json!({"ready": false, "backplane": "local"}));

    std::fs::copy(component("echo"), server.apps_dir().join("echo.wasm")).unwrap();
    server.wait_for_log(&["app loaded", "echo"]).await;
    let ready = http().get(server.admin_url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // The admin endpoints are not on the public port.
    assert_eq!(server.get_status("/metrics").await, 404);
}

#[tokio::test]
async fn json_logs_are_json_and_name_the_app() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        args: vec!["--log-format".into(), "json".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(server.get_status("/probe/panic").await, 500);
    let line = server.wait_for_log(&["guest failed"]).await;
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["app"], "probe");
    assert_eq!(event["level"], "ERROR");
    for line in server.log().lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    std::process::Command::new(host_binary())
        .args(args)
        .env_remove("TINA4_PORT")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn routes_lists_apps_routes_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["echo", "chat"] {
        std::fs::copy(component(name), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    let good = run(&["routes", dir.path().to_str().unwrap()], &[]);
    assert_eq!(good.status.code(), Some(0), "{}", text(&good.stderr));
    let out = text(&good.stdout);
    assert!(
        out.contains("chat (chat.wasm)") && out.contains("WS      /ws/room/{roomName}"),
        "{out}"
    );
    assert!(
        out.contains("GET     /room/{roomName}") && out.contains("/ws/echo"),
        "{out}"
    );

    std::fs::copy(component("chat"), dir.path().join("chat2.wasm")).unwrap();
    std::fs::write(dir.path().join("junk.wasm"), b"junk").unwrap();
    let bad = run(&["routes", dir.path().to_str().unwrap()], &[]);
    assert_eq!(bad.status.code(), Some(1));
    let out = text(&bad.stdout);
    assert!(
        out.contains("CONFLICT") && out.contains("junk.wasm: cannot load: not a WebAssembly file"),
        "{out}"
    );
}

#[test]
fn check_says_why_a_component_cannot_be_served() {
    // What loading costs, compiled the first time and from the cache after.
    let cache = tempfile::tempdir().unwrap();
    let chat = component("chat");
    let check_chat = || {
        let args = ["check", chat.to_str().unwrap(), "--cache-dir"];
        run(
            &[&args[..], &[cache.path().to_str().unwrap()]].concat(),
            &[],
        )
    };
    let good = check_chat();
    assert_eq!(good.status.code(), Some(0));
    let out = text(&good.stdout);
    assert!(out.starts_with("ok: "), "{out}");
    assert!(
        out.contains("loads: compile ") && out.contains("(compiled)"),
        "{out}"
    );
    let again = text(&check_chat().stdout);
    assert!(again.contains("(from cache)"), "{again}");
    let other = run(&["check", component("other-world").to_str().unwrap()], &[]);
    assert_eq!(other.status.code(), Some(1));
    assert!(text(&other.stdout).contains("does not implement the tina4:wasm/handler world"));
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = run(&["check", core.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("core WebAssembly module, not a component"));
}

#[test]
fn configuration_errors_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().to_str().unwrap();
    /// Arguments, environment, and what the error line must mention.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 7] = [
        (&["serve", apps, "--port", "seventy"], &[], "--port"),
        (&["serve", apps], &[("TINA4_PORT", "99999")], "99999"),
        (
            &["serve", apps],
            &[("TINA4_WS_MAX_CONNECTIONS", "0")],
            "max-connections",
        ),
        (
            &["serve", apps, "--admin-listen", "nonsense"],
            &[],
            "--admin-listen",
        ),
        (&["serve", "/no/such/folder"], &[], "does not exist"),
        (
            &["serve", apps],
            &[("TINA4_WS_BACKPLANE", "carrier-pigeon")],
            "--backplane",
        ),
        (
            &["serve", apps, "--backplane", "redis"],
            &[("TINA4_WS_BACKPLANE_URL", "nonsense")],
            "invalid backplane URL nonsense",
        ),
    ];
    for (args, env, says) in cases {
        let out = run(args, env);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"));
    }
    let help = run(&["--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("serve") && text(&help.stdout).contains("check"));
    let version = run(&["--version"], &[]);
    assert!(text(&version.stdout).starts_with("tina4-wasm "));
}
