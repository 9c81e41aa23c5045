//! Hostile apps: each attack of the `hostile` test app is contained with a
//! clear log line, the app is re-instantiated when it trapped, and another
//! app's open connection keeps answering throughout.

use tokio_tungstenite::tungstenite::Message;

use crate::support::{Server, ServerOptions, still_answers};

/// A server with the hostile app, a bystander app (echo) and a neighbour
/// tenant (probe).
async fn arena() -> Server {
    Server::start_with(ServerOptions {
        apps: vec!["hostile", "echo", "probe"],
        args: vec!["--app-memory-mb".into(), "32".into()],
        ..Default::default()
    })
    .await
}

/// The hostile app answers again on a new connection (fresh instance).
async fn recovered(server: &Server) {
    let mut client = server.connect("/ws/hostile").await;
    client.send("env").await;
    assert_eq!(client.recv().await, "0");
}

#[tokio::test]
async fn traps_close_only_the_attacker_and_the_app_comes_back() {
    let server = arena().await;
    let mut bystander = server.connect("/ws/echo").await;
    for (n, (attack, reason)) in [
        ("spin", "CPU time limit"),
        ("memory", "unreachable"), // the allocator aborts when memory.grow fails
        ("recurse", "out of bounds memory access"), // below the shadow stack
    ]
    .into_iter()
    .enumerate()
    {
        let mut attacker = server.connect("/ws/hostile").await;
        attacker.send(attack).await;
        // While it spins, allocates or recurses, other apps answer.
        still_answers(&mut bystander, attack).await;
        assert_eq!(attacker.expect_close().await.0, 1011, "{attack}");
        let line = server
            .wait_for_nth_log(&["guest failed", "hostile"], n + 1)
            .await;
        assert!(line.contains(reason), "{attack}: {line}");
        recovered(&server).await;
    }
    still_answers(&mut bystander, "after all").await;
}

#[tokio::test]
async fn an_output_flood_is_rate_limited() {
    let server = arena().await;
    let mut bystander = server.connect("/ws/echo").await;
    let mut attacker = server.connect("/ws/hostile").await;
    attacker.send("print").await;
    still_answers(&mut bystander, "during the flood").await;
    assert_eq!(attacker.recv().await, "printed");
    attacker.send("print").await;
    assert_eq!(attacker.recv().await, "printed");
    // The second flood reports the lines the first one lost.
    server.wait_for_log(&["lines dropped", "hostile"]).await;
    let logged = server.count_log(&["flooding the log"]);
    assert!(logged < 1_000, "{logged} of 200000 lines reached the log");
}

#[tokio::test]
async fn the_logging_import_shares_the_output_limit_and_cannot_forge_lines() {
    let server = arena().await;
    let mut bystander = server.connect("/ws/echo").await;
    let mut attacker = server.connect("/ws/hostile").await;
    // A line break in a message stays inside its line.
    let forged = "2026-01-01T00:00:00.000000Z  INFO tina4_wasm::server: admin signed in";
    attacker.send(&format!("forge {forged}")).await;
    assert_eq!(attacker.recv().await, "forged");
    server.wait_for_log(&["a line\\u{a}2026-01-01"]).await;
    assert!(
        !server
            .log()
            .lines()
            .any(|line| line.starts_with("2026-01-01"))
    );
    // A flood through the logging import meets stdout's limit.
    attacker.send("log").await;
    still_answers(&mut bystander, "during the flood").await;
    assert_eq!(attacker.recv().await, "logged");
    let logged = server.count_log(&["flooding the error log"]);
    assert!(logged < 1_000, "{logged} of 100000 lines reached the log");
}

#[tokio::test]
async fn a_broadcast_flood_evicts_only_its_own_slow_clients() {
    let server = arena().await;
    let mut bystander = server.connect("/ws/echo").await;
    let mut neighbour = server.connect("/ws/probe/n").await;
    let mut attacker = server.connect("/ws/hostile").await;
    let _audience = server.connect("/ws/hostile").await; // never reads
    attacker.send("broadcast").await;
    still_answers(&mut bystander, "during the broadcast flood").await;
    neighbour.send("fine").await;
    assert_eq!(neighbour.recv().await, "v1: fine");
    server
        .wait_for_log(&["closing connection", "code=1008", "slow consumer"])
        .await;
    still_answers(&mut bystander, "after").await;
}

#[tokio::test]
async fn another_tenants_paths_and_connections_are_out_of_reach() {
    let server = arena().await;
    let mut neighbour = server.connect("/ws/probe/n").await;
    neighbour.send("id").await;
    let neighbour_id = neighbour.recv().await;
    let mut attacker = server.connect("/ws/hostile").await;
    for attack in [
        "push /ws/probe/n".to_string(),
        format!("send {neighbour_id}"),
        format!("close {neighbour_id}"),
    ] {
        attacker.send(&attack).await;
        let outcome = attacker.recv().await;
        assert!(
            outcome.starts_with("Err(") && outcome.contains("NotPermitted("),
            "{attack}: {outcome}"
        );
    }
    // Nothing reached the neighbour, which is still open.
    neighbour.send("untouched").await;
    assert_eq!(neighbour.recv().await, "v1: untouched");
}

