// The client library, www/comet-chat.js, in Chromium: the ten-line embed of docs/CLIENT.md
// as written; each transport forced; the fallback chain through a proxy that blocks
// WebSocket (and event streams); a server restarted under a chatting page; two tabs on one
// connection; and the "new mail" use, a site's back end posting to a user's private room.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createServer, request } from "node:http";
import { connect } from "node:net";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startServer, startRedis, launchBrowser, stats, waitForStats, held, BINARY } from "./harness.mjs";

const ROOT = resolve(import.meta.dirname, "../..");
let browser;
let www;
const cleanups = [];

// The test pages are real files beside a copy of www/ (comet-chat.js as it is): Chromium
// does not let a page the test made up in the browser (page.route) open a WebSocket to a
// loopback address (Local Network Access), while a page served from there may.
const BLANK = `<!doctype html><meta charset="utf-8"><title>embed</title>
<script type="module">import { CometChat } from "/comet-chat.js"; window.Lib = CometChat;</script>`;
const CLASSIC = `<!doctype html><meta charset="utf-8"><title>classic</title>
<script type="module" src="/comet-chat.js"></script>
<script defer src="/classic-user.js"></script>`;
const CLASSIC_USER = `window.got = [];
var chat = new CometChat({ room: "lobby", name: "cy" });
chat.on("message", function (m) { window.got.push(m.text); });`;

before(async () => {
  browser = await launchBrowser();
  www = mkdtempSync(join(tmpdir(), "comet-client-www-"));
  cpSync(join(ROOT, "www"), www, { recursive: true });
  const docs = readFileSync(join(ROOT, "docs/CLIENT.md"), "utf8");
  const embedHtml = docs.match(/<!-- embed -->\n```html\n([\s\S]*?)```/)[1];
  assert.ok(embedHtml.trim().split("\n").length <= 10, "the embed is ten lines or fewer");
  writeFileSync(join(www, "site-ann.html"), embedHtml);
  writeFileSync(join(www, "site-bob.html"), embedHtml.replace('name: "ann"', 'name: "bob"'));
  writeFileSync(join(www, "embed.html"), BLANK);
  writeFileSync(join(www, "classic.html"), CLASSIC);
  writeFileSync(join(www, "classic-user.js"), CLASSIC_USER);
  cleanups.push(() => rmSync(www, { recursive: true, force: true }));
});

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await browser?.close();
});

async function server(args = [], addr) {
  const started = await startServer([...args, "--www", www], addr);
  cleanups.push(() => started.stop());
  return started;
}

/**
 * embed.html at `base` (a page that loads the library and nothing else), with a client
 * made there from `options`, its messages recorded in
 * window.seen and its other events in window.events. `siteTokens`: getToken fetches
 * /site/token, which the test answers as the site's back end would.
 */
async function embed(context, base, options, siteTokens) {
  const page = await context.newPage();
  if (siteTokens) {
    await page.route(`${base}/site/token`, (route) => route.fulfill({ contentType: "text/plain", body: siteTokens() }));
  }
  await page.goto(`${base}/embed.html`);
  await page.waitForFunction(() => window.Lib);
  await page.evaluate(([o, withSite]) => {
    window.seen = [];
    window.events = [];
    window.asked = [];
    if (withSite) {
      o.getToken = async (why) => {
        window.asked.push(why.reason);
        return (await fetch("/site/token")).text();
      };
    }
    const chat = new window.Lib(o);
    window.chat = chat;
    chat.on("message", (m) => window.seen.push(m));
    for (const kind of ["status", "gap", "fallback", "throttled", "presence"]) {
      chat.on(kind, (detail) => window.events.push([kind, detail]));
    }
  }, [options, Boolean(siteTokens)]);
  return page;
}

function connected(page, ms = 10_000) {
  return page.waitForFunction(() => window.events.some(([k, d]) => k === "status" && d.state === "connected"), null, { timeout: ms });
}

function texts(page) {
  return page.evaluate(() => window.seen.map((m) => m.text));
}

async function waitForText(page, text, ms = 5000) {
  await page.waitForFunction((t) => window.seen.some((m) => m.text === t), text, { timeout: ms });
}

function send(page, text) {
  return page.evaluate((t) => window.chat.send(t), text);
}

/** Open connections per transport, from /stats. */
async function open(url) {
  const t = (await stats(url)).transports;
  return { poll: t.poll.open, sse: t.sse.open, ws: t.ws.open };
}

