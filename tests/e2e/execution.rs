//! The execution model: guest calls are futures on the host's async
//! runtime, so a guest that spins or sleeps never holds a worker beyond one
//! epoch tick; an event for an idle app runs at once on the task that read
//! it, one for a busy app queues in order behind the others; a call runs to
//! its end even if its caller leaves; and an idle app hibernates (its
//! instance dropped, its connections kept) and wakes on its next event.

use std::time::Duration;

use crate::support::{
    Language, Server, ServerOptions, eventually, http, install_app, metric, still_answers,
};

/// The probe's module-level counter: requests served by its instance.
async fn served(server: &Server) -> u64 {
    let body = server.get_json("/probe/count").await;
    body["served"].as_u64().expect("served is a number")
}

#[tokio::test]
async fn an_idle_app_hibernates_and_wakes_with_its_connections_intact() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        // Long enough that no pause between two steps of a busy test
        // machine hibernates the app early.
        args: vec!["--hibernate-after-ms".into(), "1000".into()],
        ..Default::default()
    })
    .await;
    let mut alice = server.connect("/ws/probe/room").await;
    let mut bob = server.connect("/ws/probe/room").await;
    alice.send("attach:alice").await;
    alice.send("count").await;
    assert_eq!(alice.recv().await, "2");
    assert_eq!(served(&server).await, 1);
    assert_eq!(served(&server).await, 2);

    // Nothing happens for a while: the app hibernates.
    let hibernations =
        |text: &str| metric(text, "tina4_app_hibernations_total", &[("app", "probe")]);
    eventually("the probe to hibernate", || async {
        (hibernations(&server.metrics().await) >= 1.0).then_some(())
    })
    .await;

    // Its connections are still open, their attachments and the count
    // intact; a message to one wakes the app.
    alice.send("attached").await;
    assert_eq!(alice.recv().await, "alice");
    bob.send("count").await;
    assert_eq!(bob.recv().await, "2");
    bob.send("shout").await;
    assert!(alice.recv().await.ends_with(" shouts"));
    // Module-level state went with the instance, as on a swap.
    assert_eq!(served(&server).await, 1);
    let text = server.metrics().await;
    assert!(metric(&text, "tina4_app_wake_seconds_count", &[("app", "probe")]) >= 1.0);
    assert_eq!(
        metric(&text, "tina4_guest_failures_total", &[("app", "probe")]),
        0.0,
        "a wake is not a failure"
    );
    // Closing after a wake still reaches the app, once per connection.
    alice.close().await;
    bob.send("count").await;
    assert_eq!(bob.recv().await, "1");

    // The events after the wake ran at once, on their connections' tasks;
    // the hibernation clock still counts from them.
    eventually("the probe to hibernate again", || async {
        (hibernations(&server.metrics().await) >= 2.0).then_some(())
    })
    .await;
    bob.send("count").await;
    assert_eq!(bob.recv().await, "1");
}

/// Events sent to the probe, by how they ran: `at_once` or `queued`.
async fn events(server: &Server, ran: &str) -> f64 {
    let text = server.metrics().await;
    metric(
        &text,
        "tina4_app_events_total",
        &[("app", "probe"), ("ran", ran)],
    )
}

#[tokio::test]
async fn an_idle_app_runs_an_event_at_once_and_a_busy_one_queues_it_in_order() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        args: vec!["--event-timeout-ms".into(), "20000".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(served(&server).await, 1);
    let mut observer = server.connect("/ws/probe/room").await;
    for n in 0..5 {
        observer.send(&format!("m{n}")).await;
        assert_eq!(observer.recv().await, format!("v1: m{n}"));
    }
    let mut shouters = Vec::new();
    for _ in 0..10 {
        let mut shouter = server.connect("/ws/probe/room").await;
        shouter.send("id").await;
        let id = shouter.recv().await;
        shouters.push((shouter, id));
    }
    // One at a time, each to an idle app: none waited.
    assert_eq!(events(&server, "queued").await, 0.0);
    assert!(
        events(&server, "at_once").await >= 27.0,
        "a request, eleven opens, five messages and ten ids"
    );

    // A slow request keeps the app busy; each shout sent meanwhile queues,
    // and they run after it in the order they came.
    let slow = tokio::spawn({
        let url = server.url("/probe/slow?ms=8000");
        async move { http().get(url).send().await.map(|r| r.status().as_u16()) }
    });
    server.wait_for_log(&["slow request started"]).await;
    for (n, (shouter, _)) in shouters.iter_mut().enumerate() {
        shouter.send("shout").await;
        eventually("the shout to queue", || async {
            (events(&server, "queued").await > n as f64).then_some(())
        })
        .await;
    }
    // The observer's own shout queues behind theirs.
    observer.send("shout").await;
    eventually("the observer's shout to queue", || async {
        (events(&server, "queued").await > 10.0).then_some(())
    })
    .await;
    assert!(!slow.is_finished(), "the shouts waited behind the request");
    for (_, id) in &shouters {
        assert_eq!(observer.recv().await, format!("{id} shouts"));
    }
    observer.send("id").await;
    let observer_id = observer.recv().await;
    for (shouter, _) in &mut shouters {
        let mut heard = Vec::new();
        while heard.last() != Some(&format!("{observer_id} shouts")) {
            heard.push(shouter.recv().await);
        }
    }
    assert_eq!(slow.await.unwrap().unwrap(), 200);
    // The same instance served everything: nothing was lost or restarted.
    assert_eq!(served(&server).await, 2);
    let text = server.metrics().await;
    assert_eq!(
        metric(&text, "tina4_guest_failures_total", &[("app", "probe")]),
        0.0
    );
}

