//! `--redis` given several times: rooms spread over several real redis-servers by a stable
//! hash of their name. Each room lives whole on one shard (its stream, ids, announcements);
//! a shard that goes down refuses only its own rooms' posts, and its rooms recover when it
//! returns; a shard that loses its data starts only its own rooms again; and nodes whose
//! lists disagree are refused rather than allowed to split a room over two Redis.

mod common;

use comet_chat::backplane::{shards, url};
use comet_chat::{Config, Running};
use common::redis::RedisServer;
use common::*;
use std::time::Duration;

/// Redis that keeps what it was told across a restart (as a production one would).
const DURABLE: [&str; 4] = ["--appendonly", "yes", "--appendfsync", "always"];

fn node(shards: &[&RedisServer]) -> Running {
    start(without_client_limits(Config {
        redis: (shards.iter())
            .map(|redis| url::parse(&redis.url()).unwrap())
            .collect(),
        // One test client types in several rooms within a second.
        typing_interval: Duration::ZERO,
        ..test_config()
    }))
}

/// The `/stats` `redis` object.
fn redis_stats(node: &Running) -> serde_json::Value {
    get(node.addr, "/stats").json()["redis"].clone()
}

fn wait_all_up(node: &Running) {
    wait_until(Duration::from_secs(10), "every shard connected", || {
        counter(node, |s| &s.redis_connected) == 1
    });
}

fn post(node: &Running, room: &str, text: &str) -> Reply {
    post_form(
        node.addr,
        &format!("/rooms/{room}/messages"),
        &format!("from=ann&text={text}"),
    )
}

/// The first room named `{prefix}{i}` that lives on shard `shard` of `shards`.
fn room_on(prefix: &str, shard: usize, shards: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|r| shards::shard_of(r, shards) == shard)
        .unwrap()
}

/// Which of `redis` holds room `room`'s history, looked up in the Redis themselves.
fn holders(redis: &[&RedisServer], room: &str) -> Vec<usize> {
    let key = format!("comet:r:{room}:log");
    (0..redis.len())
        .filter(|&i| redis[i].command(&["EXISTS", &key]).as_deref() == Some(":1"))
        .collect()
}

