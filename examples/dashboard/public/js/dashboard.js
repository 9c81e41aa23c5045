// The dashboard page: the figure as the server pushes it each second, and
// a form that sets it (POST /api/figure).
(function () {
  "use strict";
  var figure = document.getElementById("figure");
  var tick = document.getElementById("tick");
  var status = document.getElementById("status");
  var ws = frond.ws("/ws/dashboard");
  ws.on("open", function () { status.textContent = "live"; });
  ws.on("close", function () { status.textContent = "reconnecting…"; });
  ws.on("message", function (raw) {
    var message;
    try { message = JSON.parse(raw); } catch (e) { return; }
    figure.textContent = String(message.figure);
    tick.textContent = message.tick ? "at tick " + message.tick : "on connecting";
  });
  document.getElementById("set").addEventListener("submit", function (event) {
    event.preventDefault();
    var value = Number(document.getElementById("value").value);
    fetch("/api/figure", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ value: value })
    });
  });
})();
