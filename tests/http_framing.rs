//! What HTTP/1.1 itself asks of a server, as a client on the wire sees it: absolute-form
//! request targets, bodiless 204s, and `100 Continue` for clients that wait for it.

mod common;

use comet_chat::Config;
use common::*;
use std::time::Duration;

/// RFC 9112 §3.2.2: "A server MUST accept the absolute-form in requests". Clients that
/// were configured with the server as a proxy send it.
#[test]
fn an_absolute_form_target_is_served_like_its_path() {
    let server = start_default();
    let addr = server.addr;
    let stats = request(
        addr,
        &format!("GET http://{addr}/stats HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    );
    assert_eq!(stats.status, 200);
    assert!(stats.json()["connections"].is_u64(), "{}", stats.text());
    let posted = request(
        addr,
        &format!(
            "POST HTTP://{addr}/rooms/r/messages HTTP/1.1\r\nContent-Length: 13\r\n\r\n\
             from=a&text=b"
        ),
    );
    assert_eq!(posted.status, 201, "{}", posted.text());
    let polled = request(
        addr,
        &format!("GET http://{addr}/rooms/r/messages?since=0 HTTP/1.1\r\n\r\n"),
    );
    assert_eq!(polled.json()["messages"][0]["text"], "b");
}

/// RFC 9110 §8.6: a 204 has no Content-Length. The CORS preflight is one, and the
/// connection goes on to the next request as if nothing followed the head.
#[test]
fn the_cors_preflight_204_has_no_length_or_type_and_keeps_the_connection() {
    let mut config = test_config();
    config.cors_origin = Some("https://chat.example".into());
    let server = start(config);
    let mut client = Client::connect(server.addr);
    client.send(
        b"OPTIONS /rooms/r/messages HTTP/1.1\r\nOrigin: https://chat.example\r\n\
          Access-Control-Request-Method: POST\r\n\r\n",
    );
    let head = client.read_until("\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 204 No Content\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("\r\ncontent-length:"), "{head}");
    assert!(!lower.contains("\r\ncontent-type:"), "{head}");
    assert!(
        lower.contains("access-control-allow-methods: get, post\r\n"),
        "{head}"
    );
    client.get("/stats");
    assert_eq!(
        client.read_reply().status,
        200,
        "nothing followed the 204's head"
    );
}

/// `Expect: 100-continue` (curl sends it for larger bodies): the server says `100 Continue`
/// as soon as the head is acceptable, once per request, so the client does not sit out its
/// own timeout (curl's is 1 s) before sending the body.
#[test]
fn a_client_that_expects_100_continue_gets_it_once_before_sending_its_body() {
    let server = start_default();
    let mut client = Client::connect(server.addr);
    for text in ["first", "second"] {
        let body = format!("message={text}");
        client.send(
            format!(
                "POST /chat HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        client
            .stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        assert_eq!(
            client.read_until("\r\n\r\n"),
            "HTTP/1.1 100 Continue\r\n\r\n"
        );
        client.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        // The body in two parts: the 100 is not repeated for the second one.
        let (start, rest) = body.split_at(4);
        client.send(start.as_bytes());
        assert!(
            client.silent_for(Duration::from_millis(50)),
            "{text}: one 100 only"
        );
        client.send(rest.as_bytes());
        let reply = client.read_reply();
        assert_eq!(
            (reply.status, reply.text()),
            (200, r#"{"ok":"posted"}"#.into())
        );
    }
}

/// No 100 where it does not belong: not to HTTP/1.0 (RFC 9110 §15.2), and not before a
/// refusal the head alone decides.
#[test]
fn no_100_continue_for_http_1_0_or_before_a_refusal() {
    let server = start_default();
    let mut old = Client::connect(server.addr);
    old.send(b"POST /chat HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n");
    assert!(old.silent_for(Duration::from_millis(200)));
    old.send(b"message=x");
    assert_eq!(old.read_reply().status, 200);

    let mut big = Client::connect(server.addr);
    big.send(b"POST /chat HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10485760\r\n\r\n");
    assert_eq!(big.read_reply().status, 413, "the refusal, not a 100");
}

/// Regression: refusals of an event stream (a position ahead of the room, the room cap)
/// ignored `Connection: close` and HTTP/1.0, leaving the connection open until the idle
/// timeout.
#[test]
fn a_refused_stream_honours_connection_close_and_http_1_0() {
    let config = Config {
        max_rooms: 2,
        ..test_config()
    };
    let server = start(config);
    let epoch_head = post_form(server.addr, "/rooms/r/messages", "from=a&text=b").json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ahead = format!("{}-99", epoch_head.split('-').next().unwrap());
    // Someone waits in r, so the room cap cannot make it give way to `full`.
    let mut waiting = Client::connect(server.addr);
    waiting.get(&format!("/rooms/r/messages?since={epoch_head}"));
    wait_parked(&server, 1);
    let cases = [
        format!("GET /rooms/r/events?since={ahead} HTTP/1.1\r\nConnection: close\r\n\r\n"),
        format!("GET /rooms/r/events?since={ahead} HTTP/1.0\r\n\r\n"),
        "GET /rooms/full/events HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /rooms/full/events HTTP/1.0\r\n\r\n".to_owned(),
    ];
    for raw in cases {
        let mut client = Client::connect(server.addr);
        client.send(raw.as_bytes());
        let reply = client.read_reply();
        assert!(
            matches!(reply.status, 400 | 507),
            "{raw:?}: {}",
            reply.status
        );
        assert_eq!(reply.header("Connection"), Some("close"), "{raw:?}");
        assert!(
            client.closed_by_server(),
            "{raw:?} left the connection open"
        );
    }
}

/// Regression: an answer shared by many parked polls (a broadcast, the poll timeout) left
/// out `Connection: close` for a poll that asked for it, although the server then closed;
/// and HTTP/1.0 keep-alive answers left out `Connection: keep-alive`, so an HTTP/1.0
/// client took the connection for closed.
#[test]
fn shared_answers_carry_each_polls_own_connection_header() {
    let server = start(Config {
        poll_timeout: Duration::from_millis(300),
        ..test_config()
    });
    let head = post_form(server.addr, "/rooms/r/messages", "from=a&text=b").json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let polls = [
        ("HTTP/1.1\r\nConnection: close", Some("close")),
        ("HTTP/1.0\r\nConnection: keep-alive", Some("keep-alive")),
        ("HTTP/1.0", Some("close")),
        ("HTTP/1.1", None),
    ];
    let mut clients: Vec<Client> = Vec::new();
    for (version, _) in &polls {
        let mut client = Client::connect(server.addr);
        client.send(format!("GET /rooms/r/messages?since={head} {version}\r\n\r\n").as_bytes());
        clients.push(client);
    }
    let mut classic = Vec::new();
    for (version, _) in &polls {
        let mut client = Client::connect(server.addr);
        client.send(format!("GET /chat {version}\r\n\r\n").as_bytes());
        classic.push(client);
    }
    wait_parked(&server, 8);
    post_form(server.addr, "/rooms/lobby/messages", "from=a&text=hello");
    post_form(server.addr, "/rooms/r/messages", "from=a&text=hello");
    for (kind, list) in [("room poll", &mut clients), ("classic poll", &mut classic)] {
        for ((version, expected), client) in polls.iter().zip(list.iter_mut()) {
            let reply = client.read_reply();
            assert_eq!(reply.status, 200);
            assert_eq!(reply.header("Connection"), *expected, "{kind} {version:?}");
        }
    }
    // The poll timeout's shared answer, for the ones still open.
    let mut late = Client::connect(server.addr);
    late.send(b"GET /chat HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let reply = late.read_reply();
    assert_eq!(reply.json()["error"], "timeout");
    assert_eq!(reply.header("Connection"), Some("keep-alive"));
    assert!(late.try_send(b"GET /stats HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    assert_eq!(
        late.read_reply().status,
        200,
        "the HTTP/1.0 keep-alive connection stays open"
    );
}

/// HEAD is answered wherever GET is (RFC 9110 §9.3.2): `/stats` gives its head, with the
/// length of the body it would send, and no body, so the connection goes on cleanly.
/// (It answered 405 before.)
#[test]
fn head_of_stats_is_its_head_without_the_body() {
    let server = start(test_config());
    let mut client = Client::connect(server.addr);
    client.send(b"HEAD /stats HTTP/1.1\r\n\r\n");
    let head = client.read_reply_with(true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Type"), Some("application/json"));
    let length: usize = head.header("Content-Length").unwrap().parse().unwrap();
    assert!(
        length > 100,
        "the length of the JSON it would send: {length}"
    );
    client.get("/stats");
    let get = client.read_reply();
    assert_eq!(get.status, 200);
    assert!(get.text().starts_with('{'), "{}", get.text());
}

/// Regression: a client that sends its request and then closes its sending side (a
/// half-close, as `printf … | nc -N` or a script's `shutdown(SHUT_WR)` does) still reads
/// the answer (RFC 9112 §9.6: a server reads until the client's close, then answers what
/// it asked). The public port hung up on it unanswered when the request and the FIN came
/// in one read; the admin port answered it. One connection engine serves both now.
#[test]
fn a_half_closed_request_is_answered() {
    let server = start_default();
    for _ in 0..5 {
        let mut client = Client::connect(server.addr);
        client.send(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
        client.stream.shutdown(std::net::Shutdown::Write).unwrap();
        let reply = client.try_read_reply().expect("an answer, not a hang-up");
        assert_eq!(reply.status, 200);
        assert!(client.closed_by_server());
    }
    // Half a request and a FIN is never going to be whole: closed, unanswered.
    let mut half = Client::connect(server.addr);
    half.send(b"GET /stats HTTP/1.1\r\nHo");
    half.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(half.closed_by_server());
}