#[test]
fn thirty_rooms_spread_over_three_redis_and_a_shard_down_stops_only_its_own() {
    let (r0, r1, mut r2) = (
        RedisServer::start(&DURABLE),
        RedisServer::start(&DURABLE),
        RedisServer::start(&DURABLE),
    );
    let (a, b) = (node(&[&r0, &r1, &r2]), node(&[&r0, &r1, &r2]));
    wait_all_up(&a);
    wait_all_up(&b);
    let stats = redis_stats(&a);
    assert_eq!(stats["shards"].as_array().map(Vec::len), Some(3), "{stats}");
    assert_eq!(stats["shards"][1]["url"], r1.url(), "{stats}");
    assert_eq!(stats["shards"][1]["connected"], true, "{stats}");

    // Every room's history is on exactly one Redis, the one its name hashes to, and each
    // Redis holds some of the thirty.
    let rooms: Vec<String> = (0..30).map(|i| format!("room-{i}")).collect();
    let mut first_ids = Vec::new();
    for room in &rooms {
        let posted = post(&a, room, "first");
        assert_eq!(posted.status, 201, "{room}: {}", posted.text());
        first_ids.push(posted.id());
    }
    let redis = [&r0, &r1, &r2];
    let mut per_shard = [0; 3];
    for room in &rooms {
        let on = holders(&redis, room);
        assert_eq!(on, [shards::shard_of(room, 3)], "{room} is on {on:?}");
        per_shard[on[0]] += 1;
    }
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "rooms per shard: {per_shard:?}"
    );
    // The other node reads every room from the same shards.
    for room in &rooms {
        assert_eq!(
            get(b.addr, &format!("/rooms/{room}/messages")).texts(),
            ["first"]
        );
    }

    // A poll parked on B in a room of each shard.
    let first_on = |shard: usize| {
        let i = (rooms.iter())
            .position(|r| shards::shard_of(r, 3) == shard)
            .unwrap();
        (rooms[i].clone(), first_ids[i].clone())
    };
    let (down_room, down_since) = first_on(2);
    let (up_room, up_since) = first_on(0);
    let mut poll_down = Client::connect(b.addr);
    poll_down.get(&format!("/rooms/{down_room}/messages?since={down_since}"));
    let mut poll_up = Client::connect(b.addr);
    poll_up.get(&format!("/rooms/{up_room}/messages?since={up_since}"));
    wait_parked(&b, 2);

    r2.kill();
    wait_until(Duration::from_secs(10), "A to see shard 2 down", || {
        counter(&a, |s| &s.redis_shards_up) == 2
    });
    let stats = redis_stats(&a);
    assert_eq!(stats["connected"], false, "{stats}");
    assert_eq!(stats["shards"][2]["connected"], false, "{stats}");
    assert_eq!(stats["shards"][0]["connected"], true, "{stats}");
    for room in &rooms {
        let posted = post(&a, room, "while+one+is+down");
        if shards::shard_of(room, 3) == 2 {
            assert_eq!(posted.status, 503, "{room}: {}", posted.text());
            assert!(posted.header("Retry-After").is_some(), "{room}");
        } else {
            assert_eq!(posted.status, 201, "{room}: {}", posted.text());
        }
    }
    // The room on a live shard delivered to B at once; the other poll still waits.
    assert_eq!(poll_up.read_reply().texts(), ["while one is down"]);
    assert!(poll_down.silent_for(Duration::from_millis(300)));

    // The shard returns with its data: its rooms take posts again, the poll that waited
    // through the outage gets the next one, and the history has no hole.
    r2.restart();
    wait_all_up(&a);
    wait_all_up(&b);
    let back = post(&a, &down_room, "back");
    assert_eq!(back.status, 201, "{}", back.text());
    assert_eq!(poll_down.read_reply().texts(), ["back"]);
    let history = get(b.addr, &format!("/rooms/{down_room}/messages"));
    assert_eq!(history.texts(), ["first", "back"]);
    assert_eq!(history.json()["gap"], false);
}

#[test]
fn a_shard_that_loses_its_data_starts_only_its_own_rooms_again() {
    let (r0, mut r1) = (RedisServer::start(&DURABLE), RedisServer::start(&[]));
    let a = node(&[&r0, &r1]);
    wait_all_up(&a);
    let (kept, lost) = (room_on("r", 0, 2), room_on("r", 1, 2));
    let kept_at = post(&a, &kept, "one").id();
    let lost_at = post(&a, &lost, "one").id();
    post(&a, &kept, "two");
    post(&a, &lost, "two");
    // Each shard has its own epoch: the first part of a position.
    let epoch = |id: &str| id.split('-').next().unwrap().to_owned();
    assert_ne!(epoch(&kept_at), epoch(&lost_at), "two Redis, two epochs");

    r1.restart(); // no AOF, --save "": everything on shard 1 is gone
    wait_until(Duration::from_secs(10), "shard 1 back", || {
        counter(&a, |s| &s.redis_reconnects) >= 1 && counter(&a, |s| &s.redis_connected) == 1
    });
    let after = post(&a, &lost, "after");
    assert_eq!(after.status, 201, "{}", after.text());
    assert_ne!(
        epoch(&after.id()),
        epoch(&lost_at),
        "shard 1 started a new epoch"
    );

    let resumed = get(a.addr, &format!("/rooms/{lost}/messages?since={lost_at}"));
    assert_eq!(resumed.json()["gap"], true, "{}", resumed.text());
    assert_eq!(resumed.texts(), ["after"]);
    let untouched = get(a.addr, &format!("/rooms/{kept}/messages?since={kept_at}"));
    assert_eq!(untouched.json()["gap"], false, "{}", untouched.text());
    assert_eq!(untouched.texts(), ["two"]);
}

