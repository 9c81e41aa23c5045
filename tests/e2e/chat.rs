//! The chat example, message for message as the Tina4 chapter specifies.

use serde_json::{Value, json};

use crate::support::{Client, Server, content_type, each_language, http};

/// Joins `room` and returns the client with its welcome message.
async fn join(server: &Server, room: &str) -> (Client, Value) {
    let mut client = server.connect(&format!("/ws/room/{room}")).await;
    let welcome = client.recv_json().await;
    (client, welcome)
}

fn is_hh_mm_ss(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
}

each_language! {
    async fn joining_naming_chatting_and_leaving(language) {
        let server = Server::start_in(language, &["chat"]).await;
        let (mut alice, welcome) = join(&server, "lobby").await;
        assert_eq!(welcome["type"], "system");
        assert!(
            welcome["message"]
                .as_str()
                .unwrap()
                .starts_with("Welcome to room: lobby."),
            "{welcome}"
        );
        assert_eq!(welcome["online"], 1);

        let (mut bob, welcome) = join(&server, "lobby").await;
        assert_eq!(welcome["online"], 2);
        assert_eq!(
            alice.recv_json().await,
            json!({"type": "system", "message": "A new user joined", "online": 2})
        );

        alice
            .send_json(json!({"type": "set-name", "name": "Alice"}))
            .await;
        let renamed = json!({"type": "system", "message": "Anonymous changed their name to Alice"});
        assert_eq!(alice.recv_json().await, renamed);
        // Bob's first message after his welcome: he was excluded from his own join notice.
        assert_eq!(bob.recv_json().await, renamed);

        alice
            .send_json(json!({"type": "chat", "text": "hi <b>bob</b>"}))
            .await;
        for client in [&mut alice, &mut bob] {
            let chat = client.recv_json().await;
            assert_eq!(chat["type"], "chat");
            assert_eq!(chat["from"], "Alice");
            assert_eq!(chat["text"], "hi <b>bob</b>");
            assert!(is_hh_mm_ss(chat["timestamp"].as_str().unwrap()), "{chat}");
        }

        bob.send_json(json!({"type": "set-name", "name": "Bob"}))
            .await;
        assert_eq!(
            alice.recv_json().await["message"],
            "Anonymous changed their name to Bob"
        );
        bob.close().await;
        assert_eq!(
            alice.recv_json().await,
            json!({"type": "system", "message": "Bob left the room", "online": 1})
        );
    }
}

each_language! {
    async fn rooms_are_isolated(language) {
        let server = Server::start_in(language, &["chat"]).await;
        let (mut a, _) = join(&server, "a").await;
        let (mut b, _) = join(&server, "b").await;
        b.send_json(json!({"type": "chat", "text": "for room b only"}))
            .await;
        assert_eq!(b.recv_json().await["text"], "for room b only");
        // Events of one app run in order, so had room b's chat reached room a it
        // would arrive before this.
        a.send_json(json!({"type": "chat", "text": "marker"})).await;
        assert_eq!(a.recv_json().await["text"], "marker");
    }
}

each_language! {
    async fn counts_follow_fifty_clients_joining_and_leaving(language) {
        let server = Server::start_in(language, &["chat"]).await;
        let (mut watcher, welcome) = join(&server, "count").await;
        assert_eq!(welcome["online"], 1);
        let mut others = Vec::new();
        for i in 2..=50 {
            let (client, welcome) = join(&server, "count").await;
            assert_eq!(welcome["online"], i, "the joiner counts itself during open");
            let notice = watcher.recv_json().await;
            assert_eq!(notice["message"], "A new user joined");
            assert_eq!(notice["online"], i);
            others.push(client);
        }
        // Another room does not change this one's count.
        let (_elsewhere, welcome) = join(&server, "other").await;
        assert_eq!(welcome["online"], 1);
        for remaining in (1..50).rev() {
            others.pop().unwrap().close().await;
            let notice = watcher.recv_json().await;
            assert_eq!(notice["message"], "Anonymous left the room");
            assert_eq!(
                notice["online"], remaining,
                "the leaver no longer counts during close"
            );
        }
    }
}

