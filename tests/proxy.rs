//! Behind a reverse proxy (`--trusted-proxy`, `--proxy-protocol`): the per-client limits
//! count the client the proxy names, not the proxy. The proxy here is the test itself,
//! speaking from 127.0.0.1 with raw `X-Forwarded-For` headers and raw PROXY headers (v1
//! text, v2 binary), which is the point: what a proxy sends, byte for byte, including what a
//! broken or forged one sends. (tests/deploy.rs puts a real nginx in front.)

mod common;

use comet_chat::proxy::Trusted;
use comet_chat::Config;
use common::*;
use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

/// Trusting exactly these networks.
fn trusting(networks: &[&str]) -> Trusted {
    let mut trusted = Trusted::default();
    for network in networks {
        trusted.add(network.parse().unwrap());
    }
    trusted
}

/// A room post as a proxy forwards it: with `X-Forwarded-For: {forwarded}`.
fn forwarded_post(forwarded: &str, text: &str) -> String {
    let body = format!("from=ann&text={text}");
    format!(
        "POST /rooms/r/messages HTTP/1.1\r\nHost: chat\r\nX-Forwarded-For: {forwarded}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// `POST /rooms/r/messages` as a plain request (after a PROXY header, say).
fn post(text: &str) -> String {
    let body = format!("from=ann&text={text}");
    format!(
        "POST /rooms/r/messages HTTP/1.1\r\nHost: chat\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `raw` on `client` and returns the status of the answer.
fn status(client: &mut Client, raw: &str) -> u16 {
    client.send(raw.as_bytes());
    client.read_reply().status
}

/// The number of client addresses `/stats` says hold something, asked from 127.0.0.9.
fn client_addresses(addr: SocketAddr) -> u64 {
    let mut asker = Client::connect_from(addr, "127.0.0.9");
    asker.send(b"GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n");
    let stats = asker.read_reply().json();
    stats["limits"]["client_addresses"].as_u64().unwrap()
}

/// One upstream keep-alive connection, as nginx keeps, carries two clients' requests in
/// turn: each is limited alone, and what a client writes into the header itself (left of
/// what the proxy appended) changes nothing.
#[test]
fn behind_a_trusted_proxy_each_forwarded_client_is_limited_alone() {
    let server = start(Config {
        post_rate: 1,
        post_burst: 2,
        trusted_proxies: trusting(&["127.0.0.1"]),
        ..test_config()
    });
    let mut upstream = Client::connect(server.addr);
    let ann = "203.0.113.1";
    assert_eq!(status(&mut upstream, &forwarded_post(ann, "one")), 201);
    assert_eq!(status(&mut upstream, &forwarded_post(ann, "two")), 201);
    let refused = forwarded_post(ann, "three");
    assert_eq!(status(&mut upstream, &refused), 429, "ann's burst is spent");
    // Bob, on the same upstream connection, is not held back by Ann.
    let bob = "203.0.113.2";
    assert_eq!(status(&mut upstream, &forwarded_post(bob, "hi")), 201);
    // Ann forging an address in front of hers, as nginx passes it on
    // ($proxy_add_x_forwarded_for appends the real one), is still Ann.
    let forged = format!("198.51.100.99, {ann}");
    assert_eq!(status(&mut upstream, &forwarded_post(&forged, "x")), 429);
    // So is a second header line (HAProxy's `option forwardfor` adds one), and a chain
    // through another trusted proxy.
    let two_lines = forwarded_post(ann, "y").replace(
        "X-Forwarded-For:",
        "X-Forwarded-For: 198.51.100.98\r\nX-Forwarded-For:",
    );
    assert_eq!(status(&mut upstream, &two_lines), 429);
    assert_eq!(
        status(
            &mut upstream,
            &forwarded_post(&format!("{ann}, 127.0.0.1"), "z")
        ),
        429
    );
    // A proxied request without the header is the proxy's own.
    assert_eq!(status(&mut upstream, &post("own")), 201);
    let stats = get(server.addr, "/stats").json();
    assert_eq!(stats["limits"]["posts_refused"], 4, "{stats}");
}

/// Only a trusted peer's header is believed: anyone else's is ignored, and the address it
/// connects from is the client.
#[test]
fn an_untrusted_peers_forwarded_for_is_ignored() {
    let server = start(Config {
        post_rate: 1,
        post_burst: 2,
        trusted_proxies: trusting(&["10.0.0.0/8", "127.0.0.1"]),
        ..test_config()
    });
    let mut liar = Client::connect_from(server.addr, "127.0.0.2");
    assert_eq!(status(&mut liar, &forwarded_post("203.0.113.1", "a")), 201);
    assert_eq!(status(&mut liar, &forwarded_post("203.0.113.2", "b")), 201);
    let third = forwarded_post("203.0.113.3", "c");
    assert_eq!(
        status(&mut liar, &third),
        429,
        "one address, however it names itself"
    );
}

/// Names and rooms per client, and `/stats`' count of client addresses, are the forwarded
/// client's too; the per-connection cap is not applied to the proxy's address (every
/// visitor's connections come from it), but still to everyone else's.
#[test]
fn names_rooms_connections_and_stats_count_forwarded_clients() {
    let server = start(Config {
        max_names_per_client: 1,
        max_rooms_per_client: 1,
        max_conns_per_client: 2,
        trusted_proxies: trusting(&["127.0.0.1"]),
        ..test_config()
    });
    let addr = server.addr;
    let stream = |forwarded: &str, name: &str| {
        let mut client = Client::connect(addr);
        client.send(
            format!(
                "GET /rooms/r/events?name={name} HTTP/1.1\r\nX-Forwarded-For: {forwarded}\r\n\r\n"
            )
            .as_bytes(),
        );
        client
    };
    let mut ann = stream("203.0.113.1", "ann");
    assert_eq!(ann.read_stream_head().status, 200);
    let mut ann_again = stream("203.0.113.1", "ann2");
    assert_eq!(
        ann_again.read_reply().status,
        429,
        "ann's address holds a name"
    );
    drop(ann_again);
    let mut bob = stream("203.0.113.2", "bob");
    assert_eq!(bob.read_stream_head().status, 200, "bob's name is his own");
    // Ann's and Bob's streams are what /stats counts (the refused connection is gone;
    // /stats asks from 127.0.0.9).
    wait_connections(&server, 2);
    assert_eq!(client_addresses(addr), 3, "ann, bob and the one asking");
    // A room's first message: one per client. This is the third connection from
    // 127.0.0.1, past the cap of two: the proxy's address is not capped.
    let mut upstream = Client::connect(addr);
    let first = |room: &str, who: &str| {
        forwarded_post(who, "pin").replace("/rooms/r/", &format!("/rooms/{room}/"))
    };
    assert_eq!(status(&mut upstream, &first("a", "203.0.113.1")), 201);
    assert_eq!(status(&mut upstream, &first("b", "203.0.113.1")), 429);
    assert_eq!(status(&mut upstream, &first("b", "203.0.113.2")), 201);
    // Anyone not trusted is still capped at two connections.
    let _one = Client::connect_from(addr, "127.0.0.2");
    let _two = Client::connect_from(addr, "127.0.0.2");
    wait_connections(&server, 5);
    let mut third = Client::connect_from(addr, "127.0.0.2");
    assert_eq!(third.read_reply().status, 503);
}

/// A PROXY v1 header (HAProxy `send-proxy`; nginx `proxy_protocol on`).
fn v1(source: &str) -> String {
    format!("PROXY TCP4 {source} 127.0.0.1 40000 8080\r\n")
}

/// A PROXY v2 header for a TCP/IPv4 client, with one TLV after the addresses.
fn v2(source: [u8; 4]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12 + 5]);
    header.extend_from_slice(&source);
    header.extend_from_slice(&[127, 0, 0, 1, 0x9c, 0x40, 0x1f, 0x90]);
    header.extend_from_slice(&[0x05, 0x00, 0x02, b'i', b'd']); // PP2_TYPE_UNIQUE_ID
    header
}

fn proxy_protocol_config() -> Config {
    Config {
        post_rate: 1,
        post_burst: 1,
        max_conns_per_client: 2,
        trusted_proxies: trusting(&["127.0.0.1"]),
        proxy_protocol: true,
        ..test_config()
    }
}

/// With the PROXY protocol each connection is one client, named once: rates and the
/// per-connection cap count it.
#[test]
fn a_proxy_v1_header_names_the_client_of_its_connection() {
    let server = start(proxy_protocol_config());
    let addr = server.addr;
    let connect_as = |source: &str| {
        let mut client = Client::connect(addr);
        client.send(v1(source).as_bytes());
        client
    };
    let mut ann = connect_as("203.0.113.1");
    assert_eq!(status(&mut ann, &post("one")), 201);
    let mut ann_again = connect_as("203.0.113.1");
    assert_eq!(
        status(&mut ann_again, &post("two")),
        429,
        "ann's burst is spent"
    );
    let mut bob = connect_as("203.0.113.2");
    assert_eq!(status(&mut bob, &post("hi")), 201);
    // An X-Forwarded-For on such a connection is not read: the header said who it is.
    assert_eq!(status(&mut bob, &forwarded_post("203.0.113.3", "x")), 429);
    // Ann holds two connections: a third, from any port of the proxy, is refused.
    let mut third = connect_as("203.0.113.1");
    let refused = third.read_reply();
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.text().contains("--max-conns-per-client"));
    assert!(third.closed_by_server());
    drop((ann, ann_again));
    wait_connections(&server, 1);
    let mut again = connect_as("203.0.113.1");
    again.get("/stats");
    assert_eq!(again.read_reply().status, 200, "ann's connections are gone");
}

/// v2, the binary header, a byte at a time and then whole; and `LOCAL` (a health check
/// the proxy makes itself), which leaves the proxy as the client.
#[test]
fn a_proxy_v2_header_names_the_client_even_in_pieces() {
    let server = start(proxy_protocol_config());
    let addr = server.addr;
    let mut ann = Client::connect(addr);
    for byte in v2([203, 0, 113, 1]) {
        ann.send(&[byte]);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(status(&mut ann, &post("one")), 201);
    let mut ann_again = Client::connect(addr);
    let mut whole = v2([203, 0, 113, 1]);
    whole.extend_from_slice(post("two").as_bytes());
    ann_again.send(&whole);
    assert_eq!(ann_again.read_reply().status, 429, "the same client");
    let mut bob = Client::connect(addr);
    bob.send(&v2([203, 0, 113, 2]));
    assert_eq!(status(&mut bob, &post("hi")), 201);
    let mut check = Client::connect(addr);
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    check.send(&local);
    assert_eq!(status(&mut check, &post("health")), 201, "the proxy's own");
}

/// A broken PROXY header, or none where one is due, closes the connection without a
/// word (what follows cannot be trusted to start anywhere); a peer that is not trusted
/// sending one is not believed: to us it is a request that is not HTTP.
#[test]
fn a_malformed_or_missing_proxy_header_closes_and_an_untrusted_one_is_not_read() {
    let server = start(proxy_protocol_config());
    let addr = server.addr;
    for bad in [
        b"PROXY TCP4 203.0.113.1 127.0.0.1 40000\r\nGET /stats HTTP/1.1\r\n\r\n".to_vec(),
        b"PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\nGET /stats HTTP/1.1\r\n\r\n".to_vec(),
        format!("PROXY UNKNOWN {}", "x".repeat(200)).into_bytes(),
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c".to_vec(),
        b"GET /stats HTTP/1.1\r\n\r\n".to_vec(),
    ] {
        let mut client = Client::connect(addr);
        client.send(&bad);
        let mut got = Vec::new();
        let read = client.stream.read_to_end(&mut got);
        assert!(
            read.is_ok() || got.is_empty(),
            "{:?}: {read:?}",
            String::from_utf8_lossy(&bad)
        );
        assert!(
            got.is_empty(),
            "{:?} was answered: {}",
            String::from_utf8_lossy(&bad),
            String::from_utf8_lossy(&got)
        );
    }
    let mut stranger = Client::connect_from(addr, "127.0.0.2");
    stranger.send(v1("203.0.113.1").as_bytes());
    assert_eq!(stranger.read_reply().status, 400);
    // And the server is fine.
    let mut ann = Client::connect(addr);
    ann.send(v1("203.0.113.1").as_bytes());
    ann.get("/stats");
    assert_eq!(ann.read_reply().status, 200);
}

/// A request's log line names the client the proxy forwarded for, not the proxy.
#[test]
fn the_log_names_the_forwarded_client() {
    let server = ChildServer::start(&["--log-level", "debug", "--trusted-proxy", "127.0.0.1"]);
    let mut upstream = Client::connect(server.addr);
    let reply = {
        upstream.send(b"GET /stats HTTP/1.1\r\nX-Forwarded-For: 198.51.100.7\r\n\r\n");
        upstream.read_reply()
    };
    assert_eq!(reply.status, 200);
    wait_until(Duration::from_secs(5), "the request's log line", || {
        server
            .log_lines()
            .iter()
            .any(|line| line.contains("GET /stats") && line.contains("198.51.100.7"))
    });
}
