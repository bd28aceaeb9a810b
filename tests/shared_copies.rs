//! `--redis`: each node's copy of a room stays true to Redis's when the node falls behind,
//! when another node dies, and when Redis starts a new epoch, as a client waiting on the
//! node sees it. Real redis-server, real nodes (servers on their own threads, and a whole
//! process where a node must die by SIGKILL); where a node must lag, the test writes to
//! Redis with the very script a node posts with, on a channel no node hears, so that only
//! Redis knows the message.

mod common;

use comet_chat::backplane::{scripts, url};
use comet_chat::{Config, Running};
use common::redis::RedisServer;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn node_config(redis: &RedisServer) -> Config {
    Config {
        redis: vec![url::parse(&redis.url()).unwrap()],
        ..test_config()
    }
}

fn node(redis: &RedisServer) -> Running {
    let node = start(node_config(redis));
    wait_until(Duration::from_secs(10), "the node to reach Redis", || {
        counter(&node, |s| &s.redis_connected) == 1
    });
    node
}

fn post(node: &Running, room: &str, body: &str) -> Reply {
    let reply = post_form(node.addr, &format!("/rooms/{room}/messages"), body);
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply
}

/// One command to Redis; the reply's strings and integers, flattened in order (enough for
/// the replies used here: strings, integers, arrays of them).
fn redis_call(redis: &RedisServer, args: &[&str]) -> Vec<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).unwrap();
    let mut input = Vec::new();
    loop {
        if let Some(values) = parse_reply(&input) {
            return values;
        }
        let mut chunk = [0u8; 4096];
        let n = read_retrying(&mut stream, &mut chunk).unwrap();
        assert!(n > 0, "Redis closed the connection");
        input.extend_from_slice(&chunk[..n]);
    }
}

/// The values of one whole RESP reply, or None while it is incomplete.
fn parse_reply(input: &[u8]) -> Option<Vec<String>> {
    fn one(input: &[u8], at: &mut usize, out: &mut Vec<String>) -> Option<()> {
        let end = *at + input[*at..].windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&input[*at + 1..end])
            .unwrap()
            .to_owned();
        let kind = input[*at];
        *at = end + 2;
        match kind {
            b'+' | b':' => out.push(line),
            b'-' => panic!("Redis refused: {line}"),
            b'$' => {
                let len: i64 = line.parse().unwrap();
                if len >= 0 {
                    let len = len as usize;
                    if input.len() < *at + len + 2 {
                        return None;
                    }
                    out.push(String::from_utf8_lossy(&input[*at..*at + len]).into_owned());
                    *at += len + 2;
                }
            }
            b'*' => {
                for _ in 0..line.parse::<i64>().unwrap().max(0) {
                    one(input, at, out)?;
                }
            }
            other => panic!("unexpected RESP type {:?}", other as char),
        }
        Some(())
    }
    let mut values = Vec::new();
    let mut at = 0;
    (!input.is_empty()).then_some(())?;
    one(input, &mut at, &mut values)?;
    Some(values)
}

/// Stores a message in `room` exactly as a node's post does, but announces it on a
/// channel no node listens to: only Redis knows of it. Returns its position.
fn post_behind_every_node(redis: &RedisServer, room: &str, text: &str) -> String {
    let key = |what: &str| format!("comet:r:{room}:{what}");
    let (seq, log, bytes, cid) = (key("seq"), key("log"), key("bytes"), key("nocid"));
    let reply = redis_call(
        redis,
        &[
            "EVAL",
            scripts::POST,
            "5",
            "comet:epoch",
            &seq,
            &log,
            &bytes,
            &cid,
            "ann",
            text,
            "1700000000000",
            "",
            "1000",
            "1048576",
            "3600",
            "00000000",
            "comet:test:heard-by-nobody",
            "200",
        ],
    );
    format!("{}-{}", reply[0], reply[1])
}

