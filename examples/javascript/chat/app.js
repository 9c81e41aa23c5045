// The chat example in JavaScript (the same protocol as examples/chat, whose
// templates and public folders it shares): /ws/room/{roomName} (WebSocket,
// or an event stream for a listener) and the room's page at
// GET /room/{roomName}.
//
// Each user's name is kept by the host with the connection (an attachment),
// not in this module's memory, so a hot swap forgets no names.

import { Router, Storage, log } from "tina4-wasm";

/** Chat messages each room keeps for joiners, and the bytes they may take. */
const RECENT = 50;
const RECENT_BYTES = 60_000;

/** The room's last chat messages, as kept (none without storage). */
function recent(room) {
  try {
    return Storage.getJson(`recent:${room}`) ?? [];
  } catch {
    return [];
  }
}

/** Keeps `said` among the room's last chat messages; without storage the chat goes on. */
function remember(room, said) {
  let kept = [...recent(room), said].slice(-RECENT);
  let encoded = JSON.stringify(kept);
  while (encoded.length > RECENT_BYTES && kept.length > 1) {
    kept = kept.slice(1);
    encoded = JSON.stringify(kept);
  }
  try {
    Storage.set(`recent:${room}`, encoded);
  } catch (err) {
    log.warn(`room ${room}: not kept: ${err.message}`);
  }
}

/** Longest display name, in characters. */
const MAX_NAME = 40;
const ANONYMOUS = "Anonymous";

const nameOf = (connection) => connection.attachment() ?? ANONYMOUS;
const replyError = (connection, message) => connection.sendJson({ type: "error", message });

/** `HH:MM:SS` in UTC, as the chapter's timestamps. */
function timeOfDay() {
  return new Date().toISOString().slice(11, 19);
}

function onMessage(connection, data) {
  let message;
  try {
    message = JSON.parse(data);
  } catch {
    return replyError(connection, 'messages must be JSON, e.g. {"type":"chat","text":"hi"}');
  }
  const type = message && typeof message.type === "string" ? message.type : "chat";
  switch (type) {
    case "set-name": {
      if (typeof message.name !== "string") return replyError(connection, 'set-name needs a "name" string');
      const newName = message.name.trim();
      if (newName === "" || [...newName].length > MAX_NAME) {
        return replyError(connection, `a name must be 1 to ${MAX_NAME} characters`);
      }
      const oldName = nameOf(connection);
      connection.setAttachment(newName);
      return connection.broadcast({ type: "system", message: `${oldName} changed their name to ${newName}` });
    }
    case "typing":
      return connection.broadcast({ type: "typing", from: nameOf(connection) }, { excludeSelf: true });
    case "chat": {
      const said = {
        type: "chat",
        from: nameOf(connection),
        text: typeof message.text === "string" ? message.text : "",
        timestamp: timeOfDay(),
      };
      connection.broadcast(said);
      return remember(connection.params.roomName, said);
    }
    case "recent":
      return connection.sendJson({ type: "recent", messages: recent(connection.params.roomName) });
    default:
      return replyError(connection, `unknown message type ${JSON.stringify(type)}`);
  }
}

function room(connection, event, data) {
  const room = connection.params.roomName;
  switch (event) {
    case "open":
      connection.sendJson({
        type: "system",
        message: `Welcome to room: ${room}. Set your name with: {"type": "set-name", "name": "YourName"}`,
        online: connection.connectionCount(),
      });
      connection.broadcast(
        { type: "system", message: "A new user joined", online: connection.connectionCount() },
        { excludeSelf: true },
      );
      break;
    case "message":
      onMessage(connection, data);
      break;
    case "binary":
      replyError(connection, "binary messages are not supported; send JSON text");
      break;
    case "close":
      connection.broadcast({
        type: "system",
        message: `${nameOf(connection)} left the room`,
        online: connection.connectionCount(),
      });
      break;
  }
}

Router.websocket("/ws/room/{roomName}", room);
// Listeners on a one-way event stream join the same room; each room keeps
// its last 50 messages for an hour, so a listener that reconnects hears what
// it missed.
Router.sse("/ws/room/{roomName}", room).history(50, 3600);

Router.get("/room/{roomName}", (req, res) =>
  res.html("room.html", { room: req.params.roomName, max_name: MAX_NAME }),
);
