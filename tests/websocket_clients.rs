//! `GET /rooms/{room}/ws` as real third-party clients meet it: Python's `websockets` and
//! Node's `ws` (tests/common/ws_clients.rs runs them) against the server binary, each test
//! once per library. What they check is what a user of the library would notice: posts are
//! acked and arrive once, resuming loses and repeats nothing, refusals say what HTTP would
//! have said, keepalive keeps a quiet connection, and the server's closes carry the codes
//! docs/PROTOCOL.md promises (1009, 1001), its refusals the statuses (403, 404).

mod common;
#[path = "common/ws_clients.rs"]
mod ws_clients;

use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use ws_clients::{Driver, Got, Lang};

/// The WebSocket URL of `room` with `query` (without the `?`).
fn ws_url(addr: SocketAddr, room: &str, query: &str) -> String {
    format!("ws://{addr}/rooms/{room}/ws?{query}")
}

/// Starts the server binary with a short poll timeout, so a long-poll that would wait
/// answers soon, plus `args`.
fn server(args: &[&str]) -> ChildServer {
    let mut all = vec!["--poll-timeout", "3"];
    all.extend_from_slice(args);
    ChildServer::start(&all)
}

/// Posts over HTTP and returns the new message's id.
fn http_post(addr: SocketAddr, room: &str, from: &str, text: &str) -> String {
    let reply = post_form(
        addr,
        &format!("/rooms/{room}/messages"),
        &format!("from={from}&text={text}"),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.id()
}

/// A long-poll client: asks from `since` until the message `last` has arrived and returns
/// every (id, text) it was given on the way.
fn long_poll_until(addr: SocketAddr, room: &str, since: &str, last: &str) -> Vec<(String, String)> {
    let mut next = since.to_owned();
    let mut seen = Vec::new();
    for _ in 0..20 {
        let reply = get(addr, &format!("/rooms/{room}/messages?since={next}"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        let json = reply.json();
        for m in json["messages"].as_array().expect("messages") {
            seen.push((
                m["id"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            ));
        }
        if seen.iter().any(|(id, _)| id == last) {
            return seen;
        }
        next = json["next"].as_str().unwrap().to_owned();
    }
    panic!("the long-poll never got {last}; it got {seen:?}");
}

/// Every message the room holds, as its texts (one poll from the start).
fn room_texts(addr: SocketAddr, room: &str) -> Vec<String> {
    let reply = get(addr, &format!("/rooms/{room}/messages"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.texts()
}

/// The ack's id, which must be there.
fn ack_id(ack: &Value) -> String {
    ack["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an ack with an id: {ack}"))
        .to_owned()
}

/// Two clients in a room: a post over WebSocket is acked 201 with an id and its client_id,
/// and that message reaches the other WebSocket client and a long-poll client over HTTP
/// exactly once (the marker posted after it shows nothing came twice in between).
fn post_reaches_the_other_client_and_a_long_poll_once(lang: Lang) {
    let server = server(&[]);
    let addr = server.addr;
    let seed = http_post(addr, "two", "seed", "before");
    let mut d = Driver::start(lang);
    d.open(
        "ann",
        &ws_url(addr, "two", &format!("since={seed}&name=ann")),
    );
    d.open(
        "bob",
        &ws_url(addr, "two", &format!("since={seed}&name=bob")),
    );

    let ack = d.post("ann", "hello bob", "ann-1");
    assert_eq!(ack["status"], 201, "{ack}");
    assert_eq!(ack["client_id"], "ann-1", "{ack}");
    let hello = ack_id(&ack);
    let marker = ack_id(&d.post("ann", "marker", "ann-2"));

    let bob_saw = d.messages_until("bob", &marker);
    let expected = vec![
        (hello.clone(), "hello bob".to_owned()),
        (marker.clone(), "marker".to_owned()),
    ];
    assert_eq!(bob_saw, expected, "{lang:?}: bob's messages");
    assert_eq!(long_poll_until(addr, "two", &seed, &marker), expected);
}

/// A client that opens with neither `?since=` nor a resume frame, as most do, is sent the
/// room's history from the start (once the server's short wait for a resume frame is
/// over), then live messages, each once.
fn new_client_without_since_gets_the_history_then_live(lang: Lang) {
    let server = server(&[]);
    let addr = server.addr;
    let one = http_post(addr, "fresh", "seed", "one");
    let two = http_post(addr, "fresh", "seed", "two");
    let mut d = Driver::start(lang);
    d.open("new", &ws_url(addr, "fresh", "name=new"));
    assert_eq!(
        d.messages_until("new", &two),
        vec![(one, "one".to_owned()), (two, "two".to_owned())],
        "{lang:?}: the history"
    );
    let three = http_post(addr, "fresh", "seed", "three");
    assert_eq!(
        d.messages_until("new", &three),
        vec![(three, "three".to_owned())],
        "{lang:?}: live after the history"
    );
}

/// A client that drops and comes back with `?since=` the last id it saw gets exactly the
/// messages posted while it was away, then live ones: none lost, none repeated.
fn since_resume_replays_exactly_what_was_missed(lang: Lang) {
    resume_replays_exactly_what_was_missed(lang, true);
}

/// The same with no `since` in the URL and a first `{"type":"resume"}` frame instead.
fn resume_frame_replays_exactly_what_was_missed(lang: Lang) {
    resume_replays_exactly_what_was_missed(lang, false);
}

fn resume_replays_exactly_what_was_missed(lang: Lang, in_url: bool) {
    let server = server(&[]);
    let addr = server.addr;
    let seed = http_post(addr, "back", "seed", "before");
    let mut d = Driver::start(lang);
    d.open(
        "ann",
        &ws_url(addr, "back", &format!("since={seed}&name=ann")),
    );
    d.open(
        "bob",
        &ws_url(addr, "back", &format!("since={seed}&name=bob")),
    );
    let seen = ack_id(&d.post("ann", "seen", "a1"));
    let bob_saw = d.messages_until("bob", &seen);
    assert_eq!(bob_saw, vec![(seen.clone(), "seen".to_owned())]);
    let closed = d.call(json!({"op": "close", "conn": "bob"}));
    assert_eq!(closed["ok"], "closed", "{closed}");

    let missed1 = ack_id(&d.post("ann", "missed one", "a2"));
    let missed2 = ack_id(&d.post("ann", "missed two", "a3"));
    if in_url {
        d.open(
            "bob2",
            &ws_url(addr, "back", &format!("since={seen}&name=bob")),
        );
    } else {
        d.open("bob2", &ws_url(addr, "back", "name=bob"));
        d.send("bob2", json!({"type": "resume", "since": seen}));
    }
    let live = ack_id(&d.post("ann", "live", "a4"));
    assert_eq!(
        d.messages_until("bob2", &live),
        vec![
            (missed1, "missed one".to_owned()),
            (missed2, "missed two".to_owned()),
            (live, "live".to_owned()),
        ],
        "{lang:?}: what bob got after coming back"
    );
}

/// A post longer than `--max-message` is acked with the status and error text the HTTP
/// post answers (413), echoing its client_id; it is not stored, and the same connection
/// then posts normally.
fn oversize_post_is_refused_like_http_and_the_connection_stays_usable(lang: Lang) {
    let server = server(&["--max-message", "64"]);
    let addr = server.addr;
    let long = "x".repeat(65);
    let http = post_form(
        addr,
        "/rooms/big/messages",
        &format!("from=carl&text={long}"),
    );
    assert_eq!(http.status, 413, "{}", http.text());

    let mut d = Driver::start(lang);
    d.open("ann", &ws_url(addr, "big", "since=0&name=ann"));
    let ack = d.post("ann", &long, "too-long");
    assert_eq!(ack["status"], 413, "{ack}");
    assert_eq!(ack["error"], http.json()["error"], "{ack}");
    assert_eq!(ack["client_id"], "too-long", "{ack}");
    assert!(ack.get("id").is_none(), "a refusal has no id: {ack}");

    let ok = d.post("ann", "short", "short-1");
    assert_eq!(ok["status"], 201, "{ok}");
    assert_eq!(room_texts(addr, "big"), vec!["short"]);
}

/// Past `--post-rate` a post is acked 429 with the HTTP refusal's error text and a
/// `retry_after` in whole seconds; after waiting that long, the same connection posts again.
/// (Two posts sent back to back, so no stall of a busy machine between them can refill the
/// bucket; the HTTP refusal comes from another loopback address, its own bucket, the same way.)
fn rate_limited_post_is_refused_like_http_and_the_connection_stays_usable(lang: Lang) {
    let server = server(&["--post-rate", "1", "--post-burst", "1"]);
    let addr = server.addr;
    let mut http = Client::connect_from(addr, "127.0.0.2");
    let post = "POST /rooms/rate-http/messages HTTP/1.1\r\nContent-Type: \
                application/x-www-form-urlencoded\r\nContent-Length: 17\r\n\r\nfrom=carl&text=hi";
    http.send(format!("{post}{post}").as_bytes());
    assert_eq!(http.read_reply().status, 201);
    let http = http.read_reply();
    assert_eq!(http.status, 429, "{}", http.text());
    assert!(http.header("Retry-After").is_some(), "{:?}", http.headers);

    let mut d = Driver::start(lang);
    d.open("ann", &ws_url(addr, "rate", "since=0&name=ann"));
    d.send(
        "ann",
        json!({"type": "post", "text": "first", "client_id": "r1"}),
    );
    d.send(
        "ann",
        json!({"type": "post", "text": "second", "client_id": "r2"}),
    );
    let is_ack = |f: &Value| f["type"] == "ack" && f["for"] == "post";
    let first = d.frame_where("ann", is_ack);
    let refused = d.frame_where("ann", is_ack);
    assert_eq!(first["status"], 201, "{first}");
    assert_eq!(refused["status"], 429, "{refused}");
    assert_eq!(refused["error"], http.json()["error"], "{refused}");
    assert_eq!(refused["client_id"], "r2", "{refused}");
    let wait = refused["retry_after"]
        .as_u64()
        .unwrap_or_else(|| panic!("retry_after in whole seconds: {refused}"));
    assert!(wait >= 1, "{refused}");

    std::thread::sleep(Duration::from_secs(wait));
    let again = d.post("ann", "after waiting", "r3");
    assert_eq!(again["status"], 201, "{again}");
    assert_eq!(room_texts(addr, "rate"), vec!["first", "after waiting"]);
}

/// A post retried with the same client_id (its ack lost, say) is acked 200 with the first
/// one's id, and the room holds it once.
fn retry_with_the_same_client_id_is_stored_once(lang: Lang) {
    let server = server(&[]);
    let addr = server.addr;
    let mut d = Driver::start(lang);
    d.open("ann", &ws_url(addr, "again", "since=0&name=ann"));
    let first = d.post("ann", "only once", "same-id");
    assert_eq!(first["status"], 201, "{first}");
    let retry = d.post("ann", "only once", "same-id");
    assert_eq!(retry["status"], 200, "{retry}");
    assert_eq!(ack_id(&retry), ack_id(&first));
    assert_eq!(retry["client_id"], "same-id", "{retry}");
    assert_eq!(room_texts(addr, "again"), vec!["only once"]);
}

/// With `--heartbeat 0.5` a quiet connection sees the server's pings, which the library
/// answers by itself, and so stays open long past two intervals; the library's own ping is
/// answered with a pong, and (Python) its keepalive, which closes a connection whose pongs
/// stop, keeps the connection too. Afterwards both still post.
fn keepalive_keeps_a_quiet_connection_with_a_short_heartbeat(lang: Lang) {
    let server = server(&["--heartbeat", "0.5"]);
    let addr = server.addr;
    let mut d = Driver::start(lang);
    d.open("quiet", &ws_url(addr, "calm", "since=0&name=quiet"));
    let keepalive = d.open_with(
        "keepalive",
        &ws_url(addr, "calm", "since=0&name=keeper"),
        json!({"keepalive": 0.25}),
    );
    assert_eq!(keepalive["ok"], "open", "{keepalive}");

    // Six heartbeats of silence from the client's side (the library answers pings only).
    let until = std::time::Instant::now() + Duration::from_secs(3);
    for conn in ["quiet", "keepalive"] {
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match d.recv(conn, left) {
                Got::Timeout => break,
                Got::Frame(_) => continue, // joins of the other connection
                closed => panic!("{lang:?}: {conn} closed while quiet: {closed:?}"),
            }
        }
    }
    let pings = d.pings("quiet");
    assert!(pings >= 2, "{lang:?}: the server sent {pings} pings in 3 s");
    for conn in ["quiet", "keepalive"] {
        let pong = d.call(json!({"op": "ping", "conn": conn, "timeout": 5}));
        assert_eq!(pong["ok"], "pong", "{lang:?} {conn}: {pong}");
        let ack = d.post(conn, &format!("{conn} is here"), conn);
        assert_eq!(ack["status"], 201, "{ack}");
    }
}

/// A frame over the cap (2 × `--max-message` + 1 KiB) closes the connection with 1009.
fn message_over_the_cap_closes_1009(lang: Lang) {
    let server = server(&["--max-message", "64"]);
    let addr = server.addr;
    let mut d = Driver::start(lang);
    d.open("ann", &ws_url(addr, "cap", "since=0&name=ann"));
    let huge = json!({"type": "post", "text": "y".repeat(4096), "client_id": "huge"});
    d.send_text("ann", &huge.to_string()); // may already see the close; recv says how
    let close = loop {
        match d.recv("ann", Duration::from_secs(5)) {
            Got::Frame(f) if f["type"] != "ack" => continue, // a join, say
            other => break other,
        }
    };
    assert!(
        matches!(close, Got::Closed(Some(1009), _)),
        "{lang:?}: expected close 1009, got {close:?}"
    );
    assert!(room_texts(addr, "cap").is_empty());
}

/// SIGTERM to the server: each WebSocket client gets a `shutdown` frame with a return hint
/// in 500–5000 ms, as its last frame, then close 1001; the server exits.
fn shutdown_sends_a_shutdown_frame_then_closes_1001(lang: Lang) {
    let mut server = server(&["--shutdown-grace", "2"]);
    let addr = server.addr;
    let mut d = Driver::start(lang);
    d.open("ann", &ws_url(addr, "bye", "since=0&name=ann"));
    // The connection is in the room once a post of its own is acked.
    let ack = d.post("ann", "still here", "s1");
    assert_eq!(ack["status"], 201, "{ack}");
    server.signal(libc::SIGTERM);

    let mut last_frame = None;
    let close = loop {
        match d.recv("ann", Duration::from_secs(5)) {
            Got::Frame(frame) => last_frame = Some(frame),
            other => break other,
        }
    };
    let shutdown = last_frame.unwrap_or_else(|| panic!("{lang:?}: no frame before the close"));
    assert_eq!(shutdown["type"], "shutdown", "{lang:?}: {shutdown}");
    let hint = shutdown["retry_after_ms"].as_u64().unwrap_or(0);
    assert!((500..=5000).contains(&hint), "{lang:?}: {shutdown}");
    assert!(
        matches!(close, Got::Closed(Some(1001), _)),
        "{lang:?}: expected close 1001, got {close:?}"
    );
    assert!(
        server.wait_exit(Duration::from_secs(10)).is_some(),
        "the server exits"
    );
}

/// An upgrade from a foreign page's Origin is refused 403 with a JSON error
/// (cross-site WebSocket hijacking); the server's own origin and `--cors-origin` are let in.
fn foreign_origin_is_refused_403(lang: Lang) {
    let server = server(&["--cors-origin", "http://chat.example"]);
    let addr = server.addr;
    let url = ws_url(addr, "guarded", "since=0");
    let mut d = Driver::start(lang);
    let refused = d.open_with("evil", &url, json!({"origin": "http://evil.example"}));
    assert_eq!(refused["ok"], "refused", "{lang:?}: {refused}");
    assert_eq!(refused["status"], 403, "{refused}");
    let body: Value = serde_json::from_str(refused["body"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("a JSON error body ({e}): {refused}"));
    assert!(body["error"].is_string(), "{refused}");

    for origin in [format!("http://{addr}"), "http://chat.example".to_owned()] {
        let open = d.open_with(&origin, &url, json!({"origin": origin}));
        assert_eq!(open["ok"], "open", "{lang:?} from {origin}: {open}");
    }
}

/// With `--no-websocket` the upgrade is answered 404 (the same URL upgrades without it).
fn no_websocket_gives_404(lang: Lang) {
    let off = server(&["--no-websocket"]);
    let on = server(&[]);
    let mut d = Driver::start(lang);
    let refused = d.open_with("off", &ws_url(off.addr, "r", "since=0"), json!({}));
    assert_eq!(refused["ok"], "refused", "{lang:?}: {refused}");
    assert_eq!(refused["status"], 404, "{refused}");
    d.open("on", &ws_url(on.addr, "r", "since=0"));
}

/// Runs each scenario once per library: `python::name` and `node::name`.
macro_rules! with_each_client {
    ($($name:ident),* $(,)?) => {
        mod python {
            $(#[test] fn $name() { super::$name(super::Lang::Python) })*
        }
        mod node {
            $(#[test] fn $name() { super::$name(super::Lang::Node) })*
        }
    };
}

with_each_client!(
    post_reaches_the_other_client_and_a_long_poll_once,
    new_client_without_since_gets_the_history_then_live,
    since_resume_replays_exactly_what_was_missed,
    resume_frame_replays_exactly_what_was_missed,
    oversize_post_is_refused_like_http_and_the_connection_stays_usable,
    rate_limited_post_is_refused_like_http_and_the_connection_stays_usable,
    retry_with_the_same_client_id_is_stored_once,
    keepalive_keeps_a_quiet_connection_with_a_short_heartbeat,
    message_over_the_cap_closes_1009,
    shutdown_sends_a_shutdown_frame_then_closes_1001,
    foreign_origin_is_refused_403,
    no_websocket_gives_404,
);

/// Node's `ws` with its automatic pong turned off is a client that answers nothing: with
/// `--heartbeat 0.2` the server drops it after two silent intervals (it saw the pings).
#[test]
fn node_client_that_never_answers_pings_is_dropped() {
    let server = server(&["--heartbeat", "0.2"]);
    let mut d = Driver::start(Lang::Node);
    let open = d.open_with(
        "mute",
        &ws_url(server.addr, "mute", "since=0&name=mute"),
        json!({"auto_pong": false}),
    );
    assert_eq!(open["ok"], "open", "{open}");
    let closed = loop {
        match d.recv("mute", Duration::from_secs(10)) {
            Got::Frame(_) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(closed, Got::Closed(..)),
        "a client that never pongs is still connected after 10 s: {closed:?}"
    );
    assert!(d.pings("mute") >= 1, "the server pinged before dropping it");
}
