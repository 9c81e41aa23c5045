// The echo example in JavaScript (the same routes as examples/echo).
//
// /ws/echo: answers text with "Echo: " + text, binary with the same bytes.
// /ws/mirror: answers every message with exactly what was sent.
// /ws/broadcast/{topic}: every message goes to everyone on the topic
// (WebSocket members, and listeners on an event stream of the same path).
// /ws/replay/{topic}: the same, keeping each topic's last 1,000 messages.
// GET /hello/{name}: a small JSON answer.

import { Router } from "tina4-wasm";

Router.websocket("/ws/echo", (connection, event, data) => {
  if (event === "message") connection.send(`Echo: ${data}`);
  if (event === "binary") connection.send(data);
});

Router.websocket("/ws/mirror", (connection, event, data) => {
  if (event === "message" || event === "binary") connection.send(data);
});

/** A topic's feed: every message to everyone on it. */
function feed(connection, event, data) {
  if (event === "message" || event === "binary") connection.broadcast(data);
}

/** A listener on a topic's event stream: it only hears. */
function listen() {}

Router.websocket("/ws/broadcast/{topic}", feed);
// Listeners on an event stream hear the topic too.
Router.sse("/ws/broadcast/{topic}", listen);

// The same feed, keeping each topic's last 1,000 messages for clients that
// reconnect.
Router.websocket("/ws/replay/{topic}", feed).history(1000);
Router.sse("/ws/replay/{topic}", listen);

Router.get("/hello/{name}", (req, res) => {
  const name = req.params.name;
  // Length in characters (code points), as every version of this example counts it.
  return res.json({ message: `Hello, ${name}!`, length: [...name].length });
});