#[tokio::test]
async fn files_sockets_and_environment_are_not_there() {
    let server = arena().await;
    let mut attacker = server.connect("/ws/hostile").await;
    for attack in [
        "file /etc/passwd".to_string(),
        "file Cargo.toml".to_string(),
        format!("socket {}", server.addr),
    ] {
        attacker.send(&attack).await;
        let outcome = attacker.recv().await;
        assert!(outcome.starts_with("Err("), "{attack}: {outcome}");
    }
    attacker.send("env").await;
    assert_eq!(attacker.recv().await, "0");
}

#[tokio::test]
async fn a_sleep_cannot_outlast_the_event_deadline() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe", "echo"],
        args: vec!["--event-timeout-ms".into(), "1000".into()],
        ..Default::default()
    })
    .await;
    let mut bystander = server.connect("/ws/echo").await;
    // A minute's sleep would outlive every wait of this test.
    let response = crate::support::http()
        .get(server.url("/probe/slow?ms=60000"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    server
        .wait_for_log(&["guest failed", "would outlast the event's CPU deadline"])
        .await;
    // A short one is kept.
    let response = crate::support::http()
        .get(server.url("/probe/slow?ms=10"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "finished");
    still_answers(&mut bystander, "after the sleep").await;
}

#[tokio::test]
async fn a_guest_hoarding_wasi_handles_meets_a_bound_and_nobody_else_notices() {
    let server = arena().await;
    let mut bystander = server.connect("/ws/echo").await;
    let mut attacker = server.connect("/ws/hostile").await;
    // Each handle holds 16,000 bytes of headers in host memory: a million
    // of them (wasmtime's default bound) would be 16 GB.
    // A set of headers past 16 KiB is refused outright.
    attacker.send("wide").await;
    assert_eq!(attacker.expect_close().await.0, 1011);
    let line = server.wait_for_log(&["guest failed", "hostile"]).await;
    assert!(
        line.contains("total size of fields exceeds limit"),
        "{line}"
    );
    let mut attacker = server.connect("/ws/hostile").await;
    attacker.send("hoard").await;
    let mut held = 0;
    let code = loop {
        match attacker.next_message().await {
            Message::Text(text) => {
                held = text
                    .strip_prefix("holding ")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected {text}"));
            }
            Message::Close(frame) => break frame.map(|f| u16::from(f.code)),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, Some(1011));
    assert!((1024..4096).contains(&held), "held {held} handles");
    let line = server
        .wait_for_nth_log(&["guest failed", "hostile"], 2)
        .await;
    assert!(line.contains("resource table"), "{line}");
    recovered(&server).await;
    still_answers(&mut bystander, "after the hoard").await;
}

#[tokio::test]
async fn answers_kept_unread_are_held_within_a_budget_in_bytes() {
    let mut upstream = crate::outbound::Upstream::start().await;
    // Answers of at most 1,000 bytes, two in flight: 2,000 bytes of
    // answers in all. A request needs room for a whole answer to go out.
    let settings = format!(
        "allowed_outbound_hosts = [\"{}\"]\nevent_timeout_ms = 5000\n\
         [outbound]\nmax_concurrent = 2\nmax_response_bytes = 1000\n",
        upstream.url("")
    );
    let server = Server::start_with(ServerOptions {
        apps: vec!["hostile"],
        files: vec![("hostile.toml", settings.into_bytes())],
        args: vec!["--outbound-hosts".into(), "*://127.0.0.1:*".into()],
        ..Default::default()
    })
    .await;
    let mut attacker = server.connect("/ws/hostile").await;
    let keep = |n: usize| format!("keep 127.0.0.1:{}/size?n={n}", upstream.port);
    let busy = "too many requests in flight";
    // Each answer, read by the host but not by the guest, stays in host
    // memory: two of 600 bytes leave no room for a third.
    attacker.send(&keep(600)).await;
    assert_eq!(attacker.recv().await, format!("kept 2 then {busy}"));
    // What is held stays counted at the next event.
    attacker.send(&keep(100)).await;
    assert_eq!(attacker.recv().await, format!("kept 2 then {busy}"));
    // Let go, the room is whole again; its bytes, not the answers' count,
    // are what runs out: eleven of 100 bytes.
    attacker.send("let-go").await;
    assert_eq!(attacker.recv().await, "let go");
    attacker.send(&keep(100)).await;
    assert_eq!(attacker.recv().await, format!("kept 11 then {busy}"));
    server
        .wait_for_log(&["outbound", "failed", "kept unread"])
        .await;
    // A request refused for want of room was never sent.
    for n in [600, 600].into_iter().chain([100; 11]) {
        assert_eq!(upstream.next().await, format!("GET /size?n={n} "));
    }
    assert!(upstream.untouched(), "no refused request went out");
}