/**
 * A reverse proxy in front of `target` (an http://host:port) that forwards plain requests
 * and answers WebSocket upgrades and event streams as `upgrade` and `events` say:
 * "pass", "refuse" (403 / 502, as a proxy that will not carry them does) or "hold" (taken,
 * never answered: a proxy that buffers); for upgrades also "refuse-first" (the first
 * refused, the rest carried). Resolves with its URL.
 */
function blockingProxy(target, { upgrade = "refuse", events = "pass" }) {
  const { hostname, port } = new URL(target);
  const held = new Set();
  let upgrades = 0;
  const proxy = createServer((req, res) => {
    if (/\/events(\?|$)/.test(req.url) && events !== "pass") {
      if (events === "refuse") {
        res.writeHead(502, { "Content-Type": "text/plain" });
        res.end("event streams are not carried here");
      } else {
        held.add(res);
      }
      return;
    }
    const upstream = request({ hostname, port, path: req.url, method: req.method, headers: req.headers, agent: false }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  proxy.on("upgrade", (req, socket, head) => {
    held.add(socket);
    if (upgrade === "hold") return;
    if (upgrade === "refuse" || (upgrade === "refuse-first" && upgrades++ === 0)) {
      socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    // Carried: the request head as it came, then bytes both ways.
    const upstream = connect(port, hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(lines.join("\r\n") + "\r\n\r\n");
      upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    held.add(upstream);
    upstream.on("error", () => socket.destroy());
    socket.on("error", () => upstream.destroy());
  });
  return new Promise((done) => {
    proxy.listen(0, "127.0.0.1", () => {
      cleanups.push(() => new Promise((closed) => {
        held.forEach((s) => s.destroy());
        proxy.closeAllConnections();
        proxy.close(closed);
      }));
      done(`http://127.0.0.1:${proxy.address().port}`);
    });
  });
}

test("the ten-line embed of docs/CLIENT.md works as written", async () => {
  const srv = await server();
  const pages = [];
  for (const who of ["ann", "bob"]) {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${srv.url}/site-${who}.html`);
    pages.push(page);
  }
  await waitForStats(srv.url, (s) => s.transports.ws.open === 2, "both embeds on a WebSocket");
  await pages[0].fill("input", "hello from an embed");
  await pages[0].press("input", "Enter");
  for (const page of pages) {
    await page.waitForFunction(() => document.querySelector("li")?.textContent === "ann: hello from an embed", null, { timeout: 5000 });
  }
  // The same library from a classic script: the module sets globalThis.CometChat, and a
  // deferred classic script runs after it.
  const classic = await (await browser.newContext()).newPage();
  await classic.goto(`${srv.url}/classic.html`);
  await classic.waitForFunction(() => window.got.includes("hello from an embed"), null, { timeout: 5000 });
});

for (const transport of ["poll", "sse", "ws"]) {
  test(`forced to ${transport}, the client uses it alone, sends and receives`, async () => {
    const srv = await server();
    const context = await browser.newContext();
    const posts = [];
    context.on("request", (r) => { if (r.method() === "POST") posts.push(r.url()); });
    const page = await embed(context, srv.url, { room: "forced", name: "ann", transport });
    await connected(page);
    await waitForStats(srv.url, (s) => held(s) === 1, "one connection");
    const counts = await open(srv.url);
    assert.deepEqual(counts, { poll: 0, sse: 0, ws: 0, [transport]: 1 }, "only the forced transport");
    assert.equal(await page.evaluate(() => window.chat.transport), transport);
    const other = await fetch(`${srv.url}/rooms/forced/messages`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: "from=bob&text=from+outside",
    });
    assert.equal(other.status, 201);
    await waitForText(page, "from outside");
    const stored = await send(page, "from the page");
    assert.match(stored.id, /^[0-9a-f]{8}-2$/);
    await waitForText(page, "from the page");
    // Over a WebSocket, the post goes on the socket; otherwise it is an HTTP POST.
    assert.equal(posts.length, transport === "ws" ? 0 : 1, JSON.stringify(posts));
    const deliveries = (await stats(srv.url)).transports[transport].deliveries;
    assert.ok(deliveries >= 2, `both messages delivered over ${transport}: ${deliveries}`);
    assert.deepEqual(await texts(page), ["from outside", "from the page"]);
    await context.close();
  });
}

test("with WebSocket refused by a proxy, the client falls back to event streams", async () => {
  const srv = await server();
  const base = await blockingProxy(srv.url, { upgrade: "refuse" });
  const page = await embed(await browser.newContext(), base, { room: "behind", name: "ann" });
  await connected(page);
  await waitForStats(srv.url, (s) => s.streams === 1, "an event stream");
  assert.deepEqual(await open(srv.url), { poll: 0, sse: 1, ws: 0 });
  const fallbacks = await page.evaluate(() => window.events.filter(([k]) => k === "fallback").map(([, d]) => [d.from, d.to]));
  assert.deepEqual(fallbacks, [["ws", "sse"]]);
  await send(page, "through the proxy");
  await waitForText(page, "through the proxy");
  await page.context().close();
});

test("on a server with --no-websocket, the client takes event streams", async () => {
  const srv = await server(["--no-websocket"]);
  const page = await embed(await browser.newContext(), srv.url, { room: "plain", name: "ann" });
  await connected(page);
  await waitForStats(srv.url, (s) => s.streams === 1, "an event stream");
  assert.deepEqual(await open(srv.url), { poll: 0, sse: 1, ws: 0 });
  assert.equal(await page.evaluate(() => window.chat.transport), "sse");
  await send(page, "without WebSocket");
  await waitForText(page, "without WebSocket");
  await page.context().close();
});

test("one refused upgrade is not taken for a blocked WebSocket", async () => {
  // As when a server is restarting: the first try fails, the server answers the check.
  const srv = await server();
  const base = await blockingProxy(srv.url, { upgrade: "refuse-first" });
  const page = await embed(await browser.newContext(), base, { room: "behind", name: "ann" });
  await connected(page);
  await waitForStats(srv.url, (s) => s.transports.ws.open === 1, "a WebSocket through the proxy");
  assert.deepEqual(await open(srv.url), { poll: 0, sse: 0, ws: 1 });
  assert.equal(await page.evaluate(() => window.events.filter(([k]) => k === "fallback").length), 0);
  await send(page, "over the socket");
  await waitForText(page, "over the socket");
  await page.context().close();
});

for (const [upgrade, events] of [["refuse", "refuse"], ["hold", "hold"]]) {
  test(`with WebSocket (${upgrade}) and event streams (${events}) blocked, the client long-polls`, async () => {
    const srv = await server();
    const base = await blockingProxy(srv.url, { upgrade, events });
    // A held request never fails: the client gives up on it after openTimeoutMs.
    const page = await embed(await browser.newContext(), base, { room: "behind", name: "ann", openTimeoutMs: 1500 });
    await page.waitForFunction(() => window.chat.transport === "poll", null, { timeout: 15_000 });
    await connected(page);
    await waitForStats(srv.url, (s) => s.pending_polls === 1, "a parked poll");
    assert.deepEqual(await open(srv.url), { poll: 1, sse: 0, ws: 0 });
    const fallbacks = await page.evaluate(() => window.events.filter(([k]) => k === "fallback").map(([, d]) => [d.from, d.to]));
    assert.deepEqual(fallbacks, [["ws", "sse"], ["sse", "poll"]]);
    await send(page, "by long poll");
    await waitForText(page, "by long poll");
    await page.context().close();
  });
}

test("a server restarted under chatting pages loses and duplicates nothing", async (t) => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const args = ["--redis", redis.url, "--shutdown-grace", "1", "--www", www];
  let srv = await startServer(args);
  const addr = srv.url.replace("http://", "");
  const talker = await embed(await browser.newContext(), srv.url, { room: "restart", name: "ann" });
  const listener = await embed(await browser.newContext(), srv.url, { room: "restart", name: "bob", transport: "sse" });
  await connected(talker);
  await connected(listener);
  const COUNT = 30;
  // ann types a message every 100 ms, one after another as a person would, for 3 s...
  const sending = talker.evaluate(async (n) => {
    const results = [];
    for (let i = 1; i <= n; i++) {
      results.push(await window.chat.send(`m${i}`).then((r) => "ok " + r.duplicate, (e) => "failed " + e.error));
      await new Promise((r) => setTimeout(r, 100));
    }
    return results;
  }, COUNT);
  // ...and the server is stopped gracefully under her, stays away 1.5 s (her posts
  // meanwhile find nobody), and is started again where it was.
  await talker.waitForFunction(() => window.seen.length >= 8, null, { timeout: 5000 });
  await srv.stop("SIGTERM");
  await new Promise((r) => setTimeout(r, 1500));
  srv = await startServer(args, addr);
  cleanups.push(() => srv.stop());
  const results = await sending;
  assert.ok(results.every((r) => r.startsWith("ok")), JSON.stringify(results));
  const expected = Array.from({ length: COUNT }, (_, i) => `m${i + 1}`);
  for (const page of [talker, listener]) {
    await waitForText(page, `m${COUNT}`, 20_000);
    assert.deepEqual(await texts(page), expected, "every message once, in order");
    const gaps = await page.evaluate(() => window.events.filter(([k]) => k === "gap").length);
    assert.equal(gaps, 0, "Redis kept the history: nothing was lost to report");
  }
  const states = await talker.evaluate(() => window.events.filter(([k]) => k === "status").map(([, d]) => d.state + (d.text ? ` (${d.text})` : "")));
  t.diagnostic(`ann's posts: ${results.join(", ")}; her states: ${states.join(" → ")}`);
  assert.equal(states.at(-1), "connected");
  // The server said when to come back, and the pages waited for that.
  const hinted = await talker.evaluate(() => window.events.some(([k, d]) => k === "status" && d.text === "server restarting"));
  assert.ok(hinted, "the shutdown hint was heard");
  const stored = await (await fetch(`${srv.url}/rooms/restart/messages`)).json();
  assert.deepEqual(stored.messages.map((m) => m.text), expected, "stored once each");
  await talker.context().close();
  await listener.context().close();
});

test("two tabs of a site share one WebSocket, and the second takes over when the first closes", async () => {
  const srv = await server();
  const context = await browser.newContext();
  const first = await embed(context, srv.url, { room: "tabs", name: "ann" });
  await connected(first);
  await send(first, "before the second tab");
  const second = await embed(context, srv.url, { room: "tabs", name: "ann" });
  // The second tab gets what the first has heard, not from a connection of its own.
  await waitForText(second, "before the second tab");
  assert.equal(await second.evaluate(() => window.chat.isLeader), false);
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(await open(srv.url), { poll: 0, sse: 0, ws: 1 });
  // A follower posts too (over HTTP: the socket is the other tab's); both tabs show it once.
  await send(second, "from the second tab");
  for (const page of [first, second]) await waitForText(page, "from the second tab");
  await first.close();
  await second.waitForFunction(() => window.chat.isLeader, null, { timeout: 5000 });
  await waitForStats(srv.url, (s) => s.transports.ws.open === 1, "the second tab's own WebSocket");
  await fetch(`${srv.url}/rooms/tabs/messages`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: "from=bob&text=after+the+handover",
  });
  await waitForText(second, "after the handover");
  assert.deepEqual(await texts(second), ["before the second tab", "from the second tab", "after the handover"]);
  await context.close();
});

test("new mail: a site's back end posts to a user's private room and her page shows it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "comet-mail-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const secretFile = join(dir, "secret");
  writeFileSync(secretFile, "a browser-test secret, long enough for HS256\n");
  const mint = (sub, rooms, ttl) =>
    execFileSync(BINARY, ["token", "--secret-file", secretFile, "--sub", sub, "--rooms", rooms, "--ttl", ttl]).toString().trim();
  const srv = await server(["--token-secret-file", secretFile, "--private-rooms", "p-"]);
  const inbox = "p-ann";
  // ann's page starts with a token good for 4 s; the site gives it a fresh one when asked.
  const page = await embed(await browser.newContext(), srv.url, { room: inbox, token: mint("ann", inbox, "4s") },
    () => mint("ann", inbox, "1h"));
  await connected(page);
  assert.equal(await page.evaluate(() => window.chat.name), "ann", "the name is the token's");
  // The back end, with a token of its own for that room.
  const backend = mint("mailer", inbox, "1h");
  const notify = (text) => fetch(`${srv.url}/rooms/${inbox}/messages`, {
    method: "POST",
    headers: { Authorization: `Bearer ${backend}`, "Content-Type": "application/json" },
    body: JSON.stringify({ text }),
  });
  assert.equal((await notify("1 new message from carl")).status, 201);
  await waitForText(page, "1 new message from carl");
  // Nobody else reads ann's inbox, not even with a token for every room.
  const bob = await fetch(`${srv.url}/rooms/${inbox}/messages?token=${mint("bob", "*", "1h")}`);
  assert.equal(bob.status, 403);
  // The first token is renewed before it runs out (the server ends a stream 5 s past its
  // exp): the page is never signed out, and hears mail sent after the old token died.
  await page.waitForFunction(() => window.asked.includes("expiring"), null, { timeout: 10_000 });
  await new Promise((r) => setTimeout(r, 10_000));
  assert.equal((await notify("2 new messages")).status, 201);
  await waitForText(page, "2 new messages");
  const signedOut = await page.evaluate(() => window.events.filter(([k, d]) => k === "status" && d.state === "signed-out").length);
  assert.equal(signedOut, 0, "renewed in time, never signed out");
  assert.deepEqual(await page.evaluate(() => window.seen.map((m) => [m.from, m.text])), [
    ["mailer", "1 new message from carl"],
    ["mailer", "2 new messages"],
  ]);
  await page.context().close();
});
