//! Whatever one client sends, one pass of the loop does a bounded amount of work for it,
//! and what one client may make the server hold is capped. These tests assert the bounds
//! themselves (how many requests a pass answers for one connection, how many names a
//! sweep takes, how many names a client may make), never a time: the machine is shared,
//! and the latency other clients see meanwhile is what `cargo bench --bench hostile`
//! measures.
//!
//! Most of them step the loop one pass at a time (`Server::pass`) on the test's own
//! thread, so they can look at the server between two passes.

mod common;

use comet_chat::server::{
    DELIVERIES_PER_TURN, NAMES_SWEPT_PER_PASS, REQUESTS_PER_TURN, TIMERS_FIRED_PER_PASS,
};
use comet_chat::stats::{self, Stats};
use comet_chat::{Config, Server};
use common::*;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// One pass, never sleeping long.
fn step(server: &mut Server) {
    server.pass(Some(Duration::from_millis(20))).unwrap();
}

/// Steps the loop until `done` holds (a test failure after 10 s). `done` is asked before
/// the first pass and after every pass, so it can observe each pass on its own.
fn step_until(server: &mut Server, what: &str, mut done: impl FnMut(&mut Server) -> bool) {
    let started = Instant::now();
    while !done(server) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        step(server);
    }
}

fn count(server: &Server, pick: fn(&Stats) -> &AtomicU64) -> u64 {
    stats::get(pick(server.handle().stats()))
}

