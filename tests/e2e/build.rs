//! `tina4-wasm build`, and what the JavaScript and Python SDKs do beyond
//! the examples: the app's own modules and dependencies, errors from the
//! host, exceptions in handlers, close codes, async handlers, secured
//! routes, and the CPU and memory limits. The SDK fixtures are built here, by
//! the real command, from `tests/fixtures/sdk-<language>/`.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

use crate::auth::{SECRET, token};
use crate::outbound::{Upstream, held_while_another_app_answers};
use crate::support::{
    Language, Server, ServerOptions, examples_cache_dir, host_binary, http, repo_root,
};

/// Runs `tina4-wasm build <source> --apps <apps>` with `flags`,
/// precompiling into the shared examples cache unless `flags` say otherwise.
pub fn build(source: &Path, apps: &Path, flags: &[&str]) -> Output {
    let mut command = std::process::Command::new(host_binary());
    command.arg("build").arg(source).arg("--apps").arg(apps);
    if !flags.contains(&"--no-cache") {
        command.arg("--cache-dir").arg(examples_cache_dir());
    }
    command
        .args(flags)
        .output()
        .expect("running tina4-wasm build")
}

/// Asserts a command succeeded, showing what it said if not.
pub fn assert_built(output: &Output) {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A copy of the SDK fixture of `language` in `root` as the app `sdk`;
/// the JavaScript one gets the npm package its greeting module imports.
fn fixture(language: &str, root: &Path) -> PathBuf {
    let source = repo_root()
        .join("tests/fixtures")
        .join(format!("sdk-{language}"));
    let copy = root.join("sdk");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&source).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
    }
    if language == "javascript" {
        let package = copy.join("node_modules/shout");
        std::fs::create_dir_all(&package).unwrap();
        std::fs::write(package.join("package.json"), r#"{"main": "index.js"}"#).unwrap();
        std::fs::write(
            package.join("index.js"),
            "export const shout = (s) => s.toUpperCase() + \"!\";\n",
        )
        .unwrap();
    }
    copy
}

/// Builds the SDK fixture of `language` into `apps` as `sdk.wasm`.
fn build_fixture(language: &str, apps: &Path, flags: &[&str]) {
    let staging = tempfile::tempdir().unwrap();
    let output = build(&fixture(language, staging.path()), apps, flags);
    assert_built(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("GET     /sdk/boom"), "{stdout}");
}