#[tokio::test]
async fn replies_of_an_event_running_at_once_are_written_as_it_goes() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        args: vec!["--outbox-capacity".into(), "4".into()],
        ..Default::default()
    })
    .await;
    let mut client = server.connect("/ws/probe/room").await;
    // Ten replies from one event on the connection's own task, more than
    // its outbox holds: they leave while the event sleeps between them.
    client.send("trickle:10").await;
    for n in 0..10 {
        assert_eq!(client.recv().await, format!("t{n}"));
    }
    client.send("after").await;
    assert_eq!(client.recv().await, "v1: after");
}

#[tokio::test]
async fn a_request_whose_caller_stops_waiting_still_runs_to_its_end() {
    let server = Server::start_with(ServerOptions {
        apps: vec!["probe"],
        args: vec![
            "--event-timeout-ms".into(),
            "5000".into(),
            "--http-timeout-ms".into(),
            "300".into(),
        ],
        ..Default::default()
    })
    .await;
    assert_eq!(served(&server).await, 1);
    // The HTTP deadline passes while the guest is mid-call: the client gets
    // its 503, and the call goes on to its end.
    assert_eq!(server.get_status("/probe/slow?ms=1500").await, 503);
    // The call ends on its own, recorded as any other...
    let http_calls = |text: &str| {
        metric(
            text,
            "tina4_handler_seconds_count",
            &[("app", "probe"), ("event", "http")],
        )
    };
    eventually("the slow call to end", || async {
        (http_calls(&server.metrics().await) >= 2.0).then_some(())
    })
    .await;
    // ...and the app kept its instance and its state: the next request
    // counts on from before.
    assert_eq!(served(&server).await, 2);
    let text = server.metrics().await;
    assert_eq!(
        metric(&text, "tina4_guest_failures_total", &[("app", "probe")]),
        0.0
    );
}

#[tokio::test]
async fn a_spinning_or_sleeping_guest_does_not_stall_other_apps() {
    // One worker thread: a guest call that held it would stop every socket.
    let server = Server::start_with(ServerOptions {
        apps: vec!["hostile", "probe", "echo"],
        args: vec!["--event-timeout-ms".into(), "3000".into()],
        env: vec![("TOKIO_WORKER_THREADS".into(), "1".into())],
        ..Default::default()
    })
    .await;
    let mut bystander = server.connect("/ws/echo").await;
    still_answers(&mut bystander, "before").await;

    let mut spinner = server.connect("/ws/hostile").await;
    spinner.send("spin").await;
    // A sleep in a guest is a timer on the runtime, not a blocked worker.
    let sleeper = tokio::spawn({
        let url = server.url("/probe/slow?ms=2000");
        async move { http().get(url).send().await.map(|r| r.status().as_u16()) }
    });
    server.wait_for_log(&["slow request started"]).await;
    // The spin runs until its deadline, three seconds from now; echoes
    // go round meanwhile, each between two of its slices.
    for n in 0..10 {
        still_answers(&mut bystander, &format!("during {n}")).await;
    }
    assert!(
        !sleeper.is_finished(),
        "the echoes took as long as the two-second sleep"
    );
    let (code, _) = spinner.expect_close().await;
    assert_eq!(code, 1011, "the spin ends at its deadline");
    assert_eq!(sleeper.await.unwrap().unwrap(), 200);
    still_answers(&mut bystander, "after").await;
}

#[tokio::test]
async fn apps_of_one_component_share_its_code_but_not_their_state() {
    let probe = std::fs::read(crate::support::component("probe")).expect("the probe component");
    let server = Server::start_with(ServerOptions {
        files: vec![
            ("first.wasm", probe.clone()),
            ("first.toml", b"hosts = [\"first.test\"]\n".to_vec()),
            ("second.wasm", probe),
            ("second.toml", b"hosts = [\"second.test\"]\n".to_vec()),
        ],
        ..Default::default()
    })
    .await;
    // Loaded once: the second app takes the first one's compiled code.
    assert_eq!(
        server.count_log(&["app loaded", "origin=shared"]),
        1,
        "{}",
        server.log()
    );
    let served = |host: &'static str| {
        let url = server.url("/probe/count");
        async move {
            let body: serde_json::Value = http()
                .get(url)
                .header("host", host)
                .send()
                .await
                .expect("GET /probe/count")
                .json()
                .await
                .expect("a JSON count");
            body["served"].as_u64()
        }
    };
    assert_eq!(served("first.test").await, Some(1));
    assert_eq!(served("first.test").await, Some(2));
    // Each app has its own instance and its own module-level state.
    assert_eq!(served("second.test").await, Some(1));
}

#[tokio::test]
async fn a_cold_compile_does_not_stay_in_the_servers_memory() {
    // A JavaScript app the host has never compiled: the compiler peaks at
    // hundreds of MiB, in a child process, never in the server. It is
    // added once the server listens, so a slow compile on a busy machine
    // has a time limit of its own.
    let cold = tempfile::tempdir().expect("an empty compile cache");
    let server = Server::start_with(ServerOptions {
        cache_dir: Some(cold.path().to_path_buf()),
        args: vec!["--fast-compile".into()],
        ..Default::default()
    })
    .await;
    install_app(Language::Javascript, "echo", server.apps_dir());
    server
        .wait_for_log_within(
            &["app loaded", "echo", "origin=compiled"],
            1,
            Duration::from_secs(120),
        )
        .await;
    let mut client = server.connect("/ws/echo").await;
    still_answers(&mut client, "compiled").await;
    let peak = server.peak_rss();
    assert!(
        peak < 160 << 20,
        "the server's memory peaked at {} MiB while it compiled",
        peak >> 20
    );
}
