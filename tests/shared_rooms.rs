//! `--redis`: several comet-chat processes (here, servers on their own threads; the
//! worker-process tests are in tests/workers.rs) share rooms through a real redis-server:
//! a message posted on one reaches clients of another, positions mean the same everywhere
//! and survive restarts, and nothing is lost or repeated while Redis itself restarts.

mod common;

use comet_chat::backplane::url;
use comet_chat::{Config, Running};
use common::redis::RedisServer;
use common::*;
use std::time::{Duration, Instant};

fn node(redis: &RedisServer) -> Running {
    start(node_config(redis))
}

fn node_config(redis: &RedisServer) -> Config {
    Config {
        redis: vec![url::parse(&redis.url()).unwrap()],
        ..test_config()
    }
}

/// Waits until the node is connected to Redis (its /stats says so).
fn wait_connected(node: &Running) {
    wait_until(Duration::from_secs(10), "the node to reach Redis", || {
        counter(node, |s| &s.redis_connected) == 1
    });
}

fn post(node: &Running, room: &str, body: &str) -> Reply {
    post_form(node.addr, &format!("/rooms/{room}/messages"), body)
}

#[test]
fn two_nodes_share_a_room() {
    let redis = RedisServer::start(&[]);
    let (a, b) = (node(&redis), node(&redis));
    wait_connected(&a);
    wait_connected(&b);
    let first = post(&a, "garden", "from=ann&text=one");
    assert_eq!(first.status, 201, "{}", first.text());
    let first = first.id();

    // A poll on B, parked at the head, gets what is posted on A.
    let mut poll = Client::connect(b.addr);
    poll.get(&format!("/rooms/garden/messages?since={first}"));
    wait_parked(&b, 1);
    let second = post(&a, "garden", "from=ann&text=two").id();
    let answer = poll.read_reply();
    assert_eq!(answer.texts(), ["two"]);
    assert_eq!(answer.json()["next"], second.as_str());

    // Resuming on B from a position A gave: exactly what came after it.
    let third = post(&a, "garden", "from=bob&text=three").id();
    let resumed = get(b.addr, &format!("/rooms/garden/messages?since={first}"));
    assert_eq!(resumed.texts(), ["two", "three"]);
    assert_eq!(resumed.json()["gap"], false);
    assert_eq!(resumed.json()["next"], third.as_str());

    // The same client_id posted to A and then to B is stored once.
    let on_a = post(&a, "garden", "from=ann&text=once&client_id=c-1");
    let on_b = post(&b, "garden", "from=ann&text=once&client_id=c-1");
    assert_eq!(on_a.status, 201);
    assert_eq!(on_b.status, 200, "{}", on_b.text());
    assert_eq!(on_b.json()["duplicate"], true);
    assert_eq!(on_a.id(), on_b.id());
    // Another sender's post with the same client_id is its own.
    let bobs = post(&b, "garden", "from=bob&text=mine&client_id=c-1");
    assert_eq!(bobs.status, 201, "{}", bobs.text());
    let all = get(a.addr, "/rooms/garden/messages");
    assert_eq!(all.texts(), ["one", "two", "three", "once", "mine"]);
}

#[test]
fn a_stream_on_one_node_hears_posts_typing_and_names_from_another() {
    let redis = RedisServer::start(&[]);
    let (a, b) = (node(&redis), node(&redis));
    wait_connected(&a);
    wait_connected(&b);
    let mut stream = Client::connect(b.addr);
    stream.get("/rooms/r/events?name=bob");
    assert_eq!(stream.read_stream_head().status, 200);
    assert_eq!(stream.read_event(), "retry: 2000\n\n");
    assert!(
        stream.read_event().contains("\"name\":\"bob\""),
        "bob's own join"
    );
    let id = post(&a, "r", "from=ann&text=hello").id();
    let frame = stream.read_event();
    assert!(
        frame.starts_with(&format!("id: {id}\nevent: message\n")),
        "{frame}"
    );
    post_form(a.addr, "/rooms/r/typing", "from=ann");
    assert_eq!(
        stream.read_event(),
        "event: typing\ndata: {\"type\":\"typing\",\"from\":\"ann\"}\n\n"
    );
    // bob's name, held by his stream on B, is present on A too.
    wait_until(Duration::from_secs(5), "bob present on A", || {
        get(a.addr, "/rooms/r/presence").json()["present"] == serde_json::json!(["bob"])
    });
}

