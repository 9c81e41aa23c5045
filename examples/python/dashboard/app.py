"""The dashboard example in Python (the same routes as examples/dashboard):
a figure kept in storage, set with POST /api/figure ({"value": N}) and
pushed every second by a timer to /ws/dashboard."""

import math

from tina4_wasm import BadRequest, every, get, kv, post, push_to_websocket, websocket


def figure():
    return kv.get_json("figure", 0)


@websocket("/ws/dashboard")
def listen(connection, event, data):
    if event == "open":
        connection.send_json({"figure": figure(), "tick": 0})


@get("/api/figure")
def read(request, response):
    return response.json({"value": figure()})


@post("/api/figure")
def write(request, response):
    body = request.json()
    value = body.get("value") if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest("value must be a number")
    kv.set("figure", value)
    return response.json({"value": value})


@every("publish", 1000)
def publish(tick):
    push_to_websocket("/ws/dashboard", {"figure": figure(), "tick": tick})
