// The room page as people use it: names, typing, nothing lost while a poll is in flight,
// reloads without duplicates, and one connection shared by the tabs of one browser.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, waitForStats, namedContext, shownTexts, stats, held } from "./harness.mjs";

const ROOM = "garden";
let server;
let browser;
let annContext;
let ann;
let bob;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  // ann is asked for her name, as a first-time visitor is.
  annContext = await browser.newContext();
  ann = await annContext.newPage();
  await ann.goto(`${server.url}/#${ROOM}`);
  await ann.fill("#name", "ann");
  await ann.click("#join");
  // bob has been here before: his name is remembered.
  bob = await (await namedContext(browser, "bob")).newPage();
  await bob.goto(`${server.url}/#${ROOM}`);
  await waitForStats(server.url, (s) => held(s) >= 2, "two connections");
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function send(page, text) {
  await page.fill("#message", text);
  await page.press("#message", "Enter");
}

async function waitForTexts(page, count, ms = 5000) {
  await page.waitForFunction(
    (n) => document.querySelectorAll("#history li[data-id]").length >= n,
    count,
    { timeout: ms },
  );
  return shownTexts(page);
}

test("a first visit connects at once: its first event stream opens without an error", async (t) => {
  // A newcomer, asked for a name, in a room where that name is not yet present: the case
  // where the server used to send the join event before the stream's status line, so
  // EventSource failed, and the page only connected on its retry about 3 s later.
  const context = await browser.newContext();
  await context.addInitScript(() => {
    const Native = window.EventSource;
    window.__sources = [];
    window.EventSource = function (url, options) {
      const source = new Native(url, options);
      const record = { url: String(url), opens: 0, errors: 0 };
      window.__sources.push(record);
      source.addEventListener("open", () => record.opens++);
      source.addEventListener("error", () => record.errors++);
      return source;
    };
    window.EventSource.prototype = Native.prototype;
    Object.assign(window.EventSource, { CONNECTING: 0, OPEN: 1, CLOSED: 2 });
  });
  const page = await context.newPage();
  // Event streams forced: the page would take a WebSocket first.
  await page.goto(`${server.url}/?transport=sse#first-visit`);
  await page.fill("#name", "dora");
  const started = Date.now();
  await page.click("#join");
  await page.waitForFunction(() => document.getElementById("status").textContent === "connected", null, {
    timeout: 10_000,
  });
  const elapsed = Date.now() - started;
  t.diagnostic(`name entered -> "connected" in ${elapsed} ms`);
  const sources = await page.evaluate(() => window.__sources);
  assert.equal(sources.length, 1, "one EventSource, never a reconnect");
  assert.equal(sources[0].errors, 0, "the first stream opened without an error event");
  assert.equal(sources[0].opens, 1);
  assert.match(sources[0].url, /name=dora/);
  await context.close();
});

test("names are asked once, remembered, shown with messages and in presence", async () => {
  assert.equal(await ann.textContent("#me"), "ann");
  assert.equal(await ann.evaluate(() => localStorage.getItem("comet-chat:name")), "ann");
  await send(ann, "hello garden");
  await waitForTexts(bob, 1);
  assert.equal(await bob.textContent("#history li .from"), "ann");
  await bob.waitForFunction(() => {
    const names = Array.from(document.querySelectorAll("#presence li"), (li) => li.textContent);
    return names.includes("ann") && names.includes("bob");
  }, null, { timeout: 5000 });
  // The message is stored in this room, under ann's name.
  const stored = await (await fetch(`${server.url}/rooms/${ROOM}/messages`)).json();
  assert.deepEqual(stored.messages.map((m) => [m.from, m.text]), [["ann", "hello garden"]]);
});

