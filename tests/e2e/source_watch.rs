//! `serve --watch`: editing an app's source (Rust, JavaScript or Python)
//! rebuilds it and swaps it in; a broken edit shows the build error and the
//! running version keeps serving.

use std::path::Path;
use std::time::Duration;

use crate::support::{
    Language, Server, ServerOptions, component, example, examples_cache_dir, repo_root, target_dir,
};

/// The first build compiles the guest's dependencies; later runs reuse them.
const BUILD: Duration = Duration::from_secs(600);

fn write_source(dir: &Path, version: &str, extra: &str) {
    let probe = repo_root().join("tests/fixtures/probe/src/probe.rs");
    let source = format!(
        "const VERSION: &str = {version:?};\ninclude!({:?});\n{extra}",
        probe.display().to_string()
    );
    std::fs::write(dir.join("src/lib.rs"), source).unwrap();
}

#[tokio::test]
async fn editing_an_apps_source_rebuilds_and_swaps_it() {
    let root = tempfile::tempdir().unwrap();
    let package = root.path().join("watched");
    std::fs::create_dir_all(package.join("src")).unwrap();
    let sdk = repo_root().join("guest-sdk/rust");
    std::fs::write(
        package.join("Cargo.toml"),
        format!(
            "[package]\nname = \"watched\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n\
             [dependencies]\ntina4-guest = {{ path = {:?} }}\nserde_json = \"1\"\n\n[workspace]\n",
            sdk.display().to_string()
        ),
    )
    .unwrap();
    // The workspace's lock file: the same dependency versions, nothing to resolve.
    std::fs::copy(repo_root().join("Cargo.lock"), package.join("Cargo.lock")).unwrap();
    write_source(&package, "w1", "");
    let apps = root.path().join("apps");
    std::fs::create_dir_all(&apps).unwrap();
    std::fs::copy(component("probe"), apps.join("watched.wasm")).unwrap();

    let server = Server::start_with(ServerOptions {
        apps_dir: Some(apps),
        args: vec!["--watch".into(), package.display().to_string()],
        // Its own target folder: the one these tests were built in is locked.
        env: vec![(
            "CARGO_TARGET_DIR".into(),
            target_dir().join("e2e-watch").display().to_string(),
        )],
        ..Default::default()
    })
    .await;
    server
        .wait_for_log(&["watching the app's sources", "watched"])
        .await;
    let mut client = server.connect("/ws/probe/x").await;
    client.send("before").await;
    assert_eq!(client.recv().await, "v1: before");

    write_source(&package, "w2", "");
    server
        .wait_for_log_within(&["app swapped to a new version", "watched"], 1, BUILD)
        .await;
    client.send("edited").await;
    assert_eq!(client.recv().await, "w2: edited");

    write_source(&package, "w3", "fn broken( {");
    let failure = server
        .wait_for_log_within(&["build of watched failed"], 1, BUILD)
        .await;
    assert!(
        failure.contains("running version keeps serving"),
        "{failure}"
    );
    server.wait_for_log(&["unclosed delimiter"]).await; // the compiler's message is shown
    client.send("still").await;
    assert_eq!(client.recv().await, "w2: still");

    write_source(&package, "w3", "");
    server
        .wait_for_log_within(&["app swapped to a new version", "watched"], 2, BUILD)
        .await;
    client.send("fixed").await;
    assert_eq!(client.recv().await, "w3: fixed");
}

/// Edits a JavaScript or Python app under `serve --watch`: each good edit is
/// built with `tina4-wasm build` and swapped in; a broken one is shown and
/// changes nothing.
async fn edits_rebuild(language: Language, folder: &str, file: &str, broken: &str) {
    let root = tempfile::tempdir().unwrap();
    let sources = root.path().join("src");
    let app = sources.join("echo");
    std::fs::create_dir_all(&app).unwrap();
    let original = repo_root()
        .join("examples")
        .join(folder)
        .join("echo")
        .join(file);
    let source = std::fs::read_to_string(original).unwrap();
    std::fs::write(app.join(file), &source).unwrap();
    let apps = root.path().join("apps");
    std::fs::create_dir_all(&apps).unwrap();
    std::fs::copy(example(language, "echo"), apps.join("echo.wasm")).unwrap();

    let server = Server::start_with(ServerOptions {
        apps_dir: Some(apps),
        cache_dir: Some(examples_cache_dir()),
        args: vec!["--watch".into(), sources.display().to_string()],
        ..Default::default()
    })
    .await;
    server
        .wait_for_log(&["watching the app's sources", "echo"])
        .await;
    let mut client = server.connect("/ws/echo").await;
    client.send("before").await;
    assert_eq!(client.recv().await, "Echo: before");

    std::fs::write(app.join(file), source.replace("Echo: ", "Edited: ")).unwrap();
    server
        .wait_for_log_within(&["app swapped to a new version", "echo"], 1, BUILD)
        .await;
    client.send("after").await;
    assert_eq!(client.recv().await, "Edited: after");

    std::fs::write(app.join(file), format!("{source}\n{broken}\n")).unwrap();
    let failure = server
        .wait_for_log_within(&["build of echo failed"], 1, BUILD)
        .await;
    assert!(
        failure.contains("running version keeps serving"),
        "{failure}"
    );
    client.send("still").await;
    assert_eq!(client.recv().await, "Edited: still");
}

#[tokio::test]
async fn editing_a_javascript_app_rebuilds_and_swaps_it() {
    edits_rebuild(
        Language::Javascript,
        "javascript",
        "app.js",
        "function broken( {",
    )
    .await;
}

#[tokio::test]
async fn editing_a_python_app_rebuilds_and_swaps_it() {
    edits_rebuild(Language::Python, "python", "app.py", "def broken(:").await;
}
