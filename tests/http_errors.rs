//! Bad input gets a clear status, and never disturbs anyone else.

mod common;

use common::*;
use std::time::Duration;

/// Requests that can never be valid: answered with the status, `Connection: close`, and the
/// connection is closed so no half-read request can be taken for the next one.
#[test]
fn malformed_requests_get_a_status_and_are_closed() {
    let server = start_default();
    let long_uri = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(3000));
    let long_header = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(9000));
    let many_headers = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: 1\r\n".repeat(40));
    let cases: Vec<(&str, u16)> = vec![
        ("NOT HTTP AT ALL\r\n\r\n", 400),
        ("GET /chat\r\n\r\n", 400),
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nX-Fold: a\r\n  b\r\n\r\n", 400),
        ("POST /chat HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
        ("POST /chat HTTP/1.1\r\nContent-Length: five\r\n\r\n", 400),
        (
            "POST /chat HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            400,
        ),
        (
            "POST /chat HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (
            "POST /chat HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            411,
        ),
        ("POST /chat HTTP/1.1\r\nHost: t\r\n\r\n", 411),
        (
            "POST /chat HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n",
            413,
        ),
        (&long_uri, 414),
        (&long_header, 431),
        (&many_headers, 431),
    ];
    for (raw, status) in cases {
        let mut client = Client::connect(server.addr);
        client.send(raw.as_bytes());
        let reply = client.read_reply();
        let shown = &raw[..raw.len().min(50)];
        assert_eq!(reply.status, status, "{shown:?}");
        assert_eq!(reply.header("Connection"), Some("close"), "{shown:?}");
        assert!(reply.text().starts_with("{\"error\":"), "{shown:?}");
        assert!(
            client.closed_by_server(),
            "{shown:?} leaves the connection open"
        );
    }
    wait_connections(&server, 0);
}

/// 413 comes from the Content-Length alone: the server answers before the body is sent.
#[test]
fn an_oversized_body_is_refused_before_it_is_sent() {
    let server = start_default();
    let mut client = Client::connect(server.addr);
    client.send(b"POST /chat HTTP/1.1\r\nContent-Length: 10485760\r\n\r\nmessage=");
    let reply = client.read_reply();
    assert_eq!(reply.status, 413);
}

#[test]
fn well_framed_but_wrong_requests_keep_the_connection() {
    let server = start_default();
    let mut client = Client::connect(server.addr);
    let cases = [
        ("GET /nowhere HTTP/1.1\r\n\r\n", 404, None),
        ("DELETE /chat HTTP/1.1\r\n\r\n", 405, Some("GET, POST")),
        (
            "PUT /stats HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            405,
            Some("GET, HEAD"),
        ),
        (
            "POST /chat HTTP/1.1\r\nContent-Length: 7\r\n\r\nnothing",
            400,
            None,
        ),
        (
            "POST /chat HTTP/1.1\r\nContent-Length: 11\r\n\r\nmessage=%C3",
            400,
            None,
        ),
        // A `%` that starts no two-digit escape is malformed, not a literal percent sign.
        (
            "POST /chat HTTP/1.1\r\nContent-Length: 12\r\n\r\nmessage=100%",
            400,
            None,
        ),
        (
            "POST /chat HTTP/1.1\r\nContent-Length: 11\r\n\r\nmessage=%zz",
            400,
            None,
        ),
    ];
    for (raw, status, allow) in cases {
        client.send(raw.as_bytes());
        let reply = client.read_reply();
        assert_eq!(reply.status, status, "{raw:?}");
        assert_eq!(reply.header("Allow"), allow, "{raw:?}");
        assert_eq!(reply.header("Connection"), None, "{raw:?}");
    }
    client.get("/stats");
    assert_eq!(client.read_reply().status, 200, "still usable");
}

#[test]
fn bad_clients_do_not_disturb_a_waiting_poll() {
    let server = start_default();
    let mut poll = Client::connect(server.addr);
    poll.get("/chat");
    wait_parked(&server, 1);
    for raw in [
        "\x00\x01\x02\r\n\r\n",
        "GET / HTTP/9.9\r\n\r\n",
        "POST /chat HTTP/1.1\r\n\r\n",
    ] {
        let mut bad = Client::connect(server.addr);
        bad.send(raw.as_bytes());
        bad.read_reply();
    }
    // A client that sends half a request and vanishes.
    let mut half = Client::connect(server.addr);
    half.send(b"POST /chat HTTP/1.1\r\nContent-Length: 50\r\n\r\nmess");
    drop(half);
    assert!(poll.silent_for(Duration::from_millis(100)));
    let mut poster = Client::connect(server.addr);
    poster.post_message("still+here");
    assert_eq!(poll.read_reply().text(), r#"{"ok":"still here"}"#);
}

/// Classic posts follow the same rules as the room API: a text over `--max-message` is 413,
/// a blank text or one with control characters (newline aside) is 400, each with a sentence
/// saying why, and nothing reaches the lobby or a waiting poll.
#[test]
fn classic_posts_obey_the_message_rules() {
    let server = start_default();
    let mut poll = Client::connect(server.addr);
    poll.get("/chat");
    wait_parked(&server, 1);
    let long = "x".repeat(20_000);
    let cases: Vec<(String, u16, &str)> = vec![
        (format!("message={long}"), 413, "--max-message"),
        ("message=%20%20".into(), 400, "empty"),
        ("message=".into(), 400, "empty"),
        ("message=bell%07here".into(), 400, "control"),
        ("message=esc%1B[31m".into(), 400, "control"),
        ("message=nul%00".into(), 400, "control"),
        ("message=hi&from=".into(), 400, "from"),
        ("message=hi&from=%20".into(), 400, "from"),
        ("message=hi&from=a%0Ab".into(), 400, "from"),
        (format!("message=hi&from={}", "n".repeat(41)), 400, "from"),
        ("nothing=1".into(), 400, "message"),
    ];
    let mut client = Client::connect(server.addr);
    for (body, status, needle) in &cases {
        client.send(
            format!(
                "POST /chat HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let reply = client.read_reply();
        let shown = &body[..body.len().min(40)];
        assert_eq!(reply.status, *status, "{shown:?}: {}", reply.text());
        let error = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(needle), "{shown:?}: {error}");
        assert_eq!(reply.header("Connection"), None, "{shown:?}");
    }
    assert!(
        poll.silent_for(Duration::from_millis(100)),
        "nothing was posted"
    );
    // At the limit is fine, and a newline is a newline.
    let at_limit = format!("{}%0A", "y".repeat(4095));
    client.post_message(&at_limit);
    assert_eq!(client.read_reply().status, 200);
    let text = format!("{}\n", "y".repeat(4095));
    assert_eq!(poll.read_reply().json()["ok"], text.as_str());
    let lobby = get(server.addr, "/rooms/lobby/messages").json();
    assert_eq!(lobby["messages"].as_array().unwrap().len(), 1, "{lobby}");
}
