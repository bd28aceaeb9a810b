// The chat page: what it shows and how it is typed into. Everything that talks to the
// server (transports, resuming, backoff, tokens, tabs sharing one connection, posts stored
// once) is www/comet-chat.js, the same library a site embeds (docs/CLIENT.md).
//
// - Messages are shown once each, and only when the server sends them back, so a post
//   retried with the same client_id never shows twice.
// - Text is inserted as text, never HTML.
// - On a server started with --token-secret-file, the page carries the token its site gave
//   it (the URL fragment #room&token=..., kept in sessionStorage), takes its name from the
//   token, and asks for a new token, saying why, when the server refuses or ends the old one.
// - ?transport=ws|sse|poll forces one transport (the library's `transport` option).
import { CometChat, tokenName } from "/comet-chat.js";

const $ = (id) => document.getElementById(id);
const history = $("history");
const input = $("message");
const statusEl = $("status");
const typingEl = $("typing");
const presenceEl = $("presence");

const fragment = readFragment();
const room = fragment.room;
const params = new URLSearchParams(location.search);
const NAME_KEY = "comet-chat:name";
const TOKEN_KEY = "comet-chat:token";
const token = takeToken(fragment.token);
let name = tokenName(token) || localStorage.getItem(NAME_KEY) || "";
let chat = null;

const TYPING_SHOW_MS = 4000;
const NOTICE_MS = 5000;

const typingTimers = new Map();
let lastStatus = { state: "connecting", text: "connecting…" };

// "#garden" or "#garden&token=eyJ..." (or "#token=eyJ..." for the lobby).
function readFragment() {
  const found = { room: "lobby", token: "" };
  location.hash.slice(1).split("&").forEach((part, i) => {
    const eq = part.indexOf("=");
    if (eq < 0 && i === 0) {
      const wanted = decodeURIComponent(part);
      if (/^[A-Za-z0-9_-]{1,64}$/.test(wanted)) found.room = wanted;
    } else if (part.slice(0, eq) === "token") {
      found.token = decodeURIComponent(part.slice(eq + 1));
    }
  });
  return found;
}

// A token in the fragment is kept for this tab and taken out of the address bar, so it
// is not bookmarked, shared or shown over a shoulder.
function takeToken(fromFragment) {
  if (fromFragment) {
    sessionStorage.setItem(TOKEN_KEY, fromFragment);
    window.history.replaceState(null, "", location.pathname + location.search + "#" + room);
    return fromFragment;
  }
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

// ---- what the page shows ------------------------------------------------------------

function setStatus(state, text) {
  lastStatus = { state: state, text: text };
  statusEl.className = "status " + state;
  statusEl.textContent = text;
}

// The library's status, in words.
function showStatus(s) {
  const secs = (ms) => Math.ceil(ms / 1000) + " s";
  switch (s.state) {
    case "connected": setStatus("connected", "connected"); break;
    case "connecting":
      setStatus("connecting", s.text ? s.text + (s.retryInMs ? " — back in " + secs(s.retryInMs) : "") : "connecting…");
      break;
    case "refused":
      setStatus("offline", "refused: " + s.text + " — asking again in " + secs(s.retryInMs));
      break;
    case "signed-out": setStatus("offline", "signed out — " + s.text); break;
    default: setStatus("offline", "offline — retrying in " + secs(s.retryInMs || 0));
  }
}

// A post's own trouble (too long, too fast, refused): shown for a while, then the
// connection's status again, since the connection itself is fine.
let noticeTimer = 0;
function notice(text) {
  statusEl.className = "status offline";
  statusEl.textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => setStatus(lastStatus.state, lastStatus.text), NOTICE_MS);
}

function pad(n) { return (n < 10 ? "0" : "") + n; }

// The library hands each message over once (by id), in order.
function showMessage(message) {
  const at = new Date(message.time || Date.now());
  const item = document.createElement("li");
  item.dataset.id = message.id;
  const time = document.createElement("time");
  time.dateTime = at.toISOString();
  time.textContent = pad(at.getHours()) + ":" + pad(at.getMinutes()) + ":" + pad(at.getSeconds());
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = message.from;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = message.text;
  item.append(time, from, text);
  history.appendChild(item);
  history.scrollTop = history.scrollHeight;
  stopTyping(message.from);
}

function showGap() {
  const item = document.createElement("li");
  item.className = "gap";
  item.textContent = "Some messages could not be delivered (the server restarted or they are too old).";
  history.appendChild(item);
}

function renderPresence(names) {
  presenceEl.replaceChildren();
  names.forEach((who) => {
    const item = document.createElement("li");
    item.textContent = who;
    presenceEl.appendChild(item);
  });
}

function renderTyping() {
  const names = Array.from(typingTimers.keys());
  if (names.length === 0) typingEl.textContent = "";
  else typingEl.textContent = names.join(" and ") + (names.length === 1 ? " is typing…" : " are typing…");
}

