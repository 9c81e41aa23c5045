// tina4-wasm for JavaScript: the Tina4 Node API, compiled to a component.
//
//   import { Router } from "tina4-wasm";
//   Router.websocket("/ws/echo", (connection, event, data) => {
//     if (event === "message") connection.send(`Echo: ${data}`);
//   });
//   Router.get("/hello/{name}", (req, res) => res.json({ hello: req.params.name }));
//
// Routes are registered when the module is first evaluated (at build time);
// `tina4-wasm build` wires the exports below to the `tina4:wasm/handler`
// world.

import * as host from "tina4:wasm/websocket@0.1.4";
import { render } from "tina4:wasm/templates@0.1.4";
import { log as hostLog } from "tina4:wasm/logging@0.1.4";
import * as timersHost from "tina4:wasm/timers@0.1.4";
import * as storageHost from "tina4:wasm/storage@0.1.4";
import { whyFailed } from "tina4:wasm/outbound@0.1.4";
import { decode, encode } from "./utf8.js";

/** A call the host refused, or a request the app refuses. */
export class Tina4Error extends Error {
  /**
   * @param {string} kind "unknown-connection", "not-permitted", "too-large",
   *   "invalid" (from the host) or "bad-request" (answered with 400)
   * @param {string} message
   */
  constructor(kind, message) {
    super(message);
    this.name = "Tina4Error";
    this.kind = kind;
  }

  /** The HTTP status an uncaught error of this kind answers with. */
  get status() {
    return this.kind === "bad-request" ? 400 : 500;
  }
}

/** Throws a Tina4Error that answers the HTTP request with 400 and `message`. */
export function badRequest(message) {
  throw new Tina4Error("bad-request", message);
}

const HOST_ERRORS = {
  "unknown-connection": (id) => `no open connection ${id}`,
  "not-permitted": (why) => `not permitted: ${why}`,
  "too-large": (limit) => `message larger than the ${limit}-byte limit`,
  invalid: (why) => `invalid argument: ${why}`,
  quota: (why) => `over quota: ${why}`,
  unavailable: (why) => `unavailable: ${why}`,
};

/** Calls a host function, turning its error variant into a Tina4Error. */
function call(fn, ...args) {
  try {
    return fn(...args);
  } catch (err) {
    const variant = err && (err.payload ?? err);
    const describe = variant && HOST_ERRORS[variant.tag];
    if (describe) throw new Tina4Error(variant.tag, describe(variant.val));
    throw err;
  }
}

/** Writes a line to the host's log, tagged with this app. */
export const log = {
  trace: (message) => hostLog("trace", String(message)),
  debug: (message) => hostLog("debug", String(message)),
  info: (message) => hostLog("info", String(message)),
  warn: (message) => hostLog("warn", String(message)),
  error: (message) => hostLog("error", String(message)),
};

/** Whether a message is binary: a typed array, DataView or ArrayBuffer. */
function isBinary(message) {
  return ArrayBuffer.isView(message) || message instanceof ArrayBuffer;
}

/**
 * Bytes from the host, or binary from the app, as a Uint8Array (engines
 * hand `list<u8>` over as a Uint8Array or a plain array).
 */
function toBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return Uint8Array.from(value instanceof ArrayBuffer ? new Uint8Array(value) : value);
}

/** Name/value pairs as a plain object (the first value of a repeated name wins). */
function fieldsObject(fields) {
  const object = {};
  for (const [name, value] of fields) {
    if (!(name in object)) object[name] = value;
  }
  return object;
}

/** What a routed request or connection carries from the client. */
class Routed {
  constructor(from) {
    /** The concrete, percent-decoded path, e.g. `/ws/chat/lobby`. */
    this.path = from.path;
    /** Path parameters, e.g. `{ room: "lobby" }`. */
    this.params = fieldsObject(from.params);
    /** Query string pairs (the first of a repeated name). */
    this.query = fieldsObject(from.query);
    /** Headers, names lower-case (for a connection, selected ones of its upgrade). */
    this.headers = fieldsObject(from.headers);
    /** On a secured route, the verified token's claims; else null. */
    this.claims = from.claims == null ? null : JSON.parse(from.claims);
  }
}

/** One open WebSocket connection: the `connection` argument of a handler.
 * Broadcasts and counts stay on its concrete `path`. */
export class Connection extends Routed {
  constructor(conn) {
    super(conn);
    /** Opaque, unique across the cluster. */
    this.id = conn.id;
  }

