// comet-chat.js: the client library for a comet-chat room (docs/CLIENT.md), with no
// dependencies. The server's own page (chat.js) is built on it; a site embeds it the same way.
//
// What it owns, so that no page has to:
// - the transport: WebSocket, else Server-Sent Events, else long polling, stepping down
//   only when the one above is shown to be blocked (it failed to open while the server
//   answered a plain request), or the one the caller forces;
// - the position: every connection resumes after the last message seen, after any drop,
//   with exponential backoff and jitter, honouring Retry-After and the shutdown hint;
// - messages once each (by id), and posts once each: a post is retried with its client_id,
//   which the server stores once however many attempts reach it;
// - tokens: renewed through the caller's getToken before they run out, and on `expired`;
// - tabs: one tab of a site per room holds the connection (the leader, elected with a Web
//   Lock) and hands everything it hears to the others over a BroadcastChannel, since
//   browsers allow about six connections per host and every open stream or poll holds one.
//
// It is an ES module (`import { CometChat } from "/comet-chat.js"`); it also sets
// globalThis.CometChat, for classic scripts that run after it (see docs/CLIENT.md).

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
// A connection up this long has proved itself: the next drop starts the backoff afresh.
// Not at once on open, so a server that accepts and drops at once is not hammered.
const STABLE_AFTER_MS = 5000;
// A transport that has neither opened nor failed by then is taken as blocked (a proxy that
// holds an upgrade or buffers an event stream never says no).
const OPEN_TIMEOUT_MS = 10000;
// Failures to open, in a row and with the server answering, that show a transport blocked.
const STRIKES_TO_STEP_DOWN = 2;
// Attempts per post before it is given up as unreachable (about 8 s of retries).
const POST_ATTEMPTS = 6;
// A post sent over the WebSocket with no ack after this long is retried (same client_id).
const ACK_TIMEOUT_MS = 10000;
// The server sends one typing event per name per --typing-interval (1 s) at most.
const TYPING_EVERY_MS = 2000;
// Ids remembered for de-duplication, and messages kept for a tab that joins later.
const SEEN_IDS_MAX = 5000;
const KEEP_MESSAGES = 1000;
// Renew a token this long before it expires (or half its remaining life, if shorter).
const RENEW_BEFORE_MS = 60000;
// A long poll answers within --poll-timeout (20 s by default); past this without an answer
// the request is taken as lost and made again.
const POLL_TIMEOUT_MS = 60000;

const TRANSPORTS = ["ws", "sse", "poll"];

/** The name a token vouches for (its `sub`), or "" — read for display: the server checks. */
export function tokenName(token) {
  return tokenClaims(token).sub || "";
}

function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(Array.from(atob(part), (c) =>
      "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""));
    const claims = JSON.parse(json);
    return claims && typeof claims === "object" ? claims : {};
  } catch (e) {
    return {};
  }
}

function randomId() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Date.now().toString(36) + Math.random().toString(36).slice(2);
}

