// The classic page in a real browser: two pages chat, quick messages keep their order, and
// a message that looks like HTML is shown as text and runs nothing.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, waitForStats, namedContext, shownTexts, held } from "./harness.mjs";

let server;
let browser;
let one;
let two;
const dialogs = [];

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  // Two browser contexts: two separate users, as two people on two machines would be.
  one = await (await namedContext(browser, "one")).newPage();
  two = await (await namedContext(browser, "two")).newPage();
  for (const page of [one, two]) {
    page.on("dialog", (dialog) => {
      dialogs.push(dialog.message());
      dialog.dismiss();
    });
    await page.goto(server.url + "/");
  }
  // Both pages hold a connection (an event stream) on the server before anyone types.
  await waitForStats(server.url, (s) => held(s) >= 2, "both pages to connect");
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const shown = shownTexts;

/** Waits until every page shows `count` messages, or fails after `ms`. */
async function waitForCount(page, count, ms) {
  await page.waitForFunction(
    (n) => document.querySelectorAll("#history li[data-id]").length >= n,
    count,
    { timeout: ms },
  );
}

test("the page shows it is connected", async () => {
  await two.waitForFunction(() => document.getElementById("status").textContent === "connected", null, {
    timeout: 5000,
  });
});

test("a message typed in one page shows in the other within 1 s", async () => {
  await one.fill("#message", "hello from page one");
  const sent = Date.now();
  await one.click("#send");
  await waitForCount(two, 1, 1000);
  const elapsed = Date.now() - sent;
  assert.deepEqual(await shown(two), ["hello from page one"]);
  assert.ok(elapsed <= 1000, `took ${elapsed} ms`);
  assert.equal(await one.inputValue("#message"), "", "the field is cleared after sending");
  // Each message carries its local time.
  const time = await two.$eval("#history li time", (t) => t.textContent);
  assert.match(time, /^\d\d:\d\d:\d\d$/);
});

test("five quick messages arrive in order, sent with Enter", async () => {
  for (let i = 1; i <= 5; i++) {
    await one.fill("#message", `quick ${i}`);
    await one.press("#message", "Enter");
  }
  await waitForCount(two, 6, 5000);
  const texts = await shown(two);
  assert.deepEqual(texts.slice(1), ["quick 1", "quick 2", "quick 3", "quick 4", "quick 5"]);
});

test("a message that looks like HTML shows as text and runs nothing", async () => {
  const evil = "<img src=x onerror=alert(1)><b>bold</b>";
  await one.fill("#message", evil);
  await one.click("#send");
  await waitForCount(two, 7, 5000);
  const texts = await shown(two);
  assert.equal(texts.at(-1), evil);
  assert.equal(await two.$$eval("#history img, #history b", (els) => els.length), 0);
  // Give a would-be onerror handler time to run before concluding that none did.
  await two.waitForTimeout(300);
  assert.deepEqual(dialogs, []);
});

test("a message the server will not take goes back in the field, with the reason", async () => {
  const before = (await shown(two)).length;
  // 2,500 characters, under the field's limit, but 5,000 bytes: past --max-message (4096).
  const long = "é".repeat(2500);
  await one.fill("#message", long);
  await one.click("#send");
  await one.waitForFunction(() => document.getElementById("status").textContent.startsWith("not sent"), null, {
    timeout: 5000,
  });
  assert.match(await one.textContent("#status"), /--max-message/);
  assert.equal(await one.inputValue("#message"), long, "what was typed is not lost");
  // The connection was fine all along: the page says so again after a while.
  await one.waitForFunction(() => document.getElementById("status").textContent === "connected", null, {
    timeout: 8000,
  });
  assert.equal((await shown(two)).length, before, "nothing was posted");
  // It also stays on the page, with why, whatever is in the field meanwhile.
  assert.deepEqual(await one.$$eval("#history li.unsent .unsent-text", (s) => s.map((e) => e.textContent)), [long]);
  await one.fill("#message", "");
});

