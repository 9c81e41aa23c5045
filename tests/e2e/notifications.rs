//! The notifications example: an HTTP route pushes to WebSocket clients.

use serde_json::json;

use crate::support::{Client, Server, each_language, http};

async fn listen(server: &Server, user: &str) -> Client {
    let mut client = server.connect(&format!("/ws/notifications/{user}")).await;
    assert_eq!(client.recv_json().await["type"], "connected");
    client
}

each_language! {
    async fn shipping_an_order_notifies_every_connection_of_that_user_only(language) {
        let server = Server::start_in(language, &["notifications"]).await;
        let mut phone = listen(&server, "7").await;
        let mut laptop = listen(&server, "7").await;
        let mut other_user = listen(&server, "8").await;

        let response = http()
            .post(server.url("/api/orders/42/ship"))
            .json(&json!({"user_id": 7}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["delivered"], 2);

        let expected = json!({
            "type": "notification",
            "title": "Order Shipped",
            "message": "Your order #42 has been shipped!",
            "action_url": "/orders/42",
        });
        assert_eq!(phone.recv_json().await, expected);
        assert_eq!(laptop.recv_json().await, expected);

        // User 8's next message is their own order, not user 7's.
        http()
            .post(server.url("/api/orders/43/ship"))
            .json(&json!({"user_id": "8"}))
            .send()
            .await
            .unwrap();
        assert_eq!(other_user.recv_json().await["action_url"], "/orders/43");
    }
}

each_language! {
    async fn a_bad_body_is_a_400_with_a_json_error(language) {
        let server = Server::start_in(language, &["notifications"]).await;
        for body in [
            "not json",
            "{}",
            "{\"user_id\": \"a/b\"}",
            "{\"user_id\": null}",
        ] {
            let response = http()
                .post(server.url("/api/orders/1/ship"))
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{body}");
            let err: serde_json::Value = response.json().await.unwrap();
            assert!(err["error"].is_string());
        }
    }
}
