//! Hot swap: a changed component file is picked up by the running server
//! without dropping a connection or losing a message.

use serde_json::json;
use tokio::sync::{mpsc, watch};

use std::time::Duration;

use crate::support::{
    Client, Install, Server, ServerOptions, component, each_language, http, still_answers,
    variant_in, with_packed_files, within,
};

/// How long compiling a new version may take (a Python app is ~19 MB).
const COMPILE: Duration = Duration::from_secs(90);

/// The answer prefix of the probe version serving after `swaps` swaps that
/// alternate v1 → v2 → v1 …
fn version_after(swaps: usize) -> &'static str {
    if swaps % 2 == 1 { "v2" } else { "v1" }
}

/// Bytes of the probe version serving after `swaps` swaps.
fn probe_bytes(swaps: usize) -> Vec<u8> {
    let name = if swaps % 2 == 1 { "probe-v2" } else { "probe" };
    std::fs::read(component(name)).unwrap()
}

/// One client's report: it has seen an answer to a message sent after swap
/// number `swaps` completed, from version `version`.
struct Seen {
    swaps: usize,
    version: String,
}

/// Sends and checks messages until told to stop. Every message must get
/// exactly one answer, from the version serving when it was sent or (if a
/// swap was under way) the next one.
async fn chat_continuously(
    mut client: Client,
    id: usize,
    swaps_done: watch::Receiver<usize>,
    seen: mpsc::UnboundedSender<Seen>,
) -> Client {
    let mut reported = None;
    for n in 0.. {
        let swaps = *swaps_done.borrow();
        if swaps == usize::MAX {
            break;
        }
        let text = format!("c{id}-m{n}");
        client.send(&text).await;
        let answer = client.recv().await;
        let (version, echoed) = answer.split_once(": ").expect("a probe answer");
        assert_eq!(echoed, text, "client {id} got an answer to another message");
        assert!(
            version == version_after(swaps) || version == version_after(swaps + 1),
            "client {id}: {answer:?} sent after {swaps} swaps"
        );
        if reported != Some(swaps) {
            reported = Some(swaps);
            let _ = seen.send(Seen {
                swaps,
                version: version.to_string(),
            });
        }
    }
    client
}

#[tokio::test]
async fn a_hundred_clients_keep_chatting_through_twenty_swaps() {
    const CLIENTS: usize = 100;
    const SWAPS: usize = 20;
    let server = Server::start(&["probe"]).await;
    let (swaps_tx, swaps_rx) = watch::channel(0usize);
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let mut clients = Vec::new();
    for id in 0..CLIENTS {
        let client = server.connect(&format!("/ws/probe/room{}", id % 10)).await;
        clients.push(tokio::spawn(chat_continuously(
            client,
            id,
            swaps_rx.clone(),
            seen_tx.clone(),
        )));
    }

    for swap in 1..=SWAPS {
        // Every client has been answered by the current version...
        let mut confirmed = 0;
        while confirmed < CLIENTS {
            let seen = within("every client to see the current version", seen_rx.recv())
                .await
                .unwrap();
            if seen.swaps == swap - 1 {
                assert_eq!(
                    seen.version,
                    version_after(swap - 1),
                    "after swap {}",
                    swap - 1
                );
                confirmed += 1;
            }
        }
        // ...then the file changes under them, each way a file can change.
        let install = Install::ALL[swap % Install::ALL.len()];
        install.put(server.apps_dir(), "probe.wasm", &probe_bytes(swap));
        server
            .wait_for_nth_log(&["app swapped to a new version", "probe"], swap)
            .await;
        swaps_tx.send(swap).unwrap();
    }
    let mut confirmed = 0;
    while confirmed < CLIENTS {
        let seen = within("the last version", seen_rx.recv()).await.unwrap();
        if seen.swaps == SWAPS {
            assert_eq!(seen.version, version_after(SWAPS));
            confirmed += 1;
        }
    }
    swaps_tx.send(usize::MAX).unwrap();
    for client in clients {
        // Still connected: one more round trip on each.
        let mut client = within("a client to finish", client).await.unwrap();
        client.send("final").await;
        assert_eq!(
            client.recv().await,
            format!("{}: final", version_after(SWAPS))
        );
    }
    assert_eq!(server.count_log(&["closing connection"]), 0);
}

