//! `GET /rooms/{room}/ws` over a real socket, as a client meets it: the handshake and its
//! refusals, the room's frames, posts and their acks, and the protocol's hygiene (masking,
//! fragments, control frames, size and UTF-8, heartbeat, close, shutdown, expiry). The
//! client is `common/ws.rs`, written from the RFC, not with the server's codec.

mod common;

use comet_chat::token::{self, Secret};
use comet_chat::Config;
use common::ws::{self, Ws, BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT};
use common::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn refused(addr: std::net::SocketAddr, path: &str, extra: &str) -> ws::Opened {
    let (_, opened) = ws::handshake(addr, path, extra);
    opened
}

#[test]
fn the_handshake_refuses_what_is_not_a_websocket_of_ours() {
    let server = start(Config {
        cors_origin: Some("https://site.example".into()),
        ..test_config()
    });
    let addr = server.addr;
    // A plain GET of the endpoint: what to send instead.
    let plain = get(addr, "/rooms/r/ws");
    assert_eq!(plain.status, 426, "{}", plain.text());
    assert_eq!(plain.header("Upgrade"), Some("websocket"));
    // Another version: 426 naming ours.
    let old = request(
        addr,
        "GET /rooms/r/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    );
    assert_eq!(old.status, 426);
    assert_eq!(old.header("Sec-WebSocket-Version"), Some("13"));
    let bad_key = request(
        addr,
        "GET /rooms/r/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(bad_key.status, 400, "{}", bad_key.text());
    // Cross-site WebSocket hijacking: a page of another site may not open it.
    let foreign = refused(addr, "/rooms/r/ws", "Origin: https://evil.example\r\n");
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    assert!(foreign.body.contains("Origin"), "{}", foreign.body);
    // Its own pages, the --cors-origin's, and clients that are no browser may.
    let own = format!("Origin: http://{addr}\r\n");
    for extra in [own.as_str(), "Origin: https://site.example\r\n", ""] {
        assert_eq!(refused(addr, "/rooms/r/ws", extra).status, 101, "{extra}");
    }
    let post = request(
        addr,
        "POST /rooms/r/ws HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, 405);
    assert_eq!(refused(addr, "/rooms/bad%20room/ws", "").status, 400);
    let id = post_form(addr, "/rooms/r/messages", "from=z&text=hi").id();
    let epoch = id.split('-').next().unwrap();
    let ahead = refused(addr, &format!("/rooms/r/ws?since={epoch}-99"), "");
    assert_eq!(ahead.status, 400, "{}", ahead.body);
}

#[test]
fn no_websocket_turns_the_endpoint_off() {
    let server = start(Config {
        websocket: false,
        ..test_config()
    });
    let off = refused(server.addr, "/rooms/r/ws", "");
    assert_eq!(off.status, 404, "{}", off.body);
    assert!(off.body.contains("--no-websocket"), "{}", off.body);
}

/// The seed's use over one socket: a post is acked with its id and reaches another socket,
/// an event stream and a long poll, each once; a retry with its client_id is stored once.
#[test]
fn a_post_over_a_socket_is_acked_and_reaches_every_transport() {
    let server = start(without_client_limits(test_config()));
    let addr = server.addr;
    let mut ann = ws::open(addr, "/rooms/r/ws?name=ann&since=0");
    let mut bob = ws::open(addr, "/rooms/r/ws?name=bob");
    bob.send_json(json!({"type":"resume","since":null}));
    let mut sse = Client::connect(addr);
    sse.get("/rooms/r/events");
    assert_eq!(sse.read_stream_head().status, 200);
    assert_eq!(bob.until("join")["name"], "bob");
    let mut poll = Client::connect(addr);
    poll.get("/rooms/r/messages?since=0");
    wait_parked(&server, 1);
    ann.send_json(json!({"type":"post","text":"hi all","client_id":"c-1"}));
    let heard = ann.until("message");
    assert_eq!(
        (&heard["from"], &heard["text"]),
        (&json!("ann"), &json!("hi all"))
    );
    let ack = ann.until("ack");
    assert_eq!(ack["status"], 201, "{ack}");
    assert_eq!(
        (&ack["for"], &ack["client_id"]),
        (&json!("post"), &json!("c-1"))
    );
    assert_eq!(ack["id"], heard["id"]);
    assert_eq!(bob.until("message")["id"], ack["id"]);
    assert!(sse
        .read_until("\"text\":\"hi all\"")
        .contains("event: message"));
    assert_eq!(poll.read_reply().texts(), ["hi all"]);
    // The same client_id again: the original id, 200, nothing stored twice.
    ann.send_json(json!({"type":"post","text":"hi all","client_id":"c-1"}));
    let again = ann.until("ack");
    assert_eq!(
        (again["status"].as_u64(), &again["id"]),
        (Some(200), &ack["id"])
    );
    let history = get(addr, "/rooms/r/messages?since=0");
    assert_eq!(history.texts(), ["hi all"]);
    // Typing reaches the others, and is acked 202.
    ann.send_json(json!({"type":"typing"}));
    assert_eq!(ann.until("ack")["status"], 202);
    assert_eq!(bob.until("typing")["from"], "ann");
    // Counted by transport.
    let stats = get(addr, "/stats").json();
    assert_eq!(stats["transports"]["ws"]["open"], 2, "{stats}");
    assert_eq!(stats["transports"]["sse"]["open"], 1, "{stats}");
    assert!(
        stats["transports"]["ws"]["deliveries"].as_u64() >= Some(2),
        "{stats}"
    );
}

/// Every refusal is the HTTP API's own, as an ack; the socket stays usable after it.
#[test]
fn a_refused_post_is_acked_with_the_http_status_and_error() {
    let server = start(Config {
        max_message_bytes: 10,
        post_rate: 1,
        post_burst: 1,
        ..test_config()
    });
    let mut ann = ws::open(server.addr, "/rooms/r/ws?name=ann&since=0");
    ann.send_json(json!({"type":"post","text":"12345678901","client_id":"long"}));
    let long = ann.until("ack");
    assert_eq!(
        (long["status"].as_u64(), &long["client_id"]),
        (Some(413), &json!("long"))
    );
    assert!(long["error"].as_str().unwrap().contains("text"), "{long}");
    ann.send_json(json!({"type":"post","text":"ok"}));
    assert_eq!(ann.until("ack")["status"], 201);
    ann.send_json(json!({"type":"post","text":"too soon"}));
    let slow = ann.until("ack");
    assert_eq!(slow["status"], 429, "{slow}");
    assert!(slow["retry_after"].as_u64() >= Some(1), "{slow}");
    // Not JSON, an unknown type, no name: said, and the socket goes on.
    ann.send(TEXT, b"hello?");
    assert_eq!(ann.until("error")["status"], 400);
    ann.send_json(json!({"type":"dance"}));
    assert_eq!(ann.until("error")["status"], 400);
    let mut nameless = ws::open(server.addr, "/rooms/r/ws?since=0");
    nameless.send_json(json!({"type":"post","text":"who am i"}));
    let ack = nameless.until("ack");
    assert_eq!(ack["status"], 400, "{ack}");
    assert!(ack["error"].as_str().unwrap().starts_with("from"), "{ack}");
    nameless.send(PING, b"still here");
    let pong = nameless.frame();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (PONG, &b"still here"[..])
    );
}

/// Resuming: `?since=` and a first `resume` frame replay exactly what was missed; with
/// neither the replay waits a moment for the client to say, then starts from the start.
#[test]
fn a_socket_resumes_from_since_or_its_first_frame() {
    let server = start(without_client_limits(test_config()));
    let addr = server.addr;
    let ids: Vec<String> = ["m1", "m2", "m3"]
        .iter()
        .map(|t| post_form(addr, "/rooms/r/messages", &format!("from=z&text={t}")).id())
        .collect();
    let texts = |ws: &mut Ws, n: usize| -> Vec<String> {
        (0..n)
            .map(|_| ws.until("message")["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut by_url = ws::open(addr, &format!("/rooms/r/ws?since={}", ids[0]));
    assert_eq!(texts(&mut by_url, 2), ["m2", "m3"]);
    let mut by_frame = ws::open(addr, "/rooms/r/ws");
    by_frame.send_json(json!({"type":"resume","since":ids[1]}));
    assert_eq!(texts(&mut by_frame, 1), ["m3"]);
    // Nothing before m3 came, and the next is live.
    post_form(addr, "/rooms/r/messages", "from=z&text=m4");
    assert_eq!(texts(&mut by_frame, 1), ["m4"]);
    // A second resume is refused: the replay has started.
    by_frame.send_json(json!({"type":"resume","since":ids[0]}));
    assert_eq!(by_frame.until("error")["status"], 400);
    // Silent: after a moment, everything, as an event stream would get.
    let mut silent = ws::open(addr, "/rooms/r/ws");
    assert!(
        silent.silent_for(Duration::from_millis(300)),
        "it waits first"
    );
    assert_eq!(texts(&mut silent, 4), ["m1", "m2", "m3", "m4"]);
    // A resume from the future: said, and closed.
    let mut ahead = ws::open(addr, "/rooms/r/ws");
    let epoch = ids[0].split('-').next().unwrap();
    ahead.send_json(json!({"type":"resume","since":format!("{epoch}-99")}));
    assert_eq!(ahead.until("error")["status"], 400);
    assert_eq!(ahead.closed_with(), 1008);
}

/// What a test client does to break the protocol.
type Breaks = Box<dyn Fn(&mut Ws)>;

#[test]
fn protocol_errors_close_with_their_codes() {
    let server = start(Config {
        max_message_bytes: 100,
        ..test_config()
    });
    let addr = server.addr;
    let cases: [(&str, Breaks, u16); 6] = [
        (
            "unmasked",
            Box::new(|w| w.send_raw(true, 0, TEXT, b"{}", false)),
            1002,
        ),
        (
            "a reserved bit",
            Box::new(|w| w.send_raw(true, 4, TEXT, b"{}", true)),
            1002,
        ),
        (
            "an unknown opcode",
            Box::new(|w| w.send_raw(true, 0, 3, b"", true)),
            1002,
        ),
        (
            "invalid UTF-8",
            Box::new(|w| w.send(TEXT, &[0x7b, 0xff, 0x7d])),
            1007,
        ),
        ("binary", Box::new(|w| w.send(BINARY, b"\x00")), 1003),
        (
            "a continuation with nothing to continue",
            Box::new(|w| w.send_raw(true, 0, CONTINUATION, b"x", true)),
            1002,
        ),
    ];
    for (what, send, code) in cases {
        let mut socket = ws::open(addr, "/rooms/r/ws?since=0");
        send(&mut socket);
        assert_eq!(socket.closed_with(), code, "{what}");
    }
    // Too big: refused from the header alone, none of the payload sent or buffered.
    let mut big = ws::open(addr, "/rooms/r/ws?since=0");
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    std::io::Write::write_all(&mut big.stream, &header).unwrap();
    assert_eq!(big.closed_with(), 1009);
    // A close is answered with a close, then the connection ends.
    let mut leaving = ws::open(addr, "/rooms/r/ws?since=0");
    leaving.send(CLOSE, &1000u16.to_be_bytes());
    assert_eq!(leaving.closed_with(), 1000);
    let stats = get(addr, "/stats").json();
    assert_eq!(stats["transports"]["ws"]["open"], 0, "{stats}");
}

/// A message in fragments, with a ping between them, is one post; the ping is answered.
#[test]
fn fragments_with_a_ping_between_make_one_message() {
    let server = start(test_config());
    let mut ann = ws::open(server.addr, "/rooms/r/ws?name=ann&since=0");
    let text = br#"{"type":"post","text":"in three parts"}"#;
    ann.send_raw(false, 0, TEXT, &text[..10], true);
    ann.send_raw(true, 0, PING, b"p", true);
    ann.send_raw(false, 0, CONTINUATION, &text[10..20], true);
    ann.send_raw(true, 0, CONTINUATION, &text[20..], true);
    assert_eq!(ann.until("join")["name"], "ann");
    let pong = ann.frame();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (PONG, &b"p"[..]));
    assert_eq!(ann.until("message")["text"], "in three parts");
    assert_eq!(ann.until("ack")["status"], 201);
}

/// The server pings a quiet socket every heartbeat; one that never answers is dropped
/// after two, one that answers stays.
#[test]
fn a_socket_that_answers_no_ping_is_dropped() {
    let server = start(Config {
        heartbeat: Duration::from_millis(300),
        ..test_config()
    });
    let mut deaf = ws::open(server.addr, "/rooms/r/ws?since=0");
    let mut alive = ws::open(server.addr, "/rooms/r/ws?since=0");
    let answering = std::thread::spawn(move || {
        for _ in 0..4 {
            let ping = alive.frame();
            assert_eq!(ping.opcode, PING);
            alive.send(PONG, &ping.payload);
        }
        alive.send_json(json!({"type":"typing","from":"ann"}));
        assert_eq!(alive.until("ack")["status"], 202, "still served");
    });
    let ping = deaf.frame();
    assert_eq!(ping.opcode, PING);
    assert!(deaf.next().is_none(), "dropped after the next heartbeat");
    answering.join().unwrap();
}

#[test]
fn shutdown_says_when_to_come_back_then_closes_1001() {
    let server = start(test_config());
    let mut socket = ws::open(server.addr, "/rooms/r/ws?since=0");
    post_form(server.addr, "/rooms/r/messages", "from=z&text=hello");
    assert_eq!(socket.until("message")["text"], "hello");
    server.handle.shutdown();
    let notice = socket.until("shutdown");
    let delay = notice["retry_after_ms"].as_u64().unwrap();
    assert!((500..=5000).contains(&delay), "{notice}");
    assert_eq!(socket.closed_with(), 1001);
}

#[test]
fn an_expired_token_ends_the_socket_with_1008() {
    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    let secret = Secret::from_bytes(KEY);
    let server = start(Config {
        token_secret: Some(Arc::new(Secret::from_bytes(KEY))),
        ..test_config()
    });
    let short = token::mint(&secret, "ann", &["r".into()], 1, token::now_secs());
    let addr = server.addr;
    // Without a token: refused as any room request.
    assert_eq!(refused(addr, "/rooms/r/ws", "").status, 401);
    let mut socket = ws::open(addr, &format!("/rooms/r/ws?token={short}&since=0"));
    // Posting as someone else is refused; as the token's sub it is taken.
    socket.send_json(json!({"type":"post","text":"x","from":"bob"}));
    assert_eq!(socket.until("ack")["status"], 400);
    socket.send_json(json!({"type":"post","text":"mine"}));
    let ack = socket.until("ack");
    assert_eq!(ack["status"], 201, "{ack}");
    // The token is good for a second and the leeway for clocks that differ.
    let wait = Duration::from_secs(token::LEEWAY_SECS + 5);
    socket.stream.set_read_timeout(Some(wait)).unwrap();
    let expired = socket.until("expired");
    assert_eq!(expired["error"], "token expired");
    assert_eq!(socket.closed_with(), 1008);
}

/// A socket that stops reading is dropped once a backlog of broadcasts queues behind it
/// (counted under `drops.slow`), and never holds up the others.
#[test]
fn a_socket_that_does_not_read_is_dropped_past_the_backlog() {
    let mut config = without_client_limits(test_config());
    config.limits.body_bytes = 2 << 20;
    config.max_message_bytes = 1 << 20;
    let server = start(config);
    let addr = server.addr;
    let slow = {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&addr.into()).unwrap();
        std::net::TcpStream::from(socket)
    };
    let (slow, opened) = ws::handshake_on(slow, &addr.to_string(), "/rooms/r/ws?since=0", "");
    assert_eq!(opened.status, 101);
    let mut fast = ws::open(addr, "/rooms/r/ws?since=0");
    let text = "w".repeat(1 << 20);
    let mut poster = Client::connect(addr);
    for _ in 0..12 {
        let body = format!("from=z&text={text}");
        let head = format!(
            "POST /rooms/r/messages HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        poster.send(head.as_bytes());
        poster.send(body.as_bytes());
        assert_eq!(poster.read_reply().status, 201);
        let heard = fast.until("message");
        assert_eq!(heard["text"].as_str().map(str::len), Some(1 << 20));
    }
    wait_until(Duration::from_secs(10), "the slow socket dropped", || {
        get(addr, "/stats").json()["drops"]["slow"] == 1
    });
    drop(slow);
}

/// With `--redis`: a post over a socket on one node waits for Redis (its socket reads on
/// only after the ack), is acked with Redis's id, and reaches a socket on another node;
/// while Redis is paused past the reply wait, the ack is the HTTP API's 503.
#[test]
fn over_redis_a_socket_post_is_acked_once_redis_has_it() {
    use common::redis::RedisServer;
    let redis = RedisServer::start(&[]);
    let url = redis.url();
    let mut args = vec!["--redis", url.as_str()];
    args.extend(NO_CLIENT_LIMITS);
    let (a, b) = (ChildServer::start(&args), ChildServer::start(&args));
    wait_until(Duration::from_secs(10), "both nodes reach Redis", || {
        [a.addr, b.addr]
            .iter()
            .all(|&node| get(node, "/stats").json()["redis"]["connected"] == true)
    });
    let mut there = ws::open(b.addr, "/rooms/r/ws?since=0");
    let mut here = ws::open(a.addr, "/rooms/r/ws?name=ann&since=0");
    // Both sockets are open (replayed, in their lists) before the post.
    there.send_json(json!({"type":"typing","from":"bob"}));
    assert_eq!(there.until("ack")["status"], 202);
    assert_eq!(here.until("typing")["from"], "bob");
    here.send_json(json!({"type":"post","text":"via redis","client_id":"r-1"}));
    let ack = here.until("ack");
    assert_eq!(ack["status"], 201, "{ack}");
    let heard = there.until("message");
    assert_eq!(
        (&heard["id"], &heard["text"]),
        (&ack["id"], &json!("via redis"))
    );
    redis.pause();
    here.send_json(json!({"type":"post","text":"while paused","client_id":"r-2"}));
    let refused = here.until("ack");
    redis.resume();
    assert_eq!(refused["status"], 503, "{refused}");
    assert_eq!(refused["client_id"], "r-2");
    // The retry with its client_id is stored once.
    here.send_json(json!({"type":"post","text":"while paused","client_id":"r-2"}));
    let retried = here.until("ack");
    assert!(
        matches!(retried["status"].as_u64(), Some(200 | 201)),
        "{retried}"
    );
    let texts = get(b.addr, "/rooms/r/messages?since=0").texts();
    assert_eq!(
        texts.iter().filter(|t| *t == "while paused").count(),
        1,
        "{texts:?}"
    );
}

/// A client may send frames right behind its upgrade request, in the same packet: they are
/// the socket's first frames, acted on at once, not when the client next sends something.
#[test]
fn frames_sent_with_the_upgrade_are_read_at_once() {
    let server = start(test_config());
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    let text = br#"{"type":"typing"}"#;
    let mut frame = vec![0x81, 0x80 | text.len() as u8, 1, 2, 3, 4];
    frame.extend(
        text.iter()
            .enumerate()
            .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
    );
    let request = "GET /rooms/r/ws?name=ann&since=0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n";
    let mut bytes = request.as_bytes().to_vec();
    bytes.extend_from_slice(&frame);
    std::io::Write::write_all(&mut stream, &bytes).unwrap();
    let (mut socket, opened) = ws::read_opening(stream);
    assert_eq!(opened.status, 101);
    assert_eq!(socket.until("ack")["status"], 202);
}
