// The dashboard example in JavaScript (the same routes as
// examples/dashboard): a figure kept in storage, set with POST /api/figure
// ({"value": N}) and pushed every second by a timer to /ws/dashboard.

import { Router, Storage, Timers, badRequest } from "tina4-wasm";

const figure = () => Storage.getJson("figure") ?? 0;

Router.websocket("/ws/dashboard", (connection, event) => {
  if (event === "open") connection.sendJson({ figure: figure(), tick: 0 });
});

Router.get("/api/figure", (req, res) => res.json({ value: figure() }));

Router.post("/api/figure", (req, res) => {
  const body = req.json();
  const value = body && body.value;
  if (typeof value !== "number" || !Number.isFinite(value)) badRequest("value must be a number");
  Storage.set("figure", value);
  res.json({ value });
});

Timers.every("publish", 1000, (tick) => {
  Router.pushToWebSocket("/ws/dashboard", { figure: figure(), tick });
});
