// Shared set-up for the browser tests: start the comet-chat binary on a free port, and
// launch Debian's Chromium (never a downloaded one) through playwright-core.

import { spawn } from "node:child_process";
import { createServer, connect } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const ROOT = resolve(import.meta.dirname, "../..");
export const BINARY = process.env.COMET_CHAT_BIN || join(ROOT, "target/debug/comet-chat");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

// Flags Chromium needs as root on a machine with no network but the registries.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Starts the server; resolves with { url, adminUrl, stop(signal) } once it logs its address
 * (adminUrl: with --admin-addr, where the admin listener is). `addr` picks
 * the address (default: a free port), so a test can restart a server where it was.
 * `stop()` kills it (SIGKILL, a crash); `stop("SIGTERM")` is a graceful shutdown, which
 * resolves once the process has exited.
 */
export function startServer(extraArgs = [], addr = "127.0.0.1:0") {
  const args = ["--addr", addr, "--www", join(ROOT, "www"), "--log-level", "info", ...extraArgs];
  const child = spawn(BINARY, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`server did not start in 10 s; output:\n${output}`));
    }, 10_000);
    const onData = (chunk) => {
      output += chunk;
      const match = output.match(/listening on (http:\/\/[0-9.:]+)/);
      if (match) {
        clearTimeout(timer);
        const admin = output.match(/admin on (http:\/\/[0-9.:]+)/);
        resolvePromise({
          url: match[1],
          adminUrl: admin ? admin[1] : null,
          stop: (signal = "SIGKILL") => new Promise((done) => {
            if (child.exitCode !== null) return done();
            child.once("exit", done);
            child.kill(signal);
          }),
        });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}; output:\n${output}`));
    });
  });
}

/**
 * Launches headless Chromium. playwright-core gives every launch a fresh, empty profile
 * directory of its own (the equivalent of a new --user-data-dir) and removes it on close.
 */
export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/** Server counters from /stats. */
export async function stats(url) {
  const response = await fetch(`${url}/stats`);
  return response.json();
}

/** Waits until predicate(stats) holds, polling /stats, or fails after `ms`. */
export async function waitForStats(url, predicate, what, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const current = await stats(url);
    if (predicate(current)) return current;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(current)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A new browser context whose pages already have a chat name (as if asked before). */
export async function namedContext(browser, name) {
  const context = await browser.newContext();
  await context.addInitScript((n) => localStorage.setItem("comet-chat:name", n), name);
  return context;
}

/** Texts of the messages a page shows, in order, without times, names or gap notes. */
export function shownTexts(page) {
  return page.$$eval("#history li:not(.gap) .text", (spans) => spans.map((s) => s.textContent));
}

/** Connections held open to the server: parked polls, event streams and WebSockets. */
export function held(s) {
  return s.pending_polls + s.streams + s.transports.ws.open;
}

/** A free port on 127.0.0.1 (the kernel picks it; it is closed again at once). */
function freePort() {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePromise(port));
    });
  });
}

/**
 * Starts Debian's redis-server on a free port in a fresh directory (for --redis); resolves
 * with { url, stop() } once it answers PING.
 */
export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "comet-redis-"));
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", ""], {
    stdio: "ignore",
  });
  const ping = () =>
    new Promise((done) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("error", () => done(false));
      socket.once("connect", () => socket.write("PING\r\n"));
      socket.once("data", (data) => {
        socket.destroy();
        done(String(data).startsWith("+PONG"));
      });
    });
  const deadline = Date.now() + 10_000;
  while (!(await ping())) {
    if (Date.now() > deadline) throw new Error("redis-server did not answer in 10 s");
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () =>
      new Promise((done) => {
        const finish = () => {
          rmSync(dir, { recursive: true, force: true });
          done();
        };
        if (child.exitCode !== null) return finish();
        child.once("exit", finish);
        child.kill("SIGKILL");
      }),
  };
}