#[tokio::test]
async fn a_broken_version_changes_nothing_and_the_next_good_one_is_picked_up() {
    let server = Server::start(&["probe", "chat"]).await;
    let mut client = server.connect("/ws/probe/x").await;
    let apps = server.apps_dir();
    let broken: [(&str, Vec<u8>, &str); 4] = [
        (
            "garbage",
            b"not a component at all".to_vec(),
            "not a WebAssembly file",
        ),
        (
            "another world",
            std::fs::read(component("other-world")).unwrap(),
            "does not implement the tina4:wasm/handler world",
        ),
        (
            "routes() traps",
            std::fs::read(component("bad-routes")).unwrap(),
            "routes() failed",
        ),
        (
            "a route conflict",
            std::fs::read(component("chat")).unwrap(),
            "conflicts with WS /ws/room/{roomName}",
        ),
    ];
    for (what, bytes, reason) in broken {
        Install::CopyOver.put(apps, "probe.wasm", &bytes);
        let line = server.wait_for_log(&["probe.wasm", reason]).await;
        assert!(
            line.contains("previous version keeps serving"),
            "{what}: {line}"
        );
        client.send(what).await;
        assert_eq!(client.recv().await, format!("v1: {what}"), "after {what}");
    }
    Install::WriteThenRename.put(apps, "probe.wasm", &probe_bytes(1));
    server
        .wait_for_log(&["app swapped to a new version", "probe"])
        .await;
    client.send("fixed").await;
    assert_eq!(client.recv().await, "v2: fixed");
}

#[tokio::test]
async fn a_deleted_app_closes_its_connections_with_1001_and_its_routes_404() {
    let server = Server::start(&["probe", "echo"]).await;
    let mut doomed = server.connect("/ws/probe/x").await;
    let mut bystander = server.connect("/ws/echo").await;
    std::fs::remove_file(server.apps_dir().join("probe.wasm")).unwrap();
    assert_eq!(doomed.expect_close().await.0, 1001);
    server.wait_for_log(&["app unloaded", "probe"]).await;
    let status = server.get_status("/probe/count").await;
    assert_eq!(status, 404);
    assert_eq!(server.upgrade_status("/ws/probe/x", &[]).await, Some(404));
    still_answers(&mut bystander, "still here").await;
}

#[tokio::test]
async fn a_new_file_goes_live() {
    let server = Server::start(&["echo"]).await;
    let status = server.get_status("/probe/count").await;
    assert_eq!(status, 404);
    Install::MoveIntoPlace.put(server.apps_dir(), "probe.wasm", &probe_bytes(0));
    server.wait_for_log(&["app loaded", "probe"]).await;
    let status = server.get_status("/probe/count").await;
    assert_eq!(status, 200);
}

each_language! {
    async fn names_survive_a_swap_of_the_chat_app(language) {
        let server = Server::start_in(language, &["chat"]).await;
        let mut alice = server.connect("/ws/room/lobby").await;
        let _welcome = alice.recv_json().await;
        alice
            .send_json(json!({"type": "set-name", "name": "Alice"}))
            .await;
        let _renamed = alice.recv_json().await;

        Install::CopyOver.put(
            server.apps_dir(),
            "chat.wasm",
            &variant_in(language, "chat", "rebuilt"),
        );
        // A new version is compiled (seconds for a 19 MB Python app).
        server
            .wait_for_log_within(&["app swapped to a new version", "chat"], 1, COMPILE)
            .await;

        alice
            .send_json(json!({"type": "chat", "text": "still me?"}))
            .await;
        let chat = alice.recv_json().await;
        assert_eq!(chat["from"], "Alice", "{chat}");
        let mut bob = server.connect("/ws/room/lobby").await;
        assert_eq!(bob.recv_json().await["online"], 2);
        let _joined = alice.recv_json().await;
        alice.close().await;
        assert_eq!(bob.recv_json().await["message"], "Alice left the room");
    }
}

#[tokio::test]
async fn attachments_survive_a_restart_of_the_app_and_are_limited_in_size() {
    let server = Server::start(&["probe"]).await;
    let mut client = server.connect("/ws/probe/x").await;
    client.send("attach:kept").await;
    client.send("attached").await;
    assert_eq!(client.recv().await, "kept");
    // Another connection crashes the app; its instance is replaced.
    let mut crasher = server.connect("/ws/probe/y").await;
    crasher.send("panic").await;
    assert_eq!(crasher.expect_close().await.0, 1011);
    client.send("attached").await;
    assert_eq!(client.recv().await, "kept");
    // Over the limit: refused, the old value stays.
    client.send(&format!("attach:{}", "x".repeat(20_000))).await;
    client.send("attached").await;
    assert_eq!(client.recv().await, "kept");
    server.wait_for_log(&["probe", "larger than"]).await;
}

