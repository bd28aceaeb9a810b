//! The loss-free room protocol (docs/PROTOCOL.md) as a client author would use it.

mod common;

use common::*;
use std::time::Duration;

fn next_of(reply: &Reply) -> String {
    reply.json()["next"].as_str().unwrap().to_owned()
}

fn say(addr: std::net::SocketAddr, room: &str, text: &str) -> String {
    let reply = post_form(
        addr,
        &format!("/rooms/{room}/messages"),
        &format!("from=ann&text={text}"),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.id()
}

#[test]
fn ids_increase_by_one_in_order_with_an_epoch() {
    let server = start_default();
    let ids: Vec<String> = (1..=3)
        .map(|i| say(server.addr, "r1", &format!("m{i}")))
        .collect();
    let epoch = ids[0].split('-').next().unwrap().to_owned();
    assert_eq!(epoch.len(), 8);
    assert_eq!(ids, [1, 2, 3].map(|n| format!("{epoch}-{n}")));
    let reply = get(server.addr, "/rooms/r1/messages");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Cache-Control"), Some("no-store"));
    assert_eq!(reply.texts(), ["m1", "m2", "m3"]);
    let json = reply.json();
    assert_eq!(json["messages"][0]["from"], "ann");
    assert_eq!(json["messages"][2]["id"], ids[2].as_str());
    assert!(json["messages"][0]["time"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(json["next"], ids[2].as_str());
    assert_eq!(json["gap"], false);
    // Rooms are separate.
    say(server.addr, "r2", "other");
    assert_eq!(get(server.addr, "/rooms/r1/messages").texts().len(), 3);
}

#[test]
fn resume_after_a_pause_returns_exactly_the_missed_messages() {
    let server = start_default();
    let first = say(server.addr, "r", "one");
    say(server.addr, "r", "two");
    say(server.addr, "r", "three");
    let reply = get(server.addr, &format!("/rooms/r/messages?since={first}"));
    assert_eq!(reply.texts(), ["two", "three"]);
    assert_eq!(reply.json()["gap"], false);
}

#[test]
fn a_poll_at_the_head_waits_for_the_next_message() {
    let server = start_default();
    let head = say(server.addr, "r", "old");
    let mut poll = Client::connect(server.addr);
    poll.get(&format!("/rooms/r/messages?since={head}"));
    wait_parked(&server, 1);
    say(server.addr, "r", "new");
    let reply = poll.read_reply();
    assert_eq!(reply.texts(), ["new"]);
}

#[test]
fn a_poll_times_out_with_nothing_and_the_same_position() {
    let mut config = test_config();
    config.poll_timeout = Duration::from_millis(300);
    let server = start(config);
    let head = say(server.addr, "r", "x");
    let reply = get(server.addr, &format!("/rooms/r/messages?since={head}"));
    assert_eq!(reply.texts(), Vec::<String>::new());
    assert_eq!(next_of(&reply), head);
}

/// The classic protocol's flaw: a message posted between two polls reaches nobody. Here
/// a client re-polling with its last position while a fast poster posts sees every id
/// exactly once, in order.
#[test]
fn a_client_hammered_by_a_fast_poster_sees_every_id_exactly_once_in_order() {
    let server = start(without_client_limits(test_config()));
    const COUNT: usize = 300;
    let addr = server.addr;
    let poster = std::thread::spawn(move || {
        let mut client = Client::connect(addr);
        for i in 0..COUNT {
            let body = format!("from=bot&text=n{i}");
            client.send(
                format!(
                    "POST /rooms/hammer/messages HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            assert_eq!(client.read_reply().status, 201);
        }
    });
    let mut seen = Vec::new();
    let mut since = String::new();
    let mut client = Client::connect(server.addr);
    while seen.len() < COUNT {
        client.get(&format!("/rooms/hammer/messages?since={since}"));
        let reply = client.read_reply();
        assert_eq!(reply.json()["gap"], false);
        seen.extend(reply.texts());
        since = next_of(&reply);
    }
    poster.join().unwrap();
    let expected: Vec<String> = (0..COUNT).map(|i| format!("n{i}")).collect();
    assert_eq!(seen, expected);
}

#[test]
fn eviction_is_reported_as_a_gap() {
    let mut config = test_config();
    config.history_messages = 5;
    let server = start(config);
    let ids: Vec<String> = (1..=10)
        .map(|i| say(server.addr, "r", &format!("m{i}")))
        .collect();
    let reply = get(server.addr, &format!("/rooms/r/messages?since={}", ids[1]));
    assert_eq!(reply.json()["gap"], true, "m3 and m4 are gone");
    assert_eq!(reply.texts(), ["m6", "m7", "m8", "m9", "m10"]);
    let reply = get(server.addr, &format!("/rooms/r/messages?since={}", ids[4]));
    assert_eq!(reply.json()["gap"], false, "m6 is the next one and is kept");
}

#[test]
fn a_restarted_server_is_reported_as_a_gap_and_a_fresh_start() {
    let first = start_default();
    let old = say(first.addr, "r", "before");
    first.stop().unwrap();
    let second = start_default();
    let reply = get(second.addr, &format!("/rooms/r/messages?since={old}"));
    assert_eq!(reply.status, 200);
    let json = reply.json();
    assert_eq!(json["gap"], true);
    assert_eq!(reply.texts(), Vec::<String>::new());
    let next = next_of(&reply);
    assert_ne!(next.split('-').next(), old.split('-').next(), "a new epoch");
    // From the fresh position the client simply goes on.
    say(second.addr, "r", "after");
    assert_eq!(
        get(second.addr, &format!("/rooms/r/messages?since={next}")).texts(),
        ["after"]
    );
}

#[test]
fn a_retried_post_with_the_same_client_id_is_stored_once() {
    let server = start_default();
    let body = "from=ann&text=hello&client_id=abc-123";
    let first = post_form(server.addr, "/rooms/r/messages", body);
    assert_eq!(first.status, 201);
    let retry = post_form(server.addr, "/rooms/r/messages", body);
    assert_eq!(retry.status, 200);
    assert_eq!(retry.json()["id"], first.json()["id"]);
    assert_eq!(retry.json()["duplicate"], true);
    // JSON bodies work the same way.
    let json = r#"{"from":"ann","text":"hello","client_id":"abc-123"}"#;
    let retry = request(
        server.addr,
        &format!(
            "POST /rooms/r/messages HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        ),
    );
    assert_eq!(retry.status, 200);
    // Another sender that happens to choose the same client_id posts its own message.
    let bobs = post_form(
        server.addr,
        "/rooms/r/messages",
        "from=bob&text=hi&client_id=abc-123",
    );
    assert_eq!(bobs.status, 201, "{}", bobs.text());
    assert_eq!(
        get(server.addr, "/rooms/r/messages").texts(),
        ["hello", "hi"]
    );
}

#[test]
fn invalid_input_gets_a_clear_4xx() {
    let mut config = test_config();
    config.max_message_bytes = 100;
    let server = start(config);
    let head = say(server.addr, "r", "x");
    let long = "y".repeat(101);
    let cases: Vec<(String, &str, u16)> = vec![
        ("/rooms/bad%20name/messages".into(), "from=a&text=b", 400),
        ("/rooms/r/messages".into(), "text=b", 400),
        ("/rooms/r/messages".into(), "from=a", 400),
        ("/rooms/r/messages".into(), "from=a&text=%20%20", 400),
        ("/rooms/r/messages".into(), "from=a%0Ab&text=b", 400),
        ("/rooms/r/messages".into(), "from=a&text=bell%07here", 400),
        ("/rooms/r/messages".into(), "from=a&text=%FF", 400),
        ("/rooms/r/messages".into(), "from=a&text=100%", 400),
        ("/rooms/r/messages".into(), "from=a&text=%zz", 400),
        ("/rooms/r/messages".into(), "from=a%2&text=b", 400),
        (
            "/rooms/r/messages".into(),
            &*format!("from=a&text={long}").leak(),
            413,
        ),
        ("/rooms/r/typing".into(), "nobody=1", 400),
        ("/rooms/r/nothing".into(), "", 404),
    ];
    for (path, body, status) in cases {
        let reply = post_form(server.addr, &path, body);
        assert_eq!(reply.status, status, "{path} {body}: {}", reply.text());
        assert!(
            reply.json()["error"].as_str().unwrap().len() > 5,
            "{}",
            reply.text()
        );
    }
    let two_lines = post_form(server.addr, "/rooms/r/messages", "from=a&text=two%0Alines");
    assert_eq!(two_lines.status, 201, "newlines are allowed in texts");
    for (path, status) in [
        ("/rooms/r/messages?since=garbage".to_owned(), 400),
        (format!("/rooms/r/messages?since={}9", head), 400), // ahead of the room
        ("/rooms/r/events?since=garbage".to_owned(), 400),
        ("/rooms/r/messages?since=0&name=%zz".to_owned(), 400),
        ("/rooms/r/events?name=100%".to_owned(), 400),
        ("/rooms/r/typing".to_owned(), 405),
    ] {
        let reply = get(server.addr, &path);
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
    }
    let reply = request(server.addr, "DELETE /rooms/r/messages HTTP/1.1\r\n\r\n");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("Allow"), Some("GET, POST"));
}

#[test]
fn typing_reaches_waiters_and_is_never_replayed() {
    let server = start_default();
    let head = say(server.addr, "r", "hi");
    let mut poll = Client::connect(server.addr);
    poll.get(&format!("/rooms/r/messages?since={head}"));
    wait_parked(&server, 1);
    let reply = post_form(server.addr, "/rooms/r/typing", "from=bob");
    assert_eq!(reply.status, 202);
    let answer = poll.read_reply().json();
    assert_eq!(
        answer["events"],
        serde_json::json!([{"type": "typing", "from": "bob"}])
    );
    assert_eq!(answer["messages"], serde_json::json!([]));
    assert_eq!(answer["next"], head.as_str(), "an event moves no position");
    // Rate limited per name (and address: see tests/limits.rs).
    assert_eq!(
        post_form(server.addr, "/rooms/r/typing", "from=bob").status,
        429
    );
    assert_eq!(
        post_form(server.addr, "/rooms/r/typing", "from=cat").status,
        202
    );
    // Never stored: history has only the message, and a poll at the head waits.
    let all = get(server.addr, "/rooms/r/messages").json();
    assert_eq!(all["events"], serde_json::json!([]));
    assert_eq!(all["messages"].as_array().unwrap().len(), 1);
    let mut later = Client::connect(server.addr);
    later.get(&format!("/rooms/r/messages?since={head}"));
    assert!(later.silent_for(Duration::from_millis(150)));
}

#[test]
fn presence_appears_and_expires_with_join_and_leave_events() {
    let mut config = test_config();
    config.poll_timeout = Duration::from_millis(300);
    config.presence_grace = Duration::from_millis(200);
    let server = start(config);
    let head = say(server.addr, "r", "x");
    // An observer polling without a name.
    let mut observer = Client::connect(server.addr);
    observer.get(&format!("/rooms/r/messages?since={head}"));
    wait_parked(&server, 1);

    let mut ann = Client::connect(server.addr);
    ann.get(&format!("/rooms/r/messages?since={head}&name=ann"));
    let join = observer.read_reply().json();
    assert_eq!(
        join["events"],
        serde_json::json!([{"type": "join", "name": "ann"}])
    );
    let present = get(server.addr, "/rooms/r/presence").json();
    assert_eq!(
        present,
        serde_json::json!({"room": "r", "present": ["ann"]})
    );

    // ann's poll times out and she does not come back; the observer keeps polling.
    assert_eq!(ann.read_reply().texts(), Vec::<String>::new());
    drop(ann);
    let mut events = Vec::new();
    wait_until(Duration::from_secs(5), "ann to leave", || {
        observer.get(&format!("/rooms/r/messages?since={head}"));
        let answer = observer.read_reply().json();
        events.extend(answer["events"].as_array().unwrap().iter().cloned());
        events.contains(&serde_json::json!({"type": "leave", "name": "ann"}))
    });
    assert_eq!(
        get(server.addr, "/rooms/r/presence").json()["present"],
        serde_json::json!([])
    );
}

#[test]
fn sse_delivers_heartbeats_and_resumes_from_last_event_id() {
    let mut config = test_config();
    config.heartbeat = Duration::from_millis(300);
    let server = start(config);
    let first = say(server.addr, "s", "before");
    let mut stream = Client::connect(server.addr);
    stream.get(&format!("/rooms/s/events?since={first}"));
    let head = stream.read_stream_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Type"), Some("text/event-stream"));
    assert_eq!(head.header("Cache-Control"), Some("no-store"));
    assert_eq!(head.header("Content-Length"), None);
    assert_eq!(stream.read_event(), "retry: 2000\n\n");
    wait_until(Duration::from_secs(5), "the stream", || {
        counter(&server, |s| &s.streams) == 1
    });

    let second = say(server.addr, "s", "live");
    let frame = stream.read_event();
    let data = frame
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    assert!(
        frame.starts_with(&format!("id: {second}\nevent: message\n")),
        "{frame}"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(data).unwrap()["text"],
        "live"
    );

    post_form(server.addr, "/rooms/s/typing", "from=bob");
    assert_eq!(
        stream.read_event(),
        "event: typing\ndata: {\"type\":\"typing\",\"from\":\"bob\"}\n\n"
    );
    assert_eq!(stream.read_event(), ": keep-alive\n\n");
    drop(stream);

    // Reconnect the way EventSource does: Last-Event-ID, no since.
    say(server.addr, "s", "missed 1");
    say(server.addr, "s", "missed 2");
    let mut again = Client::connect(server.addr);
    again.send(
        format!("GET /rooms/s/events HTTP/1.1\r\nLast-Event-ID: {second}\r\n\r\n").as_bytes(),
    );
    again.read_stream_head();
    assert_eq!(again.read_event(), "retry: 2000\n\n");
    assert!(again.read_event().contains("\"text\":\"missed 1\""));
    assert!(again.read_event().contains("\"text\":\"missed 2\""));
    assert!(
        again.silent_for(Duration::from_millis(100)),
        "nothing replayed twice"
    );
    drop(again);
    wait_until(Duration::from_secs(5), "streams to close", || {
        counter(&server, |s| &s.streams) == 0
    });
}

#[test]
fn many_streams_get_one_encoded_event_each() {
    let server = start_default();
    let mut streams: Vec<Client> = (0..50).map(|_| Client::connect(server.addr)).collect();
    for stream in &mut streams {
        stream.get("/rooms/wide/events");
        stream.read_stream_head();
        stream.read_event();
    }
    wait_until(Duration::from_secs(5), "50 streams", || {
        counter(&server, |s| &s.streams) == 50
    });
    let id = say(server.addr, "wide", "to+all");
    for stream in &mut streams {
        assert!(stream.read_event().starts_with(&format!("id: {id}\n")));
    }
    assert_eq!(counter(&server, |s| &s.deliveries), 50);
}

/// When every room is in use (someone waits in each), a new room is refused with a reason.
#[test]
fn the_room_cap_is_a_clear_error() {
    let mut config = test_config();
    config.max_rooms = 2; // the lobby and one more
    let server = start(config);
    let head = say(server.addr, "one", "x");
    let mut waiting = Client::connect(server.addr);
    waiting.get(&format!("/rooms/one/messages?since={head}"));
    wait_parked(&server, 1);
    let reply = post_form(server.addr, "/rooms/two/messages", "from=a&text=b");
    assert_eq!(reply.status, 507);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("room limit"));
    assert_eq!(get(server.addr, "/rooms/three/messages").status, 507);
    say(server.addr, "one", "existing rooms still work");
}

/// Regression: reads alone (a presence check, a poll that ends) used to make rooms that
/// kept their place for good, so anyone could fill `--max-rooms` with made-up names and
/// every new room was refused 507 until a restart. A room that holds nothing gives way.
#[test]
fn rooms_made_by_reads_alone_do_not_use_up_the_room_cap() {
    let mut config = test_config();
    config.max_rooms = 4; // the lobby and three more
    let server = start(config);
    for n in 0..50 {
        assert_eq!(
            get(server.addr, &format!("/rooms/made-up-{n}/presence")).status,
            200
        );
    }
    // A reader that is still waiting keeps its room.
    let mut waiting = Client::connect(server.addr);
    waiting.get("/rooms/watched/messages");
    wait_parked(&server, 1);
    let reply = post_form(server.addr, "/rooms/real/messages", "from=ann&text=hi");
    assert_eq!(reply.status, 201, "{}", reply.text());
    // A room made by a read gives way before the room with a message, however recent.
    assert_eq!(get(server.addr, "/rooms/another/presence").status, 200);
    assert_eq!(
        get(server.addr, "/rooms/real/messages?since=0").texts(),
        ["hi"]
    );
    let answered = post_form(server.addr, "/rooms/watched/messages", "from=bob&text=yo");
    assert_eq!(answered.status, 201);
    assert_eq!(waiting.read_reply().texts(), ["yo"]);
}

#[test]
fn cors_headers_are_on_successes_and_errors_alike() {
    let mut config = test_config();
    config.cors_origin = Some("https://chat.example".into());
    let server = start(config);
    let ok = post_form(server.addr, "/rooms/r/messages", "from=a&text=b");
    let error = post_form(server.addr, "/rooms/r/messages", "from=a");
    let poll = get(server.addr, "/rooms/r/messages");
    for reply in [&ok, &error, &poll] {
        assert_eq!(
            reply.header("Access-Control-Allow-Origin"),
            Some("https://chat.example")
        );
        assert_eq!(reply.header("Vary"), Some("Origin"));
    }
    let preflight = request(
        server.addr,
        "OPTIONS /rooms/r/messages HTTP/1.1\r\nOrigin: https://chat.example\r\n\r\n",
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("Access-Control-Allow-Methods"),
        Some("GET, POST")
    );
    // Without --cors-origin nothing is allowed.
    let plain = start_default();
    assert_eq!(
        post_form(plain.addr, "/rooms/r/messages", "from=a&text=b")
            .header("Access-Control-Allow-Origin"),
        None
    );
}

#[test]
fn the_classic_chat_is_the_lobby() {
    let server = start_default();
    let mut classic = Client::connect(server.addr);
    classic.get("/chat");
    wait_parked(&server, 1);
    say(server.addr, "lobby", "from+the+new+api");
    assert_eq!(classic.read_reply().text(), r#"{"ok":"from the new api"}"#);

    let mut poster = Client::connect(server.addr);
    poster.post_message("from+the+classic+api");
    assert_eq!(poster.read_reply().text(), r#"{"ok":"posted"}"#);
    let lobby = get(server.addr, "/rooms/lobby/messages").json();
    assert_eq!(lobby["messages"][1]["text"], "from the classic api");
    assert_eq!(lobby["messages"][1]["from"], "anonymous");

    // A classic post may say who it is from.
    let reply = post_form(server.addr, "/chat", "message=signed&from=Ann+%C3%89");
    assert_eq!(reply.text(), r#"{"ok":"posted"}"#);
    let lobby = get(server.addr, "/rooms/lobby/messages").json();
    assert_eq!(lobby["messages"][2]["text"], "signed");
    assert_eq!(lobby["messages"][2]["from"], "Ann É");
}

/// Regression: a stream opened with a name not yet present used to receive its own join
/// event *before* its status line (the stream was in the room's list when the join was
/// broadcast), so curl saw HTTP/0.9 and EventSource failed and retried after ~3 s.
#[test]
fn a_named_stream_starts_with_its_status_line_then_its_own_join() {
    let server = start_default();
    let mut stream = Client::connect(server.addr);
    stream.get("/rooms/garden/events?name=carl");
    let first = stream.read_until("\r\n");
    assert_eq!(
        first, "HTTP/1.1 200 OK\r\n",
        "the stream must start with its head"
    );
    stream.read_until("\r\n\r\n");
    assert_eq!(stream.read_event(), "retry: 2000\n\n");
    assert_eq!(
        stream.read_event(),
        "event: join\ndata: {\"type\":\"join\",\"name\":\"carl\"}\n\n"
    );
}

/// Regression: a poll refused for its position (ahead of the room) still made its name
/// present and announced a join to everyone waiting in the room.
#[test]
fn a_refused_poll_makes_no_name_present() {
    let server = start(test_config());
    let head = post_form(server.addr, "/rooms/r/messages", "from=ann&text=hi").id();
    let ahead = format!("{head}9");
    let mut watcher = Client::connect(server.addr);
    watcher.get(&format!("/rooms/r/messages?since={head}"));
    wait_parked(&server, 1);
    let refused = get(
        server.addr,
        &format!("/rooms/r/messages?since={ahead}&name=ghost"),
    );
    assert_eq!(refused.status, 400);
    let present = get(server.addr, "/rooms/r/presence").json();
    assert_eq!(present["present"], serde_json::json!([]));
    assert!(
        watcher.silent_for(Duration::from_millis(300)),
        "no join went out"
    );
}

/// A `<textarea>` submits its line breaks as CRLF, and people paste code with tabs: every
/// way into a room takes both, and stores and delivers the same text whichever way it came
/// (CRLF and a lone CR become LF). Other control characters stay refused.
#[test]
fn form_line_breaks_and_tabs_arrive_the_same_by_every_way_in() {
    let server = start_default();
    let classic = post_form(server.addr, "/chat", "message=a%0D%0Ab%09c%0Dd");
    assert_eq!(classic.status, 200, "{}", classic.text());
    let form = post_form(
        server.addr,
        "/rooms/lobby/messages",
        "from=ann&text=a%0D%0Ab%09c%0Dd",
    );
    assert_eq!(form.status, 201, "{}", form.text());
    let json = r#"{"from":"ann","text":"a\r\nb\tc\rd"}"#;
    let json = request(
        server.addr,
        &format!(
            "POST /rooms/lobby/messages HTTP/1.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{json}",
            json.len()
        ),
    );
    assert_eq!(json.status, 201, "{}", json.text());
    let stored = get(server.addr, "/rooms/lobby/messages").texts();
    assert_eq!(stored, ["a\nb\tc\nd"; 3]);
    for refused in ["message=a%07b", "message=a%00b", "message=%0D%0A%09"] {
        let reply = post_form(server.addr, "/chat", refused);
        assert_eq!(reply.status, 400, "{refused}: {}", reply.text());
    }
}

/// Regression: a room that ever had a message kept its place for good, so a few addresses
/// filled `--max-rooms` and every new room was refused 507 until a restart. At the cap an
/// idle room gives way, history and all (counted and logged); a room where someone waits
/// keeps its place, and the lobby always does. Everything here is used within a minute, a
/// burst, so of the idle rooms (no keepers counted) the one made last goes; the room unused
/// longest goes once it is a minute old, which `chat.rs`'s tests check without the wait.
#[test]
fn at_the_room_cap_an_idle_room_gives_way_history_and_all() {
    let mut config = test_config();
    config.max_rooms = 4; // the lobby and three more
    config.max_rooms_per_client = 0;
    let server = start(config);
    let head = say(server.addr, "watched", "w");
    let mut waiting = Client::connect(server.addr);
    waiting.get(&format!("/rooms/watched/messages?since={head}"));
    wait_parked(&server, 1);
    say(server.addr, "old", "o");
    say(server.addr, "recent", "r");
    say(server.addr, "lobby", "l");
    // Full: the lobby, a room with a waiter, and two idle rooms with history.
    say(server.addr, "new", "n");
    // One room gave way, with its history: not the waiter's, nor old (made before recent).
    assert_eq!(counter(&server, |s| &s.rooms_given_way), 1);
    assert_eq!(counter(&server, |s| &s.dropped_room_history), 1);
    let stats = get(server.addr, "/stats").json();
    assert_eq!(stats["drops"]["room_history"], 1);
    assert_eq!(stats["rooms_given_way"], 1);
    assert_eq!(
        get(server.addr, "/rooms/old/messages?since=0").texts(),
        ["o"],
        "the idle room made first stays"
    );
    assert_eq!(
        get(server.addr, "/rooms/new/messages?since=0").texts(),
        ["n"]
    );
    assert_eq!(
        counter(&server, |s| &s.rooms_given_way),
        1,
        "reads of rooms here"
    );
    let answered = post_form(server.addr, "/rooms/watched/messages", "from=bob&text=yo");
    assert_eq!(answered.status, 201, "the waiter's room kept its place");
    assert_eq!(waiting.read_reply().texts(), ["yo"]);
    assert_eq!(
        get(server.addr, "/rooms/lobby/messages?since=0").texts(),
        ["l"]
    );
}
