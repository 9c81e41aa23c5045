// The chat page in headless Chromium: two people in a room, names, messages
// both ways, the online count, the typing indicator, a third person leaving,
// a <script> payload shown as text, the server going away and coming back
// while frond.js keeps a message and delivers it on reconnect, a frond.sse
// listener that hears the room and comes back after the server did, and
// frond.js's bounded buffer and its giving up after the last attempt.
//
// Usage: node chat.mjs http://127.0.0.1:PORT
// The server's owner (tests/e2e/browser.rs) is told when to stop and start
// the server: this prints `STEP stop` / `STEP start` and waits for a line on
// stdin. It prints `PASS` when every check held; anything else exits 1.
// With TINA4_SCREENSHOT=file.png it saves a screenshot of the page.

import { chromium } from "playwright-core";
import { check, done, launch, pass, open as openAt, say, setName, step, waitMessage, waitText, TIMEOUT } from "./page.mjs";

const base = process.argv[2];

const open = (browser) => openAt(browser, `${base}/room/lobby`);

const browser = await launch(chromium);
try {
  const alice = await open(browser);
  const bob = await open(browser);
  await waitText(alice, "#online", "2");
  await waitText(bob, "#online", "2");
  await setName(alice, "Alice");
  await waitMessage(bob, "system", "changed their name to Alice");
  await setName(bob, "Bob");
  await waitMessage(alice, "system", "changed their name to Bob");

  await say(alice, "Hello from Alice");
  for (const page of [alice, bob]) {
    const line = await waitMessage(page, "chat", "Hello from Alice");
    check(line.from === "Alice", `the sender's name, got ${JSON.stringify(line)}`);
  }
  await say(bob, "Hi Alice");
  check((await waitMessage(alice, "chat", "Hi Alice")).from === "Bob", "Bob's name on Alice's page");

  // Typing shows on the other page, and clears when the message arrives.
  await bob.fill("#text", "typing something");
  await waitText(alice, "#typing", "Bob is typing…");
  await bob.click("#chat-form button");
  await waitText(alice, "#typing", "");

  // A payload meant to run as script is shown as text, and never runs.
  const payload = '<script>window.pwned = 1</script><img src="x" onerror="window.pwned = 2"><b>bold</b>';
  await say(alice, payload);
  for (const page of [alice, bob]) {
    const line = await waitMessage(page, "chat", "<script>window.pwned");
    check(line.text === payload, `the payload verbatim, got ${JSON.stringify(line.text)}`);
    check((await page.evaluate(() => window.pwned)) === undefined, "the payload did not run");
    check((await page.$$("#messages b, #messages img, #messages script")).length === 0, "no elements from the payload");
  }

  if (process.env.TINA4_SCREENSHOT) {
    await say(bob, "See you at 3?");
    await waitMessage(alice, "chat", "See you at 3?");
    await alice.fill("#text", "Sure");
    await waitText(bob, "#typing", "Alice is typing…");
    await bob.setViewportSize({ width: 900, height: 760 });
    await bob.screenshot({ path: process.env.TINA4_SCREENSHOT });
    await alice.fill("#text", "");
  }

  // A third person comes and goes: the others hear it, the count follows.
  const carol = await open(browser);
  await setName(carol, "Carol");
  await waitText(alice, "#online", "3");
  await waitMessage(alice, "system", "changed their name to Carol");
  await carol.close();
  await waitMessage(alice, "system", "Carol left the room");
  await waitMessage(bob, "system", "Carol left the room");
  await waitText(alice, "#online", "2");

  // frond.sse: a listener on the room's event stream joins the room and
  // hears what is said in it.
  await bob.evaluate(() => {
    window.heard = [];
    window.streamEvents = [];
    window.stream = frond.sse("/ws/room/lobby", { reconnectInterval: 200 });
    window.stream.on("open", () => window.streamEvents.push("open"));
    window.stream.on("close", (info) => window.streamEvents.push(`close ${info.code}`));
    window.stream.on("message", (data) => window.heard.push(JSON.parse(data)));
    window.stream.on("recovered", (info) => window.streamEvents.push(`recovered ${info.complete}`));
  });
  await waitText(alice, "#online", "3");
  await say(alice, "to the listener");
  await bob.waitForFunction(() => window.heard.some((m) => m.type === "chat" && m.text === "to the listener"));

  // A stream that drops reconnects from the last message it heard (the
  // room keeps its history): what was said meanwhile arrives once, and
  // the recovery was complete.
  await bob.evaluate(() => window.stream.source.dispatchEvent(new Event("error")));
  await say(alice, "while the listener was away");
  await bob.waitForFunction(() => window.streamEvents.includes("recovered true"));
  await bob.waitForFunction(() => window.heard.some((m) => m.text === "while the listener was away"));
  const dropped = await bob.evaluate(() => ({
    events: window.streamEvents.splice(0),
    heard: window.heard.filter((m) => m.text === "while the listener was away").length,
  }));
  check(dropped.heard === 1 && JSON.stringify(dropped.events) === JSON.stringify(["open", "close 1006", "open", "recovered true"]),
    `frond.sse recovered after a drop, got ${JSON.stringify(dropped)}`);

  // frond.ws the same way, in the tina4.v1 subprotocol: its socket drops,
  // it reconnects from the last message it heard, and hears what was said
  // meanwhile once.
  await bob.evaluate(() => new Promise((resolve) => {
    window.sockHeard = [];
    window.sockEvents = [];
    window.sock = frond.ws("/ws/room/lobby", { reconnectInterval: 200 });
    window.sock.on("open", () => { window.sockEvents.push("open"); resolve(); });
    window.sock.on("recovered", (info) => window.sockEvents.push(`recovered ${info.complete}`));
    window.sock.on("message", (data) => window.sockHeard.push(JSON.parse(data)));
  }));
  await waitText(alice, "#online", "4");
  await say(alice, "before the socket dropped");
  await bob.waitForFunction(() => window.sockHeard.some((m) => m.text === "before the socket dropped"));
  await bob.evaluate(() => window.sock.socket.close());
  await say(alice, "while the socket was away");
  await bob.waitForFunction(() => window.sockEvents.includes("recovered true"));
  await bob.waitForFunction(() => window.sockHeard.some((m) => m.text === "while the socket was away"));
  const socketDrop = await bob.evaluate(() => {
    window.sock.close();
    return {
      framed: window.sock.framed,
      events: window.sockEvents,
      heard: ["before the socket dropped", "while the socket was away"]
        .map((text) => window.sockHeard.filter((m) => m.text === text).length),
    };
  });
  check(socketDrop.framed && JSON.stringify(socketDrop.events) === JSON.stringify(["open", "open", "recovered true"])
    && JSON.stringify(socketDrop.heard) === "[1,1]",
    `frond.ws recovered after a drop, got ${JSON.stringify(socketDrop)}`);
  await waitText(alice, "#online", "3");

  // The server goes away (closing every connection); frond.js keeps what
  // Alice sends meanwhile and delivers it once it has reconnected.
  await step("stop");
  await waitText(alice, "#status", "reconnecting…");
  await say(alice, "sent while offline");
  await step("start");
  // Reconnection backs off (about 0.5 s, 1 s, 2 s, … with jitter).
  await waitText(alice, "#status", "connected", 3 * TIMEOUT);
  await waitText(bob, "#status", "connected", 3 * TIMEOUT);
  const kept = await waitMessage(alice, "chat", "sent while offline");
  check(kept.from === "Alice", `the kept message goes out after the name, got ${JSON.stringify(kept)}`);
  check(
    (await alice.evaluate(() => [...document.querySelectorAll(".message.chat .text")]
      .filter((t) => t.textContent === "sent while offline").length)) === 1,
    "the kept message was sent once",
  );
  // Both are back in the room together, and so is the listener, which
  // hears the next message once.
  await bob.waitForFunction(() => window.streamEvents.includes("recovered false"));
  await say(bob, "back again");
  await waitMessage(alice, "chat", "back again");
  await bob.waitForFunction(() => window.heard.some((m) => m.text === "back again"));
  const stream = await bob.evaluate(() => {
    window.stream.close();
    return {
      events: window.streamEvents,
      heard: window.heard.filter((m) => m.text === "back again").length,
      connected: window.stream.connected,
    };
  });
  // The server said why it ended the stream (1001, shutting down); each
  // attempt while it was away ended too, until the stream opened again; the
  // restarted server kept no history (a new epoch), and said so.
  const events = stream.events;
  check(events[0] === "close 1001" && events.slice(-2).join() === "open,recovered false"
    && events.filter((e) => e === "open").length === 1 && stream.heard === 1 && !stream.connected,
    `frond.sse reconnected and heard the message once, got ${JSON.stringify(stream)}`);

  // A page opened after the restart shows what the room said before it,
  // kept by the app in its storage: each line once.
  const dave = await open(browser);
  await waitMessage(dave, "chat.recent", "Hello from Alice");
  await waitMessage(dave, "chat.recent", "sent while offline");
  check((await dave.evaluate(() => [...document.querySelectorAll(".message.chat .text")]
    .filter((t) => t.textContent === "Hello from Alice").length)) === 1,
    "a recent message is shown once");

  // frond.js's limits, in the page: a bounded buffer that drops the oldest,
  // and backoff that gives up after maxReconnectAttempts (port 9 on
  // loopback: nothing listens there).
  const limits = await bob.evaluate(() => new Promise((resolve) => {
    const kept = frond.ws("ws://127.0.0.1:9/ws", { reconnect: false, bufferLimit: 2 });
    ["a", "b", "c"].forEach((m) => kept.send(m));
    const attempts = [];
    const flaky = frond.ws("ws://127.0.0.1:9/ws", { reconnectInterval: 20, maxReconnectAttempts: 3 });
    flaky.on("reconnect", (n) => attempts.push(n));
    flaky.on("reconnect_failed", () => resolve({ buffer: kept.buffer, dropped: kept.dropped, attempts }));
  }));
  check(JSON.stringify(limits) === JSON.stringify({ buffer: ["b", "c"], dropped: 1, attempts: [1, 2, 3] }),
    `frond.js limits, got ${JSON.stringify(limits)}`);

  // close() is final: no reconnection is scheduled, later sends are errors,
  // and so are handlers for events that do not exist.
  const closing = await bob.evaluate(() => new Promise((resolve) => {
    const ws = frond.ws("/ws/room/closing");
    ws.on("open", () => ws.close());
    ws.on("close", (event) => setTimeout(() => {
      const errors = [];
      try { ws.send("late"); } catch (err) { errors.push(err.message); }
      try { ws.on("mesage", () => {}); } catch (err) { errors.push(err.message); }
      resolve({ code: event.code, scheduled: ws.timer !== null, errors });
    }));
  }));
  check(closing.code === 1000 && !closing.scheduled && closing.errors.length === 2,
    `close() is final, got ${JSON.stringify(closing)}`);

  pass([alice, bob]);
} finally {
  done();
  await browser.close();
}
