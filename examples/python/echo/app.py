"""The echo example in Python (the same routes as examples/echo).

/ws/echo: answers text with "Echo: " + text, binary with the same bytes.
/ws/mirror: answers every message with exactly what was sent.
/ws/broadcast/{topic}: every message goes to everyone on the topic
(WebSocket members, and listeners on an event stream of the same path).
/ws/replay/{topic}: the same, keeping each topic's last 1,000 messages.
GET /hello/{name}: a small JSON answer.
"""

from tina4_wasm import get, history, sse, websocket


@websocket("/ws/echo")
async def echo(connection, event, data):
    if event == "message":
        await connection.send(f"Echo: {data}")
    elif event == "binary":
        await connection.send(data)


@websocket("/ws/mirror")
async def mirror(connection, event, data):
    if event in ("message", "binary"):
        await connection.send(data)


# A topic's feed: every message to everyone on it, with listeners on an
# event stream of the same path. Decorators apply from the bottom up, so
# @history marks only the routes above it: /ws/replay/{topic} is the same
# feed, keeping each topic's last 1,000 messages for clients that reconnect.
@sse("/ws/replay/{topic}")
@websocket("/ws/replay/{topic}")
@history(1000)
@sse("/ws/broadcast/{topic}")
@websocket("/ws/broadcast/{topic}")
async def feed(connection, event, data):
    if event in ("message", "binary"):
        await connection.broadcast(data)


@get("/hello/{name}")
async def hello(request, response):
    name = request.params["name"]
    return response({"message": f"Hello, {name}!", "length": len(name)})
