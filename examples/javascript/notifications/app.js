// The notifications example in JavaScript (the same routes as
// examples/notifications): each user listens on
// /ws/notifications/{userId}; POST /api/orders/{orderId:int}/ship with
// {"user_id": U} pushes a notification to every connection of user U.

import { Router, badRequest, log } from "tina4-wasm";

Router.websocket("/ws/notifications/{userId}", (connection, event, data) => {
  const userId = connection.params.userId;
  if (event === "open") {
    connection.sendJson({ type: "connected", message: "Listening for notifications", user_id: userId });
  }
  if (event === "message") {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message && message.type === "mark-read") {
      log.info(`user ${userId} read notification ${JSON.stringify(message.id)}`);
    }
  }
});

Router.post("/api/orders/{orderId:int}/ship", (req, res) => {
  const orderId = Number(req.params.orderId);
  if (!Number.isSafeInteger(orderId)) badRequest("order id out of range");
  const body = req.json();
  const user = body && body.user_id;
  let userId;
  if (typeof user === "number") userId = String(user);
  else if (typeof user === "string" && user !== "" && !user.includes("/")) userId = user;
  else badRequest('expected a JSON body like {"user_id": 42}');

  const delivered = Router.pushToWebSocket(`/ws/notifications/${userId}`, {
    type: "notification",
    title: "Order Shipped",
    message: `Your order #${orderId} has been shipped!`,
    action_url: `/orders/${orderId}`,
  });
  return res.json({ message: "Order shipped, user notified", order_id: orderId, user_id: userId, delivered });
});
