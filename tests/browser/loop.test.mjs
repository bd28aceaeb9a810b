// The X-ray page (/loop on the admin listener) in a real browser: it shows the clients
// connected and a broadcast's fan-out as they happen. Saves a screenshot of it to
// target/browser-artifacts/loop.png (the README's picture is one of these).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { startServer, launchBrowser, waitForStats } from "./harness.mjs";

const ARTIFACTS = resolve(import.meta.dirname, "../../target/browser-artifacts");
const POLLS = 30;
const STREAMS = 30;
let server;
let browser;
const polls = [];
const streams = [];

/** A classic long poll on a connection of its own; resolves with the answer's body. */
function longPoll(url) {
  return new Promise((done, fail) => {
    const req = request(`${url}/chat`, { agent: false }, (res) => {
      let body = "";
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => done(body));
    });
    req.on("error", fail);
    req.end();
  });
}

/** An event stream in the lobby, held open until the test ends. */
function stream(url) {
  return new Promise((done, fail) => {
    const req = request(`${url}/rooms/lobby/events`, { agent: false }, (res) => {
      res.resume(); // read and drop every frame
      done(req);
    });
    // Before the head: a failure to connect. After it: the test closing the stream.
    req.on("error", (e) => fail(e));
    req.end();
  });
}

before(async () => {
  server = await startServer(["--admin-addr", "127.0.0.1:0"]);
  assert.ok(server.adminUrl, "the server logs where its admin listener is");
  browser = await launchBrowser();
});

after(async () => {
  streams.forEach((req) => req.destroy());
  await browser?.close();
  await server?.stop();
});

test("the X-ray shows the clients connecting and a broadcast fanning out", async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${server.adminUrl}/loop`);
  await page.waitForFunction(() => document.getElementById("feed").textContent === "live", null, { timeout: 10_000 });
  for (let i = 0; i < POLLS; i++) polls.push(longPoll(server.url));
  for (let i = 0; i < STREAMS; i++) streams.push(await stream(server.url));
  await waitForStats(server.url, (s) => s.pending_polls === POLLS && s.streams === STREAMS, "polls and streams");
  await page.waitForFunction(
    ([p, s]) => Number(document.getElementById("polls").textContent) === p && Number(document.getElementById("streams").textContent) === s,
    [POLLS, STREAMS],
    { timeout: 5000 },
  );
  assert.ok(Number(await page.textContent("#connections")) >= POLLS + STREAMS);
  // The slab strip shows them: parked polls in green, streams in purple.
  const drawn = (colour) => page.$$eval("#slab rect", (rects, c) => rects.filter((r) => r.getAttribute("fill") === c).length, colour);
  assert.ok((await drawn("#7ed321")) > 0, "parked connections are drawn");
  assert.ok((await drawn("#bd10e0")) > 0, "streams are drawn");

  const posted = await fetch(`${server.url}/chat`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: "message=fan+out",
  });
  assert.equal(posted.status, 200);
  const answers = await Promise.all(polls);
  assert.ok(answers.every((body) => body === '{"ok":"fan out"}'), "every poll got the message");
  await page.waitForFunction(
    (n) => {
      const row = document.querySelector("#broadcasts tr");
      return row && row.children[0].textContent === "lobby" && row.children[1].textContent === String(n);
    },
    POLLS + STREAMS,
    { timeout: 5000 },
  );
  // A few more frames, so the rolling charts have something to show.
  await page.waitForTimeout(3000);
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, "loop.png");
  await page.screenshot({ path, fullPage: true });
  console.log(`# screenshot: ${path}`);
});
