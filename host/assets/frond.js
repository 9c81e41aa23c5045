/*
 * frond.js, as served by tina4-wasm at /js/frond.js: a dependency-free
 * WebSocket and Server-Sent Events client with the Tina4 API.
 *
 *   const ws = frond.ws("/ws/room/lobby", {
 *     reconnect: true,            // reconnect when the connection drops (default true)
 *     reconnectInterval: 1000,    // first retry delay in ms; doubles per attempt, with jitter
 *     maxReconnectInterval: 30000,// longest delay between attempts
 *     maxReconnectAttempts: 10,   // then give up and emit "reconnect_failed" (0: never give up)
 *     bufferLimit: 100            // messages kept while disconnected (oldest dropped beyond)
 *   });
 *   ws.on("open", () => ...);            // connected (again)
 *   ws.on("message", (data) => ...);     // data: the message text (or a Blob / ArrayBuffer)
 *   ws.on("close", (event) => ...);      // the connection closed (code, reason)
 *   ws.on("reconnect", (attempt) => ...);// about to try again
 *   ws.on("reconnect_failed", () => ...);// gave up
 *   ws.on("recovered", (info) => ...);   // after a reconnect on a path that
 *                                        // keeps history: { complete }
 *   ws.on("presence", (change) => ...);  // on a path that announces presence:
 *                                        // { presence: "join"|"leave", key, value }
 *   ws.send(text); ws.sendJson(obj); ws.close();
 *
 * Messages sent while disconnected are kept (up to bufferLimit, oldest
 * dropped first and counted in ws.dropped) and sent, in order, as soon as
 * the connection is open again, right after anything the "open" handlers
 * send (so a handler can say who it is before the kept messages arrive). A path is resolved against the page's own
 * origin (ws: for http:, wss: for https:); a full ws:// or wss:// URL works
 * too. It offers the subprotocols tina4.v1 and tina4.plain beside any given:
 * on a path that keeps history the server takes tina4.v1 and says each
 * message's position (elsewhere it takes tina4.plain), and a
 * reconnect replays what was missed, once and in order, before "recovered"
 * (binary messages then arrive as ArrayBuffers).
 *
 *   const events = frond.sse("/events/lobby", { reconnect: true, ... });
 *
 * The same API for an SSE route (one way: no send). Options and events are
 * frond.ws's; "close" gets { code, reason } when the server ended the
 * stream, and the stream is opened again with the same backoff (the
 * browser's own retry is not used). On a path that keeps history it
 * reconnects from the last message heard: what was missed arrives first,
 * once, then "recovered" gets { complete } (false: some was lost). A path is resolved against the page's
 * origin; a full http:// or https:// URL works too.
 */