test("a refused message is kept on the page even when another is being typed", async () => {
  const unsent = () => one.$$eval("#history li.unsent .unsent-text", (s) => s.map((e) => e.textContent));
  const already = (await unsent()).length;
  const long = "ü".repeat(2100);
  // The refusal is held back until the next message is being typed, as a slow network would.
  let release;
  const typed = new Promise((resolve) => (release = resolve));
  const posts = "**/rooms/lobby/messages";
  await one.route(posts, async (route) => {
    await typed;
    await route.continue();
  });
  await one.fill("#message", long);
  await one.press("#message", "Enter");
  await one.fill("#message", "a draft");
  release();
  await one.waitForFunction((n) => document.querySelectorAll("#history li.unsent").length > n, already, {
    timeout: 5000,
  });
  await one.unroute(posts);
  assert.deepEqual((await unsent()).slice(already), [long]);
  assert.equal(await one.inputValue("#message"), "a draft", "the draft is left alone");
  await one.fill("#message", "");
});

test("messages sent past the post limit wait for the server's word and all arrive, in order", async () => {
  const before = (await shown(two)).length;
  // The server takes 20 posts at once from one address, then 10 a second (429 past that).
  // Use up the allowance of this address from the page itself, then type.
  const codes = await one.evaluate(async () => {
    const body = "from=x&text=filler";
    const headers = { "Content-Type": "application/x-www-form-urlencoded" };
    const posts = Array.from({ length: 40 }, () =>
      fetch("/rooms/elsewhere/messages", { method: "POST", headers, body }).then((r) => r.status));
    return Promise.all(posts);
  });
  assert.ok(codes.includes(429), `the allowance is used up: ${codes}`);
  const typed = ["slow 1", "slow 2", "slow 3", "slow 4", "slow 5"];
  for (const text of typed) {
    await one.fill("#message", text);
    await one.press("#message", "Enter");
  }
  await one.waitForFunction(() => document.getElementById("status").textContent.startsWith("sending too fast"), null, {
    timeout: 5000,
  });
  await waitForCount(two, before + typed.length, 15_000);
  assert.deepEqual((await shown(two)).slice(before), typed);
});

test("the page shows it is offline, then recovers and notes the gap when the server is back", async () => {
  const addr = server.url.replace("http://", "");
  await server.stop();
  await two.waitForFunction(() => document.getElementById("status").className.includes("offline"), null, {
    timeout: 5000,
  });
  // A message typed meanwhile fails (six tries, about 8 s), and stays on the page.
  await one.fill("#message", "while it was down");
  await one.press("#message", "Enter");
  const unsentTexts = () => one.$$eval("#history li.unsent .unsent-text", (s) => s.map((e) => e.textContent));
  await one.waitForFunction(() => Array.from(document.querySelectorAll("#history li.unsent .unsent-text"), (e) => e.textContent).includes("while it was down"), null, {
    timeout: 15_000,
  });
  assert.equal(await one.inputValue("#message"), "while it was down", "back in the field");
  server = await startServer([], addr);
  // The retry loop backs off at most 10 s; both pages must find the new server by then.
  await waitForStats(server.url, (s) => held(s) >= 2, "both pages to reconnect", 15_000);
  // Sent again from the history, it goes once, and leaves the field, so Enter cannot send
  // it a second time.
  await one.locator("#history li.unsent", { hasText: "while it was down" }).locator("button").click();
  assert.equal(await one.inputValue("#message"), "");
  await two.waitForFunction(() => Array.from(document.querySelectorAll("#history li .text"), (e) => e.textContent).includes("while it was down"), null, {
    timeout: 5000,
  });
  assert.equal((await shown(two)).filter((t) => t === "while it was down").length, 1);
  assert.ok(!(await unsentTexts()).includes("while it was down"));
  await one.fill("#message", "back again");
  await one.click("#send");
  await two.waitForFunction(() => document.querySelector("#history li:last-child").lastChild.textContent === "back again", null, {
    timeout: 5000,
  });
  // The new server has a new epoch: the page says that it may have missed messages.
  assert.equal(await two.locator("#history li.gap").count(), 1);
  await two.waitForFunction(() => document.getElementById("status").textContent === "connected", null, {
    timeout: 5000,
  });
});
