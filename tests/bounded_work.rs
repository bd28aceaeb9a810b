//! Whatever one client sends, one pass of the loop does a bounded amount of work for it,
//! and what one client may make the server hold is capped. These tests assert the bounds
//! themselves (how many requests a pass answers for one connection, how many names a
//! sweep takes, how many timeouts a pass fires, how many names a client may make), never
//! a time: the machine is shared, and the latency other clients see meanwhile is what
//! `cargo bench --bench hostile` measures.
//!
//! Most of them step the loop one pass at a time (`Server::pass`) on the test's own
//! thread, so they can look at the server between two passes. They run one at a time
//! ([`alone`]): the timeout wave holds nearly every descriptor a process may have.

mod common;

use comet_chat::server::{
    ACCEPTS_PER_PASS, DELIVERIES_PER_TURN, NAMES_SWEPT_PER_PASS, REQUESTS_PER_TURN,
    SHUTDOWN_SLOTS_PER_PASS, TIMERS_FIRED_PER_PASS,
};
use comet_chat::stats::{self, Stats};
use comet_chat::{Config, Server};
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Mutex, MutexGuard, PoisonError};
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

/// Steps the loop until the counter `pick` reaches `total`, one connection's requests
/// being all it counts, and asserts that no pass answered more than a turn's worth
/// ([`REQUESTS_PER_TURN`]) and that some pass answered that many.
fn answered_a_turns_worth_a_pass(server: &mut Server, pick: fn(&Stats) -> &AtomicU64, total: u64) {
    let mut per_pass = Vec::new();
    let mut before = 0;
    step_until(server, "every request answered", |server| {
        let now = count(server, pick);
        if now > before {
            per_pass.push(now - before);
        }
        before = now;
        now == total
    });
    assert!(
        per_pass.iter().all(|&n| n as usize <= REQUESTS_PER_TURN),
        "a pass answered more than a turn's worth for one connection: {per_pass:?}"
    );
    assert_eq!(*per_pass.iter().max().unwrap() as usize, REQUESTS_PER_TURN);
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
    let _alone = alone();
    let mut server = Server::bind(test_config()).unwrap();
    let mut client = Client::connect(server.local_addr());
    let burst: String = (0..100)
        .map(|_| "GET /rooms/r/presence HTTP/1.1\r\n\r\n")
        .collect();
    client.send(burst.as_bytes());
    answered_a_turns_worth_a_pass(&mut server, |s| &s.requests, 100);
    for _ in 0..100 {
        assert_eq!(
            client.read_reply().status,
            200,
            "every request answered, in order"
        );
    }
}

/// A WebSocket's frames are requests too: a burst of posts in one write is answered a
/// turn's worth a pass, in order, each acked.
#[test]
fn one_turn_answers_at_most_a_turns_worth_of_a_sockets_posts() {
    let _alone = alone();
    let mut server = Server::bind(without_client_limits(test_config())).unwrap();
    let addr = server.local_addr();
    // The handshake needs the loop to turn: open the socket from another thread.
    let opening = std::thread::spawn(move || ws::open(addr, "/rooms/r/ws?name=ann&since=0"));
    step_until(&mut server, "the socket opens", |_| opening.is_finished());
    let mut socket = opening.join().unwrap();
    for i in 0..100 {
        socket.send_json(serde_json::json!({"type":"post","text":format!("m{i}")}));
    }
    answered_a_turns_worth_a_pass(&mut server, |s| &s.messages, 100);
    let acked = std::thread::spawn(move || {
        (0..100)
            .map(|_| socket.until("ack")["status"].as_u64().unwrap())
            .collect::<Vec<u64>>()
    });
    step_until(&mut server, "every ack read", |_| acked.is_finished());
    assert_eq!(acked.join().unwrap(), vec![201; 100]);
}

/// `n` event streams open in `room`, each on its own connection, every one of them
/// streaming when this returns.
fn open_streams(server: &mut Server, room: &str, n: usize) -> Vec<Client> {
    let addr = server.local_addr();
    let streams = (0..n)
        .map(|_| {
            let mut stream = Client::connect(addr);
            stream.get(&format!("/rooms/{room}/events"));
            stream
        })
        .collect();
    step_until(server, "the streams", |s| {
        count(s, |s| &s.streams) == n as u64
    });
    streams
}