#[test]
fn a_node_that_lists_the_shards_in_another_order_is_refused_by_them() {
    let (r0, r1) = (RedisServer::start(&[]), RedisServer::start(&[]));
    let a = node(&[&r0, &r1]);
    wait_all_up(&a);
    let room = room_on("r", 1, 2);
    assert_eq!(post(&a, &room, "on+shard+1").status, 201);

    // The same two Redis the other way round would put this room on r0, where nobody
    // else looks for it: each Redis knows which shard it is and refuses the node.
    let swapped = node(&[&r1, &r0]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(counter(&swapped, |s| &s.redis_shards_up), 0);
    let refused = post(&swapped, &room, "split");
    assert_eq!(refused.status, 503, "{}", refused.text());
    // The node that agrees goes on, and nothing was written where it should not be.
    assert_eq!(post(&a, &room, "still+fine").status, 201);
    assert_eq!(holders(&[&r0, &r1], &room), [1]);
}

#[test]
fn workers_of_one_node_take_the_same_shards_from_the_command_line() {
    let (r0, r1, r2) = (
        RedisServer::start(&[]),
        RedisServer::start(&[]),
        RedisServer::start(&[]),
    );
    let (u0, u1, u2) = (r0.url(), r1.url(), r2.url());
    let mut args = vec![
        "--workers",
        "2",
        "--redis",
        &u0,
        "--redis",
        &u1,
        "--redis",
        &u2,
    ];
    args.extend(NO_CLIENT_LIMITS);
    let server = ChildServer::start(&args);
    // Each connection may reach either worker: wait until a good many say all is up.
    wait_until(
        Duration::from_secs(10),
        "both workers on every shard",
        || (0..20).all(|_| get(server.addr, "/stats").json()["redis"]["connected"] == true),
    );
    let rooms: Vec<String> = (0..12).map(|i| format!("w{i}")).collect();
    for room in &rooms {
        let posted = post_form(
            server.addr,
            &format!("/rooms/{room}/messages"),
            "from=a&text=hi",
        );
        assert_eq!(posted.status, 201, "{room}: {}", posted.text());
    }
    let redis = [&r0, &r1, &r2];
    for room in &rooms {
        assert_eq!(holders(&redis, room), [shards::shard_of(room, 3)], "{room}");
        // Read back through whichever worker takes the connection.
        for _ in 0..3 {
            let read = get(server.addr, &format!("/rooms/{room}/messages"));
            assert_eq!(read.texts(), ["hi"], "{room}");
        }
    }
    let mut server = server;
    server.signal(libc::SIGTERM);
    assert!(server
        .wait_exit(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
}

#[test]
fn presence_typing_and_client_ids_work_alike_on_every_shard() {
    let (r0, r1) = (RedisServer::start(&[]), RedisServer::start(&[]));
    let (a, b) = (node(&[&r0, &r1]), node(&[&r0, &r1]));
    wait_all_up(&a);
    wait_all_up(&b);
    for shard in 0..2 {
        let room = room_on(&format!("s{shard}-"), shard, 2);
        let mut stream = Client::connect(b.addr);
        stream.get(&format!("/rooms/{room}/events?name=bob"));
        assert_eq!(stream.read_stream_head().status, 200);
        assert_eq!(stream.read_event(), "retry: 2000\n\n");
        assert!(stream.read_event().contains("\"name\":\"bob\""), "{room}");
        // Typing on A reaches the stream on B through the room's shard.
        let typing = post_form(a.addr, &format!("/rooms/{room}/typing"), "from=ann");
        assert_eq!(typing.status, 202, "{room}: {}", typing.text());
        assert_eq!(
            stream.read_event(),
            "event: typing\ndata: {\"type\":\"typing\",\"from\":\"ann\"}\n\n",
            "{room}"
        );
        // bob, present on B, is present on A.
        wait_until(Duration::from_secs(5), "bob present on A", || {
            let presence = get(a.addr, &format!("/rooms/{room}/presence")).json();
            presence["present"] == serde_json::json!(["bob"])
        });
        // A client_id stored through A is a duplicate through B.
        let path = format!("/rooms/{room}/messages");
        let body = "from=ann&text=once&client_id=k-1";
        let first = post_form(a.addr, &path, body);
        let again = post_form(b.addr, &path, body);
        assert_eq!((first.status, again.status), (201, 200), "{room}");
        assert_eq!(again.json()["duplicate"], true);
        assert_eq!(first.id(), again.id());
        assert!(stream.read_until("once").contains(&first.id()), "{room}");
        assert_eq!(holders(&[&r0, &r1], &room), [shard]);
    }
}

#[test]
fn a_marker_written_by_someone_else_is_logged_short_and_on_one_line() {
    let (r0, r1) = (RedisServer::start(&[]), RedisServer::start(&[]));
    // Anyone who can write to this Redis can write its marker: a line of their own in our
    // log, then megabytes (within what one reply may hold), logged at every reconnection.
    let key = shards::MARKER_KEY;
    let forged = "9/9\nERROR [comet_chat] forged";
    assert_eq!(r0.command(&["SET", key, forged]).as_deref(), Some("+OK"));
    let grown = r0.command(&["SETRANGE", key, "4000000", "x"]);
    assert_eq!(grown.as_deref(), Some(":4000001"));
    let node = ChildServer::start(&["--redis", &r0.url(), "--redis", &r1.url()]);
    // The whole warning, to its last words, whatever the marker held.
    wait_until(Duration::from_secs(10), "the refusal logged", || {
        let lines = node.log_lines();
        lines.iter().any(|l| l.contains("503 until Redis is back"))
    });
    let lines = node.log_lines();
    let at = format!("Redis at {} is shard", r0.url());
    let warning = lines.iter().find(|l| l.contains(&at));
    assert!(
        warning.is_some_and(|l| l.contains("WARN") && l.contains(key) && l.contains("503")),
        "the refusal on one line: {warning:?}"
    );
    let longest = lines.iter().map(String::len).max().unwrap_or_default();
    assert!(longest < 4096, "a log line of {longest} bytes");
    // The other shard is not held up by it.
    let mut client = Client::connect(node.addr);
    client.send(b"GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n");
    let shards = client.read_reply().json()["redis"]["shards"].clone();
    assert_eq!(shards[0]["connected"], false, "{shards}");
    wait_until(Duration::from_secs(10), "shard 1 up", || {
        let mut client = Client::connect(node.addr);
        client.send(b"GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n");
        client.read_reply().json()["redis"]["shards"][1]["connected"] == true
    });
}

#[test]
fn a_stalled_shard_answers_its_own_rooms_503_and_holds_up_no_other() {
    let (r0, r1) = (RedisServer::start(&[]), RedisServer::start(&[]));
    let a = node(&[&r0, &r1]);
    wait_all_up(&a);
    let (live, stalled) = (room_on("stall-", 0, 2), room_on("stall-", 1, 2));
    let first = post(&a, &live, "first");
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(post(&a, &stalled, "first").status, 201);

    // Shard 1 stops answering but keeps its connections open (SIGSTOP).
    r1.pause();
    let mut poll = Client::connect(a.addr);
    poll.get(&format!("/rooms/{live}/messages?since={}", first.id()));
    let started = std::time::Instant::now();
    let refused = post(&a, &stalled, "into+the+void");
    let waited = started.elapsed();
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
    // Meanwhile, and after, the other shard's room takes posts and delivers them.
    for i in 0..20 {
        let posted = post(&a, &live, &format!("live-{i}"));
        assert_eq!(posted.status, 201, "{}", posted.text());
    }
    assert_eq!(poll.read_reply().texts()[0], "live-0");
    wait_until(Duration::from_secs(10), "shard 1 dropped", || {
        counter(&a, |s| &s.redis_shards_up) == 1
    });
    assert_eq!(post(&a, &stalled, "still+stalled").status, 503);
    assert_eq!(post(&a, &live, "still+live").status, 201);

    r1.resume();
    wait_all_up(&a);
    let back = post(&a, &stalled, "back");
    assert_eq!(back.status, 201, "{}", back.text());
    let texts = get(a.addr, &format!("/rooms/{stalled}/messages")).texts();
    assert_eq!(texts.last().map(String::as_str), Some("back"), "{texts:?}");
}

/// Connections Redis `redis` has accepted since it started (`INFO stats`).
fn connections_received(redis: &RedisServer) -> u64 {
    use std::io::Write;
    const FIELD: &str = "total_connections_received:";
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream.write_all(b"INFO stats\r\n").unwrap();
    let (mut text, mut chunk) = (String::new(), [0u8; 4096]);
    loop {
        let field = text.split(FIELD).nth(1);
        if let Some((n, _)) = field.and_then(|rest| rest.split_once("\r\n")) {
            return n.parse().unwrap();
        }
        let n = read_retrying(&mut stream, &mut chunk).unwrap();
        assert!(n > 0, "INFO stats ended early: {text}");
        text.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
}

#[test]
fn a_shard_that_refuses_the_node_is_retried_at_the_backoff_rate_not_faster_and_faster() {
    let (r0, r1) = (RedisServer::start(&[]), RedisServer::start(&[]));
    // r0 is another list's shard: it refuses this node at every attempt, at once.
    let key = shards::MARKER_KEY;
    assert_eq!(r0.command(&["SET", key, "5/7"]).as_deref(), Some("+OK"));
    let a = node(&[&r0, &r1]);
    wait_until(Duration::from_secs(10), "shard 1 up", || {
        counter(&a, |s| &s.redis_shards_up) == 1
    });
    let before = connections_received(&r0);
    std::thread::sleep(Duration::from_secs(12));
    let made = connections_received(&r0) - before - 1; // less this test's own INFO
                                                       // At most one attempt (two connections) every RETRY_MOST (2 s) once the backoff has
                                                       // grown, a few more while it grows: about 14 in 12 s. Each refusal used to leave its
                                                       // earlier watchdog on the wheel as well, each of which made an attempt of its own, so
                                                       // the attempts multiplied (147 connections in 12 s, and growing).
    assert!(made <= 40, "{made} connections in 12 s");
    let room = room_on("r", 1, 2);
    assert_eq!(post(&a, &room, "fine").status, 201);
}

#[test]
fn a_peer_at_one_shard_answering_nonsense_costs_only_its_own_rooms() {
    use std::io::{Read, Write};
    // Not a Redis (the point is a misbehaving peer): whatever it is sent, even the
    // marker's SET, it answers with an array, then a bulk string as long as a reply may be.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::thread::spawn(move || {
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 4096];
                while stream.read(&mut buf).is_ok_and(|n| n > 0) {
                    let nonsense = b"*2\r\n$1\r\nx\r\n*1\r\n:1\r\n$4000000000\r\n";
                    if stream.write_all(nonsense).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let r0 = RedisServer::start(&[]);
    let fake = format!("redis://127.0.0.1:{port}");
    let mut node = ChildServer::start(&["--redis", &r0.url(), "--redis", &fake]);
    let (good, bad) = (room_on("n", 0, 2), room_on("n", 1, 2));
    let post_to = |room: &str| {
        let path = format!("/rooms/{room}/messages");
        post_form(node.addr, &path, "from=ann&text=hi").status
    };
    wait_until(Duration::from_secs(10), "shard 0 takes posts", || {
        post_to(&good) == 201
    });
    for _ in 0..10 {
        assert_eq!(post_to(&good), 201);
        assert_eq!(post_to(&bad), 503);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(node.wait_exit(Duration::ZERO).is_none(), "the node died");
    // It tried again, at the backoff's pace (two connections an attempt).
    let tries = accepted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (4..=20).contains(&tries),
        "{tries} connections in about 2 s"
    );
    let lines = node.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains(&fake)),
        "{lines:?}"
    );
}
