//! Long-poll and broadcast behaviour as a client sees it on the wire.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn a_post_reaches_every_pending_poll_with_exact_json() {
    let server = start_default();
    let mut polls: Vec<Client> = (0..3).map(|_| Client::connect(server.addr)).collect();
    for poll in &mut polls {
        poll.get("/chat");
    }
    wait_parked(&server, 3);

    let mut poster = Client::connect(server.addr);
    // Quotes, backslash, a newline and non-ASCII text (other control characters are
    // refused, like on the room API).
    poster.post_message("say+%22hi%22+%5C+%0A+h%C3%A9llo+%E2%82%AC+%F0%9F%98%80");
    let posted = poster.read_reply();
    assert_eq!(posted.status, 200);
    assert_eq!(posted.text(), r#"{"ok":"posted"}"#);

    for poll in &mut polls {
        let reply = poll.read_reply();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("Content-Type"), Some("application/json"));
        assert_eq!(reply.header("Cache-Control"), Some("no-store"));
        assert_eq!(
            reply.text(),
            "{\"ok\":\"say \\\"hi\\\" \\\\ \\n héllo € 😀\"}"
        );
    }
    assert_eq!(counter(&server, |s| &s.pending_polls), 0);
    assert_eq!(counter(&server, |s| &s.deliveries), 3);
}

#[test]
fn a_poll_with_nothing_posted_answers_timeout() {
    let mut config = test_config();
    config.poll_timeout = Duration::from_millis(300);
    let server = start(config);
    let mut client = Client::connect(server.addr);
    let started = Instant::now();
    client.get("/chat");
    let reply = client.read_reply();
    let waited = started.elapsed();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), r#"{"error":"timeout"}"#);
    // Never early; a late answer is only a slow machine, so no upper bound is asserted.
    assert!(
        waited >= Duration::from_millis(300),
        "answered after {waited:?}"
    );
    // Keep-alive: the same socket polls again.
    client.get("/chat");
    assert_eq!(client.read_reply().text(), r#"{"error":"timeout"}"#);
    assert_eq!(counter(&server, |s| &s.timeouts), 2);
}