async fn sdk_behaviour(language: &str) {
    let root = tempfile::tempdir().unwrap();
    let apps = root.path().join("apps");
    build_fixture(language, &apps, &[]);
    // A storage grant, with a quota of two keys, and a local upstream the
    // app may reach.
    let mut upstream = Upstream::start().await;
    std::fs::write(
        apps.join("sdk.toml"),
        format!(
            "allowed_outbound_hosts = [\"{}\", \"http://localhost:{}\"]\n\
             [outbound]\ntimeout_ms = 300\nmax_response_bytes = 1000\n\
             [storage]\nmax_keys = 2\n",
            upstream.url(""),
            upstream.port,
        ),
    )
    .unwrap();
    let data = root.path().join("data");
    let server = Server::start_with(ServerOptions {
        apps_dir: Some(apps.clone()),
        cache_dir: Some(examples_cache_dir()),
        env: vec![("TINA4_SECRET".into(), SECRET.into())],
        args: vec![
            "--data-dir".into(),
            data.display().to_string(),
            "--outbound-hosts".into(),
            "http://127.0.0.1:*,http://localhost:*".into(),
        ],
        language: Language::Rust,
        ..Default::default()
    })
    .await;

    // The app's own modules (and, in JavaScript, its npm dependencies) are built in.
    let greeting = server.get_json("/sdk/greet/ada").await;
    assert_eq!(greeting, json!({"greeting": "HELLO, ADA!"}));

    // An exception is a 500 that says nothing of the app's insides; the log has it.
    let boom = http().get(server.url("/sdk/boom")).send().await.unwrap();
    assert_eq!(boom.status(), 500);
    assert_eq!(
        boom.json::<Value>().await.unwrap(),
        json!({"error": "internal error"})
    );
    server.wait_for_log(&["kaboom from the handler"]).await;
    let bad = http().get(server.url("/sdk/bad")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.unwrap(),
        json!({"error": "the request was bad"})
    );
    // An async handler's answer, with its status and headers.
    let created = http()
        .post(server.url("/sdk/created"))
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["x-sdk"], "yes");
    assert_eq!(created.json::<Value>().await.unwrap(), json!({"n": 1}));
    // An async handler answers after an `await`.
    let later = http().get(server.url("/sdk/later")).send().await.unwrap();
    assert_eq!(later.status(), 202);
    assert_eq!(later.json::<Value>().await.unwrap(), json!({"late": true}));

    // Outbound HTTP: the listed upstream answers (`fetch` awaited in
    // JavaScript); an address not listed is refused with its reason.
    let fetched = server
        .get_json(&format!("/sdk/fetch?url={}", upstream.url("/hello")))
        .await;
    assert_eq!(
        fetched,
        json!({"status": 200, "body": "hello from upstream"})
    );
    assert_eq!(upstream.next().await, "GET /hello ");
    // Answers whose bodies are never read do not hold the app's requests
    // in flight (eight): only their bytes count, within a budget.
    let statuses = server
        .get_json(&format!(
            "/sdk/statuses?n=12&url={}",
            upstream.url("/hello")
        ))
        .await;
    assert_eq!(statuses, json!(vec![200; 12]));
    for _ in 0..12 {
        assert_eq!(upstream.next().await, "GET /hello ");
    }
    // Each refusal with its kind (in JavaScript too, though the engine's
    // fetch says only that it failed), and its reason in the app's log.
    let port = upstream.port;
    for (url, kind, logged) in [
        (
            format!("http://127.0.0.2:{port}/hello"),
            "denied",
            "denied: not in allowed_outbound_hosts",
        ),
        (
            format!("http://localhost:{port}/hello"),
            "prohibited",
            "prohibited: it resolves to an internal address",
        ),
        (upstream.url("/hold"), "timeout", "timed out"),
        (
            upstream.url("/size?n=5000"),
            "too-large",
            "response larger than 1000 bytes",
        ),
    ] {
        let refused = http()
            .get(server.url("/sdk/fetch"))
            .query(&[("url", &url)])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 502, "{url}");
        let error = refused.json::<Value>().await.unwrap()["error"].clone();
        assert_eq!(error, json!(kind), "{url}");
        // The log names the request without its query.
        let logged_url = url.split('?').next().unwrap_or_default();
        server.wait_for_log(&["outbound", logged_url, logged]).await;
    }
    // The timed-out and the oversized request did reach the upstream.
    assert_eq!(upstream.next().await, "GET /hold ");
    assert_eq!(upstream.next().await, "GET /size?n=5000 ");
    // A secured route: refused without a token, the claims with one.
    let refused = http().get(server.url("/sdk/secret")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let claims = server
        .get_json(&format!("/sdk/secret?token={}", token("sdk", SECRET, 60)))
        .await;
    assert_eq!(claims, json!({"sub": "alice"}));

    let mut client = server.connect("/ws/sdk?room=a%20b").await;
    client.send("who").await;
    assert_eq!(
        client.recv_json().await,
        json!({"path": "/ws/sdk", "query": {"room": "a b"}, "count": 1})
    );
    client.send("ghost").await;
    assert_eq!(client.recv().await, "refused: unknown-connection");
    client.send("bad-close").await;
    assert_eq!(client.recv().await, "refused: invalid");
    client.send("late").await;
    assert_eq!(client.recv().await, "after an await");
    client.send("throw").await;
    server
        .wait_for_log(&["kaboom from a websocket handler"])
        .await;
    client.send("who").await;
    assert_eq!(client.recv_json().await["count"], 1, "still connected");
    if language == "python" {
        // Awaiting real I/O is refused with a reason: a handler runs to completion.
        client.send("sleep").await;
        server.wait_for_log(&["handlers run to completion"]).await;
        client.send("who").await;
        assert_eq!(client.recv_json().await["count"], 1, "still connected");
    }
    client.send("bye").await;
    assert_eq!(client.expect_close().await, (4000, "bye".to_string()));

    // A route that keeps history, and an app reading it.
    let mut kept = server.connect("/ws/sdk-kept").await;
    for text in ["a", "b"] {
        kept.send(&format!("say:{text}")).await;
        assert_eq!(kept.recv().await, text);
    }
    kept.send("history").await;
    assert_eq!(
        kept.recv_json().await,
        json!([{"offset": 1, "text": "a"}, {"offset": 2, "text": "b"}])
    );

    // A route that keeps presence: the app sets it, lists it, and hears
    // joins; the path's clients get notices.
    let mut ann = server.connect("/ws/sdk-who").await;
    ann.send("iam:ann").await;
    assert_eq!(
        ann.recv_json().await,
        json!({"presence": "join", "key": "ann", "value": "{\"name\":\"Ann\"}"})
    );
    assert_eq!(ann.recv().await, "app: ann joined");
    ann.send("who").await;
    assert_eq!(
        ann.recv_json().await,
        json!([["ann", "{\"name\":\"Ann\"}"]])
    );

    // Storage: JSON in and out, an atomic count, the keys, and a quota
    // refused with its kind.
    let mut kv = server.connect("/ws/sdk-kv").await;
    kv.send("put").await;
    assert_eq!(
        kv.recv_json().await,
        json!({"room": {"name": "lobby", "members": 2}, "count": 3, "keys": ["count", "room"]})
    );
    kv.send("one more").await;
    assert_eq!(kv.recv().await, "refused: quota");

    // Timers: one scheduled from a handler fires; one too soon is refused.
    let mut timers = server.connect("/ws/sdk-timer").await;
    timers.send("start").await;
    assert_eq!(timers.recv().await, "scheduled");
    assert_eq!(timers.recv().await, "fired 1");
    timers.send("too soon").await;
    assert_eq!(timers.recv().await, "refused: invalid");

    // A runaway handler meets the CPU deadline: its connection is closed
    // with 1011 and the app comes back fresh.
    let mut attacker = server.connect("/ws/sdk").await;
    attacker.send("spin").await;
    assert_eq!(attacker.expect_close().await.0, 1011);
    server
        .wait_for_log(&["guest failed", "CPU time limit"])
        .await;
    drop(server);
    // A greedy one meets the memory cap, which the language reports as its
    // own out-of-memory error: logged, and the app goes on serving. With a
    // deadline far away, so that on a busy machine only that limit is met.
    // Beside it, another app, and a request timeout as far away.
    std::fs::write(
        apps.join("sdk.toml"),
        format!(
            "allowed_outbound_hosts = [\"{}\"]\n[outbound]\ntimeout_ms = 60000\n",
            upstream.url("")
        ),
    )
    .unwrap();
    std::fs::copy(crate::support::component("probe"), apps.join("other.wasm")).unwrap();
    std::fs::write(apps.join("other.toml"), "hosts = [\"other.test\"]\n").unwrap();
    let server = Server::start_with(ServerOptions {
        apps_dir: Some(apps),
        cache_dir: Some(examples_cache_dir()),
        args: vec![
            "--event-timeout-ms".into(),
            "60000".into(),
            "--outbound-hosts".into(),
            "http://127.0.0.1:*".into(),
            "--outbound-timeout-ms".into(),
            "60000".into(),
        ],
        language: Language::Rust,
        ..Default::default()
    })
    .await;

    // While the app waits on a slow upstream, the other app answers.
    let held = held_while_another_app_answers(&server, &mut upstream, "/sdk/fetch").await;
    assert_eq!(held, json!({"status": 200, "body": "released"}));

    let mut greedy = server.connect("/ws/sdk").await;
    greedy.send("hog").await;
    let out_of_memory = if language == "python" {
        "MemoryError"
    } else {
        "out of memory"
    };
    server.wait_for_log(&[out_of_memory]).await;
    greedy.send("who").await;
    assert_eq!(greedy.recv_json().await["count"], 1);
}

