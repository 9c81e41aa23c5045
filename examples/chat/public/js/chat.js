// The chat page: every piece of user text goes in with textContent, never
// as HTML, so a message like "<script>…" shows as text.
(function () {
  "use strict";
  var root = document.getElementById("chat");
  var ws = frond.ws("/ws/room/" + encodeURIComponent(root.dataset.room));
  var messages = document.getElementById("messages");
  var status = document.getElementById("status");
  var online = document.getElementById("online");
  var typing = document.getElementById("typing");
  var name = "";
  var typists = {};
  var lastTyping = 0;

  function setStatus(text, kind) {
    status.textContent = text;
    status.className = "status " + kind;
  }

  function add(kind, parts) {
    var line = document.createElement("div");
    line.className = "message " + kind;
    parts.forEach(function (part) {
      var span = document.createElement("span");
      span.className = part[0];
      span.textContent = part[1];
      line.appendChild(span);
    });
    messages.appendChild(line);
    messages.scrollTop = messages.scrollHeight;
  }

  function showTyping() {
    var names = Object.keys(typists);
    typing.textContent = names.length === 0 ? ""
      : names.join(", ") + (names.length === 1 ? " is typing…" : " are typing…");
  }

  function typingStopped(who) {
    if (typists[who]) {
      clearTimeout(typists[who]);
      delete typists[who];
      showTyping();
    }
  }

  var askedRecent = false;
  ws.on("open", function () {
    setStatus("connected", "connected");
    // Once, as the page opens: what the room said before (kept by the
    // app in its storage, so it survives a restart of the server).
    if (!askedRecent) {
      askedRecent = true;
      ws.sendJson({ type: "recent" });
    }
    // A new connection starts as Anonymous: say who we are again.
    if (name) {
      ws.sendJson({ type: "set-name", name: name });
    }
  });
  ws.on("close", function () { setStatus("reconnecting…", "offline"); });
  // Back after a drop: what was said meanwhile came first, once. When some
  // of it was no longer kept (or the server lost it), say so.
  ws.on("recovered", function (info) {
    root.dataset.recovered = String(info.complete);
    if (!info.complete) {
      add("system", [["text", "Some messages may have been missed while reconnecting"]]);
    }
  });
  ws.on("reconnect_failed", function () { setStatus("disconnected", "offline"); });

  ws.on("message", function (raw) {
    var msg;
    try { msg = JSON.parse(raw); } catch (e) { return; }
    if (typeof msg.online === "number") {
      online.textContent = String(msg.online);
    }
    if (msg.type === "recent" && Array.isArray(msg.messages)) {
      msg.messages.forEach(function (said) {
        add("chat recent", [["from", said.from], ["time", said.timestamp], ["text", said.text]]);
      });
    } else if (msg.type === "chat") {
      typingStopped(msg.from);
      add("chat", [["from", msg.from], ["time", msg.timestamp], ["text", msg.text]]);
    } else if (msg.type === "system") {
      add("system", [["text", msg.message]]);
    } else if (msg.type === "typing") {
      typingStopped(msg.from);
      typists[msg.from] = setTimeout(function () { typingStopped(msg.from); }, 3000);
      showTyping();
    } else if (msg.type === "error") {
      add("error", [["text", msg.message]]);
    }
  });

  document.getElementById("name-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var value = document.getElementById("name").value.trim();
    if (value) {
      name = value;
      ws.sendJson({ type: "set-name", name: name });
    }
  });

  var text = document.getElementById("text");
  text.addEventListener("input", function () {
    var now = Date.now();
    if (now - lastTyping > 1000) {
      lastTyping = now;
      ws.sendJson({ type: "typing" });
    }
  });
  document.getElementById("chat-form").addEventListener("submit", function (e) {
    e.preventDefault();
    if (text.value.trim()) {
      ws.sendJson({ type: "chat", text: text.value });
      text.value = "";
      lastTyping = 0;
    }
  });
})();
