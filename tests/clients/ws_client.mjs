// Drives Node's `ws` package (a real third-party client) for tests/websocket_clients.rs.
//
// The same line protocol as tests/clients/ws_client.py (its docstring lists the commands):
// one JSON command per line on stdin, exactly one JSON answer per line on stdout, and no
// expectations of its own. Differences: `keepalive` is not a feature of `ws` (it only answers
// pings, which it does by itself), so it is accepted and ignored; `auto_pong: false` turns
// that answering off, to be the client that answers nothing.
//
// `ws` is installed by tests/browser's package.json (npm ci there), so it is resolved from
// that directory rather than from this script's own.

import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

const require = createRequire(new URL('../browser/package.json', import.meta.url));
const WebSocket = require('ws');

/** One connection: the library's object, frames not yet asked for, and its close. */
class Conn {
  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiter = null;
    this.closed = null;
    this.pings = 0;
    this.pongWaiter = null;
    ws.on('message', (data, isBinary) => {
      this.push(isBinary ? { ok: 'binary', bytes: data.length } : { ok: 'frame', text: data.toString('utf8') });
    });
    ws.on('ping', () => { this.pings += 1; });
    ws.on('pong', () => { if (this.pongWaiter) { this.pongWaiter(); this.pongWaiter = null; } });
    // A protocol error the library detects itself arrives as 'error' before 'close'.
    ws.on('error', () => {});
    ws.on('close', (code, reason) => {
      // 1005/1006 are what ws reports for a close frame without a code / no close frame.
      this.closed = { ok: 'closed', code: code === 1006 ? null : code, reason: reason.toString('utf8') };
      this.push(this.closed);
      if (this.pongWaiter) { this.pongWaiter(); this.pongWaiter = null; }
    });
  }

  push(item) {
    if (this.waiter) {
      const wake = this.waiter;
      this.waiter = null;
      wake(item);
    } else {
      this.queue.push(item);
    }
  }

  recv(timeoutMs) {
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift());
    if (this.closed) return Promise.resolve(this.closed);
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.waiter = null; resolve({ ok: 'timeout' }); }, timeoutMs);
      this.waiter = (item) => { clearTimeout(timer); resolve(item); };
    });
  }
}

function open(conns, cmd) {
  return new Promise((resolve) => {
    const options = { handshakeTimeout: 10_000, autoPong: cmd.auto_pong !== false };
    if (cmd.origin) options.origin = cmd.origin;
    const ws = new WebSocket(cmd.url, options);
    let settled = false;
    const settle = (answer) => { if (!settled) { settled = true; resolve(answer); } };
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => settle({ ok: 'refused', status: res.statusCode, body }));
      res.on('error', () => settle({ ok: 'refused', status: res.statusCode, body }));
    });
    ws.once('error', (e) => settle({ ok: 'failed', error: String(e) }));
    ws.once('open', () => {
      conns.set(cmd.conn, new Conn(ws));
      settle({ ok: 'open' });
    });
  });
}

async function handle(conns, cmd) {
  if (cmd.op === 'open') return open(conns, cmd);
  const conn = conns.get(cmd.conn);
  const timeoutMs = (cmd.timeout ?? 5) * 1000;
  switch (cmd.op) {
    case 'send':
      if (conn.closed) return conn.closed;
      await new Promise((resolve) => conn.ws.send(cmd.text, resolve));
      return conn.closed ?? { ok: 'sent' };
    case 'recv':
      return conn.recv(timeoutMs);
    case 'ping': {
      if (conn.closed) return conn.closed;
      const answer = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve({ ok: 'timeout' }), timeoutMs);
        conn.pongWaiter = () => { clearTimeout(timer); resolve(conn.closed ?? { ok: 'pong' }); };
        conn.ws.ping();
      });
      return answer;
    }
    case 'pings':
      return { ok: 'pings', count: conn.pings };
    case 'close':
      if (!conn.closed) {
        conn.ws.close(1000);
        await new Promise((resolve) => conn.ws.once('close', resolve));
      }
      return conn.closed;
    default:
      throw new Error(`unknown op ${cmd.op}`);
  }
}

const conns = new Map();
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const cmd = JSON.parse(line);
  if (cmd.op === 'quit') break;
  process.stdout.write(`${JSON.stringify(await handle(conns, cmd))}\n`);
}
for (const conn of conns.values()) conn.ws.terminate();
process.exit(0);