/// A post that reaches more than a turn's worth of clients ends its poster's turn: the
/// next pipelined post waits for the next pass, after everyone else's events.
#[test]
fn a_post_to_a_big_room_ends_its_posters_turn() {
    let _alone = alone();
    // More listeners than one address may hold by default: they all come from 127.0.0.1.
    let config = Config {
        max_conns_per_client: 0,
        ..test_config()
    };
    let mut server = Server::bind(config).unwrap();
    let addr = server.local_addr();
    let listeners = DELIVERIES_PER_TURN as usize + 50;
    let mut streams = open_streams(&mut server, "big", listeners);
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

/// Regression: deliveries no turn caused (here a presence sweep's leave, fired by the
/// wheel, reaching more than a turn's worth of streams) were charged to the next
/// connection to get a turn, which then had one request answered instead of a turn's
/// worth. (With `--redis`, every announced post did the same to whoever came next.)
#[test]
fn deliveries_outside_a_turn_are_not_charged_to_the_next_one() {
    let _alone = alone();
    let config = Config {
        max_conns_per_client: 0,
        poll_timeout: Duration::from_millis(200),
        presence_grace: Duration::from_millis(100),
        ..test_config()
    };
    let mut server = Server::bind(config).unwrap();
    let addr = server.local_addr();
    let listeners = DELIVERIES_PER_TURN as usize + 50;
    let mut streams = open_streams(&mut server, "big", listeners);
    // A name joins, then its client goes: the sweep announces its leave to every stream.
    let mut namer = Client::connect(addr);
    namer.send(b"GET /rooms/big/messages?name=ann HTTP/1.1\r\n\r\n");
    step_until(&mut server, "the named poll", |s| {
        count(s, |s| &s.pending_polls) == 1
    });
    drop(namer);
    step_until(&mut server, "the leave, through the sweep", |_| {
        drain_now(&mut streams[0].stream).contains("event: leave")
    });
    let mut client = Client::connect(addr);
    let burst: String = (0..3 * REQUESTS_PER_TURN)
        .map(|_| "GET /rooms/r/presence HTTP/1.1\r\n\r\n")
        .collect();
    client.send(burst.as_bytes());
    let mut per_pass = Vec::new();
    let mut before = count(&server, |s| &s.requests);
    let wanted = before + 3 * REQUESTS_PER_TURN as u64;
    step_until(&mut server, "every answer", |server| {
        let now = count(server, |s| &s.requests);
        if now > before {
            per_pass.push(now - before);
        }
        before = now;
        now == wanted
    });
    assert_eq!(
        per_pass,
        vec![REQUESTS_PER_TURN as u64; 3],
        "requests answered per pass: a turn's worth each time"
    );
    drop(streams.drain(..));
}

/// Regression: names expiring together were all announced in one pass (60,000 leave
/// events written to every stream froze the loop for 18-20 s).
#[test]
fn a_sweep_announces_at_most_a_passs_worth_of_leaves() {
    let _alone = alone();
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
    let _alone = alone();
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

/// Room polls in the timeout wave. Not 20,000: a process may hold 20,000 descriptors, and
/// the server's process holds more than its clients' sockets (its listener, epoll
/// instance, waker and spare descriptor, stdio, the calm client's two ends, the pipes to
/// the client process). 19,900 leaves 100 of them for that, and the wave still takes
/// ceil(19,900 / 1024) = 20 passes, as 20,000 would.
const WAVE_POLLS: usize = 19_900;

/// Descriptors each of the two processes needs beside the wave's sockets (see above).
const WAVE_OTHER_DESCRIPTORS: u64 = 100;

/// Polls per source address (127.0.0.2, 127.0.0.3, ...): well inside one address's
/// ephemeral ports, whatever earlier tests left in TIME_WAIT.
const WAVE_POLLS_PER_SOURCE: usize = 1000;

/// The wave's poll timeout: longer than parking every poll takes, even on a busy machine
/// (if one times out before all are parked, the test says so rather than measure a wave
/// that never came).
const WAVE_POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long parking every poll may take before the test gives up.
const WAVE_PARKING_CAP: Duration = Duration::from_secs(30);

/// How long the client process lives at most, whatever becomes of the test.
const WAVE_CLIENTS_LIFETIME: Duration = Duration::from_secs(60);

/// How long the test waits for one of the client process's reports.
const WAVE_REPORT_WAIT: Duration = Duration::from_secs(30);

/// Set in the client process's environment: the server's address, and what each poll asks.
const WAVE_SERVER_ENV: &str = "COMET_CHAT_WAVE_SERVER";
const WAVE_PATH_ENV: &str = "COMET_CHAT_WAVE_PATH";

/// What the client process's reports start with: libtest writes its own lines around them.
const WAVE_REPORT: &str = "wave-report:";

/// The tests of this file, one at a time: the wave needs nearly every descriptor this
/// process may hold, and cargo runs the tests of one binary in parallel.
/// Regression: a shutdown told every connection in one pass (each parked poll its own
/// 503, each stream its last frame), so 19,500 waiting clients held the loop for one long
/// pass. Now a pass goes through at most `SHUTDOWN_SLOTS_PER_PASS` slots of the slab, a
/// calm client's request is answered between them, and every poll is still told.
#[test]
fn a_shutdown_tells_a_passs_worth_of_connections_at_a_time() {
    let _alone = alone();
    let config = Config {
        shutdown_grace: Duration::from_secs(30),
        ..without_client_limits(test_config())
    };
    let mut server = Server::bind(config).unwrap();
    let polls = 2 * SHUTDOWN_SLOTS_PER_PASS + 300;
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
    let mut calm = Client::connect(server.local_addr());
    step(&mut server); // accepted before the listener goes
    server.handle().shutdown();
    let mut told_per_pass = Vec::new();
    let mut before = polls as u64;
    let mut calm_asked = false;
    step_until(&mut server, "every poll told", |server| {
        let waiting = count(server, |s| &s.pending_polls);
        if waiting < before {
            told_per_pass.push(before - waiting);
            if !calm_asked {
                // Asked while the shutdown is under way: answered (503, come back) at once.
                calm.get("/chat");
                calm_asked = true;
            }
        }
        before = waiting;
        waiting == 0
    });
    assert!(
        told_per_pass
            .iter()
            .all(|&n| n as usize <= SHUTDOWN_SLOTS_PER_PASS),
        "{told_per_pass:?}"
    );
    assert!(told_per_pass.len() >= 3, "{told_per_pass:?}");
    assert_eq!(calm.read_reply().status, 503);
    for client in clients.iter_mut().step_by(97) {
        assert_eq!(client.read_reply().status, 503, "told to come back later");
    }
}

/// Regression: the listener was drained to the last client in one pass, so a crowd
/// arriving at once (a benchmark's 19,500, a reconnect storm) was accepted, registered and
/// timed before anyone already connected got a turn. Now a pass takes at most
/// `ACCEPTS_PER_PASS`, and the rest follow in the next passes without a new event.
#[test]
fn a_crowd_is_accepted_a_passs_worth_at_a_time() {
    let _alone = alone();
    let mut server = Server::bind(without_client_limits(test_config())).unwrap();
    step(&mut server);
    // Connected by the kernel (the listen queue), not accepted yet: the loop is not running.
    let crowd = 2 * ACCEPTS_PER_PASS + 300;
    let clients: Vec<std::net::TcpStream> = (0..crowd)
        .map(|_| std::net::TcpStream::connect(server.local_addr()).unwrap())
        .collect();
    let mut per_pass = Vec::new();
    let mut before = 0;
    step_until(&mut server, "every client accepted", |server| {
        let now = count(server, |s| &s.accepted);
        if now > before {
            per_pass.push(now - before);
        }
        before = now;
        now == crowd as u64
    });
    assert!(
        per_pass.iter().all(|&n| n as usize <= ACCEPTS_PER_PASS),
        "{per_pass:?}"
    );
    assert!(per_pass.len() >= 3, "{per_pass:?}");
    drop(clients);
}

fn alone() -> MutexGuard<'static, ()> {
    static DESCRIPTORS: Mutex<()> = Mutex::new(());
    // A failed test must not fail the others too.
    DESCRIPTORS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The clients of the wave: this test binary again, in a child process running
/// [`wave_clients`], killed by its PID when this is dropped (the test passed or failed).
struct WaveClients {
    child: Child,
    /// A line here tells the clients to read their answers; closing it ends the process.
    go: ChildStdin,
    /// The process's reports, as they come.
    reports: Receiver<String>,
}

impl WaveClients {
    fn start(server: SocketAddr, path: &str) -> WaveClients {
        let mut child = Command::new(std::env::current_exe().expect("this test binary"))
            .args([
                "wave_clients",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WAVE_SERVER_ENV, server.to_string())
            .env(WAVE_PATH_ENV, path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the client process");
        let go = child.stdin.take().expect("a pipe to the clients");
        let stdout = child.stdout.take().expect("a pipe from the clients");
        let (sender, reports) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, report)) = line.split_once(WAVE_REPORT) {
                    if sender.send(report.trim().to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        WaveClients { child, go, reports }
    }

    /// Fails the test if the client process has ended.
    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the client process ended early ({status}); its stderr is above");
        }
    }

    /// The number in the next report, which must be `what`.
    fn report(&self, what: &str) -> usize {
        let report = self
            .reports
            .recv_timeout(WAVE_REPORT_WAIT)
            .unwrap_or_else(|_| panic!("no `{what}` report from the client process"));
        report
            .strip_prefix(what)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("expected `{what} N` from the clients, got {report:?}"))
    }

    /// Tells the clients to read their answers, and returns how many were 200.
    fn answered(&mut self) -> usize {
        writeln!(self.go, "read").expect("tell the clients to read");
        self.report("answered")
    }
}

impl Drop for WaveClients {
    fn drop(&mut self) {
        // Already gone when the test passed; either way, reaped here.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client side of [`a_wave_of_timeouts_is_fired_a_passs_worth_at_a_time`], run by it
/// in a child process so that each side of the wave's 19,900 connections has a process's
/// descriptors to itself. Opens the polls, reports `sent N`, waits for a line on stdin,
/// reads every answer and reports `answered N` (the 200s). Does nothing run by hand.
#[test]
#[ignore = "the client side of a_wave_of_timeouts_is_fired_a_passs_worth_at_a_time"]
fn wave_clients() {
    let (Ok(server), Ok(path)) = (std::env::var(WAVE_SERVER_ENV), std::env::var(WAVE_PATH_ENV))
    else {
        return;
    };
    std::thread::spawn(|| {
        std::thread::sleep(WAVE_CLIENTS_LIFETIME);
        eprintln!("wave_clients: still running after {WAVE_CLIENTS_LIFETIME:?}; exiting");
        std::process::exit(3);
    });
    comet_chat::sys::raise_open_files_limit().expect("the open-files limit");
    let server: SocketAddr = server.parse().expect("the server's address");
    let mut clients: Vec<Client> = (0..WAVE_POLLS)
        .map(|i| {
            // Bound before connecting, so each address has its own ephemeral ports.
            let source = format!("127.0.0.{}", 2 + i / WAVE_POLLS_PER_SOURCE);
            let mut client = Client::connect_from(server, &source);
            client.get(&path);
            client
        })
        .collect();
    println!("{WAVE_REPORT} sent {}", clients.len());
    let mut go = String::new();
    if std::io::stdin().read_line(&mut go).unwrap_or(0) == 0 {
        // The test ended without the wave.
        std::process::exit(2);
    }
    let answered = clients
        .iter_mut()
        .filter_map(Client::try_read_reply)
        .filter(|reply| reply.status == 200)
        .count();
    println!("{WAVE_REPORT} answered {answered}");
}

/// Regression: a pass fired every timer that was due, so thousands of polls timing out in
/// one tick (a crowd that came at once, or a loop that was stopped a while) each had its
/// answer encoded and written before anyone else was served. Now a pass fires at most
/// `TIMERS_FIRED_PER_PASS`, a calm client's request is answered in the wave's first
/// passes, and the rest of the timeouts follow in the passes after it, none lost.
///
/// The server is this process's, stepped one pass at a time; the 19,900 polls (see
/// [`WAVE_POLLS`]) are held by a child process ([`wave_clients`]).
#[test]
fn a_wave_of_timeouts_is_fired_a_passs_worth_at_a_time() {
    let _alone = alone();
    let (_, soft) = comet_chat::sys::raise_open_files_limit().expect("the open-files limit");
    assert!(
        soft >= WAVE_POLLS as u64 + WAVE_OTHER_DESCRIPTORS,
        "this test needs {} open files per process; the limit is {soft}",
        WAVE_POLLS as u64 + WAVE_OTHER_DESCRIPTORS
    );
    let config = Config {
        poll_timeout: WAVE_POLL_TIMEOUT,
        ..without_client_limits(test_config())
    };
    let mut server = Server::bind(config).unwrap();
    let addr = server.local_addr();

    // The room's one message: every poll waits for the one after it, and each timeout is
    // a JSON answer of its own.
    let mut poster = Client::connect(addr);
    poster.send(post_request("wave", "head").as_bytes());
    step_until(&mut server, "the head message", |s| {
        count(s, |s| &s.messages) == 1
    });
    let head = poster.read_reply().id();
    drop(poster);

    let mut clients = WaveClients::start(addr, &format!("/rooms/wave/messages?since={head}"));
    let parking = Instant::now();
    while count(&server, |s| &s.pending_polls) < WAVE_POLLS as u64 {
        assert!(
            parking.elapsed() < WAVE_PARKING_CAP,
            "{} of {WAVE_POLLS} polls parked after {WAVE_PARKING_CAP:?}",
            count(&server, |s| &s.pending_polls)
        );
        clients.check_alive();
        step(&mut server);
    }
    let parked_at = Instant::now();
    assert_eq!(
        count(&server, |s| &s.timeouts),
        0,
        "a poll timed out before all were parked (parking took {:?}, the poll timeout is \
         {WAVE_POLL_TIMEOUT:?}): their deadlines would not fall due together",
        parking.elapsed()
    );
    assert_eq!(clients.report("sent"), WAVE_POLLS);

    // Every deadline (parked + poll timeout, rounded up to a tick) passes while the loop
    // is not running: the next pass finds all of them due.
    let all_due = parked_at + WAVE_POLL_TIMEOUT + Duration::from_millis(300);
    std::thread::sleep(all_due.saturating_duration_since(Instant::now()));
    let mut calm = Client::connect(addr);
    calm.get("/rooms/calm/presence");
    let mut calm_got = String::new();
    // (pass, timeouts fired by then) when the calm client's answer had arrived.
    let mut calm_answered = None;
    let mut fired_per_pass = Vec::new();
    let mut fired = 0;
    let wave = Instant::now();
    while fired < WAVE_POLLS as u64 {
        assert!(
            wave.elapsed() < Duration::from_secs(10),
            "the wave is not over: {fired_per_pass:?}"
        );
        step(&mut server);
        let now = count(&server, |s| &s.timeouts);
        fired_per_pass.push(now - fired);
        fired = now;
        if calm_answered.is_none() {
            calm_got.push_str(&drain_now(&mut calm.stream));
            if calm_got.contains("\r\n\r\n") {
                calm_answered = Some((fired_per_pass.len(), now));
            }
        }
    }
    assert!(
        fired_per_pass
            .iter()
            .all(|&n| n as usize <= TIMERS_FIRED_PER_PASS),
        "timeouts fired per pass: {fired_per_pass:?}"
    );
    let carrying = fired_per_pass.iter().filter(|&&n| n > 0).count();
    assert!(
        carrying >= WAVE_POLLS.div_ceil(TIMERS_FIRED_PER_PASS),
        "timeouts fired per pass: {fired_per_pass:?}"
    );
    let (pass, fired_before_calm) = calm_answered.unwrap_or_else(|| {
        panic!("the calm client was not answered during the wave: {fired_per_pass:?}")
    });
    assert!(
        WAVE_POLLS as u64 - fired_before_calm > 15_000,
        "the calm client was answered in pass {pass}, with only {} of the wave's timeouts \
         still to come: {fired_per_pass:?}",
        WAVE_POLLS as u64 - fired_before_calm
    );
    assert!(calm_got.starts_with("HTTP/1.1 200"), "{calm_got}");
    assert_eq!(count(&server, |s| &s.pending_polls), 0);
    assert_eq!(
        clients.answered(),
        WAVE_POLLS,
        "every poll gets its answer, a 200"
    );
}