function startTyping(who) {
  if (who === name) return;
  clearTimeout(typingTimers.get(who));
  typingTimers.set(who, setTimeout(() => stopTyping(who), TYPING_SHOW_MS));
  renderTyping();
}

function stopTyping(who) {
  if (!typingTimers.has(who)) return;
  clearTimeout(typingTimers.get(who));
  typingTimers.delete(who);
  renderTyping();
}

// ---- tokens: the page has no site behind it, so it asks the user ---------------------

// One dialog at a time, whoever asks (the connection, or a post refused meanwhile).
let tokenAsked = null;
function askToken(why) {
  // The page cannot fetch a token ahead of time: let the old one run its course.
  if (why.reason === "expiring") return null;
  if (tokenAsked) return tokenAsked;
  const sentence = why.reason === "expired"
    ? "your token has expired; ask the site that sent you here for a new one"
    : why.error;
  $("token-reason").textContent = sentence;
  $("token").value = "";
  const dialog = $("token-dialog");
  if (!dialog.open) dialog.showModal();
  tokenAsked = new Promise((resolve) => {
    $("token-form").addEventListener("submit", function submitted() {
      const fresh = $("token").value.trim();
      if (!fresh) return;
      $("token-form").removeEventListener("submit", submitted);
      tokenAsked = null;
      sessionStorage.setItem(TOKEN_KEY, fresh);
      name = tokenName(fresh) || name;
      $("me").textContent = name;
      resolve(fresh);
    });
  });
  return tokenAsked;
}

// ---- sending ------------------------------------------------------------------------

function send(text) {
  let clientId;
  if (givenBack && givenBack.text === text) {
    // The message put back in the field, sent again as it was: the same message.
    clientId = givenBack.clientId;
    givenBack.item.remove();
  }
  givenBack = null;
  enqueue(text, clientId);
}

// The library retries a post that failed on the network (same client_id, so it is stored
// once) and one refused for going too fast (when the server's Retry-After says); what it
// gives up on is shown here.
function enqueue(text, clientId) {
  chat.send(text, { clientId: clientId }).catch((e) => {
    const why = e.status === 401 || e.status === 403 ? "signed out" : e.error;
    unsent(text, e.clientId, why);
  });
}

// A message the server did not take (too long, signed out, unreachable) stays on the
// page with why, and a button that sends it again with its client_id (so one that did
// reach the server is still stored once); when the field is empty it also goes back
// there, to be edited. What was typed is never lost.
let givenBack = null; // { text, clientId, item } of the message put back in the field
function unsent(text, clientId, why) {
  notice("not sent: " + why);
  const item = document.createElement("li");
  item.className = "unsent";
  const note = document.createElement("span");
  note.className = "why";
  note.textContent = "not sent — " + why;
  const body = document.createElement("span");
  body.className = "unsent-text";
  body.textContent = text;
  const again = document.createElement("button");
  again.type = "button";
  again.textContent = "send again";
  again.addEventListener("click", () => {
    item.remove();
    if (givenBack && givenBack.item === item) {
      // Sent from here: the copy put back in the field would be the same message again.
      if (input.value === text) input.value = "";
      givenBack = null;
    }
    enqueue(text, clientId);
  });
  item.append(note, body, again);
  history.appendChild(item);
  history.scrollTop = history.scrollHeight;
  if (input.value === "") {
    input.value = text;
    givenBack = { text: text, clientId: clientId, item: item };
  }
}

input.addEventListener("input", () => {
  if (chat && input.value.trim() !== "") chat.typing();
});

$("compose").addEventListener("submit", (event) => {
  event.preventDefault(); // Enter in the field submits the form too.
  const text = input.value;
  if (text.trim() === "" || !chat) return;
  input.value = "";
  send(text);
});

// ---- starting -----------------------------------------------------------------------

function start() {
  $("me").textContent = name;
  // With a token, the name is the token's: there is nothing to change here.
  if (token) $("rename").hidden = true;
  chat = new CometChat({
    room: room,
    name: name,
    token: token,
    getToken: askToken,
    transport: params.get("transport") || "auto",
  });
  chat.on("message", showMessage);
  chat.on("gap", showGap);
  chat.on("status", showStatus);
  chat.on("typing", (e) => startTyping(e.from));
  chat.on("presence", renderPresence);
  chat.on("throttled", (e) => notice("sending too fast — next message in " + Math.ceil(e.retryInMs / 1000) + " s"));
  window.cometChat = chat; // for the console, and the browser tests
}

window.addEventListener("hashchange", () => location.reload());
$("rename").addEventListener("click", (event) => {
  event.preventDefault();
  localStorage.removeItem(NAME_KEY);
  location.reload();
});

$("room-name").textContent = "#" + room;
if (name || token) {
  start();
} else {
  setStatus("offline", "enter a name to join");
  const dialog = $("name-dialog");
  $("name-form").addEventListener("submit", () => {
    const wanted = $("name").value.trim();
    if (!wanted) return;
    name = wanted;
    localStorage.setItem(NAME_KEY, name);
    start();
  });
  dialog.showModal();
}