/// Regression (issue 21, item 3): a node whose copy of a room had not yet heard a message
/// answered the position another node gave out for it `400 since: this position is ahead
/// of the room`. PROTOCOL.md promises a position works on any node: a lagging node reads
/// what it missed from Redis and answers from there; only a position Redis never issued
/// is refused.
#[test]
fn a_node_that_lags_answers_positions_other_nodes_gave_out() {
    let redis = RedisServer::start(&[]);
    let (a, b) = (node(&redis), node(&redis));
    let one = post(&a, "r", "from=ann&text=one").id();
    wait_until(Duration::from_secs(5), "B to hear the first post", || {
        get(b.addr, "/rooms/r/messages?since=0").texts() == ["one"]
    });
    let epoch = one.split('-').next().unwrap().to_owned();

    // A poll from a position B has not heard of: what follows it.
    let two = post_behind_every_node(&redis, "r", "two");
    let three = post_behind_every_node(&redis, "r", "three");
    assert_eq!(two, format!("{epoch}-2"));
    let answer = get(b.addr, &format!("/rooms/r/messages?since={two}"));
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.texts(), ["three"]);
    assert_eq!(answer.json()["next"], three.as_str());
    assert_eq!(answer.json()["gap"], false);

    // A stream resuming from such a position: the messages after it, then live ones.
    let four = post_behind_every_node(&redis, "r", "four");
    let five = post_behind_every_node(&redis, "r", "five");
    let mut stream = Client::connect(b.addr);
    stream.get(&format!("/rooms/r/events?since={four}"));
    assert_eq!(stream.read_stream_head().status, 200);
    assert_eq!(stream.read_event(), "retry: 2000\n\n");
    let frame = stream.read_event();
    assert!(
        frame.starts_with(&format!("id: {five}\nevent: message\n")),
        "{frame}"
    );

    // A poll from the newest position Redis has, unheard on B: it waits, and gets the next.
    let six = post_behind_every_node(&redis, "r", "six");
    let mut waiting = Client::connect(b.addr);
    waiting.get(&format!("/rooms/r/messages?since={six}"));
    wait_parked(&b, 1);
    let seven = post(&a, "r", "from=ann&text=seven").id();
    let answer = waiting.read_reply();
    assert_eq!(answer.texts(), ["seven"]);
    assert_eq!(answer.json()["next"], seven.as_str());
    assert!(stream.read_event().contains("\"text\":\"six\""));
    assert!(stream.read_event().contains("\"text\":\"seven\""));

    // A position Redis never issued is still refused, by a poll and by a stream.
    let made_up = format!("{epoch}-99");
    let refused = get(b.addr, &format!("/rooms/r/messages?since={made_up}"));
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.text().contains("ahead of the room"));
    let refused = get(b.addr, &format!("/rooms/r/events?since={made_up}"));
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(counter(&b, |s| &s.pending_polls), 0);
}

/// Regression (issue 21, item 6b): a name polled on a node that was then killed stayed in
/// Redis for good, and present on a node that had loaded the room while it was there:
/// nodes that load a room skipped the expired names without sweeping them. Now whoever
/// finds an expired name sweeps it: it leaves Redis, and the waiting clients of every node
/// that showed it hear it leave.
#[test]
fn the_names_of_a_killed_node_leave_everywhere() {
    let redis = RedisServer::start(&[]);
    let url = redis.url();
    // B has been up a while, as a serving node is: the presence sweep it ran on reaching
    // Redis found nobody, and stopped.
    let b = node(&redis);
    let b_up = Instant::now();
    // The shortest window a process allows: --poll-timeout 0.5 s, plus the fixed 5 s grace.
    let ghost_node = ChildServer::start(&["--redis", &url, "--poll-timeout", "0.5"]);
    wait_until(
        Duration::from_secs(10),
        "the ghost's node to reach Redis",
        || get(ghost_node.addr, "/rooms/orph/presence").status == 200,
    );
    let mut ghosts = Vec::new();
    for room in ["orph", "orph2"] {
        let mut ghost = Client::connect(ghost_node.addr);
        ghost.get(&format!("/rooms/{room}/messages?name=ghost"));
        ghosts.push(ghost);
    }
    let names = |room: &str| {
        redis_call(
            &redis,
            &["ZRANGE", &format!("comet:r:{room}:names"), "0", "-1"],
        )
    };
    wait_until(Duration::from_secs(5), "ghost present in Redis", || {
        names("orph") == ["ghost"] && names("orph2") == ["ghost"]
    });

    // B loads `orph` while ghost is present there, and a client waits in it.
    std::thread::sleep(Duration::from_secs(2).saturating_sub(b_up.elapsed()));
    let mut watcher = Client::connect(b.addr);
    watcher.get("/rooms/orph/events");
    assert_eq!(watcher.read_stream_head().status, 200);
    assert_eq!(watcher.read_event(), "retry: 2000\n\n");
    assert_eq!(
        get(b.addr, "/rooms/orph/presence").json()["present"],
        serde_json::json!(["ghost"])
    );

    // kill -9: the ghost's node tells nobody.
    let (mut ghost_node, killed) = (ghost_node, Instant::now());
    ghost_node.signal(libc::SIGKILL);
    assert!(ghost_node.wait_exit(Duration::from_secs(5)).is_some());
    drop(ghosts);
    watcher
        .stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut leave = watcher.read_event();
    while leave.starts_with(": keep-alive") {
        leave = watcher.read_event();
    }
    assert!(
        leave.contains("\"type\":\"leave\",\"name\":\"ghost\""),
        "{leave}"
    );
    assert!(
        killed.elapsed() < Duration::from_secs(12),
        "within its window"
    );
    assert_eq!(names("orph"), Vec::<String>::new(), "gone from Redis");
    assert_eq!(
        get(b.addr, "/rooms/orph/presence").json()["present"],
        serde_json::json!([])
    );

    // `orph2` was served by nobody else: its expired ghost stays in Redis until a node
    // loads the room, which sweeps it.
    assert_eq!(names("orph2"), ["ghost"], "nobody has swept orph2 yet");
    assert_eq!(
        get(b.addr, "/rooms/orph2/presence").json()["present"],
        serde_json::json!([])
    );
    assert_eq!(names("orph2"), Vec::<String>::new(), "swept by the load");
}