#[test]
fn a_restarted_node_keeps_the_history() {
    let redis = RedisServer::start(&[]);
    let a = node(&redis);
    wait_connected(&a);
    let first = post(&a, "r", "from=ann&text=before").id();
    post(&a, "r", "from=ann&text=after");
    a.stop().unwrap();
    let again = node(&redis);
    wait_connected(&again);
    let resumed = get(again.addr, &format!("/rooms/r/messages?since={first}"));
    assert_eq!(resumed.texts(), ["after"]);
    assert_eq!(
        resumed.json()["gap"],
        false,
        "the history outlived the node"
    );
}

#[test]
fn redis_down_posts_are_refused_at_once_and_waiting_polls_keep_waiting() {
    let mut redis = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let a = node(&redis);
    wait_connected(&a);
    let head = post(&a, "r", "from=ann&text=first").id();
    let mut poll = Client::connect(a.addr);
    poll.get(&format!("/rooms/r/messages?since={head}"));
    wait_parked(&a, 1);
    redis.kill();
    let started = Instant::now();
    let refused = post(&a, "r", "from=ann&text=while+down&client_id=d-1");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.header("Retry-After").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered without waiting for Redis"
    );
    assert_eq!(counter(&a, |s| &s.pending_polls), 1, "the poll still waits");
    redis.restart();
    wait_connected(&a);
    let stored = post(&a, "r", "from=ann&text=while+down&client_id=d-1");
    assert!(matches!(stored.status, 200 | 201), "{}", stored.text());
    assert_eq!(poll.read_reply().texts(), ["while down"]);
    assert!(counter(&a, |s| &s.redis_reconnects) >= 1);
}

