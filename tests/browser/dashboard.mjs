// The dashboard page in headless Chromium: the figure the server pushes
// each second, and the form that sets it.
//
// Usage: node dashboard.mjs http://127.0.0.1:PORT
// It prints `PASS` when every check held; anything else exits 1.

import { chromium } from "playwright-core";
import { check, done, launch, waitText, TIMEOUT } from "./page.mjs";

const base = process.argv[2];

const browser = await launch(chromium);
try {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(TIMEOUT);
  const errors = [];
  page.on("pageerror", (err) => errors.push(err.message));
  await page.goto(`${base}/dashboard.html`);
  await waitText(page, "#status", "live");
  await waitText(page, "#figure", "0");
  await page.fill("#value", "7.5");
  await page.click("#set button");
  // The figure comes back with the timer's next push.
  await waitText(page, "#figure", "7.5");
  const tick = await page.textContent("#tick");
  check(/^at tick \d+$/.test(tick), `the push says its tick, got ${JSON.stringify(tick)}`);
  check(errors.length === 0, `no page errors: ${errors.join("; ")}`);
  console.log("PASS");
} finally {
  done();
  await browser.close();
}
