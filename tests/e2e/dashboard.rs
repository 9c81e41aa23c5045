//! The dashboard example, in each language: a figure kept in storage, set
//! over HTTP, and pushed every second by a timer to every listener.

use serde_json::{Value, json};

use crate::support::{Server, ServerOptions, each_language, http};

each_language! {
    async fn a_figure_set_over_http_is_pushed_to_listeners_by_the_timer(language) {
        let server = Server::start_with(ServerOptions {
            apps: vec!["dashboard"],
            language,
            ..Default::default()
        })
        .await;
        let mut listener = server.connect("/ws/dashboard").await;
        assert_eq!(listener.recv_json().await, json!({"figure": 0, "tick": 0}));
        let set = http()
            .post(server.url("/api/figure"))
            .json(&json!({"value": 42}))
            .send()
            .await
            .unwrap();
        assert_eq!(set.status(), 200);
        // The next pushes carry it, each with the timer's tick.
        let mut last_tick = 0;
        loop {
            let push: Value = listener.recv_json().await;
            let tick = push["tick"].as_u64().unwrap();
            assert!(tick > last_tick, "{push}");
            last_tick = tick;
            if push["figure"] == json!(42) {
                break;
            }
        }
        // A bad figure is refused, and the one kept stays.
        let bad = http()
            .post(server.url("/api/figure"))
            .json(&json!({"value": "lots"}))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        assert_eq!(server.get_json("/api/figure").await, json!({"value": 42}));
    }
}
