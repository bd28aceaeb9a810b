// The page on a server that wants tokens (--token-secret-file): the site hands each user a
// link with a token in the fragment; the page shows the token's name, posts under it and
// cannot post as anyone else, and asks for a new token when the old one runs out, then
// carries on from where it was.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer, launchBrowser, waitForStats, held, BINARY } from "./harness.mjs";

const ROOM = "office";
let dir;
let secretFile;
let server;
let browser;
let ann;
let bob;

/** A token from `comet-chat token`, as a site's back end would make one. */
function mint(sub, ttl = "1h", rooms = ROOM) {
  return execFileSync(BINARY, ["token", "--secret-file", secretFile, "--sub", sub, "--rooms", rooms, "--ttl", ttl])
    .toString()
    .trim();
}

async function open(sub, token) {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${server.url}/#${ROOM}&token=${token}`);
  await page.waitForFunction(() => document.getElementById("status").textContent === "connected", null, {
    timeout: 10_000,
  });
  return page;
}

async function send(page, text) {
  await page.fill("#message", text);
  await page.click("#send");
}

function lastMessage(page) {
  return page.evaluate(() => {
    const item = document.querySelector("#history li:last-child");
    return item ? [item.querySelector(".from").textContent, item.querySelector(".text").textContent] : null;
  });
}

async function waitForLast(page, text, ms = 5000) {
  await page.waitForFunction((t) => document.querySelector("#history li:last-child .text")?.textContent === t, text, {
    timeout: ms,
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "comet-tokens-"));
  secretFile = join(dir, "secret");
  writeFileSync(secretFile, "a browser-test secret, long enough for HS256\n");
  server = await startServer(["--token-secret-file", secretFile]);
  browser = await launchBrowser();
  ann = await open("ann", mint("ann"));
  bob = await open("bob", mint("bob"));
  await waitForStats(server.url, (s) => held(s) >= 2, "both pages to connect");
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("the page shows the token's name and never asks for one", async () => {
  assert.equal(await ann.textContent("#me"), "ann");
  assert.equal(await ann.isVisible("#name-dialog"), false);
  assert.equal(await ann.isVisible("#rename"), false, "a signed name cannot be changed");
  // The token left the address bar for sessionStorage.
  assert.equal(new URL(ann.url()).hash, `#${ROOM}`);
});

test("a message posted in one page shows in the other under the token's name", async () => {
  await send(ann, "hello from ann");
  await waitForLast(bob, "hello from ann");
  assert.deepEqual(await lastMessage(bob), ["ann", "hello from ann"]);
});

test("the page cannot post as someone else", async () => {
  // What a curious user would try from the console: ann's token, bob's name.
  const status = await ann.evaluate(async (room) => {
    const token = sessionStorage.getItem("comet-chat:token");
    const response = await fetch(`/rooms/${room}/messages`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/x-www-form-urlencoded" },
      body: "from=bob&text=I am bob",
    });
    return response.status;
  }, ROOM);
  assert.equal(status, 400);
  // Nor without a token at all.
  const bare = await fetch(`${server.url}/rooms/${ROOM}/messages`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: "from=bob&text=I am bob",
  });
  assert.equal(bare.status, 401);
  await send(ann, "still ann");
  await waitForLast(bob, "still ann");
  const texts = await bob.$$eval("#history li .text", (spans) => spans.map((s) => s.textContent));
  assert.ok(!texts.includes("I am bob"), JSON.stringify(texts));
});

test("an expired token is replaced through the page, which carries on from where it was", async () => {
  // cy's token runs out a second from now (the server allows 5 s for clock skew).
  const cy = await open("cy", mint("cy", "1s"));
  await waitForLast(cy, "still ann");
  await cy.waitForFunction(() => document.getElementById("token-dialog").open, null, { timeout: 15_000 });
  const reason = await cy.textContent("#token-reason");
  assert.match(reason, /expired/);
  assert.match(await cy.textContent("#status"), /signed out/);
  // Posted while cy has no good token: it must reach her once she has one.
  await send(ann, "while cy was away");
  await waitForLast(bob, "while cy was away");
  await cy.fill("#token", mint("cy"));
  await cy.click("#use-token");
  await waitForLast(cy, "while cy was away", 10_000);
  const texts = await cy.$$eval("#history li .text", (spans) => spans.map((s) => s.textContent));
  assert.equal(texts.filter((t) => t === "still ann").length, 1, "nothing shown twice");
  await send(cy, "back again");
  await waitForLast(ann, "back again");
  assert.deepEqual(await lastMessage(ann), ["cy", "back again"]);
  await cy.context().close();
});

test("a token for another room is refused with the reason shown", async () => {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${server.url}/#${ROOM}&token=${mint("dee", "1h", "elsewhere")}`);
  await page.waitForFunction(() => document.getElementById("token-dialog").open, null, { timeout: 15_000 });
  assert.match(await page.textContent("#token-reason"), /does not grant this room/);
  await page.context().close();
});
