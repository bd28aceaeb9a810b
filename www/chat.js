// The chat page, on the loss-free room protocol (docs/PROTOCOL.md).
//
// - One tab per browser holds the connection to the server (the leader, elected with a Web
//   Lock); the others get everything it receives over a BroadcastChannel. Browsers allow
//   about six connections per host and every open stream or poll holds one.
// - The leader listens with EventSource where it works and falls back to long polling,
//   always resuming from the last position it saw, so nothing is lost across reconnects.
// - Messages are shown once each (by id) and only when the server sends them back, so a
//   post retried with the same client_id never shows twice.
// - Text is inserted as text, never HTML.
// - On a server started with --token-secret-file, the page carries the token its site gave
//   it (the URL fragment #room&token=..., kept in sessionStorage), takes its name from the
//   token, and asks for a new token, saying why, when the server refuses or ends the old one.
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var history = $("history");
  var input = $("message");
  var statusEl = $("status");
  var typingEl = $("typing");
  var presenceEl = $("presence");

  var fragment = readFragment();
  var room = fragment.room;
  var params = new URLSearchParams(location.search);
  var forcePolling = params.get("transport") === "poll";
  var NAME_KEY = "comet-chat:name";
  var TOKEN_KEY = "comet-chat:token";
  var token = takeToken(fragment.token);
  var name = nameFromToken(token) || localStorage.getItem(NAME_KEY) || "";

  var TYPING_SEND_EVERY_MS = 2000;
  var TYPING_SHOW_MS = 4000;
  var MIN_BACKOFF_MS = 500;
  var MAX_BACKOFF_MS = 10000;
  var POST_ATTEMPTS = 6;
  var NOTICE_MS = 5000;
  var KEEP_SHOWN = 1000;

  var position = "";          // the last position seen; "" means "from the start"
  var seen = new Set();       // ids of messages shown
  var shown = [];             // the messages shown, for a tab that joins later
  var present = new Set();
  var typingTimers = new Map();
  var lastStatus = { state: "connecting", text: "connecting…" };
  var channel = "BroadcastChannel" in window ? new BroadcastChannel("comet-chat:" + room) : null;
  var leader = false;

  // "#garden" or "#garden&token=eyJ..." (or "#token=eyJ..." for the lobby).
  function readFragment() {
    var parts = location.hash.slice(1).split("&");
    var found = { room: "lobby", token: "" };
    parts.forEach(function (part, i) {
      var eq = part.indexOf("=");
      if (eq < 0 && i === 0) {
        var wanted = decodeURIComponent(part);
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

  // The name the token vouches for (its "sub"), read for display only: the server checks
  // the signature and uses the same name whatever the page says.
  function nameFromToken(jwt) {
    try {
      var claims = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      var json = decodeURIComponent(Array.from(atob(claims), function (c) {
        return "%" + c.charCodeAt(0).toString(16).padStart(2, "0");
      }).join(""));
      return JSON.parse(json).sub || "";
    } catch (e) {
      return "";
    }
  }

  function api(what) { return "/rooms/" + room + "/" + what; }

  // Every request carries the token when there is one.
  function call(url, options) {
    options = options || {};
    if (token) options.headers = Object.assign({ Authorization: "Bearer " + token }, options.headers);
    return fetch(url, options);
  }

  // ---- what the page shows ----------------------------------------------------------

  function setStatus(state, text) {
    lastStatus = { state: state, text: text };
    statusEl.className = "status " + state;
    statusEl.textContent = text;
  }

  // A post's own trouble (too long, too fast, refused): shown for a while, then the
  // connection's status again, since the connection itself is fine.
  var noticeTimer = 0;
  function notice(text) {
    statusEl.className = "status offline";
    statusEl.textContent = text;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(function () { setStatus(lastStatus.state, lastStatus.text); }, NOTICE_MS);
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function showMessage(message) {
    if (seen.has(message.id)) return;
    seen.add(message.id);
    shown.push(message);
    if (shown.length > KEEP_SHOWN) shown.shift();
    var at = new Date(message.time || Date.now());
    var item = document.createElement("li");
    item.dataset.id = message.id;
    var time = document.createElement("time");
    time.dateTime = at.toISOString();
    time.textContent = pad(at.getHours()) + ":" + pad(at.getMinutes()) + ":" + pad(at.getSeconds());
    var from = document.createElement("span");
    from.className = "from";
    from.textContent = message.from;
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = message.text;
    item.append(time, from, text);
    history.appendChild(item);
    history.scrollTop = history.scrollHeight;
    stopTyping(message.from);
  }

  function showGap() {
    var item = document.createElement("li");
    item.className = "gap";
    item.textContent = "Some messages could not be delivered (the server restarted or they are too old).";
    history.appendChild(item);
  }

  function renderPresence() {
    presenceEl.replaceChildren();
    Array.from(present).sort().forEach(function (who) {
      var item = document.createElement("li");
      item.textContent = who;
      presenceEl.appendChild(item);
    });
  }

  function renderTyping() {
    var names = Array.from(typingTimers.keys());
    if (names.length === 0) typingEl.textContent = "";
    else typingEl.textContent = names.join(" and ") + (names.length === 1 ? " is typing…" : " are typing…");
  }

  function startTyping(who) {
    if (who === name) return;
    clearTimeout(typingTimers.get(who));
    typingTimers.set(who, setTimeout(function () { stopTyping(who); }, TYPING_SHOW_MS));
    renderTyping();
  }

  function stopTyping(who) {
    if (!typingTimers.has(who)) return;
    clearTimeout(typingTimers.get(who));
    typingTimers.delete(who);
    renderTyping();
  }

  // Everything the leader receives becomes one of these items; followers get the same
  // items over the channel, so every tab runs exactly this.
  function apply(item) {
    switch (item.kind) {
      case "message": showMessage(item.message); break;
      case "gap": showGap(); break;
      case "position": break;
      case "status": setStatus(item.state, item.text); break;
      case "typing": startTyping(item.from); break;
      case "join": present.add(item.name); noteAsked(item.name, true); renderPresence(); break;
      case "leave": present.delete(item.name); noteAsked(item.name, false); renderPresence(); break;
      case "presence": present = new Set(item.names); renderPresence(); break;
    }
    if (item.next) position = item.next;
    else if (item.kind === "message") position = item.message.id;
  }

  function deliver(item) {
    apply(item);
    if (channel && leader) channel.postMessage(item);
  }

  function status(state, text) { deliver({ kind: "status", state: state, text: text }); }

  // ---- receiving: the leader's connection ---------------------------------------------

  var backoff = MIN_BACKOFF_MS;
  function retryDelay() {
    var wait = backoff;
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    return wait;
  }

  // Joins and leaves heard while a presence request is out, one record per request. The
  // answer may have been made before them (with --redis a node hears its own page's join
  // back from Redis), so they are applied over it rather than wiped out by it.
  var asked = [];
  function noteAsked(name, joined) {
    asked.forEach(function (changes) {
      changes.set(name, joined);
    });
  }

  function refreshPresence() {
    var changes = new Map();
    asked.push(changes);
    var done = function () { asked = asked.filter(function (c) { return c !== changes; }); };
    return call(api("presence"), { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (answer) {
        done();
        if (!answer) return;
        var names = new Set(answer.present);
        changes.forEach(function (joined, name) {
          if (joined) names.add(name);
          else names.delete(name);
        });
        deliver({ kind: "presence", names: Array.from(names) });
      })
      .catch(done);
  }

  // The server refused the token (401, 403) or ended the stream it was good for: stop
  // listening and ask for a new one. `why` is the server's own sentence when it gave one.
  var waitingForToken = false;
  function needToken(why) {
    if (waitingForToken) return;
    waitingForToken = true;
    status("offline", "signed out — " + why);
    $("token-reason").textContent = why;
    $("token").value = "";
    var dialog = $("token-dialog");
    if (!dialog.open) dialog.showModal();
  }

  function refusedToken(response) {
    if (response.status !== 401 && response.status !== 403) return false;
    response.json()
      .then(function (e) { needToken(e.error); })
      .catch(function () { needToken("the server wants a token (HTTP " + response.status + ")"); });
    return true;
  }

  $("token-form").addEventListener("submit", function () {
    var fresh = $("token").value.trim();
    if (!fresh) return;
    token = fresh;
    sessionStorage.setItem(TOKEN_KEY, token);
    name = nameFromToken(token) || name;
    $("me").textContent = name;
    waitingForToken = false;
    // A stream refused for the old token made us fall back to polling; try it again.
    forcePolling = params.get("transport") === "poll";
    if (leader) listen();
  });

  function listen() {
    if (waitingForToken) return;
    refreshPresence();
    if (!forcePolling && "EventSource" in window) stream();
    else poll();
  }

  function query() {
    var q = "?name=" + encodeURIComponent(name) + "&since=" + encodeURIComponent(position);
    // EventSource cannot send headers: the token goes in the query, which the server keeps
    // out of its log.
    return token ? q + "&token=" + encodeURIComponent(token) : q;
  }

  // EventSource reconnects by itself, sending the id of the last event it saw; we only
  // fall back to polling if the server refuses the stream outright.
  function stream() {
    var source = new EventSource(api("events") + query());
    var opened = false;
    source.onopen = function () {
      opened = true;
      backoff = MIN_BACKOFF_MS;
      status("connected", "connected");
      refreshPresence();
    };
    source.addEventListener("message", function (e) {
      deliver({ kind: "message", message: JSON.parse(e.data) });
    });
    source.addEventListener("gap", function (e) {
      deliver({ kind: "gap", next: JSON.parse(e.data).next });
    });
    ["typing", "join", "leave"].forEach(function (kind) {
      source.addEventListener(kind, function (e) {
        var event = JSON.parse(e.data);
        deliver({ kind: kind, from: event.from, name: event.name });
      });
    });
    source.addEventListener("expired", function () {
      source.close();
      needToken("your token has expired; ask the site that sent you here for a new one");
    });
    source.addEventListener("shutdown", function (e) {
      var wait = JSON.parse(e.data).retry_after_ms;
      status("connecting", "server restarting — back in " + Math.ceil(wait / 1000) + " s");
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (an HTTP error, or not an event stream): poll instead.
        source.close();
        if (!opened) { forcePolling = true; setTimeout(poll, retryDelay()); }
        else setTimeout(stream, retryDelay());
        return;
      }
      status("offline", "offline — reconnecting…");
    };
  }

  // One poll at a time, always from the last position: a message posted while this poll's
  // answer is in flight is simply in the next answer.
  var PARKED_AFTER_MS = 250;
  function poll() {
    if (waitingForToken) return;
    var settled = false;
    setTimeout(function () { if (!settled) status("connected", "connected"); }, PARKED_AFTER_MS);
    call(api("messages") + query(), { cache: "no-store" })
      .then(function (response) {
        settled = true;
        if (refusedToken(response)) return null;
        if (response.status === 503) {
          // The server is going away and says when to come back, at a random delay per
          // client so that everyone does not return at once.
          return response.json().then(function (answer) {
            var wait = answer.retry_after_ms || 1000;
            status("connecting", "server restarting — back in " + Math.ceil(wait / 1000) + " s");
            setTimeout(poll, wait);
            return null;
          });
        }
        if (!response.ok && !transient(response.status)) {
          // Refused for a reason the server gives (a name it will not take, a full
          // server): say it, and ask again when it says, or a while later.
          return response.json().catch(function () { return {}; }).then(function (e) {
            var after = Number(response.headers.get("Retry-After"));
            var wait = after > 0 ? after * 1000 : MAX_BACKOFF_MS;
            var why = e.error || "HTTP " + response.status;
            status("offline", "refused: " + why + " — asking again in " + Math.ceil(wait / 1000) + " s");
            setTimeout(poll, wait);
            return null;
          });
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (answer) {
        if (answer === null) return;
        backoff = MIN_BACKOFF_MS;
        status("connected", "connected");
        if (answer.gap) deliver({ kind: "gap" });
        answer.messages.forEach(function (m) { deliver({ kind: "message", message: m }); });
        answer.events.forEach(function (e) { deliver({ kind: e.type, from: e.from, name: e.name }); });
        deliver({ kind: "position", next: answer.next });
        poll();
      })
      .catch(function () {
        settled = true;
        var wait = retryDelay();
        status("offline", "offline — retrying in " + Math.ceil(wait / 1000) + " s");
        setTimeout(poll, wait);
      });
  }

  // A gateway's or a restarting server's failure, worth trying again as it was; any other
  // refusal has a reason the server gives, which trying again would not change.
  function transient(status) { return status === 502 || status === 503 || status === 504; }

  // ---- sending ------------------------------------------------------------------------

  function randomId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function form(fields) {
    return Object.keys(fields).map(function (k) {
      return encodeURIComponent(k) + "=" + encodeURIComponent(fields[k]);
    }).join("&");
  }

  function post(what, fields) {
    return call(api(what), {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: form(fields),
    });
  }

  // Posts go one after another so that quick messages keep the order they were typed in.
  // A post that fails on the network or with a 502, 503 or 504 is retried with the same client_id,
  // which the server uses to store it once however many attempts reach it; one refused
  // for going too fast (429) is retried when the server's Retry-After says.
  var queue = Promise.resolve();
  function send(text) {
    var clientId = randomId();
    if (givenBack && givenBack.text === text) {
      // The message put back in the field, sent again as it was: the same message.
      clientId = givenBack.clientId;
      givenBack.item.remove();
    }
    givenBack = null;
    enqueue(text, clientId);
  }

  function enqueue(text, clientId) {
    queue = queue.then(function () { return attempt(text, clientId, 1); });
  }

  function later(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  // A message the server did not take (too long, signed out, unreachable) stays on the
  // page with why, and a button that sends it again with its client_id (so one that did
  // reach the server is still stored once); when the field is empty it also goes back
  // there, to be edited. What was typed is never lost.
  var givenBack = null; // { text, clientId, item } of the message put back in the field
  function unsent(text, clientId, why) {
    notice("not sent: " + why);
    var item = document.createElement("li");
    item.className = "unsent";
    var note = document.createElement("span");
    note.className = "why";
    note.textContent = "not sent — " + why;
    var body = document.createElement("span");
    body.className = "unsent-text";
    body.textContent = text;
    var again = document.createElement("button");
    again.type = "button";
    again.textContent = "send again";
    again.addEventListener("click", function () {
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

  function attempt(text, clientId, n) {
    var again = function () { return attempt(text, clientId, n + 1); };
    return post("messages", { from: name, text: text, client_id: clientId })
      .then(function (response) {
        if (transient(response.status)) throw new Error("HTTP " + response.status);
        if (refusedToken(response)) { unsent(text, clientId, "signed out"); return; }
        if (response.status === 429 && n < POST_ATTEMPTS) {
          var wait = Math.max(1, Number(response.headers.get("Retry-After")) || 1);
          notice("sending too fast — next message in " + wait + " s");
          return later(wait * 1000).then(again);
        }
        if (!response.ok) {
          return response.json().then(
            function (e) { unsent(text, clientId, e.error); },
            function () { unsent(text, clientId, "HTTP " + response.status); });
        }
      })
      .catch(function () {
        if (n >= POST_ATTEMPTS) { unsent(text, clientId, "the server could not be reached"); return; }
        return later(Math.min(MIN_BACKOFF_MS * n, 4000)).then(again);
      });
  }

  var lastTypingSent = 0;
  input.addEventListener("input", function () {
    var now = Date.now();
    if (input.value.trim() === "" || now - lastTypingSent < TYPING_SEND_EVERY_MS) return;
    lastTypingSent = now;
    post("typing", { from: name }).catch(function () {});
  });

  $("compose").addEventListener("submit", function (event) {
    event.preventDefault(); // Enter in the field submits the form too.
    var text = input.value;
    if (text.trim() === "") return;
    input.value = "";
    send(text);
  });

  // ---- tabs: one leader holds the connection ------------------------------------------

  function becomeLeader() {
    leader = true;
    listen();
    return new Promise(function () {}); // hold the lock for the life of the tab
  }

  function start() {
    $("me").textContent = name;
    // With a token, the name is the token's: there is nothing to change here.
    if (token) $("rename").hidden = true;
    if (channel) {
      channel.onmessage = function (e) {
        var item = e.data;
        if (item.kind === "hello") {
          if (leader) {
            channel.postMessage({ kind: "state", messages: shown, next: position, names: Array.from(present), status: lastStatus });
          }
          return;
        }
        if (item.kind === "state") {
          if (leader) return;
          item.messages.forEach(showMessage);
          present = new Set(item.names);
          renderPresence();
          setStatus(item.status.state, item.status.text);
          if (item.next) position = item.next;
          return;
        }
        if (!leader) apply(item);
      };
    }
    if (channel && navigator.locks) {
      navigator.locks.request("comet-chat:" + room, becomeLeader);
      channel.postMessage({ kind: "hello" });
    } else {
      becomeLeader();
    }
  }

  window.addEventListener("hashchange", function () { location.reload(); });
  $("rename").addEventListener("click", function (event) {
    event.preventDefault();
    localStorage.removeItem(NAME_KEY);
    location.reload();
  });

  $("room-name").textContent = "#" + room;
  if (name || token) {
    start();
  } else {
    setStatus("offline", "enter a name to join");
    var dialog = $("name-dialog");
    $("name-form").addEventListener("submit", function () {
      var wanted = $("name").value.trim();
      if (!wanted) return;
      name = wanted;
      localStorage.setItem(NAME_KEY, name);
      start();
    });
    dialog.showModal();
  }
})();
