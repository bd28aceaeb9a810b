//! What a client that asks for history costs the server: the stored messages are shared,
//! never copied per client, however many ask and however slowly they read; and a client
//! that reads steadily through a long replay is never dropped as "too slow".

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A connection with a tiny receive buffer that sends `request` and then never reads.
fn hoarder(addr: SocketAddr, request: &str) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    stream
}

fn fill_history(addr: SocketAddr, room: &str, messages: usize, text_bytes: usize) {
    let mut client = Client::connect(addr);
    let text = "h".repeat(text_bytes);
    for i in 0..messages {
        let body = format!("from=filler&text={i}{text}");
        client.send(
            format!(
                "POST /rooms/{room}/messages HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(client.read_reply().status, 201);
    }
}

/// Regression: every poll without `since` and every stream from `since=0` got its own
/// copy of the whole history, held until the client read it: 100 clients that never read
/// took a server with 4 MiB of history from 7 MB to 478 MB of RSS.
#[test]
fn clients_that_never_read_a_long_history_share_it() {
    let mut args = vec![
        "--history-bytes",
        "4194304",
        "--history",
        "2000",
        "--write-timeout",
        "30",
    ];
    args.extend(NO_CLIENT_LIMITS);
    let server = ChildServer::start(&args);
    fill_history(server.addr, "big", 1000, 4000); // ~4 MiB of stored messages
    let before = server.stat("rss_bytes");
    let requests_before = server.stat("requests");
    let mut held = Vec::new();
    for i in 0..100 {
        let request = if i % 2 == 0 {
            "GET /rooms/big/messages HTTP/1.1\r\n\r\n"
        } else {
            "GET /rooms/big/events?since=0 HTTP/1.1\r\n\r\n"
        };
        held.push(hoarder(server.addr, request));
    }
    wait_until(Duration::from_secs(10), "100 history requests", || {
        // More than 100: the /stats request that asks is counted too.
        server.stat("requests") > requests_before + 100
    });
    let grown = server.stat("rss_bytes").saturating_sub(before);
    println!("RSS grew {} KiB for 100 hoarders", grown >> 10);
    // Copies would be 100 × 4 MiB; sharing costs each client a few KiB.
    assert!(
        grown < 32 << 20,
        "RSS grew {} MiB for 100 clients holding a 4 MiB history",
        grown >> 20
    );
    drop(held);
}

/// Regression: progress inside one large piece of a response did not count, so a client
/// reading steadily through a replay bigger than the socket buffers was dropped after
/// `--write-timeout` although it never stopped reading.
#[test]
fn a_steady_reader_of_a_long_replay_is_not_dropped() {
    let mut config = test_config();
    config.write_timeout = Duration::from_millis(1000);
    config.max_message_bytes = 12 << 20;
    config.limits.body_bytes = 13 << 20;
    config.history_bytes = 16 << 20;
    let server = start(config);
    let big = "b".repeat(12 << 20); // larger than the kernel's send and receive buffers
    let reply = post_form(
        server.addr,
        "/rooms/wide/messages",
        &format!("from=ann&text={big}"),
    );
    assert_eq!(reply.status, 201);

    let mut stream = Client::connect(server.addr).stream;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET /rooms/wide/events?since=0 HTTP/1.1\r\n\r\n",
    )
    .unwrap();
    // About 3 MB/s, evenly: every 20 ms, at most 64 KiB.
    let started = Instant::now();
    let mut received = 0usize;
    let mut chunk = vec![0u8; 64 * 1024];
    while received < big.len() + 100 && started.elapsed() < Duration::from_secs(30) {
        let n = read_retrying(&mut stream, &mut chunk).expect("the server kept the stream open");
        assert!(n > 0, "dropped after {received} bytes");
        received += n;
        if chunk[..n].ends_with(b"\n\n") && received > big.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(received > big.len(), "got only {received} bytes");
    assert_eq!(counter(&server, |s| &s.dropped_slow), 0);
}

/// Regression: the kernel reports a socket writable again only once a good part of its send
/// buffer is free (a third or so, up to megabytes once the buffer has grown), which a slow
/// but steady reader may take longer than `--write-timeout` to free. Such a reader was
/// dropped as stalled although it never stopped reading; now the deadline first tries a
/// write, and any progress starts it over.
#[test]
fn a_slow_steady_reader_is_not_taken_for_a_stalled_one() {
    let mut config = test_config();
    // The reader below frees a loopback window update's worth (~64 KiB) every ~320 ms, so
    // the server's writes progress that often; 1.5 s leaves room for a loaded machine to
    // slow the reader's loop (500 ms did not, under a load average of 20), and is still far
    // shorter than the seconds the kernel takes to report a third of the send buffer free
    // at this pace, which is what the old code waited for.
    config.write_timeout = Duration::from_millis(1500);
    config.max_message_bytes = 8 << 20;
    config.limits.body_bytes = 9 << 20;
    config.history_bytes = 16 << 20;
    let server = start(config);
    let big = "b".repeat(8 << 20);
    let reply = post_form(
        server.addr,
        "/rooms/slow/messages",
        &format!("from=ann&text={big}"),
    );
    assert_eq!(reply.status, 201);
    let mut stream = Client::connect(server.addr).stream;
    std::io::Write::write_all(
        &mut stream,
        b"GET /rooms/slow/events?since=0 HTTP/1.1\r\n\r\n",
    )
    .unwrap();
    // About 200 kB/s, evenly, for 6 s: far slower than the buffers drain at, far faster
    // than a stalled client.
    let started = Instant::now();
    let mut received = 0usize;
    let mut chunk = vec![0u8; 4 * 1024];
    while started.elapsed() < Duration::from_secs(6) {
        let n = read_retrying(&mut stream, &mut chunk).expect("the server kept the stream open");
        assert!(n > 0, "dropped after {received} bytes");
        received += n;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        counter(&server, |s| &s.dropped_slow),
        0,
        "read {received} bytes"
    );
}