#[tokio::test]
async fn the_javascript_sdk_maps_errors_statuses_and_closes() {
    sdk_behaviour("javascript").await;
}

#[tokio::test]
async fn the_python_sdk_maps_errors_statuses_and_closes() {
    sdk_behaviour("python").await;
}

#[tokio::test]
async fn a_folder_without_an_app_or_a_broken_app_is_refused_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let apps = root.path().join("apps");
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = root.path().join("missing");
    for (source, says) in [(&empty, "holds no app"), (&missing, "no source folder")] {
        let output = build(source, &apps, &[]);
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{stderr}");
    }

    // A syntax error: the compiler's message, and the served component untouched.
    let broken = root.path().join("feed");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(
        broken.join("app.js"),
        "Router.websocket(\"/ws\", (c) => {\n",
    )
    .unwrap();
    std::fs::create_dir_all(&apps).unwrap();
    std::fs::write(apps.join("feed.wasm"), b"the serving version").unwrap();
    let output = build(&broken, &apps, &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("building the JavaScript app feed") && stderr.contains("app.js"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(apps.join("feed.wasm")).unwrap(),
        b"the serving version"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&apps).unwrap().flatten().collect();
    assert_eq!(leftovers.len(), 1, "no half-built files are left behind");
}

#[tokio::test]
async fn quickjs_builds_of_javascript_apps_serve_too() {
    let root = tempfile::tempdir().unwrap();
    let apps = root.path().join("apps");
    let quickjs = ["--js-engine", "quickjs", "--no-cache"];
    let echo = repo_root().join("examples/javascript/echo");
    assert_built(&build(&echo, &apps, &quickjs));
    build_fixture("javascript", &apps, &quickjs);
    let server = Server::start_with(ServerOptions {
        apps_dir: Some(apps),
        ..Default::default()
    })
    .await;
    let mut client = server.connect("/ws/echo").await;
    crate::support::still_answers(&mut client, "naïve ☃").await;
    client.send_binary(&[0, 255]).await;
    assert_eq!(
        client.next_message().await,
        tokio_tungstenite::tungstenite::Message::binary(vec![0, 255])
    );
    let hello = server.get_json("/hello/qjs").await;
    assert_eq!(hello["message"], "Hello, qjs!");

    // QuickJS takes an HTTP answer when the handler returns: one that
    // comes after an `await` is lost, and said so.
    let later = http().get(server.url("/sdk/later")).send().await.unwrap();
    assert_eq!(later.status(), 500);
    server
        .wait_for_log(&["did not answer before its first `await`"])
        .await;

    // A path's history reads alike (its offsets are 64-bit on the way).
    let mut kept = server.connect("/ws/sdk-kept").await;
    kept.send("say:a").await;
    assert_eq!(kept.recv().await, "a");
    kept.send("history").await;
    assert_eq!(kept.recv_json().await, json!([{"offset": 1, "text": "a"}]));

    // QuickJS never resumes a handler after `await`: said in the log, once.
    let mut client = server.connect("/ws/sdk").await;
    client.send("late").await;
    client.send("late").await;
    server
        .wait_for_log(&["/ws/sdk", "never finished after an `await`"])
        .await;
    client.send("who").await;
    assert_eq!(client.recv_json().await["count"], 1);
}