/// Regression (issue 21, item 6c): when Redis started a new epoch (its data deleted, or
/// lost in a restart), a stream open across the change was sent the history again under
/// new ids without a `gap` event, and a parked poll was answered with the new epoch's
/// message and `gap: false`. A client waiting across an epoch change is told of the gap
/// first, as a fresh request from its old position is.
#[test]
fn a_client_waiting_across_a_new_epoch_is_told_of_the_gap() {
    let redis = RedisServer::start(&[]);
    let a = node(&redis);
    post(&a, "r", "from=ann&text=one");
    let head = post(&a, "r", "from=ann&text=two").id();
    let mut stream = Client::connect(a.addr);
    stream.get(&format!("/rooms/r/events?since={head}"));
    assert_eq!(stream.read_stream_head().status, 200);
    assert_eq!(stream.read_event(), "retry: 2000\n\n");
    let mut parked = Client::connect(a.addr);
    parked.get(&format!("/rooms/r/messages?since={head}"));
    wait_parked(&a, 1);

    assert_eq!(redis_call(&redis, &["DEL", "comet:epoch"]), ["1"]);
    let after = post(&a, "r", "from=ann&text=after").id();
    let new_epoch = after.split('-').next().unwrap();
    assert_ne!(Some(new_epoch), head.split('-').next(), "a new epoch");

    let answer = parked.read_reply();
    assert_eq!(answer.json()["gap"], true, "{}", answer.text());
    let next = answer.json()["next"].as_str().unwrap().to_owned();
    assert!(next.starts_with(new_epoch), "{next}");
    // Carrying on from `next` reaches the new epoch's message.
    let mut texts = answer.texts();
    let mut next = next;
    for _ in 0..10 {
        if texts.iter().any(|t| t == "after") {
            break;
        }
        let more = get(a.addr, &format!("/rooms/r/messages?since={next}"));
        texts.extend(more.texts());
        next = more.json()["next"].as_str().unwrap().to_owned();
    }
    assert!(texts.iter().any(|t| t == "after"), "{texts:?}");

    let first = stream.read_event();
    assert!(first.starts_with("event: gap\n"), "{first}");
    assert!(
        first.contains(&format!("\"next\":\"{new_epoch}-")),
        "{first}"
    );
    // Then the new epoch's messages, up to the one just posted.
    for _ in 0..10 {
        let frame = stream.read_event();
        assert!(frame.contains(&format!("id: {new_epoch}-")), "{frame}");
        if frame.contains("\"text\":\"after\"") {
            return;
        }
    }
    panic!("the stream never got the new epoch's message");
}

/// Regression (an attack): a position ahead of a node's copy makes the node read Redis, and
/// nothing bounded how often one client could ask (247,520 requests with made-up positions
/// in 5 s made 66,254 reads). Such reads are charged to the client's `--post-rate`: past
/// its burst, 429 with `Retry-After`, and no read; other clients are not charged.
#[test]
fn reads_of_redis_for_made_up_positions_are_charged_to_the_client() {
    let redis = RedisServer::start(&[]);
    let node = start(Config {
        post_burst: 3,
        post_rate: 1,
        ..node_config(&redis)
    });
    wait_until(Duration::from_secs(10), "the node to reach Redis", || {
        counter(&node, |s| &s.redis_connected) == 1
    });
    let head = post(&node, "r", "from=ann&text=hi").id();
    let made_up = format!("{}-999", head.split('-').next().unwrap());
    let ask = |source: &str| {
        let mut client = Client::connect_from(node.addr, source);
        client.get(&format!("/rooms/r/messages?since={made_up}"));
        client.read_reply()
    };
    // Loaded first: a room's first read is its load, which every request needs.
    assert_eq!(get(node.addr, "/rooms/r/messages").status, 200);
    let catch_ups = counter(&node, |s| &s.redis_catch_ups);
    for n in 0..3 {
        // A burst of three permits: each of these takes one.
        assert_eq!(
            ask("127.0.0.2").status,
            400,
            "read {n}: Redis never issued it"
        );
    }
    let refused = ask("127.0.0.2");
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(refused.header("Retry-After").is_some());
    assert!(refused.text().contains("--post-rate"), "{}", refused.text());
    assert_eq!(
        counter(&node, |s| &s.redis_catch_ups),
        catch_ups + 3,
        "no fourth read"
    );
    assert_eq!(
        ask("127.0.0.3").status,
        400,
        "another client is not charged"
    );
}