/// Everything the socket holds right now (the server wrote it before `pass` returned).
fn drain_now(client: &mut std::net::TcpStream) -> String {
    client.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match read_retrying(client, &mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    client.set_nonblocking(false).unwrap();
    String::from_utf8(got).unwrap()
}

fn post_request(room: &str, text: &str) -> String {
    let body = format!("from=ann&text={text}");
    format!(
        "POST /rooms/{room}/messages HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Regression: the server answered every complete request in a socket's buffer before
/// serving anyone else (20,000 pipelined posts blocked every other client for 5-7 s).
#[test]
fn one_turn_answers_at_most_a_turns_worth_of_pipelined_requests() {
    let mut server = Server::bind(test_config()).unwrap();
    let mut client = Client::connect(server.local_addr());
    let burst: String = (0..100)
        .map(|_| "GET /rooms/r/presence HTTP/1.1\r\n\r\n")
        .collect();
    client.send(burst.as_bytes());
    let mut per_pass = Vec::new();
    let mut before = 0;
    step_until(&mut server, "100 answers", |server| {
        let now = count(server, |s| &s.requests);
        if now > before {
            per_pass.push(now - before);
        }
        before = now;
        now == 100
    });
    assert!(
        per_pass.iter().all(|&n| n as usize <= REQUESTS_PER_TURN),
        "a pass answered more than a turn's worth for one connection: {per_pass:?}"
    );
    assert_eq!(*per_pass.iter().max().unwrap() as usize, REQUESTS_PER_TURN);
    for _ in 0..100 {
        assert_eq!(
            client.read_reply().status,
            200,
            "every request answered, in order"
        );
    }
}

/// A post that reaches more than a turn's worth of clients ends its poster's turn: the
/// next pipelined post waits for the next pass, after everyone else's events.
#[test]
fn a_post_to_a_big_room_ends_its_posters_turn() {
    // More listeners than one address may hold by default: they all come from 127.0.0.1.
    let config = Config {
        max_conns_per_client: 0,
        ..test_config()
    };
    let mut server = Server::bind(config).unwrap();
    let addr = server.local_addr();
    let listeners = DELIVERIES_PER_TURN as usize + 50;
    let mut streams: Vec<_> = (0..listeners)
        .map(|_| {
            let mut stream = Client::connect(addr);
            stream.get("/rooms/big/events");
            stream
        })
        .collect();
    step_until(&mut server, "the streams", |s| {
        count(s, |s| &s.streams) == listeners as u64
    });
    let mut poster = Client::connect(addr);
    let burst: String = (0..5)
        .map(|i| post_request("big", &format!("m{i}")))
        .collect();
    poster.send(burst.as_bytes());
    let mut per_pass = Vec::new();
    let mut before = 0;
    step_until(&mut server, "5 posts", |server| {
        let now = count(server, |s| &s.messages);
        per_pass.push(now - before);
        before = now;
        now == 5
    });
    assert!(
        per_pass.iter().all(|&n| n <= 1),
        "posts per pass: {per_pass:?}"
    );
    assert_eq!(
        count(&server, |s| &s.deliveries),
        5 * listeners as u64,
        "every broadcast still reached everyone"
    );
    drop(streams.drain(..));
}

/// Regression: names expiring together were all announced in one pass (60,000 leave
/// events written to every stream froze the loop for 18-20 s).
#[test]
fn a_sweep_announces_at_most_a_passs_worth_of_leaves() {
    let config = Config {
        poll_timeout: Duration::from_millis(200),
        presence_grace: Duration::from_millis(100),
        max_names_per_client: 10_000,
        ..test_config()
    };
    let mut server = Server::bind(config).unwrap();
    let addr = server.local_addr();
    let mut observer = Client::connect(addr);
    observer.get("/rooms/r/events");
    let mut poster = Client::connect(addr);
    poster.send(post_request("r", "hello").as_bytes());
    step_until(&mut server, "the observer and a message", |s| {
        count(s, |s| &s.streams) == 1 && count(s, |s| &s.messages) == 1
    });
    let names = 600;
    let mut namer = Client::connect(addr);
    let burst: String = (0..names)
        .map(|i| format!("GET /rooms/r/messages?name=n{i} HTTP/1.1\r\n\r\n"))
        .collect();
    let before = count(&server, |s| &s.requests);
    namer.send(burst.as_bytes());
    step_until(&mut server, "every name", |s| {
        count(s, |s| &s.requests) == before + names
    });
    drop(namer);
    let joins = drain_now(&mut observer.stream)
        .matches("event: join")
        .count();
    assert_eq!(joins, names as usize);
    let mut leaves_per_pass = Vec::new();
    step_until(&mut server, "every name to leave", |_| {
        let leaves = drain_now(&mut observer.stream)
            .matches("event: leave")
            .count();
        if leaves > 0 {
            leaves_per_pass.push(leaves);
        }
        leaves_per_pass.iter().sum::<usize>() == names as usize
    });
    assert!(
        leaves_per_pass.iter().all(|&n| n <= NAMES_SWEPT_PER_PASS),
        "leaves per pass: {leaves_per_pass:?}"
    );
    assert!(leaves_per_pass.len() >= names as usize / NAMES_SWEPT_PER_PASS);
}

fn named_poll(client: &mut Client, room: &str, name: &str) -> Reply {
    client.get(&format!("/rooms/{room}/messages?name={name}"));
    client.read_reply()
}

/// Regression: names per room were unbounded, each one small GET away.
#[test]
fn names_are_capped_per_client_address_and_per_room() {
    let config = Config {
        max_names_per_room: 5,
        max_names_per_client: 3,
        ..test_config()
    };
    let server = start(config);
    post_form(server.addr, "/rooms/r/messages", "from=x&text=hi");
    let mut one = Client::connect_from(server.addr, "127.0.0.1");
    for name in ["a", "b", "c"] {
        assert_eq!(named_poll(&mut one, "r", name).status, 200);
    }
    let refused = named_poll(&mut one, "r", "d");
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .contains("--max-names-per-client"));
    assert!(refused.header("Retry-After").is_some());
    // Names this client already has are still fine, in any room it may name.
    assert_eq!(named_poll(&mut one, "r", "a").status, 200);
    // Another connection from the same address is the same client.
    let mut same = Client::connect_from(server.addr, "127.0.0.1");
    assert_eq!(named_poll(&mut same, "other", "e").status, 429);

    let mut two = Client::connect_from(server.addr, "127.0.0.2");
    assert_eq!(named_poll(&mut two, "r", "e").status, 200);
    assert_eq!(named_poll(&mut two, "r", "f").status, 200);
    let full = named_poll(&mut two, "r", "g");
    assert_eq!(full.status, 507, "{}", full.text());
    assert!(full.json()["error"]
        .as_str()
        .unwrap()
        .contains("--max-names-per-room"));
    // The room's cap is per room: the same client can still be named elsewhere.
    post_form(server.addr, "/rooms/elsewhere/messages", "from=x&text=hi");
    assert_eq!(named_poll(&mut two, "elsewhere", "g").status, 200);
    // A stream with a refused name gets the error, not a stream.
    let mut stream = Client::connect_from(server.addr, "127.0.0.2");
    stream.get("/rooms/r/events?name=h");
    assert_eq!(stream.read_reply().status, 507);
    // Without a name, everyone may still read.
    assert_eq!(get(server.addr, "/rooms/r/messages").status, 200);
}

/// Regression: a pass fired every timer that was due, so thousands of polls timing out in
/// one tick (a crowd that came at once, or a loop that was stopped a while) each had its
/// answer written before anyone else was served. Now a pass fires at most
/// `TIMERS_FIRED_PER_PASS`, a calm client's request is answered in the first pass, and the
/// rest of the timeouts follow in the passes after it, none lost. (2,548 polls rather than
/// 20,000: this process holds both ends of every connection under a 20,000 open-files cap.)
#[test]
fn one_pass_fires_at_most_a_passes_worth_of_timers() {
    let config = Config {
        poll_timeout: Duration::from_millis(300),
        ..without_client_limits(test_config())
    };
    let mut server = Server::bind(config).unwrap();
    let polls = 2 * TIMERS_FIRED_PER_PASS + 500;
    let mut clients: Vec<Client> = (0..polls)
        .map(|_| {
            let mut client = Client::connect(server.local_addr());
            client.get("/chat");
            client
        })
        .collect();
    step_until(&mut server, "every poll parked", |server| {
        count(server, |s| &s.pending_polls) == polls as u64
    });
    // Every poll's deadline passes while the loop is not running.
    std::thread::sleep(Duration::from_millis(400));
    let mut calm = Client::connect(server.local_addr());
    calm.get("/rooms/calm/presence");
    let mut per_pass = Vec::new();
    let mut before = 0;
    step_until(&mut server, "every poll timed out", |server| {
        let now = count(server, |s| &s.timeouts);
        if now > before {
            per_pass.push(now - before);
        }
        before = now;
        now == polls as u64
    });
    assert!(
        per_pass
            .iter()
            .all(|&n| n as usize <= TIMERS_FIRED_PER_PASS),
        "{per_pass:?}"
    );
    assert!(per_pass.len() >= 3, "{per_pass:?}");
    assert_eq!(calm.read_reply().status, 200);
    for client in clients.iter_mut().step_by(97) {
        assert_eq!(client.read_reply().status, 200);
    }
}
