"""The chat example in Python (the same protocol as examples/chat, whose
templates and public folders it shares): /ws/room/{roomName} (WebSocket,
or an event stream for a listener) and the
room's page at GET /room/{roomName}.

Each user's name is kept by the host with the connection (an attachment),
not in this module's memory, so a hot swap forgets no names."""

import json
import time

from tina4_wasm import Tina4Error, get, history, kv, log, sse, websocket

#: Chat messages each room keeps for joiners, and the bytes they may take.
RECENT = 50
RECENT_BYTES = 60_000


def recent(room):
    """The room's last chat messages, as kept (none without storage)."""
    try:
        return kv.get_json(f"recent:{room}", [])
    except Tina4Error:
        return []


def remember(room, said):
    """Keeps `said` among the room's last chat messages; without storage the
    chat goes on."""
    kept = (recent(room) + [said])[-RECENT:]
    encoded = json.dumps(kept)
    while len(encoded.encode()) > RECENT_BYTES and len(kept) > 1:
        kept = kept[1:]
        encoded = json.dumps(kept)
    try:
        kv.set(f"recent:{room}", encoded)
    except Tina4Error as err:
        log.warn(f"room {room}: not kept: {err}")

#: Longest display name, in characters.
MAX_NAME = 40
ANONYMOUS = "Anonymous"


def name_of(connection):
    return connection.attachment(ANONYMOUS)


def reply_error(connection, message):
    return connection.send_json({"type": "error", "message": message})


def time_of_day():
    """HH:MM:SS in UTC, as the chapter's timestamps."""
    return time.strftime("%H:%M:%S", time.gmtime())


def on_message(connection, data):
    try:
        message = json.loads(data)
    except ValueError:
        return reply_error(connection, 'messages must be JSON, e.g. {"type":"chat","text":"hi"}')
    kind = message.get("type") if isinstance(message, dict) else None
    kind = kind if isinstance(kind, str) else "chat"
    if kind == "set-name":
        name = message.get("name")
        if not isinstance(name, str):
            return reply_error(connection, 'set-name needs a "name" string')
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            return reply_error(connection, f"a name must be 1 to {MAX_NAME} characters")
        old_name = name_of(connection)
        connection.set_attachment(name)
        return connection.broadcast({"type": "system", "message": f"{old_name} changed their name to {name}"})
    if kind == "typing":
        return connection.broadcast({"type": "typing", "from": name_of(connection)}, exclude_self=True)
    if kind == "chat":
        text = message.get("text") if isinstance(message, dict) else None
        said = {
            "type": "chat",
            "from": name_of(connection),
            "text": text if isinstance(text, str) else "",
            "timestamp": time_of_day(),
        }
        connection.broadcast(said)
        remember(connection.params["roomName"], said)
        return None
    if kind == "recent":
        return connection.send_json({"type": "recent", "messages": recent(connection.params["roomName"])})
    return reply_error(connection, f"unknown message type {json.dumps(kind)}")


# Listeners on a one-way event stream join the same room; each room keeps
# its last 50 messages for an hour, so a listener that reconnects hears what
# it missed.
@sse("/ws/room/{roomName}")
@history(50, 3600)
@websocket("/ws/room/{roomName}")
async def room(connection, event, data):
    if event == "open":
        await connection.send_json({
            "type": "system",
            "message": f"Welcome to room: {connection.params['roomName']}. "
                       'Set your name with: {"type": "set-name", "name": "YourName"}',
            "online": connection.connection_count(),
        })
        await connection.broadcast({
            "type": "system",
            "message": "A new user joined",
            "online": connection.connection_count(),
        }, exclude_self=True)
    elif event == "message":
        on_message(connection, data)
    elif event == "binary":
        reply_error(connection, "binary messages are not supported; send JSON text")
    elif event == "close":
        await connection.broadcast({
            "type": "system",
            "message": f"{name_of(connection)} left the room",
            "online": connection.connection_count(),
        })


@get("/room/{roomName}")
async def room_page(request, response):
    return response.render("room.html", room=request.params["roomName"], max_name=MAX_NAME)