#[test]
fn five_hundred_polls_get_one_broadcast_while_fifty_left_first() {
    let server = start(without_client_limits(test_config()));
    let mut stay: Vec<Client> = (0..500).map(|_| Client::connect(server.addr)).collect();
    let mut leave: Vec<Client> = (0..50).map(|_| Client::connect(server.addr)).collect();
    for client in stay.iter_mut().chain(leave.iter_mut()) {
        client.get("/chat");
    }
    wait_parked(&server, 550);
    drop(leave);
    wait_parked(&server, 500);
    wait_connections(&server, 500);

    let mut poster = Client::connect(server.addr);
    poster.post_message("fan-out");
    assert_eq!(poster.read_reply().status, 200);
    for client in &mut stay {
        assert_eq!(client.read_reply().text(), r#"{"ok":"fan-out"}"#);
    }
    assert_eq!(counter(&server, |s| &s.deliveries), 500);
}

#[test]
fn a_client_that_disconnects_while_pending_frees_its_slot() {
    let server = start_default();
    let mut client = Client::connect(server.addr);
    client.get("/chat");
    wait_parked(&server, 1);
    assert_eq!(counter(&server, |s| &s.connections), 1);
    drop(client);
    wait_parked(&server, 0);
    wait_connections(&server, 0);
}

/// The slab hands a freed key to the next client at once. A poll timer left behind by the
/// old client must not fire on the new one: the newcomer must wait its own full timeout.
#[test]
fn a_reused_slot_is_not_timed_out_by_the_previous_clients_timer() {
    let mut config = test_config();
    config.poll_timeout = Duration::from_millis(600);
    let server = start(config);
    let mut first = Client::connect(server.addr);
    first.get("/chat");
    wait_parked(&server, 1);
    std::thread::sleep(Duration::from_millis(300));
    drop(first);
    wait_connections(&server, 0);

    let mut second = Client::connect(server.addr); // takes the freed key
    let started = Instant::now();
    second.get("/chat");
    let reply = second.read_reply();
    assert_eq!(reply.text(), r#"{"error":"timeout"}"#);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(600),
        "timed out after only {waited:?}"
    );
    assert_eq!(counter(&server, |s| &s.timeouts), 1);
}

#[test]
fn a_request_sent_one_byte_at_a_time_is_answered() {
    let server = start_default();
    let mut poll = Client::connect(server.addr);
    poll.get("/chat");
    wait_parked(&server, 1);
    let mut poster = Client::connect(server.addr);
    let raw = "POST /chat HTTP/1.1\r\nHost: t\r\nContent-Length: 14\r\n\r\nmessage=slowly";
    for byte in raw.as_bytes()[..raw.len() - 1].chunks(1) {
        poster.send(byte);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        poll.silent_for(Duration::from_millis(50)),
        "nothing before the body is complete"
    );
    poster.send(&raw.as_bytes()[raw.len() - 1..]);
    assert_eq!(poster.read_reply().status, 200);
    assert_eq!(poll.read_reply().text(), r#"{"ok":"slowly"}"#);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = start_default();
    let mut client = Client::connect(server.addr);
    client.send(
        b"POST /chat HTTP/1.1\r\nContent-Length: 11\r\n\r\nmessage=onePOST /chat HTTP/1.1\r\n\
          Content-Length: 11\r\n\r\nmessage=twoGET /nope HTTP/1.1\r\n\r\n",
    );
    assert_eq!(client.read_reply().text(), r#"{"ok":"posted"}"#);
    assert_eq!(client.read_reply().text(), r#"{"ok":"posted"}"#);
    assert_eq!(client.read_reply().status, 404);
    assert_eq!(counter(&server, |s| &s.messages), 2);
}

#[test]
fn a_poll_pipelined_behind_a_request_parks_and_then_delivers() {
    let server = start_default();
    let mut client = Client::connect(server.addr);
    client.send(b"GET /stats HTTP/1.1\r\n\r\nGET /chat HTTP/1.1\r\n\r\n");
    assert_eq!(client.read_reply().status, 200);
    wait_parked(&server, 1);
    let mut poster = Client::connect(server.addr);
    poster.post_message("after");
    assert_eq!(client.read_reply().text(), r#"{"ok":"after"}"#);
}

#[test]
fn keep_alive_reuses_one_connection_for_many_polls() {
    let server = start_default();
    let mut poll = Client::connect(server.addr);
    let mut poster = Client::connect(server.addr);
    for i in 0..20 {
        poll.get("/chat");
        wait_parked(&server, 1);
        poster.post_message(&format!("n{i}"));
        assert_eq!(poster.read_reply().status, 200);
        assert_eq!(poll.read_reply().text(), format!("{{\"ok\":\"n{i}\"}}"));
    }
    assert_eq!(counter(&server, |s| &s.accepted), 2);
}

#[test]
fn http_1_0_and_connection_close_are_answered_then_closed() {
    let server = start_default();
    for raw in [
        "GET /stats HTTP/1.0\r\n\r\n",
        "GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let mut client = Client::connect(server.addr);
        client.send(raw.as_bytes());
        assert_eq!(client.read_reply().status, 200);
        assert!(client.closed_by_server(), "{raw:?}");
    }
    // An HTTP/1.0 poll is answered by the broadcast and then closed.
    let mut poll = Client::connect(server.addr);
    poll.send(b"GET /chat HTTP/1.0\r\n\r\n");
    wait_parked(&server, 1);
    let mut poster = Client::connect(server.addr);
    poster.post_message("bye");
    assert_eq!(poll.read_reply().text(), r#"{"ok":"bye"}"#);
    assert!(poll.closed_by_server());
    wait_connections(&server, 1);
}

#[test]
fn stats_report_connections_and_polls() {
    let server = start_default();
    let mut poll = Client::connect(server.addr);
    poll.get("/chat");
    wait_parked(&server, 1);
    let reply = request(server.addr, "GET /stats HTTP/1.1\r\n\r\n");
    let text = reply.text();
    assert!(text.contains("\"connections\":2"), "{text}");
    assert!(text.contains("\"pending_polls\":1"), "{text}");
    assert!(text.contains("\"open_files_limit\":"), "{text}");
}

/// An answered poll's wheel entry stays filed for its old deadline; when it fires, the
/// poll parked again since must not be timed out by it: it waits its own full timeout.
#[test]
fn a_poll_parked_again_after_an_answer_waits_its_own_full_timeout() {
    let mut config = test_config();
    config.poll_timeout = Duration::from_millis(600);
    let server = start(config);
    let mut client = Client::connect(server.addr);
    client.get("/chat");
    wait_parked(&server, 1);
    std::thread::sleep(Duration::from_millis(300));
    let mut poster = Client::connect(server.addr);
    poster.post_message("message=hello");
    assert_eq!(poster.read_reply().status, 200);
    assert_eq!(client.read_reply().status, 200);
    let started = Instant::now();
    client.get("/chat");
    let reply = client.read_reply();
    let waited = started.elapsed();
    assert_eq!(reply.text(), r#"{"error":"timeout"}"#);
    // Never early; no upper bound (a slow machine is only late).
    assert!(
        waited >= Duration::from_millis(600),
        "timed out after only {waited:?}"
    );
    assert_eq!(counter(&server, |s| &s.timeouts), 1);
}

/// A deadline sooner than the wheel entry already filed gets an entry of its own: after
/// a poll is answered, the keep-alive connection's entry is still filed for the poll's
/// 60 s timeout, and half a request after it must still be answered 408 after the
/// request timeout, not a minute later.
#[test]
fn half_a_request_after_an_answered_poll_is_timed_out_on_time() {
    let server = start(comet_chat::Config {
        poll_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_millis(300),
        ..test_config()
    });
    let mut client = Client::connect(server.addr);
    client.get("/chat");
    wait_parked(&server, 1);
    let mut poster = Client::connect(server.addr);
    poster.post_message("message=hello");
    assert_eq!(poster.read_reply().status, 200);
    assert_eq!(client.read_reply().status, 200);
    client.send(b"GET /chat HTTP/1.1\r\nHost:");
    assert_eq!(client.read_reply().status, 408);
}