test("the typing indicator appears in the other page and disappears", async () => {
  // The page sends a typing event at most every 2 s; ann typed her first message just now.
  await new Promise((r) => setTimeout(r, 2100));
  await ann.fill("#message", "I am typ");
  await bob.waitForFunction(() => document.getElementById("typing").textContent === "ann is typing…", null, {
    timeout: 3000,
  });
  assert.equal(await ann.textContent("#typing"), "", "nobody sees their own typing");
  // Hidden 4 s after the last event.
  await bob.waitForFunction(() => document.getElementById("typing").textContent === "", null, { timeout: 7000 });
  await ann.fill("#message", "");
});

test("a message sent while the other page's poll is in flight is not lost", async () => {
  // carol uses long polling, and every one of her polls is held back 400 ms in the
  // browser: messages posted meanwhile must come with her next poll.
  const carol = await (await namedContext(browser, "carol")).newPage();
  await carol.route(/\/messages\?/, async (route) => {
    await new Promise((r) => setTimeout(r, 400));
    await route.continue();
  });
  await carol.goto(`${server.url}/?transport=poll#${ROOM}`);
  const before = (await waitForTexts(carol, 1)).length;
  for (let i = 1; i <= 6; i++) {
    await send(ann, `in flight ${i}`);
    await new Promise((r) => setTimeout(r, 90));
  }
  const texts = await waitForTexts(carol, before + 6, 10_000);
  const flight = texts.filter((t) => t.startsWith("in flight"));
  assert.deepEqual(flight, [1, 2, 3, 4, 5, 6].map((i) => `in flight ${i}`));
  await carol.close();
});

test("a reload resumes without duplicates", async () => {
  const beforeIds = await bob.$$eval("#history li[data-id]", (items) => items.map((li) => li.dataset.id));
  await bob.reload();
  await waitForTexts(bob, beforeIds.length);
  await send(ann, "after the reload");
  await bob.waitForFunction(() => document.querySelector("#history li:last-child .text")?.textContent === "after the reload", null, {
    timeout: 5000,
  });
  const ids = await bob.$$eval("#history li[data-id]", (items) => items.map((li) => li.dataset.id));
  assert.equal(new Set(ids).size, ids.length, "every message once");
  assert.deepEqual(ids.slice(0, beforeIds.length), beforeIds);
});

test("two tabs of one browser hold one connection between them", async () => {
  await waitForStats(server.url, (s) => held(s) === 2, "ann and bob only");
  const ann2 = await annContext.newPage();
  await ann2.goto(`${server.url}/#${ROOM}`);
  // The second tab shows the history it got from the first, not from a connection of its own.
  const history = await waitForTexts(ann2, 2);
  assert.ok(history.includes("hello garden"));
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(held(await stats(server.url)), 2, "still one connection for ann's two tabs");
  await send(bob, "to both tabs");
  for (const page of [ann, ann2]) {
    await page.waitForFunction(() => document.querySelector("#history li:last-child .text")?.textContent === "to both tabs", null, {
      timeout: 5000,
    });
  }
  // Close the tab that holds the connection: the other takes over, still only one.
  await ann.close();
  await waitForStats(server.url, (s) => held(s) === 2, "ann2 to take over the connection", 10_000);
  await send(bob, "after the handover");
  await ann2.waitForFunction(() => document.querySelector("#history li:last-child .text")?.textContent === "after the handover", null, {
    timeout: 5000,
  });
  const ids = await ann2.$$eval("#history li[data-id]", (items) => items.map((li) => li.dataset.id));
  assert.equal(new Set(ids).size, ids.length, "no duplicates across the handover");
});

test("a name the server refuses is shown with the server's reason, not as 'offline'", async () => {
  // A name kept from an older page, which the server's rules now refuse (a no-break space).
  const page = await (await namedContext(browser, "ann\u00a0lee")).newPage();
  await page.goto(`${server.url}/#${ROOM}`);
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("refused"), null, {
    timeout: 10_000,
  });
  assert.match(await page.textContent("#status"), /space/);
  await page.close();
});
