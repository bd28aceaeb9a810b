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
            Some("GET"),
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