(function (global) {
  "use strict";

  var EVENTS = ["open", "message", "close", "reconnect", "reconnect_failed", "error", "recovered", "presence"];

  function socketUrl(path) {
    if (/^wss?:\/\//i.test(path)) {
      return path;
    }
    var location = global.location;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    if (path.charAt(0) !== "/") {
      path = "/" + path;
    }
    return scheme + location.host + path;
  }

  function streamUrl(path) {
    if (/^https?:\/\//i.test(path)) {
      return path;
    }
    if (path.charAt(0) !== "/") {
      path = "/" + path;
    }
    return global.location.protocol + "//" + global.location.host + path;
  }

  // What frond.ws and frond.sse share: options, event handlers, and
  // reconnecting with backoff.
  function setUp(client, kind, url, options) {
    options = options || {};
    client.kind = kind;
    client.url = url;
    client.options = {
      reconnect: options.reconnect !== false,
      reconnectInterval: options.reconnectInterval > 0 ? options.reconnectInterval : 1000,
      maxReconnectInterval: options.maxReconnectInterval > 0 ? options.maxReconnectInterval : 30000,
      maxReconnectAttempts: options.maxReconnectAttempts >= 0 ? options.maxReconnectAttempts : 10,
      bufferLimit: options.bufferLimit >= 0 ? options.bufferLimit : 100,
      protocols: options.protocols
    };
    client.handlers = {};
    client.attempts = 0;
    client.closedByUser = false;
    client.timer = null;
  }

  var Reconnecting = {};

  Reconnecting.on = function (event, handler) {
    if (EVENTS.indexOf(event) < 0) {
      throw new Error("frond." + this.kind + ": unknown event " + JSON.stringify(event));
    }
    (this.handlers[event] = this.handlers[event] || []).push(handler);
    return this;
  };

  Reconnecting.emit = function (event, value) {
    var handlers = this.handlers[event] || [];
    for (var i = 0; i < handlers.length; i++) {
      try {
        handlers[i].call(this, value);
      } catch (err) {
        // One failing handler must not stop the others or the socket.
        setTimeout(function () { throw err; });
      }
    }
  };

  Reconnecting.scheduleReconnect = function () {
    var options = this.options;
    if (this.closedByUser || !options.reconnect) {
      return;
    }
    if (options.maxReconnectAttempts > 0 && this.attempts >= options.maxReconnectAttempts) {
      this.emit("reconnect_failed");
      return;
    }
    this.attempts += 1;
    // Exponential backoff with jitter (50% to 100% of the step), so many
    // clients dropped at once do not all come back at the same instant.
    var step = Math.min(
      options.reconnectInterval * Math.pow(2, this.attempts - 1),
      options.maxReconnectInterval
    );
    var delay = step / 2 + Math.random() * (step / 2);
    var self = this;
    this.timer = setTimeout(function () {
      self.timer = null;
      self.emit("reconnect", self.attempts);
      self.connect();
    }, delay);
  };

  Reconnecting.stopReconnecting = function () {
    this.closedByUser = true;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  };

  // The subprotocol in which the server says each message's position on a
  // path that keeps history, so a reconnect can recover what was missed.
  var POSITIONS = "tina4.v1";
  // Offered beside it: what the server selects where it does not frame
  // (a browser fails a handshake that selects none of those offered).
  var PLAIN = "tina4.plain";

  // `url` with the position (<epoch>-<offset>) to recover from, if any.
  function withPosition(url, position) {
    if (!position) {
      return url;
    }
    var cut = position.lastIndexOf("-");
    return url + (url.indexOf("?") < 0 ? "?" : "&") +
      "tina4_epoch=" + encodeURIComponent(position.slice(0, cut)) +
      "&tina4_offset=" + encodeURIComponent(position.slice(cut + 1));
  }

  // A tina4.v1 message: the line that says what it is, and the message.
  function unframe(data) {
    if (typeof data === "string") {
      var end = data.indexOf("\n");
      return { line: data.slice(0, end), body: data.slice(end + 1) };
    }
    var bytes = new Uint8Array(data);
    var at = bytes.indexOf(10);
    return { line: String.fromCharCode.apply(null, bytes.subarray(0, at)), body: data.slice(at + 1) };
  }

  function recoveredInfo(text) {
    try {
      return JSON.parse(text);
    } catch (err) {
      return { complete: false };
    }
  }

  function FrondSocket(path, options) {
    setUp(this, "ws", socketUrl(path), options);
    var offered = (options && options.protocols) || [];
    this.options.protocols = (typeof offered === "string" ? [offered] : offered.slice()).concat([POSITIONS, PLAIN]);
    this.buffer = [];
    this.dropped = 0;
    this.opening = false;
    this.socket = null;
    // The position of the last kept message heard (<epoch>-<offset>).
    this.position = null;
    this.framed = false;
    this.connect();
  }

  FrondSocket.prototype.on = Reconnecting.on;
  FrondSocket.prototype.stopReconnecting = Reconnecting.stopReconnecting;
  FrondSocket.prototype.emit = Reconnecting.emit;
  FrondSocket.prototype.scheduleReconnect = Reconnecting.scheduleReconnect;

  Object.defineProperty(FrondSocket.prototype, "connected", {
    get: function () {
      return !!this.socket && this.socket.readyState === 1;
    }
  });

  FrondSocket.prototype.connect = function () {
    var self = this;
    var socket = new WebSocket(withPosition(this.url, this.position), this.options.protocols);
    this.socket = socket;
    socket.onopen = function () {
      self.attempts = 0;
      self.framed = socket.protocol === POSITIONS;
      if (self.framed) {
        socket.binaryType = "arraybuffer";
      }
      // What an open handler sends (a name, a token) goes out first, then
      // what was kept while disconnected, in order.
      self.opening = true;
      try {
        self.emit("open");
      } finally {
        self.opening = false;
      }
      self.flush();
    };
    socket.onmessage = function (event) {
      if (!self.framed) {
        self.emit("message", event.data);
        return;
      }
      var message = unframe(event.data);
      if (message.line === "!recovered") {
        self.emit("recovered", recoveredInfo(message.body));
        return;
      }
      if (message.line === "!presence") {
        self.emit("presence", JSON.parse(message.body));
        return;
      }
      if (message.line) {
        self.position = message.line;
      }
      self.emit("message", message.body);
    };
    socket.onerror = function (event) {
      self.emit("error", event);
    };
    socket.onclose = function (event) {
      if (self.socket !== socket) {
        return;
      }
      self.socket = null;
      self.emit("close", event);
      self.scheduleReconnect();
    };
  };

  FrondSocket.prototype.send = function (data) {
    if (this.closedByUser) {
      throw new Error("frond.ws: send after close()");
    }
    if (this.connected && (this.buffer.length === 0 || this.opening)) {
      this.socket.send(data);
      return true;
    }
    this.buffer.push(data);
    while (this.buffer.length > this.options.bufferLimit) {
      this.buffer.shift();
      this.dropped += 1;
    }
    return false;
  };

  FrondSocket.prototype.sendJson = function (value) {
    return this.send(JSON.stringify(value));
  };

  FrondSocket.prototype.flush = function () {
    while (this.buffer.length > 0 && this.connected) {
      this.socket.send(this.buffer.shift());
    }
  };

  FrondSocket.prototype.close = function (code, reason) {
    this.stopReconnecting();
    this.buffer = [];
    if (this.socket) {
      this.socket.close(code || 1000, reason || "");
    }
  };

  function FrondStream(path, options) {
    setUp(this, "sse", streamUrl(path), options);
    this.source = null;
    // The id of the last kept message heard (<epoch>-<offset>), sent back
    // on reconnect so the server replays what was missed.
    this.position = null;
    this.connect();
  }

  FrondStream.prototype.on = Reconnecting.on;
  FrondStream.prototype.emit = Reconnecting.emit;
  FrondStream.prototype.scheduleReconnect = Reconnecting.scheduleReconnect;
  FrondStream.prototype.stopReconnecting = Reconnecting.stopReconnecting;

  Object.defineProperty(FrondStream.prototype, "connected", {
    get: function () {
      return !!this.source && this.source.readyState === 1;
    }
  });

  FrondStream.prototype.connect = function () {
    var self = this;
    var source = new EventSource(withPosition(this.url, this.position));
    this.source = source;
    // Ends this stream and reconnects with frond's backoff, whoever ended it.
    function ended(info) {
      if (self.source !== source) {
        return;
      }
      source.close();
      self.source = null;
      self.emit("close", info);
      self.scheduleReconnect();
    }
    source.onopen = function () {
      self.attempts = 0;
      self.emit("open");
    };
    source.onmessage = function (event) {
      if (event.lastEventId) {
        self.position = event.lastEventId;
      }
      self.emit("message", event.data);
    };
    // After a reconnect on a path that keeps history: whether what was
    // replayed is all that was missed ({ complete: false }: re-sync).
    source.addEventListener("recovered", function (event) {
      self.emit("recovered", recoveredInfo(event.data));
    });
    // On a path that announces presence: a key joined or left.
    source.addEventListener("presence", function (event) {
      self.emit("presence", JSON.parse(event.data));
    });
    // The server's last word: why it ended the stream.
    source.addEventListener("close", function (event) {
      var info = { code: 1005, reason: "" };
      try {
        info = JSON.parse(event.data);
      } catch (err) {
        // Keep the default.
      }
      ended(info);
    });
    source.onerror = function (event) {
      self.emit("error", event);
      ended({ code: 1006, reason: "" });
    };
  };

  FrondStream.prototype.close = function () {
    this.stopReconnecting();
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  };

  var frond = global.frond || {};
  frond.ws = function (path, options) {
    return new FrondSocket(path, options);
  };
  frond.sse = function (path, options) {
    return new FrondStream(path, options);
  };
  frond.version = "tina4-wasm";
  global.frond = frond;
})(typeof window !== "undefined" ? window : this);
