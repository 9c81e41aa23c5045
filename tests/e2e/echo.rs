//! The echo example, in every language: echo, mirror, a topic feed, and a
//! small JSON route.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Server, content_type, each_language, http, still_answers};

each_language! {
    async fn echo_answers_text_with_the_chapter_prefix_and_binary_verbatim(language) {
        let server = Server::start_in(language, &["echo"]).await;
        let mut client = server.connect("/ws/echo").await;
        still_answers(&mut client, "hello").await;
        still_answers(&mut client, "").await;
        still_answers(&mut client, "naïve ☃ 𝄞").await;
        client.send_binary(&[0, 1, 2, 255]).await;
        assert_eq!(
            client.next_message().await,
            Message::binary(vec![0, 1, 2, 255])
        );
        client.close().await;
    }
}

each_language! {
    async fn mirror_answers_exactly_what_was_sent(language) {
        let server = Server::start_in(language, &["echo"]).await;
        let mut client = server.connect("/ws/mirror").await;
        let large = "x".repeat(100_000);
        for text in ["plain", "", "ünïcödé 🎉", large.as_str()] {
            client.send(text).await;
            assert_eq!(client.recv().await, text);
        }
        let bytes: Vec<u8> = (0..=255).collect();
        client.send_binary(&bytes).await;
        assert_eq!(client.next_message().await, Message::binary(bytes));
    }
}

each_language! {
    async fn a_topic_feed_reaches_everyone_on_the_topic_and_no_one_else(language) {
        let server = Server::start_in(language, &["echo"]).await;
        // Each client's own first message comes back to it once it is on
        // the topic: from then on it hears everything published there.
        let mut elsewhere = server.connect("/ws/broadcast/sport").await;
        still_on_topic(&mut elsewhere, "sport fan here").await;
        let mut alice = server.connect("/ws/broadcast/news").await;
        still_on_topic(&mut alice, "alice here").await;
        let mut bob = server.connect("/ws/broadcast/news").await;
        still_on_topic(&mut bob, "bob here").await;
        assert_eq!(alice.recv().await, "bob here");

        alice.send("headline").await;
        assert_eq!(alice.recv().await, "headline", "the sender is included");
        assert_eq!(bob.recv().await, "headline");
        bob.send_binary(&[7, 7]).await;
        assert_eq!(alice.next_message().await, Message::binary(vec![7, 7]));
        // The other topic's next message is its own, not the news.
        elsewhere.send("score").await;
        assert_eq!(elsewhere.recv().await, "score");
    }
}

/// Sends `text` on a topic and waits for it to come back.
async fn still_on_topic(client: &mut crate::support::Client, text: &str) {
    client.send(text).await;
    assert_eq!(client.recv().await, text);
}

each_language! {
    async fn hello_answers_json_with_the_decoded_name(language) {
        let server = Server::start_in(language, &["echo"]).await;
        let response = http()
            .get(server.url("/hello/w%C3%B6rld%20%F0%9F%8C%8D"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(content_type(&response).starts_with("application/json"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({"message": "Hello, wörld 🌍!", "length": 7}));
        let missing = http().get(server.url("/hello")).send().await.unwrap();
        assert_eq!(missing.status(), 404);
    }
}