each_language! {
    async fn bad_messages_get_an_error_reply_and_the_room_is_unaffected(language) {
        let server = Server::start_in(language, &["chat"]).await;
        let (mut alice, _) = join(&server, "r").await;
        let (mut bob, _) = join(&server, "r").await;
        let _ = alice.recv_json().await; // bob joined
        for bad in [
            "not json",
            "{\"type\":\"dance\"}",
            "{\"type\":\"set-name\"}",
            "{\"type\":\"set-name\",\"name\":\"   \"}",
        ] {
            bob.send(bad).await;
            let reply = bob.recv_json().await;
            assert_eq!(reply["type"], "error", "{bad}: {reply}");
        }
        bob.send_binary(b"\x00\x01").await;
        assert_eq!(bob.recv_json().await["type"], "error");
        // Alice saw none of it: her next message is this chat.
        bob.send_json(json!({"type": "chat", "text": "still here"}))
            .await;
        assert_eq!(alice.recv_json().await["text"], "still here");
        assert_eq!(bob.recv_json().await["text"], "still here");
    }
}

each_language! {
    async fn the_room_page_escapes_the_room_name(language) {
        let server = Server::start_in(language, &["chat"]).await;
        let response = http()
            .get(server.url("/room/%3Cscript%3Ealert(1)%3C!script%3E"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(content_type(&response).starts_with("text/html"));
        let page = response.text().await.unwrap();
        assert!(page.contains("&lt;script&gt;alert(1)&lt;"), "{page}");
        assert!(!page.contains("<script>alert(1)"));
        // Rendered from the app's templates: the base layout and an include.
        assert!(page.starts_with("<!doctype html>"), "{page}");
        assert!(page.contains(r#"<input id="name" placeholder="Your name" maxlength="40">"#));
        assert!(page.contains(r#"<script src="/js/frond.js"></script>"#));
        assert!(page.contains(r#"<script src="/js/chat.js"></script>"#));
        // Its script and style come from the app's public folder.
        for (asset, kind) in [
            ("/js/chat.js", "text/javascript"),
            ("/css/chat.css", "text/css"),
        ] {
            let response = http().get(server.url(asset)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{asset}");
            assert!(content_type(&response).starts_with(kind));
            let script = response.text().await.unwrap();
            assert!(
                !script.contains("innerHTML"),
                "{asset} never inserts text as HTML"
            );
        }
    }
}

each_language! {
    async fn a_joiner_gets_the_room_s_recent_messages_even_after_a_restart(language) {
        let data = tempfile::tempdir().unwrap();
        let start = || crate::support::Server::start_with(crate::support::ServerOptions {
            apps: vec!["chat"],
            language,
            args: vec!["--data-dir".into(), data.path().display().to_string()],
            ..Default::default()
        });
        let server = start().await;
        let (mut alice, _) = join(&server, "kept").await;
        for i in 0..55 {
            alice.send_json(json!({"type": "chat", "text": format!("m{i}")})).await;
            assert_eq!(alice.recv_json().await["text"], format!("m{i}"));
        }
        drop(alice);
        server.terminate().await;

        let server = start().await;
        let (mut joiner, _) = join(&server, "kept").await;
        joiner.send_json(json!({"type": "recent"})).await;
        let recent = joiner.recv_json().await;
        assert_eq!(recent["type"], "recent");
        let texts: Vec<&str> = recent["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = (5..55).map(|i| format!("m{i}")).collect();
        assert_eq!(texts, expected, "the last 50, oldest first");
        // Another room keeps its own.
        let (mut elsewhere, _) = join(&server, "other").await;
        elsewhere.send_json(json!({"type": "recent"})).await;
        assert_eq!(elsewhere.recv_json().await["messages"], json!([]));
    }
}
