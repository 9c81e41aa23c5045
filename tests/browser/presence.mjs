// frond.js's `presence` event in headless Chromium, on a path that
// announces who is there (the probe's `/who/{name}`). Ann is on it with a
// WebSocket, a listener with an event stream; Bob comes, says who he is and
// goes. Both hear him join and leave, as `presence` events with his key and
// value, never as messages.
//
// Usage: node presence.mjs http://127.0.0.1:PORT
// It prints `PASS` when every check held; anything else exits 1.

import { chromium } from "playwright-core";
import { check, done, launch, pass, TIMEOUT } from "./page.mjs";

const base = process.argv[2];
const path = "/who/lobby";

/**
 * A page of the server with frond.js on it, connected to `path` by
 * `kind` ("ws" or "sse"); what it hears is kept in `window.heard`
 * (presence changes) and `window.said` (messages).
 */
async function connected(browser, kind) {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.errors = [];
  page.on("pageerror", (err) => page.errors.push(err.message));
  await page.goto(`${base}/probe/version`);
  await page.addScriptTag({ url: "/js/frond.js" });
  await page.evaluate(([kind, path]) => new Promise((resolve) => {
    window.heard = [];
    window.said = [];
    window.client = frond[kind](path);
    window.client.on("presence", (change) => window.heard.push(change));
    window.client.on("message", (text) => window.said.push(text));
    window.client.on("open", resolve);
  }), [kind, path]);
  return page;
}

/** Says who the page's WebSocket is, and waits for the app's answer. */
async function iam(page, key, value) {
  await page.evaluate(([key, value]) => window.client.send(`iam:${key} ${value}`), [key, value]);
  await page.waitForFunction(() => window.said.includes("Ok(())"));
}

/** Waits until `page` has heard `key` do `what` ("join" or "leave"); returns the change. */
async function hears(page, what, key) {
  const found = await page.waitForFunction(
    ([what, key]) => window.heard.find((c) => c.presence === what && c.key === key),
    [what, key],
  ).catch(async () => {
    const heard = await page.evaluate(() => JSON.stringify(window.heard));
    throw new Error(`never heard ${key} ${what}; heard ${heard}`);
  });
  return found.jsonValue();
}

const browser = await launch(chromium);
try {
  const ann = await connected(browser, "ws");
  const listener = await connected(browser, "sse");
  await iam(ann, "ann", '{"name":"Ann"}');
  await hears(listener, "join", "ann");

  const bob = await connected(browser, "ws");
  await iam(bob, "bob", '{"name":"Bob"}');
  for (const page of [ann, listener]) {
    const joined = await hears(page, "join", "bob");
    check(joined.value === '{"name":"Bob"}', `Bob's value comes with his join, got ${JSON.stringify(joined)}`);
  }
  await bob.evaluate(() => window.client.close());
  for (const page of [ann, listener]) {
    await hears(page, "leave", "bob");
  }
  // Notices are events of their own: no message carried one.
  for (const page of [ann, listener]) {
    const said = await page.evaluate(() => window.said);
    check(!said.some((text) => text.includes('"presence"')), `no notice as a message, got ${JSON.stringify(said)}`);
  }
  pass([ann, listener, bob]);
} finally {
  done();
  await browser.close();
}
