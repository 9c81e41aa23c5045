// Recovery across a server restart, in headless Chromium: two instances of
// the chat on one Redis, Alice's page on the first, Bob's on the second.
// The first instance stops; Bob talks; it starts again, and Alice's page
// (frond.ws, in tina4.v1) recovers what Bob said from Redis: every message
// shown once, in order, and `recovered` complete.
//
// Usage: node recovery.mjs http://127.0.0.1:PORT_A http://127.0.0.1:PORT_B
// The server's owner (tests/e2e/browser.rs) stops and starts the first
// instance on `STEP stop` / `STEP start`, then answers a line on stdin. It
// prints `PASS` when every check held; anything else exits 1.

import { chromium } from "playwright-core";
import { check, done, launch, pass, open, say, setName, step, waitMessage, waitText, TIMEOUT } from "./page.mjs";

const [first, second] = process.argv.slice(2);

/** How many chat lines on `page` say exactly `text`. */
async function shown(page, text) {
  return page.evaluate((text) => [...document.querySelectorAll(".message.chat .text")]
    .filter((t) => t.textContent === text).length, text);
}

const browser = await launch(chromium);
try {
  const alice = await open(browser, `${first}/room/lobby`);
  const bob = await open(browser, `${second}/room/lobby`);
  await waitText(alice, "#online", "2");
  await setName(alice, "Alice");
  await waitMessage(bob, "system", "changed their name to Alice");
  await setName(bob, "Bob");
  await say(bob, "before");
  await waitMessage(alice, "chat", "before");

  await step("stop");
  await waitText(alice, "#status", "reconnecting…");
  const away = ["while you were away 1", "while you were away 2", "while you were away 3"];
  for (const text of away) {
    await say(bob, text);
    await waitMessage(bob, "chat", text);
  }
  await step("start");
  await waitText(alice, "#status", "connected", 3 * TIMEOUT);
  await alice.waitForFunction(() => document.getElementById("chat").dataset.recovered !== undefined,
    undefined, { timeout: 3 * TIMEOUT });
  const recovered = await alice.evaluate(() => document.getElementById("chat").dataset.recovered);
  check(recovered === "true", `recovery from Redis is complete, got ${recovered}`);
  for (const text of away) {
    await waitMessage(alice, "chat", text);
  }
  await say(bob, "after");
  await waitMessage(alice, "chat", "after");
  for (const text of ["before", ...away, "after"]) {
    check((await shown(alice, text)) === 1, `"${text}" shown once on Alice's page`);
  }
  const order = await alice.evaluate(() => [...document.querySelectorAll(".message.chat .text")]
    .map((t) => t.textContent));
  check(JSON.stringify(order) === JSON.stringify(["before", ...away, "after"]),
    `in the order said, got ${JSON.stringify(order)}`);
  pass([alice, bob]);
} finally {
  done();
  await browser.close();
}