function later(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

// A gateway's or a restarting server's failure: worth trying again as it was.
function transient(status) { return status === 502 || status === 503 || status === 504; }

/** A post or connection the server refused: `status` (0: unreachable) and its `error`. */
export class CometChatError extends Error {
  constructor(status, error, clientId) {
    super(error);
    this.status = status;
    this.error = error;
    this.clientId = clientId;
  }
}

/**
 * One room on one comet-chat server. `new CometChat(options)` (or `CometChat.connect`)
 * starts connecting at once; see docs/CLIENT.md for the options and events.
 */
export class CometChat {
  static connect(options) { return new CometChat(options); }

  constructor(options) {
    const o = options || {};
    if (!o.room || !/^[A-Za-z0-9_-]{1,64}$/.test(o.room)) throw new TypeError("room: 1 to 64 of A-Z a-z 0-9 _ -");
    if (o.transport && o.transport !== "auto" && !TRANSPORTS.includes(o.transport)) {
      throw new TypeError("transport: auto, ws, sse or poll");
    }
    this.room = o.room;
    this.base = String(o.url || globalThis.location.origin).replace(/\/+$/, "");
    this.token = o.token || "";
    this.name = o.name || tokenName(this.token);
    this.getToken = o.getToken || null;
    this.openTimeoutMs = o.openTimeoutMs || OPEN_TIMEOUT_MS;
    this.renewBeforeMs = o.renewBeforeMs || RENEW_BEFORE_MS;
    // The transports still to try, best first; the first is in use.
    this.ladder = o.transport && o.transport !== "auto" ? [o.transport] : TRANSPORTS.slice();
    this.forced = this.ladder.length === 1;
    this.position = o.since || "";
    this.seen = new Set();
    this.messages = [];
    this.present = new Set();
    this.asked = [];
    this.state = { state: "connecting", transport: this.ladder[0] };
    this.listeners = new Map();
    this.queue = Promise.resolve();
    this.lastTyping = 0;
    this.attempts = 0;
    this.strikes = 0;       // refusals in a row of the transport in use while the server answered
    this.hint = null;       // { ms, text }: when the server said to come back, and why
    this.live = false;      // the connection in use has opened
    this.gen = 0;           // moves on at every stop(), so late answers of old tries are ignored
    this.conn = null;       // the open connection's close(), or null
    this.socket = null;     // the open WebSocket, when that is the transport
    this.pendingAck = null; // { clientId, resolve } of the post awaiting its ack
    this.timers = new Set();
    this.closed = false;
    this.leader = false;
    this.waitingForToken = false;
    const share = o.share !== false && "BroadcastChannel" in globalThis && globalThis.navigator && navigator.locks;
    const key = "comet-chat:" + this.base + "|" + this.room;
    this.channel = share ? new BroadcastChannel(key) : null;
    if (this.channel) {
      this.channel.onmessage = (e) => this.heard(e.data);
      this.lockAbort = new AbortController();
      navigator.locks.request(key, { signal: this.lockAbort.signal }, () => this.lead())
        .catch(() => {}); // aborted by close() before it was granted
      this.channel.postMessage({ kind: "hello" });
    } else {
      // Started on a later turn, so that the caller can add its listeners first.
      Promise.resolve().then(() => this.lead());
    }
  }

  // ---- the public surface ------------------------------------------------------------

  /** Calls `fn(detail)` on each `event`; returns a function that stops it. */
  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.listeners.get(event).delete(fn);
  }

  /** The transport in use ("ws", "sse" or "poll"); a follower tab reports its leader's. */
  get transport() { return this.state.transport; }

  /** True in the tab that holds the connection. */
  get isLeader() { return this.leader; }

  /** Names present in the room, sorted. */
  get presence() { return Array.from(this.present).sort(); }

  /**
   * Posts `text`; resolves with `{id, duplicate}` once the server stored it, or rejects with
   * a CometChatError. Posts go one after another, in the order given. `clientId` names the
   * message for retries: send a given-up message again with the same one and it is still
   * stored once.
   */
  send(text, opts) {
    const clientId = (opts && opts.clientId) || randomId();
    const result = this.queue.then(() => this.attempt(text, clientId, 1));
    this.queue = result.catch(() => {});
    return result;
  }

  /** Says the user is typing; sent at most once every 2 s whatever the calls. */
  typing() {
    const now = Date.now();
    if (now - this.lastTyping < TYPING_EVERY_MS) return;
    this.lastTyping = now;
    if (this.socket && this.socket.readyState === 1) {
      this.socket.send(JSON.stringify({ type: "typing" }));
    } else {
      this.post("typing", { from: this.name }).catch(() => {});
    }
  }

  /** Replaces the token (and the name it gives) and reconnects with it if it was waiting. */
  setToken(token) {
    this.renewed(token);
  }

  /** Stops for good: closes the connection and hands the leadership to another tab. */
  close() {
    this.closed = true;
    this.stop();
    this.timers.forEach(clearTimeout);
    if (this.lockAbort) this.lockAbort.abort();
    if (this.release) this.release();
    if (this.channel) this.channel.close();
  }

  // ---- events ------------------------------------------------------------------------

  emit(event, detail) {
    const fns = this.listeners.get(event);
    if (fns) fns.forEach((fn) => { try { fn(detail); } catch (e) { console.error(e); } });
  }

  // Everything the leader hears becomes one of these items; the other tabs get the same
  // items over the channel, so every tab runs exactly this.
  apply(item) {
    switch (item.kind) {
      case "message": {
        const m = item.message;
        if (this.seen.has(m.id)) return;
        this.remember(m);
        this.position = m.id;
        this.emit("message", m);
        return;
      }
      case "gap": if (item.next) this.position = item.next; this.emit("gap", { next: item.next }); return;
      case "position": if (item.next) this.position = item.next; return;
      case "status": this.state = item.status; this.emit("status", item.status); return;
      case "typing": if (item.from !== this.name) this.emit("typing", { from: item.from }); return;
      case "join": case "leave": {
        const joined = item.kind === "join";
        if (joined) this.present.add(item.name); else this.present.delete(item.name);
        this.asked.forEach((changes) => changes.set(item.name, joined));
        this.emit(item.kind, { name: item.name });
        this.emit("presence", this.presence);
        return;
      }
      case "presence": this.present = new Set(item.names); this.emit("presence", this.presence); return;
    }
  }

  remember(m) {
    this.seen.add(m.id);
    if (this.seen.size > SEEN_IDS_MAX) this.seen.delete(this.seen.values().next().value);
    this.messages.push(m);
    if (this.messages.length > KEEP_MESSAGES) this.messages.shift();
  }

  deliver(item) {
    this.apply(item);
    if (this.channel && this.leader) this.channel.postMessage(item);
  }

  status(state, more) {
    this.deliver({ kind: "status", status: Object.assign({ state: state, transport: this.ladder[0] }, more) });
  }

  // What another tab of the site said on the channel.
  heard(item) {
    if (item.kind === "hello") {
      if (this.leader) {
        this.channel.postMessage({ kind: "state", messages: this.messages, next: this.position,
          names: this.presence, status: this.state });
      }
      return;
    }
    if (this.leader) return;
    if (item.kind === "state") {
      item.messages.forEach((m) => this.apply({ kind: "message", message: m }));
      if (item.next) this.position = item.next;
      this.apply({ kind: "presence", names: item.names });
      this.apply({ kind: "status", status: item.status });
      return;
    }
    this.apply(item);
  }

  // ---- the leader's connection -------------------------------------------------------

  lead() {
    if (this.closed) return undefined;
    this.leader = true;
    this.scheduleRenewal();
    this.connect();
    // Held for the life of this client; close() resolves it, and the next tab leads.
    return new Promise((resolve) => { this.release = resolve; });
  }

  later(fn, ms) {
    const id = setTimeout(() => { this.timers.delete(id); if (!this.closed) fn(); }, ms);
    this.timers.add(id);
    return id;
  }

  // Exponential backoff with jitter: a random 0.5–1 × min(max, min · 2^n), so that a crowd
  // of clients dropped at once does not come back at once (and none waits for nothing).
  backoff() {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempts);
    this.attempts++;
    return Math.round(ceiling * (0.5 + Math.random() * 0.5));
  }

  stop() {
    this.gen++;
    this.live = false;
    clearTimeout(this.stableTimer);
    if (this.conn) { const close = this.conn; this.conn = null; close(); }
    this.socket = null;
    if (this.pendingAck) this.pendingAck.resolve(null);
  }

  // Drops the connection and makes it again after `ms` (backoff or a server's hint).
  reconnect(ms) {
    this.stop();
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = this.later(() => this.connect(), ms);
  }

  // After a drop: wait the server's hint if it gave one, else back off.
  dropped(text) {
    const hint = this.hint;
    this.hint = null;
    const wait = hint ? hint.ms : this.backoff();
    this.status(hint ? "connecting" : "offline", { text: hint ? hint.text : text, retryInMs: wait });
    this.reconnect(wait);
  }

  opened() {
    this.live = true;
    this.strikes = 0;
    this.status("connected", {});
    clearTimeout(this.stableTimer);
    this.stableTimer = this.later(() => { this.attempts = 0; }, STABLE_AFTER_MS);
    this.refreshPresence();
  }

  connect() {
    if (this.closed || this.waitingForToken) return;
    clearTimeout(this.reconnectTimer);
    this.stop();
    const transport = this.ladder[0];
    if (transport === "ws" && !("WebSocket" in globalThis)) return this.blocked("no WebSocket here");
    if (transport === "sse" && !("EventSource" in globalThis)) return this.blocked("no EventSource here");
    if (transport === "ws") this.openSocket();
    else if (transport === "sse") this.openStream();
    else this.poll();
  }

  // The transport in use cannot work here: the next one down, at once.
  blocked(why) {
    if (this.forced || this.ladder.length === 1) return this.dropped(why);
    this.strikes = 0;
    const from = this.ladder.shift();
    this.emit("fallback", { from: from, to: this.ladder[0], reason: why });
    this.connect();
  }

  // A WebSocket or EventSource failed before it opened, and the browser hides why. One plain
  // request to the room says which case it is: the server unreachable or restarting (back
  // off, same transport), the token refused (ask for one), or the server answering (so the
  // transport itself is blocked on the way, or off on the server: step down).
  //
  // A refusal is believed the second time in a row: a server that was restarting may be up
  // by the time it is asked, and one unlucky moment should not cost a client its best
  // transport for good. A transport that neither opened nor failed (`timedOut`) is believed
  // at once: a server that is away refuses connections, it does not hold them.
  failedToOpen(transport, timedOut) {
    this.stop();
    const gen = this.gen;
    this.fetchRoom("presence", { cache: "no-store" }).then((response) => {
      if (this.closed || gen !== this.gen) return;
      if (this.refusedToken(response)) return;
      if (response.ok && !timedOut && !this.forced && ++this.strikes < STRIKES_TO_STEP_DOWN) return this.connect();
      if (response.ok) return this.blocked(transport + " did not open though the server answers");
      if (transient(response.status)) return this.dropped("server unavailable");
      return this.refused(response);
    }, () => { if (gen === this.gen) this.dropped("offline"); });
  }

  query() {
    const q = new URLSearchParams();
    if (this.name) q.set("name", this.name);
    if (this.position) q.set("since", this.position);
    // Neither WebSocket nor EventSource can send headers: the token goes in the query,
    // which the server keeps out of its log.
    if (this.token) q.set("token", this.token);
    return "?" + q.toString();
  }

  url(what) { return this.base + "/rooms/" + this.room + "/" + what; }

  // One server frame or event, by its type (the same fields over every transport).
  received(type, data) {
    switch (type) {
      case "message": this.deliver({ kind: "message", message: { id: data.id, from: data.from, text: data.text, time: data.time } }); break;
      case "gap": this.deliver({ kind: "gap", next: data.next }); break;
      case "typing": this.deliver({ kind: "typing", from: data.from }); break;
      case "join": case "leave": this.deliver({ kind: type, name: data.name }); break;
      case "expired": this.tokenTrouble("expired", data.error || "token expired"); break;
      case "shutdown": {
        this.hint = { ms: Number(data.retry_after_ms) || 1000, text: "server restarting" };
        this.status("connecting", { text: this.hint.text, retryInMs: this.hint.ms });
        break;
      }
    }
  }

  openSocket() {
    const ws = new WebSocket(this.url("ws").replace(/^http/, "ws") + this.query());
    let open = false;
    const timer = this.later(() => { if (!open) this.failedToOpen("ws", true); }, this.openTimeoutMs);
    this.socket = ws;
    this.conn = () => {
      clearTimeout(timer);
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      if (ws.readyState < 2) ws.close(1000);
    };
    const fresh = !this.position;
    ws.onopen = () => {
      open = true;
      clearTimeout(timer);
      // Opened without ?since= the server waits up to a second for a `resume` frame before
      // it replays from the start; say "from the start" at once instead.
      if (fresh) ws.send(JSON.stringify({ type: "resume", since: null }));
      this.opened();
    };
    ws.onmessage = (e) => {
      let frame;
      try { frame = JSON.parse(e.data); } catch (err) { return; }
      if (!frame || typeof frame !== "object") return;
      if (frame.type === "ack") return this.acked(frame);
      this.received(frame.type, frame);
    };
    ws.onclose = () => {
      if (this.socket !== ws) return;
      // (After `expired`, tokenTrouble has already stopped this socket.)
      if (!open) return this.failedToOpen("ws");
      this.dropped("connection lost");
    };
  }

  openStream() {
    const source = new EventSource(this.url("events") + this.query());
    let open = false;
    const timer = this.later(() => { if (!open) this.failedToOpen("sse", true); }, this.openTimeoutMs);
    this.conn = () => { clearTimeout(timer); source.close(); };
    source.onopen = () => { open = true; clearTimeout(timer); this.opened(); };
    for (const type of ["message", "gap", "typing", "join", "leave", "expired", "shutdown"]) {
      source.addEventListener(type, (e) => {
        let data;
        try { data = JSON.parse(e.data); } catch (err) { return; }
        this.received(type, data || {});
      });
    }
    source.onerror = () => {
      if (this.conn === null) return;
      // EventSource would reconnect by itself, at a fixed pace and from its own last id;
      // we close it and resume ourselves, with backoff and from the position all tabs share.
      if (!open) return this.failedToOpen("sse");
      this.dropped("connection lost");
    };
  }

  // One poll at a time, always from the last position: a message posted while this poll's
  // answer is in flight is simply in the next answer.
  poll() {
    const abort = new AbortController();
    const close = () => abort.abort();
    this.conn = close;
    const mine = () => this.conn === close;
    // A parked poll is a live connection: say so once it has not been answered at once.
    const parked = this.later(() => { if (mine() && !this.live) this.opened(); }, 250);
    const lost = this.later(() => abort.abort(), POLL_TIMEOUT_MS);
    const settle = () => { clearTimeout(parked); clearTimeout(lost); };
    this.fetchRoom("messages" + this.query(), { cache: "no-store", signal: abort.signal }, true)
      .then((response) => {
        settle();
        if (!mine()) return undefined;
        if (this.refusedToken(response)) return undefined;
        if (response.status === 503) {
          // Going away (it says when to come back, at a random delay per client so that
          // everyone does not return at once), or Redis out of reach (Retry-After).
          return response.json().catch(() => ({})).then((answer) => {
            if (!mine()) return;
            const ms = Number(answer.retry_after_ms) || Number(response.headers.get("Retry-After")) * 1000;
            if (ms > 0) this.hint = { ms: ms, text: answer.retry_after_ms ? "server restarting" : "server busy" };
            this.dropped("server unavailable");
          });
        }
        if (transient(response.status)) return this.dropped("server unavailable");
        if (!response.ok) return this.refused(response);
        return response.json().then((answer) => {
          if (!mine()) return;
          if (!this.live) this.opened();
          this.attempts = 0;
          if (answer.gap) this.deliver({ kind: "gap", next: answer.next });
          answer.messages.forEach((m) => this.received("message", m));
          answer.events.forEach((e) => this.received(e.type, e));
          this.deliver({ kind: "position", next: answer.next });
          this.poll();
        });
      })
      .catch(() => {
        settle();
        if (mine()) this.dropped("offline");
      });
  }

  // Refused for a reason the server gives (a name it will not take, a full server): say
  // it, and ask again when it says, or a while later.
  refused(response) {
    const gen = this.gen;
    return response.json().catch(() => ({})).then((e) => {
      if (gen !== this.gen) return;
      const after = Number(response.headers.get("Retry-After"));
      const wait = after > 0 ? after * 1000 : BACKOFF_MAX_MS;
      this.status("refused", { text: e.error || "HTTP " + response.status, status: response.status, retryInMs: wait });
      this.reconnect(wait);
    });
  }

  // ---- presence ----------------------------------------------------------------------

  // Joins and leaves heard while a presence request is out, one record per request: the
  // answer may have been made before them (with --redis a node hears a page's join back
  // from Redis), so they are applied over it rather than wiped out by it.
  refreshPresence() {
    const changes = new Map();
    this.asked.push(changes);
    const done = () => { this.asked = this.asked.filter((c) => c !== changes); };
    this.fetchRoom("presence", { cache: "no-store" })
      .then((r) => (r.ok ? r.json() : null))
      .then((answer) => {
        done();
        if (!answer) return;
        const names = new Set(answer.present);
        changes.forEach((joined, who) => { if (joined) names.add(who); else names.delete(who); });
        this.deliver({ kind: "presence", names: Array.from(names) });
      })
      .catch(done);
  }

  // ---- tokens ------------------------------------------------------------------------

  // Every request carries the token when there is one (as a Bearer header, or in the
  // query when `queryHasToken`, to keep it to one copy).
  fetchRoom(what, options, queryHasToken) {
    const o = Object.assign({}, options);
    if (this.token && !queryHasToken) o.headers = Object.assign({ Authorization: "Bearer " + this.token }, o.headers);
    return fetch(this.url(what), o);
  }

  refusedToken(response) {
    if (response.status !== 401 && response.status !== 403) return false;
    response.json().catch(() => ({})).then((e) => {
      this.tokenTrouble("refused", e.error || "the server wants a token (HTTP " + response.status + ")");
    });
    return true;
  }

  // The token was refused or ran out: stop, ask the caller for a new one, go on with it.
  tokenTrouble(reason, error) {
    if (this.waitingForToken) return;
    this.waitingForToken = true;
    this.stop();
    this.status("signed-out", { text: error, reason: reason });
    this.askToken(reason, error);
  }

  askToken(reason, error) {
    if (!this.getToken) return; // setToken() will carry on
    Promise.resolve()
      .then(() => this.getToken({ reason: reason, error: error, room: this.room }))
      .then((token) => {
        if (this.closed) return;
        if (token) return this.renewed(token);
        if (reason === "expiring") this.scheduleRenewal(true);
      }, (e) => {
        if (reason !== "expiring") this.status("signed-out", { text: String(e && e.message || e), reason: reason });
      });
  }

  renewed(token) {
    this.token = token;
    this.name = tokenName(token) || this.name;
    this.scheduleRenewal();
    if (this.waitingForToken) {
      this.waitingForToken = false;
      if (this.leader) this.reconnect(0);
    } else if (this.leader && this.ladder[0] !== "poll") {
      // An open stream or socket holds its token's time: reopen it on the new one, from
      // the same position, before the old one ends it.
      this.reconnect(0);
    }
  }

  // Asks for a new token before this one expires: `min(renewBeforeMs, half the time left)`
  // before its `exp`. `declined`: the caller had none to give early; wait for the end.
  scheduleRenewal(declined) {
    clearTimeout(this.renewTimer);
    const exp = Number(tokenClaims(this.token).exp);
    if (!this.getToken || !exp || declined) return;
    const left = exp * 1000 - Date.now();
    const wait = Math.max(1000, left - Math.min(this.renewBeforeMs, left / 2));
    const token = this.token;
    this.renewTimer = this.later(() => {
      if (this.token === token && !this.waitingForToken) this.askToken("expiring", "token expires soon");
    }, wait);
  }

  // ---- sending -----------------------------------------------------------------------

  post(what, fields) {
    return this.fetchRoom(what, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields).toString(),
    });
  }

  // One try of a post: over the WebSocket when this tab has one open, else over HTTP.
  // Answers { status, id, duplicate, error, retryAfter } or throws on a network failure.
  postOnce(text, clientId) {
    if (this.socket && this.socket.readyState === 1 && this.live) {
      const ws = this.socket;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { this.pendingAck = null; reject(new Error("no ack")); }, ACK_TIMEOUT_MS);
        this.pendingAck = {
          clientId: clientId,
          resolve: (frame) => {
            clearTimeout(timer);
            this.pendingAck = null;
            if (frame) resolve(frame); else reject(new Error("socket closed"));
          },
        };
        ws.send(JSON.stringify({ type: "post", text: text, client_id: clientId }));
      }).then((f) => ({ status: f.status, id: f.id, duplicate: f.status === 200, error: f.error, retryAfter: f.retry_after }));
    }
    return this.post("messages", { from: this.name, text: text, client_id: clientId }).then((response) =>
      response.json().catch(() => ({})).then((body) => ({
        status: response.status, id: body.id, duplicate: !!body.duplicate, error: body.error,
        retryAfter: Number(response.headers.get("Retry-After")) || 0,
      })));
  }

  acked(frame) {
    if (frame.for !== "post" || !this.pendingAck) return;
    if (frame.client_id !== undefined && frame.client_id !== this.pendingAck.clientId) return;
    this.pendingAck.resolve(frame);
  }

  attempt(text, clientId, n) {
    const again = () => this.attempt(text, clientId, n + 1);
    // `afterS`: the server's Retry-After, when it gave one (a 503 while Redis is away).
    const unreachable = (afterS) => {
      if (n >= POST_ATTEMPTS) throw new CometChatError(0, "the server could not be reached", clientId);
      const wait = Math.max(Math.min(BACKOFF_MIN_MS * n, 4000), (Number(afterS) || 0) * 1000);
      return later(wait).then(again);
    };
    return this.postOnce(text, clientId).then((answer) => {
      if (answer.status === 200 || answer.status === 201) return { id: answer.id, duplicate: answer.duplicate, clientId: clientId };
      if (transient(answer.status)) return unreachable(answer.retryAfter);
      if (answer.status === 429 && n < POST_ATTEMPTS) {
        const wait = Math.max(1, answer.retryAfter || 1) * 1000;
        this.emit("throttled", { retryInMs: wait, clientId: clientId });
        return later(wait).then(again);
      }
      if ((answer.status === 401 || answer.status === 403) && this.getToken && n < POST_ATTEMPTS) {
        const signedOut = new CometChatError(answer.status, answer.error || "signed out", clientId);
        return Promise.resolve()
          .then(() => this.getToken({ reason: "refused", error: answer.error, room: this.room }))
          .then((token) => {
            if (!token) throw signedOut;
            this.renewed(token);
            return again();
          }, () => { throw signedOut; });
      }
      throw new CometChatError(answer.status, answer.error || "HTTP " + answer.status, clientId);
    }, () => unreachable());
  }
}

globalThis.CometChat = CometChat;
CometChat.tokenName = tokenName;
CometChat.Error = CometChatError;
export default CometChat;