  /** Sends text (a string) or binary (a Uint8Array or other typed array) to this connection only. */
  send(message) {
    if (isBinary(message)) call(host.sendBinary, this.id, toBytes(message));
    else call(host.send, this.id, String(message));
  }

  /** Sends a value as JSON text to this connection only. */
  sendJson(value) {
    this.send(JSON.stringify(value));
  }

  /**
   * Sends to every connection on this path, this one included unless
   * `{ excludeSelf: true }`. Text (string), binary (Uint8Array) or, for any
   * other value, JSON.
   */
  broadcast(message, { excludeSelf = false } = {}) {
    const exclude = excludeSelf ? this.id : undefined;
    if (isBinary(message)) call(host.broadcastBinary, this.path, toBytes(message), exclude);
    else {
      const text = typeof message === "string" ? message : JSON.stringify(message);
      call(host.broadcast, this.path, text, exclude);
    }
  }

  /** Closes the connection from the server side (code 1000 by default). */
  close(code = 1000, reason = "") {
    call(host.close, this.id, code, reason);
  }

  /** How many connections are open on this path, cluster-wide. */
  connectionCount() {
    return call(host.count, this.path);
  }

  /**
   * Keeps a JSON value with the connection, held by the host: it survives
   * hot swaps of the app and is gone after the connection's close event.
   */
  setAttachment(value) {
    call(host.setAttachment, this.id, encode(JSON.stringify(value)));
  }

  /** The value last kept with `setAttachment`, or undefined. */
  attachment() {
    const bytes = call(host.attachment, this.id);
    return bytes == null ? undefined : JSON.parse(decode(toBytes(bytes)));
  }

  /** Says who this connection is on a path whose route keeps presence
   * (`.presence()`): `key` names the user (several tabs may share it),
   * `value` what others may see (a string, or any value as JSON). */
  setPresence(key, value = "") {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    call(host.setPresence, this.id, String(key), text);
  }

  /** The members of this path on every instance: `[{ id, key, value }]`. */
  presence() {
    return presenceOf(this.path);
  }

  /** The newest `limit` messages this path keeps (a route's `.history`),
   * oldest first: `{ offset, text }` or `{ offset, data }` (bytes). */
  history(limit = 50) {
    return call(host.history, this.path, u64(0), limit).map(({ offset, message }) =>
      message.tag === "text"
        ? { offset: Number(offset), text: message.val }
        : { offset: Number(offset), data: toBytes(message.val) },
    );
  }
}

/** An HTTP request: the `req` argument of a route handler. */
export class Request extends Routed {
  constructor(request) {
    super(request);
    /** Lower-case method name, e.g. "post". */
    this.method = request.method;
    /** The body's bytes. */
    this.rawBody = toBytes(request.body);
  }

  /** The body as text. */
  text() {
    return decode(this.rawBody);
  }

  /** The body parsed as JSON; a body that is not JSON answers 400. */
  json() {
    try {
      return JSON.parse(this.text());
    } catch (err) {
      throw new Tina4Error("bad-request", `the body is not JSON: ${err.message}`);
    }
  }

  /** The body: parsed JSON when it is JSON, else its text (Tina4's `req.body`). */
  get body() {
    const text = this.text();
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
}

/** The answer being built: the `res` argument of a route handler. */
export class Response {
  constructor() {
    /** The status to answer with. */
    this.statusCode = 200;
    /** Header name/value pairs, names lower-case. */
    this.headers = [];
    /** The body's bytes. */
    this.content = new Uint8Array(0);
    /** Whether a body was set (`send`, `json`, `text` or `html`). */
    this.answered = false;
  }

  /** Sets the status; chainable (`res.status(201).json(...)`). */
  status(code) {
    this.statusCode = code;
    return this;
  }

  /** Adds a header; chainable. */
  header(name, value) {
    this.headers.push([String(name).toLowerCase(), String(value)]);
    return this;
  }

  /** Answers with a body of the given content type. */
  send(body, contentType = "text/plain; charset=utf-8") {
    if (!this.headers.some(([name]) => name === "content-type")) this.header("content-type", contentType);
    this.content = isBinary(body) ? toBytes(body) : encode(String(body));
    this.answered = true;
    return this;
  }

  /** Answers with `value` as JSON. */
  json(value) {
    return this.send(JSON.stringify(value), "application/json");
  }

  /** Answers with plain text. */
  text(text) {
    return this.send(text);
  }

