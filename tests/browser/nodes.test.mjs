// Two comet-chat nodes sharing rooms through one Redis (--redis): a page on each, and
// they chat as if they were on one server.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startRedis, launchBrowser, namedContext, shownTexts } from "./harness.mjs";

const ROOM = "across";
let redis;
let nodeA;
let nodeB;
let browser;
let ann;
let bob;

before(async () => {
  redis = await startRedis();
  nodeA = await startServer(["--redis", redis.url]);
  nodeB = await startServer(["--redis", redis.url]);
  browser = await launchBrowser();
  ann = await (await namedContext(browser, "ann")).newPage();
  bob = await (await namedContext(browser, "bob")).newPage();
  await ann.goto(`${nodeA.url}/#${ROOM}`);
  await bob.goto(`${nodeB.url}/#${ROOM}`);
  for (const page of [ann, bob]) {
    await page.waitForFunction(() => document.getElementById("status").textContent === "connected", null, {
      timeout: 10_000,
    });
  }
});

after(async () => {
  await browser?.close();
  await nodeA?.stop();
  await nodeB?.stop();
  await redis?.stop();
});

async function send(page, text) {
  await page.fill("#message", text);
  await page.press("#message", "Enter");
}

async function waitForText(page, text) {
  await page.waitForFunction(
    (t) => Array.from(document.querySelectorAll("#history li .text"), (s) => s.textContent).includes(t),
    text,
    { timeout: 5000 },
  );
}

test("two pages on two nodes chat", async () => {
  assert.notEqual(nodeA.url, nodeB.url, "two servers");
  // A page shows a message when it comes back through its own stream, its own included,
  // so each page is waited for: the poster's node may hear Redis's announcement after the
  // other node does.
  await send(ann, "hello from node A");
  for (const page of [ann, bob]) await waitForText(page, "hello from node A");
  await send(bob, "and back from node B");
  for (const page of [ann, bob]) await waitForText(page, "and back from node B");
  for (const page of [ann, bob]) {
    assert.deepEqual(await shownTexts(page), ["hello from node A", "and back from node B"]);
  }
  // Each sees the other in the room, though their streams are on different nodes.
  for (const page of [ann, bob]) {
    await page.waitForFunction(() => {
      const names = Array.from(document.querySelectorAll("#presence li"), (li) => li.textContent);
      return names.includes("ann") && names.includes("bob");
    }, null, { timeout: 5000 });
  }
});
