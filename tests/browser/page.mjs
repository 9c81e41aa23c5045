// What the browser tests share: talking to the test that owns the servers
// (`STEP <name>` out, a line back on stdin when it is done), checks, and
// driving the chat page.

import readline from "node:readline";

export const TIMEOUT = 10_000;

const replies = [];
let input = null;

/** Asks the server's owner to do `name`; resolves once it says it did. */
export function step(name) {
  if (!input) {
    input = readline.createInterface({ input: process.stdin });
    input.on("line", () => replies.shift()?.());
  }
  console.log(`STEP ${name}`);
  return new Promise((resolve) => replies.push(resolve));
}

/** Stops listening for the owner's answers, so the script can end. */
export function done() {
  input?.close();
}

export function check(condition, what) {
  if (!condition) {
    throw new Error(`check failed: ${what}`);
  }
}

/** The last checks, that no page saw an error, then `PASS`. */
export function pass(pages) {
  for (const page of pages) {
    check(page.errors.length === 0, `no page errors: ${page.errors.join("; ")}`);
  }
  console.log("PASS");
}

/** Debian's Chromium, headless. */
export function launch(chromium) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

export async function waitText(page, selector, text, timeout = TIMEOUT) {
  await page.waitForFunction(
    ([selector, text]) => document.querySelector(selector)?.textContent === text,
    [selector, text],
    { timeout },
  ).catch(async () => {
    const actual = await page.evaluate((s) => document.querySelector(s)?.textContent, selector);
    throw new Error(`${selector} never showed ${JSON.stringify(text)} (shows ${JSON.stringify(actual)})`);
  });
}

/** Waits for a message line of `kind` whose text includes `text`; returns the line's spans. */
export async function waitMessage(page, kind, text) {
  const found = await page.waitForFunction(
    ([kind, text]) => {
      const lines = [...document.querySelectorAll(`#messages .message.${kind}`)];
      const line = lines.find((l) => l.querySelector(".text")?.textContent.includes(text));
      return line && [...line.children].map((span) => [span.className, span.textContent]);
    },
    [kind, text],
    { timeout: TIMEOUT },
  ).catch(async () => {
    const shown = await page.evaluate(() => document.querySelector("#messages").innerText);
    throw new Error(`no ${kind} message with ${JSON.stringify(text)}; the page shows:\n${shown}`);
  });
  return Object.fromEntries(await found.jsonValue());
}

/** A fresh page on the chat room at `url`, once it is connected. */
export async function open(browser, url) {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.errors = [];
  page.on("pageerror", (err) => page.errors.push(err.message));
  await page.goto(url);
  await waitText(page, "#status", "connected");
  return page;
}

export async function setName(page, name) {
  await page.fill("#name", name);
  await page.click("#name-form button");
}

export async function say(page, text) {
  await page.fill("#text", text);
  await page.click("#chat-form button");
}
