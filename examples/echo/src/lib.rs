//! `/ws/echo`: answers every text message with `"Echo: " + message`, and
//! every binary message with the same bytes.
//!
//! `/ws/mirror`: answers every message with exactly what was sent, text or
//! binary; the endpoint the RFC 6455 conformance suite runs against.

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
}

tina4_guest::app!(routes);