#[tokio::test]
async fn a_restart_with_a_warm_cache_compiles_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let apps = tempfile::tempdir().unwrap();
    for name in ["echo", "chat", "probe"] {
        std::fs::copy(component(name), apps.path().join(format!("{name}.wasm"))).unwrap();
    }
    let options = || ServerOptions {
        apps_dir: Some(apps.path().to_path_buf()),
        cache_dir: Some(cache.path().to_path_buf()),
        ..Default::default()
    };
    let cold = Server::start_with(options()).await;
    assert_eq!(
        cold.count_log(&["app loaded", "origin=compiled"]),
        3,
        "{}",
        cold.log()
    );
    assert_eq!(cold.terminate().await, Some(0));

    let warm = Server::start_with(options()).await;
    assert_eq!(
        warm.count_log(&["app loaded", "origin=from cache"]),
        3,
        "{}",
        warm.log()
    );
    assert_eq!(warm.count_log(&["compiled"]), 0);
    let mut client = warm.connect("/ws/echo").await;
    still_answers(&mut client, "warm").await;
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_detected_and_rebuilt() {
    let cache = tempfile::tempdir().unwrap();
    let options = || ServerOptions {
        apps: vec!["echo"],
        cache_dir: Some(cache.path().to_path_buf()),
        ..Default::default()
    };
    let first = Server::start_with(options()).await;
    assert_eq!(first.terminate().await, Some(0));
    let entries = cache_entries(cache.path());
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entries[0], &bytes).unwrap();

    let second = Server::start_with(options()).await;
    second
        .wait_for_log(&[
            "discarding a bad compile cache entry",
            "signature does not match",
        ])
        .await;
    assert_eq!(second.count_log(&["app loaded", "origin=compiled"]), 1);
    let mut client = second.connect("/ws/echo").await;
    still_answers(&mut client, "rebuilt").await;
    assert_eq!(second.terminate().await, Some(0));

    // The rebuilt entry is sound: the next start uses it.
    let third = Server::start_with(options()).await;
    assert_eq!(third.count_log(&["app loaded", "origin=from cache"]), 1);
}

/// The compiled components in a cache folder.
fn cache_entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    entries.sort();
    entries
}

#[tokio::test]
async fn a_planted_cache_entry_is_refused_and_an_unsafe_folder_is_not_used() {
    let cache = tempfile::tempdir().unwrap();
    let options = |apps| ServerOptions {
        apps,
        cache_dir: Some(cache.path().to_path_buf()),
        ..Default::default()
    };
    let first = Server::start_with(options(vec!["echo"])).await;
    assert_eq!(first.terminate().await, Some(0));
    let [echo] = cache_entries(cache.path()).try_into().unwrap();
    let first = Server::start_with(options(vec!["probe"])).await;
    assert_eq!(first.terminate().await, Some(0));
    // Another component's compiled code, planted under echo's name.
    let probe = cache_entries(cache.path())
        .into_iter()
        .find(|p| *p != echo)
        .unwrap();
    std::fs::copy(&probe, &echo).unwrap();
    let second = Server::start_with(options(vec!["echo"])).await;
    second
        .wait_for_log(&[
            "discarding a bad compile cache entry",
            "signature does not match",
        ])
        .await;
    let mut client = second.connect("/ws/echo").await;
    still_answers(&mut client, "its own code").await;
    assert_eq!(second.terminate().await, Some(0));

    // A folder others may write to is not trusted at all.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let third = Server::start_with(options(vec!["echo"])).await;
    third
        .wait_for_log(&["compile cache disabled", "others may write"])
        .await;
    assert_eq!(third.count_log(&["app loaded", "origin=compiled"]), 1);
}

#[tokio::test]
async fn a_version_packs_its_templates_and_public_files_and_they_swap_with_its_code() {
    let root = tempfile::tempdir().unwrap();
    let apps = root.path().join("apps");
    // A folder beside the component, as in development; a component that
    // packs its files serves those instead.
    std::fs::create_dir_all(apps.join("broad/templates")).unwrap();
    std::fs::write(apps.join("broad/templates/page.txt"), "from the folder").unwrap();
    let version = |tag: &str| {
        let page = format!("{tag}: {{{{ 6 * 7 }}}}");
        with_packed_files(
            "broad",
            &[("templates/page.txt", &page), ("public/note.txt", tag)],
        )
    };
    std::fs::write(apps.join("broad.wasm"), version("v1")).unwrap();
    let server = Server::start_with(ServerOptions {
        apps_dir: Some(apps.clone()),
        ..Default::default()
    })
    .await;
    let get = |path: &str| {
        let url = server.url(path);
        async move { http().get(url).send().await.unwrap().text().await.unwrap() }
    };
    assert_eq!(get("/broad/render/page.txt").await, "v1: 42");
    assert_eq!(get("/note.txt").await, "v1");

    // One file is the whole version: its templates and statics swap with it.
    Install::WriteThenRename.put(&apps, "broad.wasm", &version("v2"));
    server
        .wait_for_log(&["app swapped to a new version", "broad"])
        .await;
    assert_eq!(get("/broad/render/page.txt").await, "v2: 42");
    assert_eq!(get("/note.txt").await, "v2");

    // A packed path out of its folders refuses the version, by file and
    // reason; the running one keeps serving.
    let hostile = with_packed_files("broad", &[("templates/../../../etc/passwd", "x")]);
    Install::WriteThenRename.put(&apps, "broad.wasm", &hostile);
    server
        .wait_for_log(&["broad.wasm", "is not a path in templates/ or public/"])
        .await;
    assert_eq!(get("/note.txt").await, "v2");
}
