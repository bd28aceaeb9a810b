//! `--admin-addr` as an operator and a student meet it: `/metrics` moves as requests,
//! posts and drops happen, and is read by a real Prometheus and passes `promtool`; the X-ray
//! feed sends frames while someone watches; the admin port answers only its routes, and the
//! public port serves none of them.

mod common;
#[path = "common/prometheus.rs"]
mod prometheus;

use comet_chat::{Config, Running};
use common::*;
use std::net::SocketAddr;
use std::time::Duration;

fn with_admin() -> Running {
    start(Config {
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..test_config()
    })
}

fn admin(server: &Running) -> SocketAddr {
    server.admin_addr.expect("an admin listener")
}

/// One sample's value from the exposition text (`name` with its labels, as written).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .parse()
        .unwrap()
}

fn metrics(server: &Running) -> String {
    let reply = get(admin(server), "/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    reply.text()
}

#[test]
fn counters_move_as_requests_posts_and_drops_happen() {
    let server = start(Config {
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        request_timeout: Duration::from_millis(300),
        ..test_config()
    });
    let before = metrics(&server);
    let mut polls: Vec<Client> = (0..3).map(|_| Client::connect(server.addr)).collect();
    for poll in polls.iter_mut() {
        poll.get("/chat");
    }
    wait_parked(&server, 3);
    let parked = metrics(&server);
    assert_eq!(sample(&parked, "comet_chat_waiting_polls"), 3.0);
    assert_eq!(
        sample(&parked, "comet_chat_connections{state=\"parked\"}"),
        3.0
    );
    let mut poster = Client::connect(server.addr);
    poster.post_message("message=hello");
    assert_eq!(poster.read_reply().status, 200);
    for poll in polls.iter_mut() {
        assert_eq!(poll.read_reply().status, 200);
    }
    // A slowloris: half a request, then nothing, until the server answers 408.
    let mut slow = Client::connect(server.addr);
    slow.send(b"GET /chat HTTP/1.1\r\nHost:");
    assert_eq!(slow.read_reply().status, 408);
    let after = metrics(&server);
    let moved = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(moved("comet_chat_messages_total"), 1.0);
    assert_eq!(moved("comet_chat_deliveries_total"), 3.0);
    assert_eq!(
        moved("comet_chat_drops_total{reason=\"request_timeout\"}"),
        1.0
    );
    assert!(moved("comet_chat_requests_total") >= 4.0);
    assert!(moved("comet_chat_connections_accepted_total") >= 5.0);
    assert!(moved("comet_chat_syscalls_total{kind=\"accept\"}") >= 5.0);
    assert!(moved("comet_chat_syscalls_total{kind=\"read\"}") >= 5.0);
    assert!(moved("comet_chat_syscalls_total{kind=\"write\"}") >= 5.0);
    assert!(moved("comet_chat_syscalls_total{kind=\"epoll_wait\"}") >= 1.0);
    assert!(moved("comet_chat_loop_passes_total") >= 1.0);
    assert!(moved("comet_chat_received_bytes_total") > 0.0);
    assert!(moved("comet_chat_sent_bytes_total") > 0.0);
    assert!(
        moved("comet_chat_timers_armed_total") >= 3.0,
        "three poll timers at least"
    );
    assert!(
        moved("comet_chat_timers_cancelled_total") >= 3.0,
        "answered before their timeout"
    );
    assert!(
        moved("comet_chat_timers_fired_total") >= 1.0,
        "the slowloris's request timer"
    );
    assert_eq!(
        moved("comet_chat_fanout_duration_seconds_count"),
        1.0,
        "one broadcast"
    );
    assert_eq!(sample(&after, "comet_chat_waiting_polls"), 0.0);
}

#[test]
fn the_admin_port_answers_its_routes_only_and_the_public_port_none_of_them() {
    let server = with_admin();
    let admin = admin(&server);
    assert_eq!(get(admin, "/loop").status, 200);
    assert!(get(admin, "/loop").text().contains("<svg id=\"wheel\""));
    assert_eq!(get(admin, "/loop.js").status, 200);
    for path in [
        "/",
        "/chat",
        "/stats",
        "/rooms/r/messages",
        "/admin/loop.html",
        "/metrics/x",
    ] {
        assert_eq!(get(admin, path).status, 404, "{path} on the admin port");
    }
    let post = request(admin, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("Allow"), Some("GET"));
    let garbage = request(admin, "\x16\x03\x01garbage\r\n\r\n");
    assert_eq!(garbage.status, 400);
    // The public port, even serving www/, knows none of it.
    let public = start(Config {
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        www: comet_chat::config::Www::Dir(www_dir()),
        ..test_config()
    });
    for path in [
        "/metrics",
        "/loop",
        "/loop.js",
        "/loop/events",
        "/admin/loop.html",
        "/admin/loop.js",
    ] {
        assert_eq!(
            get(public.addr, path).status,
            404,
            "{path} on the public port"
        );
    }
    assert_eq!(
        get(public.addr, "/").status,
        200,
        "while the page is served"
    );
}

#[test]
fn the_x_ray_sends_frames_while_someone_watches() {
    let server = with_admin();
    let mut viewer = Client::connect(admin(&server));
    viewer.get("/loop/events");
    let head = viewer.read_stream_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Type"), Some("text/event-stream"));
    let mut poll = Client::connect(server.addr);
    poll.get("/chat");
    wait_parked(&server, 1);
    let mut poster = Client::connect(server.addr);
    poster.post_message("message=look");
    poster.read_reply();
    // Frames come four a second; within a few, one shows the broadcast to one client.
    let mut seen = None;
    for _ in 0..20 {
        let event = viewer.read_event();
        let json: serde_json::Value =
            serde_json::from_str(event.trim().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(json["wheel"]["slots"], 4096);
        assert_eq!(json["wheel"]["arcs"].as_array().unwrap().len(), 256);
        if let Some(b) = json["broadcasts"].as_array().and_then(|b| b.last()) {
            seen = Some(b.clone());
            break;
        }
    }
    let broadcast = seen.expect("a frame listed the broadcast");
    assert_eq!(broadcast["room"], "lobby");
    assert_eq!(broadcast["fanout"], 1);
}

/// Regression: a viewer that kept sending after its request was read and discarded with
/// no bound per pass, so a few viewers pushing gigabytes held the loop for seconds. A
/// viewer has nothing more to say: one that sends anything is hung up on.
#[test]
fn a_viewer_that_keeps_sending_is_hung_up_on() {
    let server = with_admin();
    let mut viewer = Client::connect(admin(&server));
    viewer.get("/loop/events");
    assert_eq!(viewer.read_stream_head().status, 200);
    let flood = vec![b'x'; 1 << 20];
    let mut sent = 0usize;
    while sent < 64 << 20 && viewer.try_send(&flood) {
        sent += flood.len();
    }
    assert!(sent < 64 << 20, "the server read 64 MiB from a viewer");
    assert!(viewer.closed_by_server());
    // The loop goes on serving everyone else.
    assert_eq!(get(server.addr, "/stats").status, 200);
}

/// Regressions: sixteen viewers that never read took every admin connection and locked
/// the scraper out; a client that half-closed after its request got no answer.
#[test]
fn viewers_cannot_lock_out_a_scrape_and_a_half_closed_request_is_answered() {
    let server = with_admin();
    let admin = admin(&server);
    let viewers: Vec<Client> = (0..20)
        .map(|_| {
            let mut viewer = Client::connect(admin);
            viewer.get("/loop/events");
            viewer
        })
        .collect();
    wait_until(Duration::from_secs(5), "the viewers to be answered", || {
        get(admin, "/metrics").status == 200
    });
    let refused = viewers
        .into_iter()
        .map(|mut v| v.read_reply_head_status())
        .filter(|&status| status == 503)
        .count();
    assert_eq!(refused, 12, "eight viewers at most");
    for _ in 0..5 {
        let mut client = Client::connect(admin);
        client.send(b"GET /metrics HTTP/1.0\r\n\r\n");
        client.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(client.read_reply().status, 200);
    }
}

/// Regression: 70 connections that sent nothing (or half a request) took every admin
/// place, and every scrape behind them was answered 503 until they were swept. Past the
/// cap, the oldest connection that has not sent a whole request gives way to the newcomer.
#[test]
fn idle_connections_cannot_lock_out_a_scrape() {
    let server = start(Config {
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        // Long enough that no timeout frees a place during the test: only the cap's
        // policy can let the scrapes in.
        idle_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(60),
        ..test_config()
    });
    let admin = admin(&server);
    let mut idle: Vec<Client> = (0..70).map(|_| Client::connect(admin)).collect();
    for slowloris in idle.iter_mut().step_by(2) {
        slowloris.send(b"GET /metr");
    }
    for scrape in 0..20 {
        let reply = get(admin, "/metrics");
        assert_eq!(reply.status, 200, "scrape {scrape}: {}", reply.text());
    }
    // Those that gave way were hung up on, not left hanging.
    assert!(idle[0].closed_by_server(), "the oldest gave way");
}

/// Regression: a request over the admin port's 8 KiB was answered 431 and the socket
/// closed at once, so the rest of the request, arriving after, met a reset: the client's
/// send failed (broken pipe, connection reset) and it never read its 431. The server now
/// hangs up as the public port does: shuts its side, reads and discards what still comes,
/// and closes once the client has.
#[test]
fn a_request_too_large_reads_its_431() {
    let server = with_admin();
    let admin = admin(&server);
    let pad = "x".repeat(20 * 1024);
    let request = format!("GET /metrics HTTP/1.1\r\nX-Pad: {pad}\r\n\r\n");
    for piece_bytes in [1024, 4096, 16 * 1024] {
        let mut client = Client::connect(admin);
        // In pieces, as a request that crosses a real network arrives: the server has
        // answered before the last of it is sent.
        for piece in request.as_bytes().chunks(piece_bytes) {
            client.send(piece);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            client.read_reply().status,
            431,
            "in {piece_bytes}-byte pieces"
        );
        assert!(client.closed_by_server());
    }
    assert_eq!(get(admin, "/metrics").status, 200);
}

/// The admin port's connections are reaped as the public port's are: half a request gets
/// 408 after `--request-timeout`, and one that says nothing is closed after
/// `--idle-timeout`. (They were swept, silently, every 5 s whatever the flags said.)
#[test]
fn admin_connections_time_out_as_public_ones_do() {
    let server = start(Config {
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        request_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..test_config()
    });
    let admin = admin(&server);
    let mut slow = Client::connect(admin);
    let mut silent = Client::connect(admin);
    slow.send(b"GET /metrics HTTP/1.1\r\nHost:");
    assert_eq!(slow.read_reply().status, 408);
    assert!(silent.closed_by_server());
}

#[test]
fn prometheus_scrapes_it_and_promtool_accepts_it() {
    let server = with_admin();
    let mut poster = Client::connect(server.addr);
    poster.post_message("message=counted");
    assert_eq!(poster.read_reply().status, 200);
    // promtool, the reference linter for the exposition format.
    let text = metrics(&server);
    let check = std::process::Command::new(prometheus::binary(&["/usr/bin/promtool", "promtool"]))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(text.as_bytes());
    assert!(
        check.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    // A real Prometheus scrapes the admin port and answers queries on what it read.
    let prometheus = prometheus::Prometheus::scraping(admin(&server));
    wait_until(Duration::from_secs(30), "a scrape", || {
        prometheus.query("up{job=\"comet-chat\"}") == Some(1.0)
    });
    assert_eq!(prometheus.query("comet_chat_messages_total"), Some(1.0));
    wait_until(Duration::from_secs(10), "the pass histogram", || {
        prometheus
            .query("comet_chat_loop_pass_duration_seconds_count")
            .is_some_and(|passes| passes > 0.0)
    });
    assert!(
        prometheus
            .query("comet_chat_syscalls_total{kind=\"epoll_wait\"}")
            .unwrap()
            > 0.0
    );
}

/// `Command::output`, with bytes on the child's stdin.
trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl OutputWithStdin for std::process::Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}

/// The two ports' caps are their own, now that admin connections share the slab with the
/// public ones: `--max-conns` full of parked polls does not lock out a scrape, and admin
/// connections held open neither count against `--max-conns` nor keep a client out.
#[test]
fn the_admin_port_and_the_public_port_are_capped_apart() {
    let server = start(Config {
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        max_conns: Some(3),
        ..without_client_limits(test_config())
    });
    let admin = admin(&server);
    let mut polls: Vec<Client> = (0..3).map(|_| Client::connect(server.addr)).collect();
    for poll in polls.iter_mut() {
        poll.get("/chat");
    }
    wait_parked(&server, 3);
    assert_eq!(
        get(server.addr, "/stats").status,
        503,
        "the public port is full"
    );
    let before = metrics(&server);
    let idle: Vec<Client> = (0..10).map(|_| Client::connect(admin)).collect();
    let scrape = metrics(&server);
    // Watching the loop does not move what it shows: the admin port's own accepts,
    // reads and writes are not the client path's.
    for kind in ["accept", "read", "write"] {
        let name = format!("comet_chat_syscalls_total{{kind=\"{kind}\"}}");
        assert_eq!(sample(&scrape, &name), sample(&before, &name), "{kind}");
    }
    assert_eq!(
        sample(&scrape, "comet_chat_connections{state=\"parked\"}"),
        3.0
    );
    assert_eq!(
        sample(&scrape, "comet_chat_connections{state=\"reading\"}"),
        0.0,
        "the admin port's connections are not the public port's"
    );
    // A parked poll leaves: its place is a client's again, whatever the admin port holds.
    let gone = polls.pop().unwrap();
    gone.stream.shutdown(std::net::Shutdown::Both).unwrap();
    wait_parked(&server, 2);
    wait_until(Duration::from_secs(5), "a public place", || {
        get(server.addr, "/stats").status == 200
    });
    drop(idle);
}

/// A connection's deadline lives in the connection and its wheel entry is reused: a
/// broadcast to parked polls and the same polls parking again file no entry on the timer
/// wheel (before, each delivery cancelled one entry and filed another, and each re-park
/// did the same: 2 × 20 here). What a reader of `/metrics` sees, and what keeps a
/// million-client fan-out from spending its time in the wheel.
#[test]
fn a_broadcast_and_the_polls_parked_again_file_no_timer_entries() {
    let server = with_admin();
    let mut poster = Client::connect(server.addr);
    poster.post_message("message=warm-up");
    assert_eq!(poster.read_reply().status, 200);
    let mut polls: Vec<Client> = (0..20).map(|_| Client::connect(server.addr)).collect();
    for poll in polls.iter_mut() {
        poll.get("/chat");
    }
    wait_parked(&server, 20);
    let before = metrics(&server);
    poster.post_message("message=hello");
    assert_eq!(poster.read_reply().status, 200);
    for poll in polls.iter_mut() {
        assert_eq!(poll.read_reply().status, 200);
        poll.get("/chat");
    }
    wait_parked(&server, 20);
    let after = metrics(&server);
    let moved = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(moved("comet_chat_deliveries_total"), 20.0);
    assert!(
        moved("comet_chat_timers_armed_total") >= 40.0,
        "an idle deadline and a poll deadline for each"
    );
    // None for the polls; the second /metrics connection's idle deadline files one, and
    // the presence sweep may file itself again while the test runs.
    let filed = moved("comet_chat_timer_entries_filed_total");
    assert!(
        filed <= 2.0,
        "{filed} entries filed for 20 deliveries and re-parks"
    );
    // At most one a connection (20 polls, the poster, two /metrics connections), and a
    // sweep of the server's own.
    let entries = sample(&after, "comet_chat_timers");
    assert!(entries <= 24.0, "{entries} entries: one a connection");
}
