//! The Tina4 chapter's chat room: `/ws/room/{roomName}` and a page for it at
//! `GET /room/{roomName}`.
//!
//! Protocol (JSON text messages):
//! - client → `{"type":"set-name","name":N}` renames the sender (everyone
//!   starts as `Anonymous`); everyone in the room hears about it.
//! - client → `{"type":"chat","text":T}` reaches everyone in the room, the
//!   sender included, as `{"type":"chat","from":name,"text":T,"timestamp":"HH:MM:SS"}`.
//! - client → `{"type":"typing"}` tells everyone else in the room, as
//!   `{"type":"typing","from":name}` (the page shows "… is typing").
//! - client → `{"type":"recent"}` gets `{"type":"recent","messages":[…]}`
//!   back: the room's last 50 chat messages, kept in the app's storage
//!   (granted in `chat.toml`), so a joiner sees them even after a restart
//!   of the server.
//! - `GET /room/{roomName}` is the room's page, rendered from the app's
//!   templates folder; its script and style come from the public folder.
//! - a client may also listen with an event stream on the same path
//!   (`GET /ws/room/{roomName}`, `Accept: text/event-stream`): it hears
//!   everything said in the room, and cannot speak. The room keeps its last
//!   50 messages for an hour: a listener that reconnects with its last
//!   event id hears what it missed.
//! - joining and leaving are announced as `{"type":"system",...}` with the
//!   room's `online` count.
//! - anything else gets `{"type":"error","message":...}` back, to the sender only.
//!
//! Each user's name is kept by the host with the connection (an
//! attachment), not in this module's memory, so a hot swap of the app in
//! the middle of a conversation forgets no names.

use tina4_guest::prelude::*;
use tina4_guest::storage;

/// Chat messages each room keeps for joiners.
const RECENT: usize = 50;

/// Bytes they may take (the value quota is 64 KiB).
const RECENT_BYTES: usize = 60_000;

/// Longest display name, in characters.
const MAX_NAME: usize = 40;

/// The name everyone starts with.
const ANONYMOUS: &str = "Anonymous";

fn routes(app: &mut Router) {
    app.websocket("/ws/room/{roomName}", room);
    // Listeners on a one-way event stream join the same room; each room
    // keeps its last 50 messages for an hour, so a listener that reconnects
    // hears what it missed.
    app.sse("/ws/room/{roomName}", room)
        .history(50, std::time::Duration::from_secs(3600));
    app.get("/room/{roomName}", room_page);
}

tina4_guest::app!(routes);

fn name_of(conn: &Connection) -> String {
    conn.attachment::<String>()
        .ok()
        .flatten()
        .unwrap_or_else(|| ANONYMOUS.to_string())
}

fn room(conn: &Connection, event: Event) -> Result<(), Error> {
    let room = &conn.params()["roomName"];
    match event {
        Event::Open => {
            conn.send_json(&json!({
                "type": "system",
                "message": format!("Welcome to room: {room}. Set your name with: {{\"type\": \"set-name\", \"name\": \"YourName\"}}"),
                "online": conn.connection_count(),
            }))?;
            conn.broadcast_json_except_self(&json!({
                "type": "system",
                "message": "A new user joined",
                "online": conn.connection_count(),
            }))
        }
        Event::Message(text) => on_message(conn, &text),
        Event::Binary(_) => reply_error(conn, "binary messages are not supported; send JSON text"),
        Event::Close { .. } => {
            let name = name_of(conn);
            conn.broadcast_json(&json!({
                "type": "system",
                "message": format!("{name} left the room"),
                "online": conn.connection_count(),
            }))
        }
    }
}

fn on_message(conn: &Connection, text: &str) -> Result<(), Error> {
    let Ok(msg) = serde_json::from_str::<Value>(text) else {
        return reply_error(
            conn,
            "messages must be JSON, e.g. {\"type\":\"chat\",\"text\":\"hi\"}",
        );
    };
    match msg.get("type").and_then(Value::as_str).unwrap_or("chat") {
        "set-name" => {
            let Some(new_name) = msg.get("name").and_then(Value::as_str).map(str::trim) else {
                return reply_error(conn, "set-name needs a \"name\" string");
            };
            if new_name.is_empty() || new_name.chars().count() > MAX_NAME {
                return reply_error(conn, &format!("a name must be 1 to {MAX_NAME} characters"));
            }
            let old_name = name_of(conn);
            conn.set_attachment(new_name)?;
            conn.broadcast_json(&json!({
                "type": "system",
                "message": format!("{old_name} changed their name to {new_name}"),
            }))
        }
        "typing" => conn.broadcast_json_except_self(&json!({
            "type": "typing",
            "from": name_of(conn),
        })),
        "chat" => {
            let text = msg.get("text").and_then(Value::as_str).unwrap_or("");
            let said = json!({
                "type": "chat",
                "from": name_of(conn),
                "text": text,
                "timestamp": utc_time_of_day(),
            });
            conn.broadcast_json(&said)?;
            remember(&conn.params()["roomName"], said);
            Ok(())
        }
        "recent" => conn.send_json(&json!({
            "type": "recent",
            "messages": recent(&conn.params()["roomName"]),
        })),
        other => reply_error(conn, &format!("unknown message type {other:?}")),
    }
}

/// The room's last chat messages, as kept (none without storage).
fn recent(room: &str) -> Vec<Value> {
    storage::get_json::<Vec<Value>>(&format!("recent:{room}"))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Keeps `said` among the room's last [`RECENT`] chat messages, within
/// [`RECENT_BYTES`]; without storage (no grant, or the store failing) the
/// chat goes on, and the reason is logged.
fn remember(room: &str, said: Value) {
    let mut kept = recent(room);
    kept.push(said);
    let mut excess = kept.len().saturating_sub(RECENT);
    let encoded = loop {
        let encoded = serde_json::to_vec(&kept[excess..]).unwrap_or_default();
        if encoded.len() <= RECENT_BYTES || excess + 1 >= kept.len() {
            break encoded;
        }
        excess += 1;
    };
    if let Err(err) = storage::set(&format!("recent:{room}"), &encoded) {
        tina4_guest::log::warn(&format!("room {room}: not kept: {err}"));
    }
}

fn reply_error(conn: &Connection, message: &str) -> Result<(), Error> {
    conn.send_json(&json!({ "type": "error", "message": message }))
}

/// `HH:MM:SS` in UTC, as the chapter's timestamps.
fn utc_time_of_day() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

/// The room's page, rendered by the host from `templates/room.html` (with
/// the page's script and style served from `public/`).
fn room_page(req: &Request) -> Result<Response, Error> {
    Response::render(
        "room.html",
        &json!({ "room": req.params()["roomName"], "max_name": MAX_NAME }),
    )
}
