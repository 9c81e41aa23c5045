//! `/ws/echo`: answers every text message with `"Echo: " + message`, and
//! every binary message with the same bytes.
//!
//! `/ws/mirror`: answers every message with exactly what was sent, text or
//! binary; the endpoint the RFC 6455 conformance suite runs against.
//!
//! `/ws/broadcast/{topic}`: every message goes to everyone on the topic,
//! the sender included: a live feed with no join or leave notices. A
//! listener can open the same path as an event stream (`Accept:
//! text/event-stream`) and hear it too.
//!
//! `/ws/replay/{topic}`: the same feed, keeping each topic's last 1,000
//! messages, so a client that reconnects with its last position hears
//! what it missed.
//!
//! `GET /hello/{name}`: a small JSON answer.

use tina4_guest::prelude::*;

fn routes(app: &mut Router) {
    app.websocket("/ws/echo", |conn: &Connection, event: Event| match event {
        Event::Message(text) => conn.send(&format!("Echo: {text}")),
        Event::Binary(data) => conn.send_binary(&data),
        Event::Open | Event::Close { .. } => Ok(()),
    });
    app.websocket(
        "/ws/mirror",
        |conn: &Connection, event: Event| match event {
            Event::Message(text) => conn.send(&text),
            Event::Binary(data) => conn.send_binary(&data),
            Event::Open | Event::Close { .. } => Ok(()),
        },
    );
    app.websocket("/ws/broadcast/{topic}", feed);
    // Listeners on an event stream hear the topic too.
    app.sse("/ws/broadcast/{topic}", listen);
    // The same feed, keeping each topic's last 1,000 messages for clients
    // that reconnect.
    app.websocket("/ws/replay/{topic}", feed)
        .history(1000, std::time::Duration::ZERO);
    app.sse("/ws/replay/{topic}", listen);
    app.get("/hello/{name}", |req: &Request| {
        let name = &req.params()["name"];
        Response::json(
            &json!({ "message": format!("Hello, {name}!"), "length": name.chars().count() }),
        )
    });
}

tina4_guest::app!(routes);

/// A topic's feed: every message to everyone on it.
fn feed(conn: &Connection, event: Event) -> Result<(), Error> {
    match event {
        Event::Message(text) => conn.broadcast(&text),
        Event::Binary(data) => conn.broadcast_binary(&data),
        Event::Open | Event::Close { .. } => Ok(()),
    }
}

/// A listener on a topic's event stream: it only hears.
fn listen(_: &Connection, _: Event) {}
