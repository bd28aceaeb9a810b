// The classic Comet client: one long poll always open, re-polled the moment it answers.
// Messages are inserted with textContent, never innerHTML, so a message that looks like HTML
// shows as text and runs nothing.
(function () {
  "use strict";

  var history = document.getElementById("history");
  var input = document.getElementById("message");
  var form = document.getElementById("compose");
  var statusEl = document.getElementById("status");

  var MIN_BACKOFF_MS = 500;
  var MAX_BACKOFF_MS = 10000;
  var backoff = MIN_BACKOFF_MS;

  function setStatus(state, text) {
    statusEl.className = "status " + state;
    statusEl.textContent = text;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function show(text) {
    var now = new Date();
    var item = document.createElement("li");
    var time = document.createElement("time");
    time.dateTime = now.toISOString();
    time.textContent = pad(now.getHours()) + ":" + pad(now.getMinutes()) + ":" + pad(now.getSeconds());
    item.appendChild(time);
    item.appendChild(document.createTextNode(text));
    history.appendChild(item);
    history.scrollTop = history.scrollHeight;
  }

  // A poll still open after this long has been accepted and parked by the server (a server
  // that is down refuses the connection well within it), so the page counts as connected.
  var PARKED_AFTER_MS = 250;

  // One poll at a time. A message or a timeout → poll again at once; a network error or a
  // server error → wait, doubling the wait up to MAX_BACKOFF_MS, and try again.
  function poll() {
    var settled = false;
    setTimeout(function () {
      if (!settled) setStatus("connected", "connected");
    }, PARKED_AFTER_MS);
    fetch("/chat", { cache: "no-store" })
      .then(function (response) {
        settled = true;
        if (response.status === 503) {
          // The server is shutting down or full and says when to come back; its delay is
          // random per client so that everyone does not return at the same instant.
          return response.json().then(function (answer) {
            var wait = answer.retry_after_ms || 1000 * (Number(response.headers.get("Retry-After")) || 1);
            setStatus("connecting", "server restarting — back in " + Math.ceil(wait / 1000) + " s");
            setTimeout(poll, wait);
            return null;
          });
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (answer) {
        if (answer === null) return; // a retry is already scheduled
        backoff = MIN_BACKOFF_MS;
        setStatus("connected", "connected");
        if (typeof answer.ok === "string") show(answer.ok);
        poll();
      })
      .catch(function () {
        settled = true;
        setStatus("offline", "offline — retrying in " + Math.round(backoff / 1000) + " s");
        setTimeout(poll, backoff);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      });
  }

  // Posts are sent one after another so that quick messages arrive in the order typed.
  var queue = Promise.resolve();
  function send(text) {
    queue = queue.then(function () {
      return fetch("/chat", {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: "message=" + encodeURIComponent(text),
      }).then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
      }).catch(function () {
        setStatus("offline", "could not send — is the server running?");
      });
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault(); // Enter in the field submits the form too.
    var text = input.value;
    if (text.trim() === "") return;
    input.value = "";
    send(text);
  });

  // The page is "connected" once its first poll is parked on the server; until then the
  // status says connecting.
  setStatus("connecting", "connecting…");
  poll();
})();