  /**
   * Answers with HTML: the template `name` from the app's templates folder
   * rendered with `context`, or, without a context, `name` as the page itself.
   */
  html(name, context) {
    const page = context === undefined ? name : renderTemplate(name, context);
    return this.send(page, "text/html; charset=utf-8");
  }
}

/** Renders a template from the app's templates folder (Jinja syntax). */
export function renderTemplate(name, context = {}) {
  return call(render, name, JSON.stringify(context));
}

/** The routes, in the order the host numbers them. */
const table = [];

function add(kind, path, handler) {
  if (typeof handler !== "function") throw new TypeError(`the handler for ${path} is not a function`);
  const route = {
    kind,
    path,
    secured: false,
    history: undefined,
    presence: undefined,
    handler,
    onPresence: undefined,
  };
  table.push(route);
  const chain = {
    /** Only clients with a valid token reach this route. */
    secure() {
      route.secured = true;
      return chain;
    },
    /** Keeps each path's recent messages (WebSocket and SSE routes) so a
     * client that reconnects gets what it missed: at most `maxMessages`,
     * none older than `maxAgeSecs` (0: no age limit). */
    history(maxMessages, maxAgeSecs = 0) {
      route.history = { maxMessages, maxAgeSecs };
      return chain;
    },
    /** Keeps who is on each path (WebSocket and SSE routes): keys set with
     * `connection.setPresence`, or taken from the token's `claim` on a
     * secured route; `announce` sends the path's clients a notice of each
     * join and leave; `onChange({ path, key, value, joined })` hears them,
     * once in the cluster. */
    presence({ claim, announce = false, onChange } = {}) {
      route.presence = {
        claim: claim == null ? undefined : String(claim),
        announce: !!announce,
        events: typeof onChange === "function",
      };
      route.onPresence = onChange;
      return chain;
    },
  };
  return chain;
}

/** Registers routes, as Tina4 Node's Router does. */
export const Router = {
  get: (path, handler) => add({ tag: "http", val: "get" }, path, handler),
  post: (path, handler) => add({ tag: "http", val: "post" }, path, handler),
  put: (path, handler) => add({ tag: "http", val: "put" }, path, handler),
  patch: (path, handler) => add({ tag: "http", val: "patch" }, path, handler),
  delete: (path, handler) => add({ tag: "http", val: "delete" }, path, handler),
  /** `handler(connection, event, data)`; event is "open", "message", "binary" or "close". */
  websocket: (path, handler) => add({ tag: "websocket" }, path, handler),
  /** A Server-Sent Events stream on `path`, in the same path group as
   * WebSocket connections there: `handler(connection, event)` gets "open"
   * and "close" (the client cannot send). */
  sse: (path, handler) => add({ tag: "sse" }, path, handler),
  /** The members of `path` on every instance: `[{ id, key, value }]`. */
  presence: (path) => presenceOf(path),
  /** Sends text to every connection on `path`; returns how many it reached. */
  pushToWebSocket(path, message) {
    const text = typeof message === "string" ? message : JSON.stringify(message);
    return call(host.push, path, text);
  },
};

function presenceOf(path) {
  return call(host.presence, path).map(({ conn, key, value }) => ({ id: conn, key, value }));
}

/** Sends text to one connection by id, e.g. one remembered from another event. */
export function sendToConnection(id, message) {
  call(host.send, id, String(message));
}

/** Closes one connection by id. */
export function closeConnection(id, code = 1000, reason = "") {
  call(host.close, id, code, reason);
}

function isPromise(value) {
  return value != null && typeof value.then === "function";
}

/** True in SpiderMonkey builds (set by `tina4-wasm build`), false in
 * QuickJS ones. */
const SPIDERMONKEY = typeof TINA4_SPIDERMONKEY !== "undefined" && TINA4_SPIDERMONKEY;

/** True where the engine runs the event loop until an export's promise
 * settles (SpiderMonkey): there a handler may `await fetch(...)`. */
const AWAITS = SPIDERMONKEY;

/** A 64-bit integer argument, as the engine's bindings take it:
 * SpiderMonkey's a BigInt, QuickJS's a number. */
function u64(n) {
  return SPIDERMONKEY ? BigInt(n) : Number(n);
}

/** A request `fetch` could not complete, and why: `kind` is "denied",
 * "prohibited", "timeout", "too-large", "busy", "invalid-url" or "failed".
 * A `TypeError`, as `fetch`'s own failures are. */
export class FetchError extends TypeError {
  constructor(kind, message) {
    super(`request failed: ${message}`);
    this.name = "FetchError";
    this.kind = kind;
  }
}

/** The engine's `fetch`, its failures given their reason by the host. */
function typedFetch(engineFetch) {
  return async function fetch(input, init = undefined) {
    try {
      return await engineFetch(input, init);
    } catch (err) {
      let why;
      try {
        const url = new URL(typeof input === "string" ? input : String(input.url ?? input)).href;
        const method = String((init && init.method) || (input && input.method) || "GET").toUpperCase();
        why = whyFailed(method, url);
      } catch {
        why = undefined;
      }
      if (why) throw new FetchError(why[0], why[1]);
      throw err;
    }
  };
}

if (typeof globalThis.fetch === "function") globalThis.fetch = typedFetch(globalThis.fetch);

/** What an export returns for a handler's result: where the engine awaits,
 * the promise (its failure logged), else nothing. */
function settle(returned, where, otherwise) {
  if (!isPromise(returned)) return undefined;
  if (AWAITS) return returned.then(undefined, (err) => hostLog("error", `${where}: ${describe(err)}`));
  otherwise(returned);
  return undefined;
}

function describe(err) {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** Key-value storage of the app's own, kept by the host (a grant:
 * `[storage]` in the app's `.toml`). A refusal throws `Tina4Error` with
 * `kind` `"not-permitted"`, `"quota"`, `"invalid"` or `"unavailable"`. */
export const Storage = {
  /** The text `key` holds, or undefined. */
  get(key) {
    const bytes = call(storageHost.get, String(key));
    return bytes == null ? undefined : decode(toBytes(bytes));
  },
  /** The bytes `key` holds, or undefined. */
  getBytes(key) {
    const bytes = call(storageHost.get, String(key));
    return bytes == null ? undefined : toBytes(bytes);
  },
  /** The JSON value `key` holds, or undefined. */
  getJson(key) {
    const text = Storage.get(key);
    return text === undefined ? undefined : JSON.parse(text);
  },
  /** Sets `key`: a string, bytes, or any other value as JSON; for
   * `ttlMs` if given. */
  set(key, value, { ttlMs } = {}) {
    const bytes = isBinary(value) ? toBytes(value) : encode(typeof value === "string" ? value : JSON.stringify(value));
    call(storageHost.set, String(key), bytes, ttlMs == null ? undefined : Number(ttlMs));
  },
  /** Removes `key`; whether it had a value. */
  delete(key) {
    return call(storageHost.delete, String(key));
  },
  /** The keys that start with `prefix`, in order (at most `limit`). */
  keys(prefix = "", limit = 100) {
    return call(storageHost.keys, String(prefix), limit);
  },
  /** Adds `delta` to the integer `key` holds (0 if none); the new value. */
  increment(key, delta = 1) {
    return Number(call(storageHost.increment, String(key), delta));
  },
};

/** What each timer does, by name. */
const timerHandlers = new Map();
/** Timers declared as the module was evaluated, scheduled as the app loads. */
const declaredTimers = [];
/** Whether the app has loaded (declared timers are then scheduled at once). */
let loaded = false;

function declare(name, ms, repeat, onceInCluster, handler) {
  if (typeof handler !== "function") throw new TypeError(`the handler for timer ${name} is not a function`);
  timerHandlers.set(name, handler);
  if (loaded) Timers.schedule(name, ms, { repeat, onceInCluster });
  else declaredTimers.push([name, ms, repeat, onceInCluster]);
}

/** Timers kept by the host, which calls the app back when one fires; they
 * survive hot swaps and wake a hibernated app. `handler(tick)`: `tick`
 * counts the firings (for `onceInCluster`, the period's number). */
export const Timers = {
  /** Runs `handler` every `ms`, from when the app loads; with
   * `{ onceInCluster: true }`, on one instance of the cluster per period. */
  every(name, ms, handler, { onceInCluster = false } = {}) {
    declare(name, ms, true, onceInCluster, handler);
  },
  /** Runs `handler` once, `ms` after the app loads. */
  after(name, ms, handler) {
    declare(name, ms, false, false, handler);
  },
  /** What the timer `name` does, for one scheduled with `schedule`. */
  on(name, handler) {
    timerHandlers.set(name, handler);
  },
  /** Schedules (or replaces) the timer `name`; throws `Tina4Error` when
   * the host refuses (`invalid`: too soon, `too-large`: too many timers,
   * `not-permitted`: none granted). */
  schedule(name, ms, { repeat = false, onceInCluster = false } = {}) {
    call(timersHost.schedule, String(name), Number(ms), !!repeat, !!onceInCluster);
  },
  /** Cancels the timer `name`; false if there was none. */
  cancel(name) {
    return timersHost.cancel(String(name));
  },
};

// --- The exports of the `handler` world. ---

export function routes() {
  if (!loaded) {
    loaded = true;
    for (const [name, ms, repeat, onceInCluster] of declaredTimers) {
      try {
        Timers.schedule(name, ms, { repeat, onceInCluster });
      } catch (err) {
        hostLog("error", `timer ${name}: ${describe(err)}`);
      }
    }
  }
  return table.map(({ kind, path, secured, history, presence }) => ({
    kind,
    path,
    secured,
    history,
    presence,
  }));
}

/** Turns an exception into the error answer: 400 with its message for a
 * bad request, else a logged 500 that says nothing of the app's insides. */
function answerError(res, path, err) {
  const status = err instanceof Tina4Error ? err.status : 500;
  if (status >= 500) hostLog("error", `${path}: ${describe(err)}`);
  res.headers = [];
  res.status(status).json({ error: status === 400 ? err.message : "internal error" });
}

export function handleHttp(index, request) {
  const route = table[index];
  const res = new Response();
  const path = route ? route.path : String(index);
  try {
    if (!route || route.kind.tag !== "http") throw new Tina4Error("invalid", `no HTTP route ${index}`);
    const returned = route.handler(new Request(request), res);
    if (isPromise(returned) && AWAITS) {
      // The engine runs the event loop until this settles, so the answer
      // may come after an `await`.
      return returned.then(
        () => answerOf(res),
        (err) => {
          answerError(res, path, err);
          return answerOf(res);
        },
      );
    }
    if (isPromise(returned)) {
      // The answer is taken when this returns; neither engine runs the
      // jobs an `await` queues before then, so an answer after an `await`
      // would be lost. Say so instead of answering an empty 200.
      returned.then(undefined, (err) => hostLog("error", `${path}: ${describe(err)}`));
      if (!res.answered) {
        throw new Error(
          "the async handler did not answer before its first `await`; call res.json/res.send first",
        );
      }
    }
  } catch (err) {
    answerError(res, path, err);
  }
  return answerOf(res);
}

function answerOf(res) {
  return { status: res.statusCode, headers: res.headers, body: res.content };
}

const EVENTS = { open: "open", text: "message", binary: "binary", close: "close" };

/** The last async call of each WebSocket route, and whether it finished. */
const lastAsync = new Map();
/** Routes already warned about, so the log says it once. */
const warned = new Set();

/**
 * Logs an async handler's failure, and notices one that never finishes:
 * QuickJS builds never resume a handler after an `await`, so one still
 * unfinished at the route's next event is reported instead of failing
 * silently.
 */
function watchAsync(route, returned) {
  const earlier = lastAsync.get(route);
  if (earlier && !earlier.done && !warned.has(route)) {
    warned.add(route);
    hostLog(
      "warn",
      `${route.path}: an async handler never finished after an \`await\` ` +
        "(QuickJS builds do not resume them; build with --js-engine spidermonkey)",
    );
  }
  const state = { done: false };
  lastAsync.set(route, state);
  returned.then(
    () => {
      state.done = true;
    },
    (err) => {
      state.done = true;
      hostLog("error", `${route.path}: ${describe(err)}`);
    },
  );
}

export function onWebsocket(index, conn, event) {
  const route = table[index];
  if (!route || (route.kind.tag !== "websocket" && route.kind.tag !== "sse")) {
    hostLog("error", `no WebSocket route ${index}`);
    return;
  }
  try {
    const data = event.tag === "binary" ? toBytes(event.val) : event.val;
    const returned = route.handler(new Connection(conn), EVENTS[event.tag], data);
    return settle(returned, route.path, () => watchAsync(route, returned));
  } catch (err) {
    hostLog("error", `${route.path}: ${describe(err)}`);
  }
}

export function onPresence(index, change) {
  const route = table[index];
  if (!route || !route.onPresence) return;
  try {
    const returned = route.onPresence({ ...change });
    return settle(returned, route.path, () => watchAsync(route, returned));
  } catch (err) {
    hostLog("error", `${route.path}: ${describe(err)}`);
  }
}

export function onTimer(name, tick) {
  const handler = timerHandlers.get(name);
  if (!handler) {
    hostLog("warn", `timer ${name} fired, and nothing handles it`);
    return;
  }
  try {
    const returned = handler(Number(tick));
    return settle(returned, `timer ${name}`, () =>
      returned.then(undefined, (err) => hostLog("error", `timer ${name}: ${describe(err)}`)),
    );
  } catch (err) {
    hostLog("error", `timer ${name}: ${describe(err)}`);
  }
}
