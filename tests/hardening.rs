//! What a server facing strangers must survive: slowloris, idle and vanished clients, slow
//! readers, descriptor exhaustion and shutdown. Each test shows the failure would be caught.

mod common;

use common::*;
use std::io::Read;
use std::time::{Duration, Instant};

fn stat(
    server: &comet_chat::Running,
    pick: fn(&comet_chat::stats::Stats) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    counter(server, pick)
}

#[test]
fn a_request_trickled_forever_is_answered_408_and_closed() {
    let mut config = test_config();
    config.request_timeout = Duration::from_millis(400);
    let server = start(config);
    let mut client = Client::connect(server.addr);
    let started = Instant::now();
    client.send(b"GET /chat HTTP/1.1\r\nX-Slow: ");
    // Keep trickling a byte every 20 ms for up to 2 s: every byte would reset a naive
    // per-read timeout, and the request would never end.
    let mut bytes_sent = 0;
    while started.elapsed() < Duration::from_secs(2) && client.try_send(b"a") {
        bytes_sent += 1;
        std::thread::sleep(Duration::from_millis(20));
        if bytes_sent > 30 {
            break; // enough trickle to outlast the deadline; now just wait for the answer
        }
    }
    let reply = client.read_reply();
    assert_eq!(reply.status, 408);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(client.closed_by_server());
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(stat(&server, |s| &s.dropped_request_timeout), 1);
    wait_connections(&server, 0);
}

#[test]
fn a_slow_but_complete_request_within_the_deadline_is_fine() {
    let mut config = test_config();
    config.request_timeout = Duration::from_secs(3);
    let server = start(config);
    let mut client = Client::connect(server.addr);
    for byte in b"GET /stats HTTP/1.1\r\n\r\n" {
        client.send(&[*byte]);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(client.read_reply().status, 200);
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let mut config = test_config();
    config.idle_timeout = Duration::from_millis(300);
    let server = start(config);
    let mut silent = Client::connect(server.addr); // never sends anything
    let mut used = Client::connect(server.addr);
    used.get("/stats");
    assert_eq!(used.read_reply().status, 200); // then goes quiet
    assert!(silent.closed_by_server());
    assert!(used.closed_by_server());
    wait_connections(&server, 0);
    assert_eq!(stat(&server, |s| &s.dropped_idle), 2);
}

#[test]
fn a_parked_poll_is_not_closed_as_idle() {
    let mut config = test_config();
    config.idle_timeout = Duration::from_millis(200);
    config.poll_timeout = Duration::from_millis(800);
    let server = start(config);
    let mut client = Client::connect(server.addr);
    client.get("/chat");
    let reply = client.read_reply();
    assert_eq!(reply.text(), r#"{"error":"timeout"}"#);
    assert_eq!(stat(&server, |s| &s.dropped_idle), 0);
}

/// A reader that never reads holds one response at most, is dropped after the write
/// timeout, and never delays the broadcast to anyone else.
#[test]
fn a_reader_too_slow_for_a_broadcast_is_dropped_and_delays_no_one() {
    let mut config = test_config();
    config.write_timeout = Duration::from_millis(500);
    config.limits.body_bytes = 8 << 20;
    config.max_message_bytes = 8 << 20;
    let server = start(config);

    // The slow reader: a tiny receive buffer it never drains.
    let slow = {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&server.addr.into()).unwrap();
        std::net::TcpStream::from(socket)
    };
    let mut slow_client = Client::from_stream(slow);
    slow_client.get("/chat");
    let mut fast = Client::connect(server.addr);
    fast.get("/chat");
    wait_parked(&server, 2);

    // 6 MiB: more than the kernel will buffer between us and the slow reader.
    let message = "m".repeat(6 << 20);
    let mut poster = Client::connect(server.addr);
    poster.post_message(&message);
    assert_eq!(poster.read_reply().status, 200);
    let reply = fast.read_reply();
    assert_eq!(
        reply.body.len(),
        message.len() + 9,
        "fast reader got the whole message"
    );

    wait_until(
        Duration::from_secs(10),
        "the slow reader to be dropped",
        || stat(&server, |s| &s.dropped_slow) == 1,
    );
    wait_connections(&server, 2); // fast and poster remain
    drop(slow_client);
}

#[test]
fn clients_that_vanish_are_reaped_until_nothing_is_left() {
    let server = start_default();
    let mut clients = Vec::new();
    for i in 0..40 {
        let mut client = Client::connect(server.addr);
        match i % 4 {
            0 => client.get("/chat"),                        // parked
            1 => client.send(b"GET /chat HTTP/1.1\r\nHost"), // half a head
            2 => client.send(b"POST /chat HTTP/1.1\r\nContent-Length: 9\r\n\r\nmess"), // half a body
            _ => {} // nothing at all
        }
        clients.push(client);
    }
    wait_connections(&server, 40);
    wait_parked(&server, 10);
    // Half close by shutting down, half by just dropping.
    for (i, client) in clients.drain(..).enumerate() {
        if i % 2 == 0 {
            client.stream.shutdown(std::net::Shutdown::Both).unwrap();
        }
    }
    wait_connections(&server, 0);
    wait_parked(&server, 0);
}

#[test]
fn max_conns_refuses_extra_clients_with_503_and_accepts_again_later() {
    let mut config = test_config();
    config.max_conns = Some(3);
    let server = start(config);
    let mut held: Vec<Client> = (0..3).map(|_| Client::connect(server.addr)).collect();
    for client in &mut held {
        client.get("/chat");
    }
    wait_parked(&server, 3);
    let mut extra = Client::connect(server.addr);
    let mut bytes = Vec::new();
    let _ = extra.stream.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(text.contains("Retry-After: 1\r\n"));
    assert_eq!(stat(&server, |s| &s.refused_over_cap), 1);

    drop(held.pop());
    wait_connections(&server, 2);
    let mut poster = Client::connect(server.addr);
    poster.post_message("room+again");
    assert_eq!(poster.read_reply().status, 200);
    for client in &mut held {
        assert_eq!(client.read_reply().text(), r#"{"ok":"room again"}"#);
    }
}
