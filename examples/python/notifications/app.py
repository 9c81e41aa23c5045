"""The notifications example in Python (the same routes as
examples/notifications): each user listens on /ws/notifications/{userId};
POST /api/orders/{orderId:int}/ship with {"user_id": U} pushes a
notification to every connection of user U."""

import json

from tina4_wasm import BadRequest, log, post, push_to_websocket, websocket


@websocket("/ws/notifications/{userId}")
async def notifications(connection, event, data):
    user_id = connection.params["userId"]
    if event == "open":
        await connection.send_json({
            "type": "connected",
            "message": "Listening for notifications",
            "user_id": user_id,
        })
    elif event == "message":
        try:
            message = json.loads(data)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "mark-read":
            log.info(f"user {user_id} read notification {json.dumps(message.get('id'))}")


@post("/api/orders/{orderId:int}/ship")
async def ship_order(request, response):
    order_id = int(request.params["orderId"])
    if abs(order_id) > 2**63 - 1:
        raise BadRequest("order id out of range")
    body = request.json()
    user = body.get("user_id") if isinstance(body, dict) else None
    if isinstance(user, int) and not isinstance(user, bool):
        user_id = str(user)
    elif isinstance(user, str) and user and "/" not in user:
        user_id = user
    else:
        raise BadRequest('expected a JSON body like {"user_id": 42}')

    delivered = await push_to_websocket(f"/ws/notifications/{user_id}", {
        "type": "notification",
        "title": "Order Shipped",
        "message": f"Your order #{order_id} has been shipped!",
        "action_url": f"/orders/{order_id}",
    })
    return response({
        "message": "Order shipped, user notified",
        "order_id": order_id,
        "user_id": user_id,
        "delivered": delivered,
    })
