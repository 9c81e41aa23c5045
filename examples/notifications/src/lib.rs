//! Live notifications: each user listens on `/ws/notifications/{userId}`;
//! shipping an order (`POST /api/orders/{orderId:int}/ship` with
//! `{"user_id": U}`) pushes a notification to every connection of user U.

use tina4_guest::prelude::*;

fn routes(app: &mut Router) {
    app.websocket("/ws/notifications/{userId}", listen);
    app.post("/api/orders/{orderId:int}/ship", ship_order);
}

tina4_guest::app!(routes);

fn listen(conn: &Connection, event: Event) -> Result<(), Error> {
    let user_id = &conn.params()["userId"];
    match event {
        Event::Open => conn.send_json(&json!({
            "type": "connected",
            "message": "Listening for notifications",
            "user_id": user_id,
        })),
        Event::Message(text) => {
            if let Ok(msg) = serde_json::from_str::<Value>(&text)
                && msg["type"] == "mark-read"
            {
                tina4_guest::log::info(&format!("user {user_id} read notification {}", msg["id"]));
            }
            Ok(())
        }
        Event::Binary(_) | Event::Close { .. } => Ok(()),
    }
}

fn ship_order(req: &Request) -> Result<Response, Error> {
    let order_id: i64 = req.params()["orderId"]
        .parse()
        .map_err(|_| Error::bad_request("order id out of range"))?;
    let body: Value = req.json()?;
    let user_id = match &body["user_id"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) if !s.is_empty() && !s.contains('/') => s.clone(),
        _ => {
            return Err(Error::bad_request(
                "expected a JSON body like {\"user_id\": 42}",
            ));
        }
    };
    let notification = json!({
        "type": "notification",
        "title": "Order Shipped",
        "message": format!("Your order #{order_id} has been shipped!"),
        "action_url": format!("/orders/{order_id}"),
    });
    let delivered = push_to_websocket(
        &format!("/ws/notifications/{user_id}"),
        &notification.to_string(),
    )?;
    Ok(Response::json(&json!({
        "message": "Order shipped, user notified",
        "order_id": order_id,
        "user_id": user_id,
        "delivered": delivered,
    })))
}