/// Redis is killed and restarted (with `--appendonly yes --appendfsync always`) in the
/// middle of a flood of posts to two nodes: every post that was acknowledged reaches every
/// resuming client exactly once, in order; posts refused meanwhile are retried with their
/// `client_id` and stored once.
#[test]
fn nothing_acknowledged_is_lost_or_repeated_while_redis_restarts() {
    use std::sync::{Arc, Mutex};
    let redis = Arc::new(Mutex::new(RedisServer::start(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ])));
    let (a, b) = {
        let redis = redis.lock().unwrap();
        let flooded = || start(without_client_limits(node_config(&redis)));
        (flooded(), flooded())
    };
    wait_connected(&a);
    wait_connected(&b);
    let last = Arc::new(Mutex::new(None::<String>));
    let readers: Vec<_> = [a.addr, b.addr]
        .into_iter()
        .map(|addr| {
            let last = Arc::clone(&last);
            std::thread::spawn(move || resume_until(addr, "flood", &last))
        })
        .collect();
    let posts = 300;
    let acknowledged_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Kill Redis a third of the way in, and start it again half a second later.
    let outage = {
        let (redis, count) = (Arc::clone(&redis), Arc::clone(&acknowledged_count));
        std::thread::spawn(move || {
            let started = Instant::now();
            while count.load(std::sync::atomic::Ordering::Relaxed) < posts / 3 {
                assert!(started.elapsed() < Duration::from_secs(30));
                std::thread::sleep(Duration::from_millis(5));
            }
            redis.lock().unwrap().kill();
            std::thread::sleep(Duration::from_millis(500));
            redis.lock().unwrap().restart();
        })
    };
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let mut refused = 0;
    for i in 0..posts {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        let text = format!("m{i}");
        let body = format!("from=ann&text={text}&client_id=flood-{i}");
        let mut attempts = 0;
        let id = loop {
            attempts += 1;
            assert!(attempts < 500, "post {i} never got through");
            let mut client = Client::connect(addr);
            client.send(
                format!(
                    "POST /rooms/flood/messages HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            let reply = client.read_reply();
            match reply.status {
                200 | 201 => break reply.id(),
                503 => {
                    refused += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => panic!("post {i}: {other} {}", reply.text()),
            }
        };
        acknowledged.push((id, text));
        acknowledged_count.store(acknowledged.len(), std::sync::atomic::Ordering::Relaxed);
    }
    outage.join().unwrap();
    *last.lock().unwrap() = acknowledged.last().map(|(id, _)| id.clone());
    assert!(refused > 0, "Redis was down for some posts");
    for reader in readers {
        let seen = reader.join().unwrap();
        assert_eq!(seen, acknowledged, "every acknowledged post once, in order");
    }
}

/// Redis restarted without its data (no persistence) comes back with a new epoch: every
/// node notices, and a client resuming from an old position is told of the gap.
#[test]
fn redis_losing_its_data_is_a_gap_not_a_silent_jump() {
    let mut redis = RedisServer::start(&[]);
    let a = node(&redis);
    wait_connected(&a);
    let old = post(&a, "r", "from=ann&text=before").id();
    redis.restart(); // --save "" and no AOF: everything is gone
    wait_until(Duration::from_secs(10), "the node to come back", || {
        counter(&a, |s| &s.redis_reconnects) >= 1 && counter(&a, |s| &s.redis_connected) == 1
    });
    let new = post(&a, "r", "from=ann&text=after");
    assert_eq!(new.status, 201, "{}", new.text());
    assert_ne!(
        new.id().split('-').next(),
        old.split('-').next(),
        "a new epoch"
    );
    let resumed = get(a.addr, &format!("/rooms/r/messages?since={old}"));
    assert_eq!(resumed.json()["gap"], true);
    assert_eq!(resumed.texts(), ["after"]);
}

/// A name held by a stream on a node that dies leaves, on the other nodes, once its time
/// is up (the dead node no longer renews it).
#[test]
fn the_names_of_a_node_that_dies_leave_everywhere() {
    let redis = RedisServer::start(&[]);
    let quick = Config {
        poll_timeout: Duration::from_millis(500),
        presence_grace: Duration::from_millis(500),
        ..node_config(&redis)
    };
    let a = start(quick.clone());
    let b = start(quick);
    wait_connected(&a);
    wait_connected(&b);
    let mut watcher = Client::connect(b.addr);
    watcher.get("/rooms/r/events");
    watcher.read_stream_head();
    watcher.read_event();
    let mut carl = Client::connect(a.addr);
    carl.get("/rooms/r/events?name=carl");
    carl.read_stream_head();
    assert!(watcher
        .read_event()
        .contains("\"type\":\"join\",\"name\":\"carl\""));
    // carl's stream stays open while A dies (stop drops every connection without a word to
    // Redis, as a crash would).
    a.stop().unwrap();
    let started = Instant::now();
    let leave = watcher.read_event();
    assert!(
        leave.contains("\"type\":\"leave\",\"name\":\"carl\""),
        "{leave}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "within the window and a renewal"
    );
    assert_eq!(
        get(b.addr, "/rooms/r/presence").json()["present"],
        serde_json::json!([])
    );
    drop(carl);
}

/// With Redis, a node's copy of an empty room gives its place to a new room at
/// `--max-rooms` once nobody uses it here, so reads of made-up rooms do not use up the
/// cap; a room with messages gives way only as the idle room unused longest, and Redis
/// keeps its history: its next use reads it back, with the same positions.
#[test]
fn reads_of_made_up_rooms_do_not_use_up_the_cap_with_redis() {
    let redis = RedisServer::start(&[]);
    let node = start(Config {
        max_rooms: 3, // the lobby and two more
        ..node_config(&redis)
    });
    wait_connected(&node);
    for n in 0..20 {
        let read = get(node.addr, &format!("/rooms/made-up-{n}/presence"));
        assert_eq!(read.status, 200, "{n}: {}", read.text());
    }
    // Typing makes a room without reading it from Redis; nor do such rooms keep places.
    for n in 0..2 {
        let path = format!("/rooms/typed-{n}/typing");
        let typing = post_form(node.addr, &path, &format!("from=t{n}"));
        assert_eq!(typing.status, 202, "{}", typing.text());
    }
    assert_eq!(get(node.addr, "/rooms/after-typing/presence").status, 200);
    for room in ["a", "b"] {
        let reply = post(&node, room, "from=ann&text=kept");
        assert_eq!(reply.status, 201, "{room}: {}", reply.text());
    }
    let a_id = get(node.addr, "/rooms/a/messages?since=0").json()["messages"][0]["id"].clone();
    // a was read last: b, unused longest, gives its place to c, then a to d, and so on.
    assert_eq!(post(&node, "c", "from=ann&text=also").status, 201);
    assert_eq!(get(node.addr, "/rooms/d/presence").status, 200);
    for room in ["a", "b"] {
        let read = get(node.addr, &format!("/rooms/{room}/messages?since=0"));
        assert_eq!(read.texts(), ["kept"], "{room}, read back from Redis");
    }
    let again = get(node.addr, "/rooms/a/messages?since=0").json();
    assert_eq!(again["messages"][0]["id"], a_id, "the same position");
    assert_eq!(
        get(node.addr, "/rooms/c/messages?since=0").texts(),
        ["also"]
    );
    assert!(counter(&node, |s| &s.rooms_given_way) >= 4);
    assert_eq!(
        counter(&node, |s| &s.dropped_room_history),
        0,
        "Redis kept them"
    );
}

/// Redis trims a room's history by the same weight as every node trims its copy, text
/// JSON-escaped as the node stores it: a node that followed the posts and a node that
/// reads the room afresh hold the same messages.
#[test]
fn redis_and_every_copy_trim_the_history_alike() {
    let redis = RedisServer::start(&[]);
    let small = |redis: &RedisServer| Config {
        history_bytes: 2000,
        ..node_config(redis)
    };
    let following = start(small(&redis));
    wait_connected(&following);
    assert_eq!(get(following.addr, "/rooms/q/presence").status, 200); // loads its copy
                                                                      // 150 `"` and 150 tabs, each two bytes escaped, 600 bytes in all: two fit in 2000.
    let quotes = "%22%09".repeat(150);
    for n in 1..=6 {
        let reply = post(&following, "q", &format!("from=ann&text={n}{quotes}"));
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    let fresh = start(small(&redis));
    wait_connected(&fresh);
    let firsts = |node: &Running| -> Vec<String> {
        let read = get(node.addr, "/rooms/q/messages?since=0");
        read.texts().iter().map(|t| t[..1].to_owned()).collect()
    };
    assert_eq!(
        redis.command(&["XLEN", "comet:r:q:log"]).as_deref(),
        Some(":2")
    );
    assert_eq!(firsts(&fresh), ["5", "6"], "Redis's history");
    // The copy hears the last announcement a moment after the poster's answer, at most.
    wait_until(
        Duration::from_secs(5),
        "the copy to hear every post",
        || firsts(&following).last().map(String::as_str) == Some("6"),
    );
    assert_eq!(
        firsts(&following),
        ["5", "6"],
        "the copy that followed the posts"
    );
}

/// Each stored entry carries the weight it was counted with, and is taken off the room's
/// byte count by it; an entry from before entries carried one is taken off as it was
/// counted then, so an upgrade leaves the count true.
#[test]
fn the_byte_count_takes_each_entry_off_as_it_was_counted() {
    let redis = RedisServer::start(&[]);
    // As an older comet-chat stored it: no `w`, counted as name + text + 96 = 102.
    let old = [
        "XADD",
        "comet:r:old:log",
        "1-0",
        "f",
        "ann",
        "t",
        "\"\"\"",
        "ts",
        "0",
    ];
    assert!(redis.command(&old).is_some());
    assert!(redis.command(&["SET", "comet:r:old:seq", "1"]).is_some());
    assert!(redis
        .command(&["SET", "comet:r:old:bytes", "102"])
        .is_some());
    let node = start(Config {
        history_bytes: 150,
        ..node_config(&redis)
    });
    wait_connected(&node);
    assert_eq!(post(&node, "old", "from=ann&text=x").status, 201);
    // 102 + 204 is over 150: the old entry goes, taking off the 102 it was counted with.
    assert_eq!(
        redis.command(&["XLEN", "comet:r:old:log"]).as_deref(),
        Some(":1")
    );
    // (INCRBY 0 reads the count as an integer reply.)
    assert_eq!(
        redis
            .command(&["INCRBY", "comet:r:old:bytes", "0"])
            .as_deref(),
        Some(":204")
    );
}

/// With Redis too, one address may give only `--max-rooms-per-client` rooms their first
/// message from this node: each such room counts for it while the room is here.
#[test]
fn one_address_cannot_take_every_room_with_redis() {
    let redis = RedisServer::start(&[]);
    let node = start(Config {
        max_rooms_per_client: 2,
        ..node_config(&redis)
    });
    wait_connected(&node);
    for room in ["a", "b"] {
        assert_eq!(post(&node, room, "from=ann&text=pin").status, 201, "{room}");
    }
    let refused = post(&node, "c", "from=ann&text=pin");
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(post(&node, "a", "from=ann&text=again").status, 201);
}

/// Regression: the requests one load releases are handled a budget at a time, and their
/// effects were carried out only after the whole batch had been decided. A stream in the
/// batch whose client had gone (its replay's second page failing to write) left the
/// room's list at once, and the last stream in the list, which the batch had joined but
/// not started yet, was moved into its place without knowing it: the node's loop panicked
/// then (debug), or when that stream left (`swap_remove` past the end, release), or took
/// another stream out of the list so that it heard nothing more.
#[test]
fn a_stream_gone_while_its_room_loads_leaves_the_others_in_the_batch_listening() {
    let redis = RedisServer::start(&[]);
    let a = start(without_client_limits(node_config(&redis)));
    wait_connected(&a);
    // Three pages of history (`PAGE_MESSAGES` is 64) that node b has never read.
    for i in 0..150 {
        let reply = post(&a, "r", &format!("from=ann&text=old{i}"));
        assert_eq!(reply.status, 201);
    }
    let b = node(&redis);
    wait_connected(&b);
    redis.pause();
    let mut gone = Client::connect(b.addr);
    gone.get("/rooms/r/events?since=0");
    std::thread::sleep(Duration::from_millis(50));
    drop(gone);
    let mut stays = Client::connect(b.addr);
    stays.get("/rooms/r/events");
    // Both wait for the room's load (each at most `REPLY_WAIT`, a second).
    std::thread::sleep(Duration::from_millis(200));
    redis.resume();
    assert_eq!(stays.read_stream_head().status, 200);
    post(&a, "r", "from=ann&text=fresh");
    stays.read_until("fresh");
    drop(stays);
    wait_until(Duration::from_secs(10), "both streams to be gone", || {
        counter(&b, |s| &s.streams) == 0
    });
    let mut third = Client::connect(b.addr);
    third.get("/rooms/r/events");
    assert_eq!(third.read_stream_head().status, 200);
    post(&a, "r", "from=ann&text=later");
    third.read_until("later");
}
